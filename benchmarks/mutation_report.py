"""Mutation score of ``tvae_core`` from the last ``mutmut run`` (``make mutate``), with every
surviving mutant either explained by ``tests/equivalent_mutants.toml`` or printed.

Usage (repository root, after ``mutmut run``)::

    python benchmarks/mutation_report.py            # score + unexplained survivors; exit 1 if any
    python benchmarks/mutation_report.py --list     # also every explained survivor and its reason

The score is ``killed / (killed + survived)``, where a timeout counts as killed (the mutant made
the tests hang) and mutants that were not run (``not checked``: e.g. a partial run) are left out
and counted.  A survivor is *explained* when a rule of the TOML file matches it: ``name`` is a
glob on the mutant's name (``tvae_core.roll.x_fourier_roll__mutmut_*``), ``changed`` a
regular expression searched in the mutated line(s) of its diff (``mutmut show``) and ``dropped``
one found in the original line but no longer in the mutated one; all optional, one at least.  Each rule says why its mutants cannot be told apart from the
original by any test (equivalent) or why no test should (e.g. a device argument on a CPU box).
"""
from __future__ import annotations

import argparse
import fnmatch
import re
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "tests" / "equivalent_mutants.toml"
KILLED = {"killed", "timeout", "caught by type check"}
PACKAGES = ("tvae_core.", "tvae_experiments.")


def mutmut(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout


def parse_results(text: str) -> dict[str, str]:
    """``{mutant: status}`` from the output of ``mutmut results --all true``."""
    out = {}
    for line in text.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and name.startswith(PACKAGES):
            out[name] = status.strip()
    return out


def statuses(baseline: Path | None = None) -> dict[str, str]:
    """This run's statuses; with ``baseline`` (a saved ``mutmut results --all true`` of an earlier
    full run), a mutant this run did not check takes its baseline status (a partial rerun of the
    survivors on top of a full run)."""
    out = parse_results(mutmut("results", "--all", "true"))
    if baseline is not None:
        base = parse_results(Path(baseline).read_text(encoding="utf-8"))
        out = {k: (base.get(k, v) if v == "not checked" else v) for k, v in out.items()}
    return out


def diff_lines(name: str) -> tuple[str, str]:
    """``(original, changed)``: the removed (``-``) and mutated (``+``) lines of the mutant's diff."""
    diff = mutmut("show", name).splitlines()
    pick = lambda c: "\n".join(l[1:] for l in diff if l.startswith(c) and not l.startswith(c * 3))
    return pick("-"), pick("+")


def load_rules(path: Path = RULES) -> list[dict]:
    rules = tomllib.loads(path.read_text(encoding="utf-8"))["equivalent"]
    for r in rules:
        if not (r.get("name") or r.get("changed") or r.get("dropped")) or not r.get("reason"):
            raise ValueError(f"{path}: every rule needs a reason and a name glob, a changed or a dropped regex: {r}")
    return rules


def explain(name: str, original: str, changed: str, rules: list[dict]) -> dict | None:
    """The first rule whose every given condition holds: ``name`` glob, ``changed`` regex found in
    the mutated line, ``dropped`` regex found in the original line but not in the mutated one."""
    for r in rules:
        if r.get("name") and not fnmatch.fnmatchcase(name, r["name"]):
            continue
        if r.get("changed") and not re.search(r["changed"], changed, re.M):
            continue
        if r.get("dropped") and not (re.search(r["dropped"], original) and not re.search(r["dropped"], changed)):
            continue
        return r
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--list", action="store_true", help="print every explained survivor and its reason")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="saved `mutmut results --all true` of an earlier full run: statuses of mutants not rerun")
    args = ap.parse_args(argv)
    st = statuses(args.baseline)
    if not st:
        print("no mutmut results: run `make mutate` (or `mutmut run`) first")
        return 2
    counts = Counter(st.values())
    killed = sum(counts[s] for s in KILLED)
    survivors = sorted(n for n, s in st.items() if s == "survived")
    run = killed + len(survivors)
    rules = load_rules()
    explained, unexplained = {}, []
    for n in survivors:
        orig, ch = diff_lines(n)
        r = explain(n, orig, ch, rules)
        if r is None:
            unexplained.append((n, ch))
        else:
            explained[n] = r["reason"]
    print(f"mutants: {len(st)} ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})")
    for module in sorted({n.split(".x")[0] for n in st}):
        mine = [s for n, s in st.items() if n.split(".x")[0] == module and s != "not checked"]
        if mine:
            k = sum(s in KILLED for s in mine)
            print(f"  {module}: {k} killed of {k + mine.count('survived')} run, {mine.count('no tests')} without a test")
    print(f"mutation score: {killed} killed of {run} run = {100 * killed / max(run, 1):.1f}%")
    print(f"survivors: {len(survivors)} = {len(explained)} explained by {RULES.relative_to(ROOT)} "
          f"+ {len(unexplained)} unexplained")
    print(f"score counting explained survivors as equivalent: {killed} of {run - len(explained)} = "
          f"{100 * killed / max(run - len(explained), 1):.1f}%")
    if args.list:
        by_reason = Counter(explained.values())
        for reason, k in by_reason.most_common():
            print(f"  {k:4d}  {reason}")
    for n, ch in unexplained:
        print(f"UNEXPLAINED {n}\n    {ch.strip()[:200]}")
    return 1 if unexplained else 0


if __name__ == "__main__":
    raise SystemExit(main())
