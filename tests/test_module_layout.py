"""Issue 15, "Measure": the shape of the package, so that a lecturer can open any module and read it whole.

* every module of ``regedu/`` is at most 600 lines (a shrink-only list names the ones still longer);
* the import graph of regedu's modules has no cycle: the imports that run when a module is imported
  (an import inside a function runs later and is left out, and so is ``if TYPE_CHECKING:``), each
  resolved to the module it loads.

The split of ``viz`` also moved its own number check to :func:`regedu.checks.check_number` (now with a
``maximum``), tested at the end. That no underscored name crosses a module boundary is checked by
``tests/test_consolidation.py::test_no_private_name_is_imported_across_modules`` (with its own
shrink-only allow-list).
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import torch

import regedu
from regedu import checks, viz, widgets

PACKAGE = Path(regedu.__file__).parent
MAX_LINES = 600
# modules still longer than MAX_LINES, each with who splits it. An entry that fits fails the test, so the
# list only shrinks.
OVERSIZED: dict[str, str] = {}   # module -> why it may stay over MAX_LINES for now (none today)


def modules_over(package: Path, limit: int = MAX_LINES) -> dict[str, int]:
    """``{path relative to package: lines}`` of the modules longer than ``limit`` lines."""
    lines = {path.relative_to(package).as_posix(): len(path.read_text().splitlines())
             for path in sorted(package.rglob("*.py"))}
    return {path: count for path, count in lines.items() if count > limit}


# ---------------------------------------------------------------------------
# the import graph
# ---------------------------------------------------------------------------


def module_name(path: Path, package: Path) -> str:
    """``regedu/viz/common.py`` -> ``"regedu.viz.common"``; a package's ``__init__.py`` is the package."""
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_time_imports(statements: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """The import statements among ``statements`` (and in their blocks) that run at import time: not in
    a function body, not under ``if TYPE_CHECKING:`` (its ``else`` runs)."""
    found = []
    for node in statements:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue  # runs when the function is called
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            found += import_time_imports(node.orelse)
        else:  # if, try, with, for, class, match: their blocks run now
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.excepthandler, ast.match_case)):
                    found += import_time_imports(child.body)
                elif isinstance(child, ast.stmt):
                    found += import_time_imports([child])
    return found


def loaded_modules(node: ast.Import | ast.ImportFrom, name: str, is_package: bool,
                   modules: set[str]) -> set[str]:
    """The modules of ``modules`` that an import statement in module ``name`` loads, by absolute name:
    ``import x.y`` loads ``x.y``; ``from x import y`` loads the module ``x.y`` if there is one, else ``x``."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & modules
    source = node.module
    if node.level:
        anchor = name if is_package else name.rpartition(".")[0]
        source = importlib.util.resolve_name("." * node.level + (node.module or ""), anchor)
    named = {f"{source}.{alias.name}" for alias in node.names}
    return (named & modules) | ({source} & modules if named - modules else set())


def import_graph(package: Path) -> dict[str, set[str]]:
    """``{module: the modules of the package it imports at import time}`` for every module of ``package``."""
    paths = {module_name(path, package): path for path in sorted(package.rglob("*.py"))}
    graph = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        graph[name] = {target for node in import_time_imports(tree.body)
                       for target in loaded_modules(node, name, is_package, set(paths)) if target != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as ``[a, b, ..., a]``, or ``None`` when it is acyclic (depth-first search)."""
    state = {}  # module -> "open" while on the current path, "done" once all it reaches is explored
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = "open"
        while stack:
            following = next(stack[-1], None)
            if following is None:
                state[path.pop()] = "done"
                stack.pop()
            elif state.get(following) == "open":
                return path[path.index(following):] + [following]
            elif following not in state:
                state[following] = "open"
                path.append(following)
                stack.append(iter(sorted(graph.get(following, ()))))
    return None


# ---------------------------------------------------------------------------
# the tests
# ---------------------------------------------------------------------------


def test_every_module_fits_in_600_lines():
    too_long = modules_over(PACKAGE)
    assert set(too_long) - set(OVERSIZED) == set(), (
        f"modules over {MAX_LINES} lines: {too_long}; split them by concept (see docs/DESIGN.md's layout)")
    assert set(OVERSIZED) - set(too_long) == set(), "these fit now: remove them from OVERSIZED"


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph(PACKAGE))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_graph_resolves_the_package_s_own_imports():
    """The graph is not vacuously acyclic: it holds the imports the package is known to make."""
    graph = import_graph(PACKAGE)
    assert {"regedu.viz.images", "regedu.viz.fields", "regedu.metrics"} <= graph["regedu.viz.summaries"]
    assert {"regedu.viz", "regedu.losses", "regedu.widgets.controls"} <= graph["regedu.widgets.explorers"]
    assert "regedu.data.io.reading" in graph["regedu.data.io"]
    assert "regedu.checks" in graph["regedu.data.io.writing"]
    assert "regedu.data.io" in graph["regedu.data.check"]
    assert sum(len(targets) for targets in graph.values()) > 100


def _package(tmp_path: Path, modules: dict[str, str]) -> Path:
    package = tmp_path / "pkg"
    for name, text in modules.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


def test_the_cycle_check_can_fail(tmp_path):
    """A cycle through relative, absolute and ``from . import`` imports is found and reported in order;
    imports in functions and under ``if TYPE_CHECKING:`` do not count."""
    package = _package(tmp_path, {
        "__init__.py": "from .sub import b\n",
        "a.py": "import typing\nif typing.TYPE_CHECKING:\n    from . import d\nfrom .sub import b\n",
        "sub/__init__.py": "",
        "sub/b.py": "try:\n    from .. import c\nexcept ImportError:\n    pass\n",
        "c.py": "import pkg.a as a\n",
        "d.py": "def late():\n    from . import a\n",
    })
    graph = import_graph(package)
    assert graph == {"pkg": {"pkg.sub.b"}, "pkg.a": {"pkg.sub.b"}, "pkg.sub": set(), "pkg.sub.b": {"pkg.c"},
                     "pkg.c": {"pkg.a"}, "pkg.d": set()}
    cycle = find_cycle(graph)
    assert cycle == ["pkg.sub.b", "pkg.c", "pkg.a", "pkg.sub.b"]  # met first from "pkg", in import order
    assert all(after in graph[before] for before, after in zip(cycle, cycle[1:], strict=False))
    (package / "c.py").write_text("def late():\n    import pkg.a as a\n")
    assert find_cycle(import_graph(package)) is None


def test_the_line_limit_can_fail(tmp_path):
    package = _package(tmp_path, {"__init__.py": "", "sub/long.py": "x = 1\n" * (MAX_LINES + 1),
                                  "just_fits.py": "x = 1\n" * MAX_LINES})
    assert modules_over(package) == {"sub/long.py": MAX_LINES + 1}


# ---------------------------------------------------------------------------
# the split of viz: its own number check gave way to regedu.checks (item 5)
# ---------------------------------------------------------------------------


def test_a_number_check_with_an_upper_bound():
    assert checks.check_number(1, "alpha", maximum=1.0) == 1.0
    with pytest.raises(ValueError, match=r"`alpha` must be a number in \[0, 1\], got 1.5"):
        checks.check_number(1.5, "alpha", maximum=1.0)
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        checks.check_number(0, "share", strict=True, maximum=1.0)
    with pytest.raises(ValueError, match="finite number >= 0"):  # without a maximum: the message as before
        checks.check_number(-1, "weight")


@pytest.mark.parametrize("call, error, message", [
    (lambda: viz.overlay(torch.zeros(5, 6), torch.zeros(5, 6).long(), alpha=1.5), ValueError,
     r"`alpha` must be a number in \[0, 1\]"),
    (lambda: viz.overlay(torch.zeros(5, 6), torch.zeros(5, 6).long(), alpha="0.5"), TypeError,
     r"convert it with float\('0.5'\)"),
    (lambda: viz.joint_histogram(torch.zeros(5, 6), torch.zeros(5, 6), background=2), ValueError,
     "`background` must be a number in"),
    (lambda: viz.LiveLossPlot(min_interval=-1), ValueError, "`min_interval` must be a finite number >= 0"),
    (lambda: widgets.transform_explorer(torch.rand(1, 1, 8, 8), scale=0.0), ValueError,
     "`scale` must be a finite number >= 0.001"),
])
def test_figures_and_widgets_check_numbers_with_regedu_checks(call, error, message):
    with pytest.raises(error, match=message):
        call()
