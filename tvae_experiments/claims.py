"""Numerical checks of the papers' claims, written to a metrics file per chapter.

Every claim is declared whole in its chapter's spec (:mod:`tvae_experiments.chapters`): the paper
item it stands for, its statement, its rule (:mod:`tvae_experiments.rules`: comparisons over the
values the notebook computes and the chapter config's fields), the paper's value, its kind (paper
claim, control, known answer, sanity check) and, per profile, whether it is enforced and why not.

A chapter creates one :class:`ClaimReport`, computes each claim's values and passes them by name
to :meth:`ClaimReport.check`, which evaluates the declared rule, writes the rule text from it (so
the rule a reader sees is the rule the code applied) and records the result.
:meth:`ClaimReport.finish` prints a table, writes ``<results dir>/<chapter>.json`` atomically and
raises :class:`ClaimFailed` if an enforced claim failed or a claim declared for the run's profile
was never checked -- so a papermill run of the chapter fails.  A check of an undeclared name raises
:class:`~tvae_experiments.chapters.UndeclaredClaim`.

Results dir: ``$TVAE_RESULTS_DIR`` if set (the runner sets it), else
``<repo root>/_results/<profile>``.  JSON schema::

    {"chapter", "title", "profile", "seed", "device",
     "claims": [{"name", "statement", "value", "threshold", "paper", "passed", "enforced", "reason",
                 "item", "kind"}],
     "all_passed", "elapsed_s", "machine": {"date", "platform", "processor", "cpu_count", "torch_threads",
                                            "python", "torch", "gpu"}}

``threshold`` is the generated rule text; ``reason`` is null for an enforced claim.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tvae_experiments import dry_run
from tvae_experiments.chapters import ChapterSpec, chapter_spec
from tvae_experiments.files import atomic_write_text, repo_root
from tvae_experiments.profiles import check_profile
from tvae_experiments.rules import OPS, Comparison, RuleError, fill_config, fmt
from tvae_experiments.run import RunContext, current

__all__ = ["OPS", "Comparison", "Claim", "ClaimReport", "ClaimFailed", "RuleError", "results_dir", "atomic_write_text"]

class ClaimFailed(AssertionError):
    """Raised by :meth:`ClaimReport.finish` when at least one enforced claim check failed."""


@dataclass
class Claim:
    name: str
    statement: str
    value: float | str
    threshold: str            # the rule, generated from the comparison(s)
    paper: str | None
    passed: bool
    enforced: bool = True     # False: reported only, for the ``reason`` below
    reason: str | None = None  # why this profile does not enforce the claim (None when enforced)
    item: str = ""            # the paper item it stands for (its ClaimSpec)
    kind: str = "paper"       # paper | control | known-answer | sanity (its ClaimSpec)


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


def machine(device: str = "cpu") -> dict[str, Any]:
    """Where and when the run happened, recorded by the code (the report's timings are read against it)."""
    import datetime
    import platform

    import torch

    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else None
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "gpu": gpu}


class ClaimReport:
    """Collects a chapter's claim checks; see the module docstring."""

    def __init__(self, chapter: str, title: str, profile: str, seed: int, device: str = "cpu", *,
                 spec: ChapterSpec | None = None, config: Any = None, ctx: RunContext | None = None) -> None:
        """``spec``: the chapter's declarations (default: its module in :mod:`tvae_experiments.chapters`);
        ``config``: the config the rules read (default: the spec's config of ``profile``; a notebook
        whose parameters change its config passes it); ``ctx``: the run whose trainings the metrics
        list (default :func:`~tvae_experiments.run.current`)."""
        self.chapter, self.title = chapter, title
        self.profile, self.seed, self.device = check_profile(profile), int(seed), str(device)
        self.spec = chapter_spec(chapter) if spec is None else spec
        self._config = config
        self.claims: list[Claim] = []
        self._t0 = time.perf_counter()
        self.ctx = ctx if ctx is not None else current()
        self.dry_run_steps = self.ctx.dry_run_steps
        if self.dry_run_steps:
            print(f"DRY RUN ({dry_run.ENV}={self.dry_run_steps}): every training stops after {self.dry_run_steps} "
                  f"step(s); claims checked after one are reported, not enforced (tvae_experiments.dry_run)")

    @property
    def config(self) -> Any:
        """The config the rules read: the one passed, else the spec's config of the profile (read when first needed)."""
        if self._config is None:
            self._config = self.spec.config_of(self.profile)
        return self._config

    def _fill(self, text: str) -> str:
        """A declared text with its ``{cfg.<field>}`` fields filled from this report's config."""
        return fill_config(text, self.config) if "{cfg" in text else text

    def check(self, name: str, *, shown: Any = None, **values: Any) -> bool:
        """Check the declared claim ``name`` on ``values``: the quantities its rules name, by keyword.

        The spec's rules (:class:`~tvae_experiments.chapters.ClaimSpec`) decide, reading ``cfg.<field>``
        from this report's config; the rule text is written from them.  ``shown`` replaces the values
        in the "this run" column (e.g. a formatted pair of numbers).  A missing or extra value raises
        :class:`~tvae_experiments.rules.RuleError`.  Returns whether the claim passed."""
        declared = self.spec.claim(name)  # UndeclaredClaim if the spec does not declare it
        if any(c.name == name for c in self.claims):
            raise ValueError(f"claim {name!r} of {self.chapter} was already checked in this run")
        missing, extra = [n for n in declared.names if n not in values], sorted(set(values) - set(declared.names))
        if missing or extra:
            raise RuleError(f"claim {name!r} of {self.chapter} takes the values {', '.join(declared.names)} "
                            f"(its rules: {'; '.join(r.source for r in declared.rules)})"
                            + (f"; missing: {', '.join(missing)}" if missing else "")
                            + (f"; not in its rules: {', '.join(extra)}" if extra else ""))
        labels = {k: self._fill(v) for k, v in declared.labels.items()}
        cfg = self.config if any(r.fields for r in declared.rules) else None
        comparisons = [r.evaluate(values, cfg, labels) for r in declared.rules]
        if shown is None:
            shown = values[declared.names[0]] if len(declared.names) == 1 else "; ".join(
                f"{labels.get(n, n.replace('_', ' '))} {fmt(values[n])}" for n in declared.names)
        rule = " and ".join(c.text for c in comparisons)
        reason = declared.reason(self.profile) or self.ctx.trained_reason()
        claim = Claim(name, self._fill(declared.statement), _jsonable(shown), rule, declared.paper,
                      all(c.passed for c in comparisons), reason is None, reason, declared.item, declared.kind)
        self.claims.append(claim)
        mark = ("PASS" if claim.passed else "FAIL") if claim.enforced else ("ok (not enforced)" if claim.passed else "not met (not enforced)")
        print(f"[{mark}] {name}: {claim.value} ({rule})" + (f" -- not enforced: {reason}" if reason else ""))
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
            result = ("pass" if c.passed else "**FAIL**") if c.enforced else (
                ("met" if c.passed else "not met") + f" (not enforced: {c.reason})")
            cells = (c.statement, v, c.threshold, c.paper or "-", result)
            rows.append("| " + " | ".join(str(x).replace("|", "\\|").replace("\n", " ") for x in cells) + " |")
        return "\n".join(rows)

    def finish(self) -> Path:
        """Write the metrics file, display the table, raise :class:`ClaimFailed` on failure."""
        if not self.claims:
            raise ClaimFailed(f"{self.chapter}: no claims were checked")
        unchecked = sorted(set(self.spec.checked_on(self.profile)) - {c.name for c in self.claims})
        record = {
            "chapter": self.chapter, "title": self.title, "profile": self.profile,
            "seed": self.seed, "device": self.device,
            "claims": [asdict(c) for c in self.claims],
            "all_passed": self.all_passed and not unchecked,
            "elapsed_s": round(time.perf_counter() - self._t0, 3),
            "machine": machine(self.device),
        }
        if unchecked:
            record["unchecked"] = unchecked
        if self.dry_run_steps:
            record["dry_run"] = {"steps": self.dry_run_steps, "models": list(self.ctx.dry_runs),
                                 "peak_rss_mb": round(dry_run.peak_rss_mb(), 1)}  # the whole chapter's process
        if self.ctx.used:
            record["models"] = list(self.ctx.used)
        path = results_dir(self.profile) / f"{self.chapter}.json"
        atomic_write_text(path, json.dumps(record, indent=2))
        try:
            from IPython.display import Markdown, display

            display(Markdown(self.table()))
        except ImportError:  # plain Python: print the table
            print(self.table())
        failed = [c.name for c in self.claims if c.enforced and not c.passed]
        problems = ([f"claim(s) failed: {', '.join(failed)}; see {path}"] if failed else []) + (
            [f"claim(s) declared in its spec but never checked: {', '.join(unchecked)}"] if unchecked else [])
        if problems:
            raise ClaimFailed(f"{self.chapter} ({self.profile}): " + "; ".join(problems))
        return path
