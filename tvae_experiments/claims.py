"""Numerical checks of the papers' claims, written to a metrics file per chapter.

A chapter creates one :class:`ClaimReport`, records each check with :meth:`ClaimReport.check`
and ends with :meth:`ClaimReport.finish`, which prints a table, writes
``<results dir>/<chapter>.json`` atomically and raises :class:`ClaimFailed` if any check
failed -- so a papermill run of the chapter fails.

Results dir: ``$TVAE_RESULTS_DIR`` if set (the runner sets it), else
``<repo root>/_results/<profile>``.  JSON schema::

    {"chapter", "title", "profile", "seed", "device",
     "claims": [{"name", "statement", "value", "threshold", "paper", "passed", "enforced"}],
     "all_passed", "elapsed_s"}
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tvae_experiments.files import atomic_write_text, repo_root
from tvae_experiments.profiles import check_profile

__all__ = ["Claim", "ClaimReport", "ClaimFailed", "results_dir", "atomic_write_text"]


class ClaimFailed(AssertionError):
    """Raised by :meth:`ClaimReport.finish` when at least one claim check failed."""


@dataclass
class Claim:
    name: str
    statement: str
    value: float | str
    threshold: str
    paper: str | None
    passed: bool
    enforced: bool = True  # False: reported only (a claim that needs more than this profile's scale)


def results_dir(profile: str) -> Path:
    """Where metrics files go: ``$TVAE_RESULTS_DIR`` or ``<repo>/_results/<profile>``."""
    env = os.environ.get("TVAE_RESULTS_DIR")
    return Path(env) if env else repo_root() / "_results" / profile


def _jsonable(v: Any) -> float | str:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (int, float)):
        return float(v) if math.isfinite(v) else str(v)
    return str(v)


class ClaimReport:
    """Collects a chapter's claim checks; see the module docstring."""

    def __init__(self, chapter: str, title: str, profile: str, seed: int, device: str = "cpu") -> None:
        self.chapter, self.title = chapter, title
        self.profile, self.seed, self.device = check_profile(profile), int(seed), str(device)
        self.claims: list[Claim] = []
        self._t0 = time.perf_counter()

    def check(self, name: str, passed: bool, value: Any, threshold: str, statement: str,
              paper: str | None = None, enforce: bool = True) -> bool:
        """Record one check.  ``value`` is this run's number, ``threshold`` the rule it must
        satisfy (in words), ``paper`` the paper's value or statement.  ``enforce=False``
        reports the result without failing the chapter (for claims that need more training
        than the ``smoke`` profile gives).  Returns ``passed``."""
        claim = Claim(name, statement, _jsonable(value), threshold, paper, bool(passed), bool(enforce))
        self.claims.append(claim)
        mark = ("PASS" if claim.passed else "FAIL") if claim.enforced else ("ok (not enforced)" if claim.passed else "not met (not enforced)")
        print(f"[{mark}] {name}: {claim.value} ({threshold})")
        return claim.passed

    @property
    def all_passed(self) -> bool:
        """Every enforced claim passed (and at least one claim was checked)."""
        return bool(self.claims) and all(c.passed for c in self.claims if c.enforced)

    def table(self) -> str:
        """The checks as a Markdown table."""
        rows = ["| claim | this run | rule | paper | result |", "|---|---|---|---|---|"]
        for c in self.claims:
            v = f"{c.value:.4g}" if isinstance(c.value, float) else c.value
            result = ("pass" if c.passed else "**FAIL**") if c.enforced else ("met (not enforced)" if c.passed else "not met (not enforced)")
            rows.append(f"| {c.statement} | {v} | {c.threshold} | {c.paper or '-'} | {result} |")
        return "\n".join(rows)

    def finish(self) -> Path:
        """Write the metrics file, display the table, raise :class:`ClaimFailed` on failure."""
        if not self.claims:
            raise ClaimFailed(f"{self.chapter}: no claims were checked")
        record = {
            "chapter": self.chapter, "title": self.title, "profile": self.profile,
            "seed": self.seed, "device": self.device,
            "claims": [asdict(c) for c in self.claims],
            "all_passed": self.all_passed,
            "elapsed_s": round(time.perf_counter() - self._t0, 3),
        }
        path = results_dir(self.profile) / f"{self.chapter}.json"
        atomic_write_text(path, json.dumps(record, indent=2))
        try:
            from IPython.display import Markdown, display

            display(Markdown(self.table()))
        except ImportError:  # plain Python: print the table
            print(self.table())
        failed = [c.name for c in self.claims if c.enforced and not c.passed]
        if failed:
            raise ClaimFailed(f"{self.chapter} ({self.profile}): claim(s) failed: {', '.join(failed)}; see {path}")
        return path
