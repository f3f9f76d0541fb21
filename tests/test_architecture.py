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


MAX_FUNCTION_LINES = 60
LONG_REASON = "Long because"


def long_functions(source: str, where: str, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """Functions in ``source`` (nested ones and methods too) longer than ``limit`` lines from ``def`` to
    their end, docstring included, whose docstring does not say why (``"Long because ..."``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            if n > limit and LONG_REASON not in (ast.get_docstring(node) or ""):
                found.append(f"{where}:{node.lineno} {node.name} ({n} lines)")
    return found


def test_no_function_is_long_without_a_reason():
    """tvae_experiments and tvae_book: at most 60 lines a function, or a docstring that says why it is longer."""
    bad = [f for pkg in LAYERS[1:] for p in sorted((ROOT / pkg).rglob("*.py")) if "__pycache__" not in p.parts
           for f in long_functions(p.read_text(encoding="utf-8"), str(p.relative_to(ROOT)))]
    assert not bad, f"split these or say in their docstring '{LONG_REASON} ...': {bad}"


def test_the_length_check_finds_a_planted_long_function():
    def planted(n_lines: int, doc: str = "Short.", nested: bool = False) -> str:
        """A function ``f`` of ``n_lines`` lines, alone or inside a method ``C.g``."""
        head = ["class C:", "    def g(self):"] if nested else []
        pad = "    " * len(head)
        lines = [f"{pad}def f():", f'{pad}    """{doc}"""'] + [f"{pad}    x = {i}" for i in range(n_lines - 2)]
        return "\n".join(head + lines) + "\n"

    assert long_functions(planted(61), "x.py") == ["x.py:1 f (61 lines)"]
    assert long_functions(planted(60), "x.py") == []
    assert long_functions(planted(61, "Long because it is a planted example."), "x.py") == []
    assert sorted(f.split()[1] for f in long_functions(planted(61, nested=True), "x.py")) == ["f", "g"]
