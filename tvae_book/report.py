"""The reproduction report: one Markdown page built from the chapters' metrics files.

A results folder (``_results/<profile>/``) holds ``<chapter>.json`` per executed chapter::

    {"chapter": "01_pot", "title": "...", "profile": "cpu", "seed": 0, "device": "cpu",
     "claims": [{"name": ..., "statement": ..., "value": 0.12, "threshold": "< 0.2",
                 "paper": "0.1" | null, "passed": true,
                 "enforced": true, "reason": null}, ...],
     "all_passed": true, "elapsed_s": 12.3, "wall_time_s": 15.0}

``wall_time_s`` is added by the runner (kernel start to finish); the rest comes from the chapter.
``enforced`` and ``reason`` are optional: a claim is enforced unless ``"enforced": false``, and
then ``reason`` says why (from the claim's declaration); the report shows it.

Besides the claims of each chapter, the report states for every figure, table or equation a
chapter checks whether it was **reproduced**, **partially reproduced** or **not reproduced**
(:func:`item_status`), with the reasons. Which item a claim supports, and what kind of claim it is,
comes from its declaration in the chapter's spec (:mod:`tvae_experiments.chapters`), written into
the metrics as ``item`` and ``kind``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tvae_experiments.chapters import ClaimSpec, UndeclaredClaim, chapter_spec

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

OPTIONAL_CLAIM_FIELDS: dict[str, tuple[type, ...]] = {"enforced": (bool,), "reason": (str, type(None)),
                                                       "item": (str,), "kind": (str,)}
"""Fields a claim may have (older metrics files lack them) and their allowed types."""


def chapter_paper(chapter: str) -> str:
    """The paper whose figures ``chapter`` checks, from its spec (the report's "paper" column; a dash if unknown)."""
    try:
        return chapter_spec(chapter).paper
    except ValueError:
        return "–"


OTHER_ITEM = "other checks (theory, controls, sanity)"
"""The item of a claim that supports no figure, table or equation of the paper."""

STATUSES = ("reproduced", "partially reproduced", "not reproduced")
"""The status of a paper item, from :func:`item_status`."""


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


def _met(claim: Mapping[str, Any]) -> bool:
    return claim.get("passed") is True


def _declared(chapter: str, name: str) -> ClaimSpec | None:
    """The declaration of claim ``name`` in ``chapter``'s spec, or None (an unknown chapter or claim)."""
    try:
        return chapter_spec(chapter).claim(name)
    except (ValueError, UndeclaredClaim):
        return None


def paper_item(chapter: str, claim: Mapping[str, Any]) -> str:
    """The figure / table / equation that ``claim`` of ``chapter`` supports, as its chapter spec declares
    it (the metrics' ``item``, else the spec's declaration); sanity checks and undeclared claims:
    :data:`OTHER_ITEM`."""
    declared = _declared(chapter, str(claim.get("name", "")))
    item = claim.get("item") or (declared.item if declared else None)
    kind = claim.get("kind") or (declared.kind if declared else None)
    return OTHER_ITEM if not item or kind == "sanity" else str(item)


def item_status(claims: Sequence[Mapping[str, Any]]) -> str:
    """One of :data:`STATUSES` for the claims that support one paper item.

    * reproduced: every claim held -- the enforced ones passed and the ones this profile only
      reports were met too -- and at least one of them is enforced here;
    * partially reproduced: at least one claim held, but another failed or was not met, or none
      of them is enforced at this profile (e.g. ``smoke``: seconds of training prove nothing);
    * not reproduced: no claim held (or there are none)."""
    if claims and all(_met(c) for c in claims) and any(_enforced(c) for c in claims):
        return STATUSES[0]
    return STATUSES[1] if any(_met(c) for c in claims) else STATUSES[2]


def item_reasons(claims: Sequence[Mapping[str, Any]]) -> list[str]:
    """Why an item is not fully reproduced: each failed enforced claim with its value and rule,
    and the not-enforced claims with their reason (claims sharing a reason listed together)."""
    reasons = [f"`{c.get('name')}` failed ({format_value(c.get('value'))}; rule {c.get('threshold')})"
               for c in claims if _enforced(c) and not _met(c)]
    by_reason: dict[str, list[str]] = {}
    for c in claims:
        if not _enforced(c):
            mark = "met" if _met(c) else "not met"
            by_reason.setdefault(str(c.get("reason") or "no reason given"), []).append(f"`{c.get('name')}` ({mark})")
    reasons += [f"{', '.join(names)} not enforced: {why}" for why, names in by_reason.items()]
    return reasons


def paper_items(chapter: str, metrics: Mapping[str, Any]) -> dict[str, list[Mapping[str, Any]]]:
    """The claims of ``metrics`` grouped by :func:`paper_item`, in the order items first appear
    (:data:`OTHER_ITEM` last)."""
    items: dict[str, list[Mapping[str, Any]]] = {}
    for claim in metrics.get("claims") or []:
        if isinstance(claim, dict):
            items.setdefault(paper_item(chapter, claim), []).append(claim)
    if OTHER_ITEM in items:
        items[OTHER_ITEM] = items.pop(OTHER_ITEM)
    return items


def status_counts(all_metrics: Mapping[str, Mapping[str, Any] | None]) -> dict[str, int]:
    """How many paper items (not counting :data:`OTHER_ITEM`) have each of :data:`STATUSES`."""
    counts = dict.fromkeys(STATUSES, 0)
    for chapter, metrics in all_metrics.items():
        for label, claims in (paper_items(chapter, metrics) if metrics is not None else {}).items():
            if label != OTHER_ITEM:
                counts[item_status(claims)] += 1
    return counts


def summarize_status(counts: Mapping[str, int]) -> str:
    """``"12 figures, tables and equations: 9 reproduced, 2 partially reproduced, 1 not reproduced."``"""
    return (f"{sum(counts.values())} figures, tables and equations: "
            + ", ".join(f"{counts.get(s, 0)} {s}" for s in STATUSES) + ".")


def render_status(all_metrics: Mapping[str, Mapping[str, Any] | None], titles: Mapping[str, str] | None = None,
                  *, book_links: bool = False) -> str:
    """The "status per figure and table" section: one row per paper item of every chapter with
    metrics (its :data:`OTHER_ITEM` checks last), its status (:func:`item_status`), how many of
    its claims held, and why it is not fully reproduced (:func:`item_reasons`)."""
    titles = titles or {}
    rows = []
    for chapter, metrics in all_metrics.items():
        if metrics is None:
            continue
        link = f"{{doc}}`{chapter}`" if book_links else cell(metrics.get("title") or titles.get(chapter) or chapter)
        for label, claims in paper_items(chapter, metrics).items():
            status = item_status(claims)
            held, enforced = sum(_met(c) for c in claims), sum(_enforced(c) for c in claims)
            rows.append(f"| {link} | {cell(chapter_paper(chapter))} | {cell(label)} "
                        f"| {status if status == STATUSES[0] else f'**{status}**'} "
                        f"| {held} of {len(claims)} held, {enforced} enforced "
                        f"| {cell('; '.join(item_reasons(claims)) or '–')} |")
    lines = ["## Status per figure and table", ""]
    if not rows:
        return "\n".join(lines + ["No chapter has metrics yet.", ""])
    return "\n".join(lines + [
        "Each figure, table or equation a chapter checks, judged from the claims that support it "
        "(the chapters' tables below): **reproduced** when every one of them held (the enforced ones "
        "passed, the ones this profile only reports were met) and at least one is enforced at this "
        "profile; **partially reproduced** when some held but another failed or was not met, or when "
        "none is enforced at this profile; **not reproduced** when none held. "
        + summarize_status(status_counts(all_metrics)),
        "",
        "| chapter | paper | figure / table | status | claims | why not (fully) reproduced |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
    ])


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
    if isinstance(metrics.get("all_passed"), bool) and metrics["all_passed"] != (all(passed) and not metrics.get("unchecked")):
        problems.append("all_passed disagrees with the enforced claims' passed flags and the unchecked claims")
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


def claim_kind(chapter: str, claim: Mapping[str, Any]) -> str:
    """What ``claim`` is (paper / control / known-answer / sanity): the metrics' ``kind``, else its declaration."""
    declared = _declared(chapter, str(claim.get("name", "")))
    return str(claim.get("kind") or (declared.kind if declared else "paper"))


def summarize_kinds(present: Mapping[str, Mapping[str, Any]]) -> str:
    """How many of the papers' claims were reproduced, how many only reported (met or not) and how many failed;
    then the controls, known-answer and sanity checks apart (they support a claim, they are not one)."""
    counts: dict[str, dict[str, int]] = {}
    for chapter, m in present.items():
        for c in m.get("claims") or []:
            if isinstance(c, dict):
                state = ("held" if _met(c) else "failed") if _enforced(c) else ("met" if _met(c) else "unmet")
                by = counts.setdefault(claim_kind(chapter, c), dict.fromkeys(("held", "failed", "met", "unmet"), 0))
                by[state] += 1
    paper = counts.pop("paper", dict.fromkeys(("held", "failed", "met", "unmet"), 0))
    text = (f"Paper claims: {paper['held']} reproduced (enforced, held), {paper['met'] + paper['unmet']} only reported "
            f"at this profile ({paper['met']} of them met; each with its reason below), {paper['failed']} failed.")
    others = []
    for kind, by in sorted(counts.items()):
        failed = f", {by['failed']} failed" if by["failed"] else ""
        reported = f", {by['met'] + by['unmet']} only reported" if by["met"] + by["unmet"] else ""
        others.append(f"{sum(by.values())} {kind} checks ({by['held']} held{failed}{reported})")
    return text + (" Beside them: " + ", ".join(others) + "." if others else "")


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
    if present:
        text += " " + summarize_kinds(present) + " " + summarize_status(status_counts(all_metrics))
        walls = [m["wall_time_s"] for m in present.values() if isinstance(m.get("wall_time_s"), (int, float))]
        if walls:
            text += f" Chapters' wall time: {sum(walls) / 60:.1f} min in total."
    if missing:
        text += " No metrics yet for " + ", ".join(f"`{name}`" for name in missing) + "."
    return text


GPU_FLOPS_ASSUMED = 20e12
"""Assumed effective throughput of one GPU on these models (FLOP/s, fp32/TF32): an assumption, not measured."""
GPU_STEP_FLOOR_S = 0.004
"""Assumed least time of one optimiser step on a GPU (small MLPs are launch-bound): an assumption."""


def render_dry_run(all_metrics: Mapping[str, Mapping[str, Any] | None]) -> str:
    """The cost table of a dry run (``tvae_experiments.dry_run``): one row per distinct model, per chapter
    totals; empty when no chapter ran as a dry run."""
    rows, seen, totals = [], set(), {}
    for chapter, m in all_metrics.items():
        if (m or {}).get("dry_run"):
            totals.setdefault(chapter, [0, 0, 0.0, 0.0, 0.0, m["dry_run"].get("peak_rss_mb") or 0])
        for rec in ((m or {}).get("dry_run") or {}).get("models", []):
            if rec["key"] in seen:
                continue  # a model shared by chapters is counted once, under the first
            seen.add(rec["key"])
            flops = rec.get("flops_per_step") or 0
            gpu_s = rec["steps_full"] * max(flops / GPU_FLOPS_ASSUMED, GPU_STEP_FLOOR_S)
            cpu_h = rec["s_per_step"] * rec["steps_full"] / 3600
            t = totals.setdefault(chapter, [0, 0, 0.0, 0.0, 0.0, 0.0])
            t[0] += 1
            t[1] += rec["steps_full"]
            t[2] += flops * rec["steps_full"]
            t[3] += cpu_h
            t[4] += gpu_s / 3600
            t[5] = max(t[5], rec.get("peak_rss_mb") or 0)
            rows.append(f"| {chapter} | `{rec['name']}` | {rec['parameters']:,} | {rec['batch_size']} | "
                        f"{rec['steps_full']:,} | {rec['s_per_step'] * 1e3:.1f} | {flops / 1e9:.2f} | "
                        f"{cpu_h:.1f} | {gpu_s / 3600:.2f} | {rec.get('peak_rss_mb', 0):,.0f} |")
    if not rows:
        return ""
    steps = {(m or {}).get("dry_run", {}).get("steps") for m in all_metrics.values() if (m or {}).get("dry_run")}
    device = sorted({r["device"] for m in all_metrics.values() for r in ((m or {}).get("dry_run") or {}).get("models", [])})
    out = ["## Dry run: what the full training costs", "",
           f"Every model trained {', '.join(map(str, sorted(steps)))} optimiser step(s) at the profile's real sizes "
           f"(data, widths, batch sizes, seeds; test sets cut to 500 sequences) on `{', '.join(device)}`. "
           "**Measured:** parameters, seconds per step here (median after the first step), FLOPs per step "
           "(`torch.utils.flop_counter`, forward + backward), peak resident memory of the chapter's process. "
           f"**Assumed:** the GPU estimate, steps x max(FLOPs / {GPU_FLOPS_ASSUMED / 1e12:.0f} TFLOP/s, "
           f"{GPU_STEP_FLOOR_S * 1e3:.0f} ms) -- no GPU was measured.", "",
           "Peak RSS per chapter: the chapter's whole process (data, models, evaluation).", "",
           "| chapter | per chapter: models | steps | PFLOP | CPU here (h) | GPU est. (h) | peak RSS (MiB) |",
           "|---|---|---|---|---|---|---|"]
    for chapter, (n, st, fl, cpu_h, gpu_h, rss) in totals.items():
        out.append(f"| {chapter} | {n} | {st:,} | {fl / 1e15:.1f} | {cpu_h:,.0f} | {gpu_h:.1f} | {rss:,.0f} |")
    all_t = [sum(v[i] for v in totals.values()) for i in range(5)]
    out.append(f"| **all** | {all_t[0]} | {all_t[1]:,} | {all_t[2] / 1e15:.1f} | {all_t[3]:,.0f} | {all_t[4]:.1f} | |")
    out += ["", "| chapter | model | parameters | batch | steps (full run) | ms/step here | GFLOP/step | "
            "CPU here (h) | GPU est. (h) | peak RSS (MiB) |", "|---|---|---|---|---|---|---|---|---|---|", *rows, ""]
    return "\n".join(out)


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
        render_status(all_metrics, titles, book_links=book_links),
    ]
    if dry := render_dry_run(all_metrics):
        parts += [dry, ""]
    if not chapters:
        parts += ["The table of contents lists no chapters yet.", ""]
    for name in chapters:
        parts.append(render_chapter(name, all_metrics[name], titles.get(name),
                                    book_links=book_links))
    return "\n".join(parts).rstrip() + "\n"
