"""Issue 14: the conventions card is in the repository and every notebook links it where it lies."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")) + sorted(
    (ROOT / "notebooks" / "solutions").glob("[0-9][0-9]_*.ipynb"))


def test_there_is_a_notebook_of_each_kind():
    assert len(NOTEBOOKS) == 20


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_the_opening_links_the_conventions_card(path):
    opening = nbformat.read(path, as_version=4).cells[0].source
    links = re.findall(r"\]\(([^)]*conventions\.md)\)", opening)
    assert links, f"{path.name}: the first cell should link docs/conventions.md"
    assert (path.parent / links[0]).resolve() == ROOT / "docs" / "conventions.md"


def test_the_readme_links_the_card():
    assert "docs/conventions.md" in (ROOT / "README.md").read_text()
