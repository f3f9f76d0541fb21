"""The layout the README promises: three packages, imports flowing one way, no cycles.

``tvae_book -> tvae_experiments -> tvae_core``.  The import graph is read from the sources with
``ast`` (module-level *and* function-level imports: a lazy import is still a dependency), so a
cycle or an upward import fails here before it confuses a reader.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("tvae_core", "tvae_experiments", "tvae_book")  # lower first: a package imports only lower ones


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in LAYERS for p in sorted((ROOT / pkg).rglob("*.py"))
            if "__pycache__" not in p.parts}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules that ``name`` imports (resolving relative imports and ``from pkg import mod``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # tvae_core.roll.roll -> tvae_core.roll
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    """A cycle as a list of modules, or None (depth-first search with colours).

    Edges into a package's ``__init__`` from its own submodules are ignored: importing
    ``tvae_core.roll`` runs ``tvae_core/__init__``, but a submodule that imports a sibling
    through the package is not a dependency cycle between modules."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(g.get(m, ())):
            if m.startswith(n + "."):  # submodule -> its own package __init__
                continue
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if state.get(n) is None and (c := visit(n)):
                return c
        state[m] = 2
        stack.pop()
        return None

    for m in sorted(g):
        if state.get(m) is None and (c := visit(m)):
            return c
    return None


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_planted_cycle():
    g = graph()
    g["tvae_core.roll"] = g["tvae_core.roll"] | {"tvae_core.metrics"}  # metrics imports roll: now a cycle
    assert find_cycle(g) is not None


@pytest.mark.parametrize("lower", range(len(LAYERS)))
def test_imports_flow_down_only(lower):
    pkg, higher = LAYERS[lower], LAYERS[lower + 1:]
    bad = sorted(f"{m} imports {d}" for m, deps in graph().items() if m.split(".")[0] == pkg
                 for d in deps if d.split(".")[0] in higher)
    assert not bad, bad


def test_tvae_core_is_the_maths_alone():
    """Importing tvae_core pulls in none of the experiments, the book pipeline, plotting,
    notebooks or file formats; and its sources do no file I/O."""
    code = ("import sys, tvae_core; bad = [m for m in ('tvae_experiments', 'tvae_book', 'matplotlib', 'IPython', "
            "'papermill', 'yaml', 'pandas') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    for path in (ROOT / "tvae_core").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        for io in ("open(", "torch.save", "torch.load", "os.environ", "pathlib"):
            assert io not in text, f"{path.name} uses {io}: file I/O belongs in tvae_experiments"


def test_the_layout_is_what_the_readme_says():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for pkg in LAYERS:
        assert f"{pkg}/" in readme, f"README's layout does not mention {pkg}/"
