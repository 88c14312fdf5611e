"""The kit installs one way for pip users and another for conda users: keep the two lists in step."""

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
# pip name -> conda-forge name, where they differ
CONDA_NAMES = {"torch": "pytorch", "playwright": "playwright-python"}
PIP_ONLY = {"tomli"}  # a back-port needed only by Python 3.10's pip installs


def split_requirement(text):
    """'torch>=2.1' -> ('torch', '>=2.1'); environment markers are dropped."""
    text = text.split(";")[0].strip()
    match = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", text)
    return match.group(1).lower(), match.group(2).replace(" ", "")


def pyproject_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["test"]
    pairs = (split_requirement(r) for r in requirements)
    return {CONDA_NAMES.get(name, name): spec for name, spec in pairs if name not in PIP_ONLY}


def environment_requirements():
    """Top-level conda dependencies of environment.yml (the pip: section is the kit itself)."""
    entries = {}
    in_dependencies = False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if line.startswith("dependencies:"):
            in_dependencies = True
        elif in_dependencies and re.match(r"^  - [^ ]", line):
            name, spec = split_requirement(line[4:])
            if name not in {"python", "pip"}:
                entries[name] = spec
    return entries


def test_environment_yml_and_pyproject_list_the_same_dependencies():
    assert environment_requirements() == pyproject_requirements()


def test_environment_yml_installs_the_kit_itself():
    assert "- -e ." in (ROOT / "environment.yml").read_text()


def test_python_floor_agrees():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.10"
    assert "- python>=3.10" in (ROOT / "environment.yml").read_text()


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash run.sh test" in readme
    assert "bash run.sh course" in readme
    assert [line for line in ci.splitlines() if line and not line.startswith(("#", "set ", "cd "))] == [
        "bash run.sh test"
    ]
