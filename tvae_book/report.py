"""The reproduction report: one Markdown page built from the chapters' metrics files.

A results folder (``_results/<profile>/``) holds ``<chapter>.json`` per executed chapter::

    {"chapter": "01_pot", "title": "...", "profile": "cpu", "seed": 0, "device": "cpu",
     "claims": [{"name": ..., "statement": ..., "value": 0.12, "threshold": "< 0.2",
                 "paper": "0.1" | null, "passed": true,
                 "enforced": true, "reason": null}, ...],
     "all_passed": true, "elapsed_s": 12.3, "wall_time_s": 15.0}

``wall_time_s`` is added by the runner (kernel start to finish); the rest comes from the chapter.
``enforced`` and ``reason`` are optional: a claim is enforced unless ``"enforced": false``, and
then ``reason`` says why (``tvae_experiments.enforcement``); the report shows it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_REPO_ROOT = Path(__file__).resolve().parents[1]

METRICS_FIELDS: dict[str, tuple[type, ...]] = {
    "chapter": (str,), "title": (str,), "profile": (str,), "seed": (int,), "device": (str,),
    "claims": (list,), "all_passed": (bool,), "elapsed_s": (int, float),
}
"""Top-level fields of a metrics file and their allowed types."""

CLAIM_FIELDS: dict[str, tuple[type, ...]] = {
    "name": (str,), "statement": (str,), "value": (int, float, str), "threshold": (str,),
    "paper": (str, type(None)), "passed": (bool,),
}
"""Fields of one claim and their allowed types."""

OPTIONAL_CLAIM_FIELDS: dict[str, tuple[type, ...]] = {"enforced": (bool,), "reason": (str, type(None))}
"""Fields a claim may have (older metrics files lack them) and their allowed types."""


def _type_problem(where: str, value: Any, types: tuple[type, ...]) -> str | None:
    """A message if ``value`` is not of ``types`` (bools are not accepted as numbers)."""
    is_bool = isinstance(value, bool)
    if isinstance(value, types) and (bool in types or not is_bool):
        return None
    names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
    return f"{where} should be {names}, got {type(value).__name__}"


def _enforced(claim: Mapping[str, Any]) -> bool:
    """Claims are enforced unless marked ``"enforced": false`` (checked, but reported only:
    the profile is too small for them, e.g. organisation after seconds of smoke training)."""
    return claim.get("enforced", True) is not False


def _result(claim: Mapping[str, Any]) -> str:
    """The result cell: pass / FAIL, or met / not met with the reason it is not enforced."""
    ok = claim.get("passed") is True
    if not _enforced(claim):
        reason = claim.get("reason")
        why = f": {reason}" if isinstance(reason, str) and reason.strip() else ""
        return ("met (not enforced" if ok else "not met (not enforced at this profile") + why + ")"
    return "pass" if ok else "**FAIL**"


def validate_metrics(metrics: Any) -> list[str]:
    """Problems with a metrics dict against the schema above (empty list: valid).

    Also checks that ``all_passed`` agrees with the claims, that there is at least one claim and
    that every claim not enforced says why (``reason``).
    """
    if not isinstance(metrics, dict):
        return [f"metrics should be a JSON object, got {type(metrics).__name__}"]
    problems = []
    for key, types in METRICS_FIELDS.items():
        if key not in metrics:
            problems.append(f"missing field {key!r}")
        elif (msg := _type_problem(key, metrics[key], types)) is not None:
            problems.append(msg)
    claims = metrics.get("claims")
    if not isinstance(claims, list):
        return problems
    if not claims:
        problems.append("no claims")
    for i, claim in enumerate(claims):
        if not isinstance(claim, dict):
            problems.append(f"claims[{i}] should be an object")
            continue
        for key, types in CLAIM_FIELDS.items():
            if key not in claim:
                problems.append(f"claims[{i}] missing field {key!r}")
            elif (msg := _type_problem(f"claims[{i}].{key}", claim[key], types)) is not None:
                problems.append(msg)
        for key, types in OPTIONAL_CLAIM_FIELDS.items():
            if key in claim and (msg := _type_problem(f"claims[{i}].{key}", claim[key], types)) is not None:
                problems.append(msg)
        if not _enforced(claim) and not (isinstance(claim.get("reason"), str) and claim["reason"].strip()):
            problems.append(f"claims[{i}] is not enforced but gives no reason")
    passed = [c.get("passed") is True for c in claims if isinstance(c, dict) and _enforced(c)]
    if isinstance(metrics.get("all_passed"), bool) and metrics["all_passed"] != all(passed):
        problems.append("all_passed disagrees with the enforced claims' passed flags")
    return problems


def load_metrics(results_dir: Path, chapter: str) -> dict | None:
    """The metrics of ``chapter`` in ``results_dir``, or None if it has none yet."""
    path = Path(results_dir) / f"{chapter}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def format_value(value: Any) -> str:
    """A claim value for a table cell: numbers to 4 significant digits, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def cell(text: Any) -> str:
    """Escape text for one Markdown table cell."""
    return format_value(text).replace("|", "\\|").replace("\n", " ").strip() or "–"


def _seconds(value: Any) -> str:
    """Seconds as ``12.3 s`` (or a dash when unknown)."""
    return f"{value:.1f} s" if isinstance(value, (int, float)) else "–"


def _display_path(path: Path) -> str:
    """``path`` relative to the repository if inside it, else absolute."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(_REPO_ROOT))
    except ValueError:
        return str(path)


def render_chapter(chapter: str, metrics: Mapping[str, Any] | None, title: str | None = None,
                   *, book_links: bool = False) -> str:
    """The report section of one chapter: a heading, the run settings and a claims table."""
    title = (metrics or {}).get("title") or title or chapter
    link = f"{{doc}}`{chapter}`" if book_links else f"`{chapter}`"
    lines = [f"## {title}", ""]
    if metrics is None:
        lines += [f"Chapter {link} has no metrics yet: it has not been executed into this "
                  "results folder (or its last run failed).", ""]
        return "\n".join(lines)
    problems = validate_metrics(metrics)
    status = "all claims passed" if metrics.get("all_passed") is True else "**some claims failed**"
    lines += [
        f"Chapter {link}: profile `{metrics.get('profile')}`, seed `{metrics.get('seed')}`, "
        f"device `{metrics.get('device')}`; wall time {_seconds(metrics.get('wall_time_s'))} "
        f"(experiments {_seconds(metrics.get('elapsed_s'))}); {status}.",
        "",
    ]
    if problems:
        lines += ["Metrics file problems: " + "; ".join(problems) + ".", ""]
    lines += ["| claim | statement | paper | this run | threshold | result |",
              "| --- | --- | --- | --- | --- | --- |"]
    for claim in metrics.get("claims") or []:
        if not isinstance(claim, dict):
            continue
        result = _result(claim)
        lines.append(f"| {cell(claim.get('name'))} | {cell(claim.get('statement'))} "
                     f"| {cell(claim.get('paper'))} | {cell(claim.get('value'))} "
                     f"| {cell(claim.get('threshold'))} | {cell(result)} |")
    lines.append("")
    return "\n".join(lines)


def summarize(all_metrics: Mapping[str, Mapping[str, Any] | None]) -> str:
    """One summary line: how many chapters have metrics and how many claims passed."""
    present = {name: m for name, m in all_metrics.items() if m is not None}
    claims = [c for m in present.values() for c in (m.get("claims") or []) if isinstance(c, dict) and _enforced(c)]
    passed = sum(c.get("passed") is True for c in claims)
    missing = [name for name, m in all_metrics.items() if m is None]
    profiles = sorted({str(m.get("profile")) for m in present.values()})
    text = (f"**Summary:** {len(present)} of {len(all_metrics)} chapters have metrics"
            + (f" (profile {', '.join(f'`{p}`' for p in profiles)})" if profiles else "")
            + f"; {passed} of {len(claims)} enforced claims passed.")
    if missing:
        text += " No metrics yet for " + ", ".join(f"`{name}`" for name in missing) + "."
    return text


def render_report(results_dir: Path, chapters: Sequence[str],
                  titles: Mapping[str, str] | None = None, *, book_links: bool = False) -> str:
    """The whole report for ``chapters`` (in order) from the metrics in ``results_dir``.

    ``book_links`` writes chapter names as MyST ``{doc}`` links (for the HTML book).
    """
    titles = titles or {}
    all_metrics = {name: load_metrics(results_dir, name) for name in chapters}
    parts = [
        "# Reproduction report",
        "",
        "Every chapter ends by checking the paper's claims at the scale of the chosen profile; "
        "a failed check stops the chapter. This page collects those checks from "
        f"`{_display_path(Path(results_dir))}`.",
        "",
        summarize(all_metrics),
        "",
    ]
    if not chapters:
        parts += ["The table of contents lists no chapters yet.", ""]
    for name in chapters:
        parts.append(render_chapter(name, all_metrics[name], titles.get(name),
                                    book_links=book_links))
    return "\n".join(parts).rstrip() + "\n"
