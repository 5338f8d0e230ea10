"""The README's Python snippets run as written (in order, one namespace), and its two
set-up commands are the ones CI and users rely on."""

import os
import re

from repo_root import ROOT
README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()


def test_python_snippets_run():
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert len(blocks) >= 3
    namespace = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["logits"].shape == (1, 80)


def test_setup_commands_at_the_top_and_in_ci():
    bash = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    demo, tests = bash[0].strip(), bash[1].strip()
    assert "python -m csra_jax.main --config configs/demo.py" in demo
    assert demo.startswith("python3 -m venv .venv") and tests.startswith("python3 -m venv .venv")
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    test_cmd = tests.split("&& ", 2)[-1]  # pip install ... && python -m pytest ...
    assert test_cmd in ci, (test_cmd, ci)
