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
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
