"""Issue 15, item 11: the DESIGN text the package and the lessons cite is in the repository, and its
layout names every module of the package where it lives."""

from __future__ import annotations

import re
from pathlib import Path

import regedu

ROOT = Path(regedu.__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "DESIGN.md"


def _layout() -> dict[str, set[str]]:
    """The ``.py`` names the layout block lists, by folder of ``regedu/`` (``""`` for its top,
    ``"data/io"`` for a subpackage of a subpackage): a line indented by 2 under ``regedu/`` is a module
    or a subpackage (a name ending in ``/``), one indented by 2 more a module or a subpackage of the
    subpackage above; deeper indents are descriptions that go on. The names are what comes before the
    description (two or more spaces)."""
    block = DESIGN.read_text().split("## Layout", 1)[1].split("```")[1]
    listed: dict[str, set[str]] = {}
    folders: list[str] = []  # the subpackages the current line sits in
    inside = False
    for line in block.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        names = re.split(r"\s{2,}", line.strip())[0]
        depth = indent // 2  # 1: in regedu/ itself
        if indent == 0:
            inside, folders = names == "regedu/", []
        elif inside and indent % 2 == 0 and 1 <= depth <= len(folders) + 1:
            folders = folders[: depth - 1]
            listed.setdefault("/".join(folders), set()).update(re.findall(r"\w+\.py", names))
            if names.endswith("/"):
                folders.append(names.rstrip("/"))
                listed.setdefault("/".join(folders), set())
    return listed


def test_the_design_text_is_in_the_repository():
    assert DESIGN.is_file()
    text = DESIGN.read_text()
    for section in ("## Layout", "## Tensor conventions", "## Public API", "## Errors", "## Notebooks"):
        assert section in text


def test_the_layout_names_every_module_where_it_lives():
    listed = _layout()
    package = ROOT / "regedu"
    missing = []
    for path in sorted(package.rglob("*.py")):
        folder = str(path.parent.relative_to(package)) if path.parent != package else ""
        subpackage = folder and path.name == "__init__.py"  # the subpackage's own line stands for it
        if not subpackage and path.name not in listed.get(folder, set()):
            missing.append(str(path.relative_to(ROOT)))
    assert missing == [], f"docs/DESIGN.md's layout does not list {missing}: add a line for each"
    folders = {str(path.relative_to(package)) for path in package.iterdir()
               if path.is_dir() and not path.name.startswith(("_", "."))}
    assert folders - {"weights"} <= set(listed), "a subpackage of regedu is missing from the layout"


def test_the_layout_lists_no_module_that_is_gone():
    package = ROOT / "regedu"
    for folder, names in _layout().items():
        for name in names:
            assert (package / folder / name).is_file(), f"docs/DESIGN.md lists regedu/{folder}/{name}"
