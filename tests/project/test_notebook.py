"""notebooks/quickstart.ipynb runs end to end on CPU (tiny budget) and shows real results:
the PyTorch->Flax parity it prints, a finite mAP from its training run, attention images.

The kernel is a kernelspec written at test time into a temporary JUPYTER_PATH whose argv
is this interpreter (sys.executable), so the notebook runs in the same environment as
pytest, whether or not the venv is activated (the python3 spec that pip installs into a
venv says just "python", i.e. whatever is first on PATH).
"""

import json
import math
import os
import re
import shutil
import subprocess
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from repo_root import ROOT
NOTEBOOK_DIR = os.path.join(ROOT, "notebooks")
NOTEBOOK = os.path.join(NOTEBOOK_DIR, "quickstart.ipynb")
KERNEL = "python3"


def _install_kernelspec(prefix):
    """A 'python3' kernelspec under prefix/share/jupyter/kernels that runs sys.executable."""
    spec_dir = os.path.join(prefix, "share", "jupyter", "kernels", KERNEL)
    os.makedirs(spec_dir, exist_ok=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (csra_jax tests)", "language": "python"}
    with open(os.path.join(spec_dir, "kernel.json"), "w") as f:
        json.dump(spec, f)
    return os.path.join(prefix, "share", "jupyter")


def _text(cell):
    out = []
    for o in cell.get("outputs", []):
        if o["output_type"] == "stream":
            out.append(o["text"])
        elif "data" in o and "text/plain" in o["data"]:
            out.append(o["data"]["text/plain"])
    return "".join(out)


def test_committed_notebook_is_clean():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4 and nb.metadata.kernelspec.name == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, cell.source[:80]
    first = nb.cells[0] if nb.cells[0].cell_type == "code" else nb.cells[1]
    assert 'find_spec("csra_jax")' in first.source and "REPO_URL" in first.source


@pytest.mark.timeout(900)
def test_notebook_runs_end_to_end(tmp_path, monkeypatch):
    from jupyter_client.kernelspec import KernelSpecManager

    jupyter_path = _install_kernelspec(str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PATH", jupyter_path)
    # The kernel must be this interpreter, not a user/system "python3" spec.
    spec = KernelSpecManager().get_kernel_spec(KERNEL)
    assert spec.argv[0] == sys.executable, spec.resource_dir
    monkeypatch.setenv("CSRA_NOTEBOOK_CI", "1")
    monkeypatch.setenv("CSRA_NOTEBOOK_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setenv("CSRA_NOTEBOOK_CACHE_DIR", str(tmp_path / "xla_cache"))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebook's mkdtemp workdirs

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name=KERNEL,
                                     resources={"metadata": {"path": NOTEBOOK_DIR}})
    client.execute()  # raises CellExecutionError (with the cell's traceback) on any error

    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    text = "\n".join(_text(c) for c in code_cells)

    # The install cell was a no-op (already installed) and shows the devices.
    assert "pip install" not in _text(code_cells[0])
    assert re.search(r"devices: \[.*Cpu", _text(code_cells[0])), _text(code_cells[0])

    # The conversion parity check really ran and matched.
    m = re.search(r"max \|logit difference\| torch vs flax: (\S+)", text)
    assert m, text[-3000:]
    assert float(m.group(1)) < 1e-4

    # Training produced a finite mAP, and evaluation wrote and showed the AP table.
    m = re.search(r"mAP after training: (\S+)", text)
    assert m, text[-3000:]
    mAP = float(m.group(1))
    assert math.isfinite(mAP) and 0.0 <= mAP <= 100.0
    m = re.search(r"evaluated mAP: (\S+)", text)
    assert m and math.isfinite(float(m.group(1)))
    assert "circle" in text and "hexagon" in text  # the per-class AP table's rows

    # Attention maps were displayed inline as images.
    pngs = [o for c in code_cells for o in c.outputs
            if o["output_type"] == "display_data" and "image/png" in o.get("data", {})]
    assert len(pngs) >= 1

    # The Linen and NNX examples trained.
    assert re.search(r"head kernel \(H, d, C\): \(2, 64, 10\)", text)
    assert re.search(r"NNX head kernel: \(2, 64, 10\)", text)


def _package_repo(dst):
    """A git repository holding this checkout's installable files (the working tree, so a
    local change is what gets installed), as a user's clone URL would."""
    import shutil
    os.makedirs(dst)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(os.path.join(ROOT, name), dst)
    shutil.copytree(os.path.join(ROOT, "csra_jax"), os.path.join(dst, "csra_jax"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-C", dst, "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "snapshot"]):
        subprocess.run(git + args, check=True)
    return "file://" + dst


@pytest.mark.timeout(600)
def test_install_cell_installs_from_repo_url(tmp_path):
    """The first cell, run where csra_jax is not installed and no checkout is near (as on a
    fresh Colab runtime), clones REPO_URL and pip-installs it. The fresh venv sees this
    environment's packages through a path file but not csra_jax (the editable install's own
    path file is not processed there), so nothing but csra_jax itself gets installed."""
    import site
    import venv
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    url = _package_repo(str(tmp_path / "src"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = str(env_dir / "bin" / "python")
    child_site = subprocess.run([python, "-c", "import site; print(site.getsitepackages()[0])"],
                                capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(child_site, "parent.pth"), "w") as f:
        f.write("\n".join(site.getsitepackages()) + "\n")
    run_dir = tmp_path / "colab"
    run_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_CONSTRAINT")}
    env.update(CSRA_JAX_REPO_URL=url, JAX_PLATFORMS="cpu",
               PIP_NO_BUILD_ISOLATION="0", PIP_NO_INDEX="1")  # offline: this env's setuptools
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code").source
    out = subprocess.run([python, "-c", cell], cwd=run_dir, env=env, capture_output=True,
                         text=True, timeout=540)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    clone = os.path.realpath(run_dir / "csra_jax_repo")
    assert f"git clone {url}" in out.stdout and f"pip install -e {clone}" in out.stdout
    assert f"csra_jax from {clone}/csra_jax" in out.stdout, out.stdout
    # A new interpreter (the next Colab session) imports the installed copy.
    where = subprocess.run([python, "-c", "import csra_jax, os; print(os.path.realpath("
                            "csra_jax.__file__))"], cwd=run_dir, env=env, capture_output=True,
                           text=True, check=True).stdout.strip()
    assert where == os.path.join(clone, "csra_jax", "__init__.py")


def test_install_cell_clone_failure_is_one_clear_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["CSRA_JAX_REPO_URL"] = "file://" + str(tmp_path / "no_such_repo")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code").source
    # Hide the installed package: run the cell with csra_jax unimportable (-I, no site).
    out = subprocess.run([sys.executable, "-I", "-S", "-c", cell], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert ("RuntimeError: could not clone REPO_URL='file://" in out.stderr
            and "set REPO_URL in this cell to a git URL you can reach." in out.stderr), out.stderr


def test_colab_link_notebook_and_metadata_name_one_repository():
    import tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        source = tomllib.load(f)["project"]["urls"]["Source"]
    m = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+)", source)
    assert m, source
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    link = re.search(r"\(https://colab\.research\.google\.com/github/(\S+?)\)", readme)
    assert link and link.group(1) == f"{m.group(1)}/blob/main/notebooks/quickstart.ipynb"
    nb = nbformat.read(NOTEBOOK, as_version=4)
    default = re.search(r'^REPO_URL = "(.*)"  # @param', nb.cells[1].source, re.M)
    assert default and default.group(1) == source
    with open(os.path.join(ROOT, "CITATION.cff")) as f:
        assert f'repository-code: "{source}"' in f.read()
