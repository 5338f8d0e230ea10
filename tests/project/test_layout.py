"""The test tree mirrors the package: tests/<sub>/ holds the tests of csra_jax/<sub>/,
tests/test_<module>.py those of csra_jax/<module>.py; project/ and bench/ test what lies
outside the package (README, configs, notebook, packaging, launch scripts, benchmarks)."""

import os

from repo_root import ROOT

TESTS = os.path.join(ROOT, "tests")
PACKAGE = os.path.join(ROOT, "csra_jax")
OUTSIDE_PACKAGE = {"project": "README.md", "bench": "bench"}
NOT_TESTS = {"workers", "__pycache__"}  # worker scripts the tests start, pytest's cache


def _subdirs(path):
    return sorted(d for d in os.listdir(path)
                  if os.path.isdir(os.path.join(path, d)) and not d.startswith("."))


def test_every_test_folder_is_a_package_folder_or_a_named_outside_one():
    for d in _subdirs(TESTS):
        if d in NOT_TESTS:
            continue
        if d in OUTSIDE_PACKAGE:
            assert os.path.exists(os.path.join(ROOT, OUTSIDE_PACKAGE[d])), d
            continue
        assert os.path.isfile(os.path.join(PACKAGE, d, "__init__.py")), (
            f"tests/{d}/ has no csra_jax/{d}/ package to mirror")
        assert any(f.startswith("test_") for f in os.listdir(os.path.join(TESTS, d))), d


def test_top_level_test_files_name_a_top_level_module():
    for f in sorted(os.listdir(TESTS)):
        if f.startswith("test_") and f.endswith(".py"):
            module = f[len("test_"):]
            assert os.path.isfile(os.path.join(PACKAGE, module)), (
                f"tests/{f} names no csra_jax/{module}; move it to the folder of what it tests")


def test_test_files_are_only_where_pytest_and_the_layout_expect_them():
    """No test module hides under a name pytest's default patterns would skip or under a
    folder the layout does not know (basenames must also be unique: rootdir imports)."""
    seen = {}
    for dirpath, dirnames, filenames in os.walk(TESTS):
        dirnames[:] = [d for d in dirnames if d not in NOT_TESTS and not d.startswith(".")]
        for f in filenames:
            if f.endswith("_test.py"):
                raise AssertionError(f"{os.path.join(dirpath, f)}: name it test_*.py")
            if f.startswith("test_") and f.endswith(".py"):
                assert f not in seen, f"{f} twice: {seen[f]} and {dirpath}"
                seen[f] = dirpath
    package_folders = [d for d in _subdirs(PACKAGE) if d != "__pycache__"]
    for d in package_folders:
        assert os.path.isdir(os.path.join(TESTS, d)), f"csra_jax/{d}/ has no tests/{d}/"
