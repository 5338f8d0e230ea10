"""Packaging metadata stays consistent: one version, floors that .ci/check_floors
really installs, CI constraints covering every requirement, licence and citation."""

import os
import re
import tomllib
from importlib import metadata

import yaml

import csra_jax

from repo_root import ROOT
with open(os.path.join(ROOT, "pyproject.toml"), "rb") as _f:
    PROJECT = tomllib.load(_f)["project"]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: str) -> dict:
    out = {}
    for line in open(os.path.join(ROOT, path)):
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            out[canonical(name)] = version
    return out


def floors(requirements) -> dict:
    out = {}
    for r in requirements:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(>=\s*([0-9][^,;\s]*))?", r.strip())
        assert m, f"unexpected requirement form {r!r}"
        out[canonical(m.group(1))] = m.group(4)
    return out


def test_one_version_everywhere():
    assert csra_jax.__version__ == metadata.version("csra_jax") == PROJECT["version"]
    cff = yaml.safe_load(open(os.path.join(ROOT, "CITATION.cff")))
    assert str(cff["version"]) == PROJECT["version"]


def test_every_floor_is_pinned_in_the_floors_check():
    declared = floors(PROJECT["dependencies"] + PROJECT["optional-dependencies"]["convert"])
    pinned = pins("constraints/floors.txt")
    unfloored = sorted(n for n, v in declared.items() if v is None)
    assert unfloored == ["importlib-resources"], unfloored  # any version has what tfds needs
    for name, floor in declared.items():
        if floor is not None:
            assert pinned.get(name) == floor, f"{name}: floor {floor}, floors.txt {pinned.get(name)}"
    assert set(pinned) - set(declared) == {"jaxlib"}  # jax's own floor goes with it
    assert pinned["jaxlib"] == pinned["jax"]


def test_readme_install_section_names_every_floor():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    install = readme[readme.index("## Install"):readme.index("## The head")]
    text = " ".join(install.split())
    for name, version in pins("constraints/floors.txt").items():
        if name != "jaxlib":
            label = {"ml-collections": "ml-collections", "array-record": "array_record",
                     "tensorboardx": "tensorboardX"}.get(name, name)
            assert f"{label} {version}" in text, f"README install section: {label} {version}"


def test_ci_constraints_cover_every_requirement():
    tested = pins("constraints/ci.txt")
    project = PROJECT["dependencies"] + [r for extra in ("convert", "test")
                                         for r in PROJECT["optional-dependencies"][extra]]
    for name, floor in floors(project).items():
        assert name in tested, f"constraints/ci.txt lacks {name}: rerun .ci/write_ci_constraints"
        if floor is not None:
            version = tuple(int(p) for p in re.findall(r"\d+", tested[name].split("+")[0])[:3])
            assert version >= tuple(int(p) for p in floor.split(".")), (name, tested[name])
    assert 'PIP_CONSTRAINT="$PWD/constraints/ci.txt"' in open(os.path.join(ROOT, ".ci", "run")).read()


def test_licence_and_citation():
    text = open(os.path.join(ROOT, "LICENSE")).read()
    assert text.lstrip().startswith("Apache License\n                           Version 2.0")
    assert "END OF TERMS AND CONDITIONS" in text and PROJECT["license"] == "Apache-2.0"
    cff = yaml.safe_load(open(os.path.join(ROOT, "CITATION.cff")))
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "Apache-2.0"
    paper = cff["preferred-citation"]
    assert [a["family-names"] for a in paper["authors"]] == ["Zhu", "Wu"]
    assert paper["year"] == 2021 and "ICCV" in paper["collection-title"]
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    bibtex = re.findall(r"```bibtex\n(.*?)```", readme, flags=re.S)
    assert len(bibtex) == 1 and f"title     = {{{paper['title']}}}" in bibtex[0]
    assert "author    = {Zhu, Ke and Wu, Jianxin}" in bibtex[0]
