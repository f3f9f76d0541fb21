"""The book's Performance page, generated from what the code recorded when it ran; nothing on it is typed.

Sources, each with the machine and the date the code wrote beside it:

* the runner's per-chapter metrics, ``<results>/<chapter>.json``: ``wall_time_s`` (kernel start to finish),
  ``elapsed_s`` (the chapter's own clock), ``machine`` (:func:`tvae_experiments.claims.machine`: date,
  platform, cores, torch threads, Python, torch, GPU) and ``models`` (each cached model the chapter trained or
  loaded); the book's own results folder first, then every other folder of ``<root>/_results/`` that holds
  chapter metrics (another profile, a dry run: its cost table too);
* the weight cache entries of those models (:mod:`tvae_experiments.weights`): ``seconds``, the training's wall
  time (the entry records no machine: one installed from a weight bundle was trained where it was packed);
* benchmark records, ``<root>/_results/benchmarks/<name>.json``, written by :func:`write_benchmark` at the end
  of each ``benchmarks/bench_*.py``.

``make book`` stages this page in place of ``book/performance.md`` (:func:`tvae_book.html.stage_book`), as it
does the report; a plain ``jupyter-book build .`` runs ``book/performance.md``, which calls
:func:`profile_performance`.
"""
from __future__ import annotations

import datetime
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tvae_book.report import cell, render_dry_run

__all__ = ["BENCHMARKS_ENV", "benchmarks_dir", "machine_record", "write_benchmark", "performance_text",
           "profile_performance", "format_duration"]

BENCHMARKS_ENV = "TVAE_BENCHMARKS_DIR"
"""Environment variable: where benchmark records go (default ``<repo>/_results/benchmarks``)."""

_REPO_ROOT = Path(__file__).resolve().parents[1]
_MACHINE_FIELDS = (("platform", "platform"), ("cpu_count", "cores"),
                   ("torch_threads", "torch threads"), ("python", "Python"), ("torch", "torch"), ("gpu", "GPU"))


def benchmarks_dir(root: Path | None = None) -> Path:
    """``$TVAE_BENCHMARKS_DIR``, else ``<root>/_results/benchmarks``."""
    env = os.environ.get(BENCHMARKS_ENV)
    return Path(env) if env else Path(root or _REPO_ROOT) / "_results" / "benchmarks"


def machine_record() -> dict[str, Any]:
    """Where and when, as the chapters record it (:func:`tvae_experiments.claims.machine`), the GPU's name
    included when torch sees one."""
    import torch

    from tvae_experiments.claims import machine

    return machine("cuda" if torch.cuda.is_available() else "cpu")


def write_benchmark(name: str, rows: Sequence[Mapping[str, Any]], *, title: str = "",
                    argv: Sequence[str] | None = None, notes: Sequence[str] = (),
                    out_dir: Path | None = None) -> Path:
    """Write one benchmark's results to ``<out_dir>/<name>.json`` (atomically) with the machine and the date.

    ``rows``: one mapping per measured case, the same keys in each (the page's table columns, in order);
    ``argv``: the command line (default ``sys.argv[1:]``); ``notes``: sentences the script computed (a ratio,
    a tolerance), shown under the table.
    """
    from tvae_experiments.files import atomic_write_text

    out = Path(out_dir) if out_dir is not None else benchmarks_dir()
    out.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": name, "title": title, "argv": list(sys.argv[1:] if argv is None else argv),
              "machine": machine_record(), "rows": [dict(r) for r in rows], "notes": list(notes)}
    path = out / f"{name}.json"
    atomic_write_text(path, json.dumps(record, indent=1, default=_plain) + "\n")
    print(f"benchmark record: {path}", flush=True)
    return path


def _plain(value: Any) -> Any:
    """JSON for numpy/torch scalars and other objects: their Python value, else their text."""
    return value.item() if hasattr(value, "item") else str(value)


# --------------------------------------------------------------------------- formatting


def format_duration(seconds: Any) -> str:
    """``12.3 s``, ``4 min 05 s``, ``1 h 02 min``; a dash when unknown."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds != seconds:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    s = round(seconds)
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _date(machine: Mapping[str, Any] | None) -> str:
    """The recorded ISO date as ``YYYY-MM-DD HH:MM UTC`` (a dash when none was recorded)."""
    text = (machine or {}).get("date")
    if not text:
        return "–"
    try:
        when = datetime.datetime.fromisoformat(str(text)).astimezone(datetime.timezone.utc)
    except ValueError:
        return cell(text)
    return when.strftime("%Y-%m-%d %H:%M")


class _Machines:
    """The distinct machines the page's records name, each once (``M1``, ``M2``, ...) in a table at the end."""

    def __init__(self) -> None:
        self.seen: dict[str, dict[str, Any]] = {}

    def ref(self, machine: Mapping[str, Any] | None) -> str:
        if not machine:
            return "not recorded"
        fields = {k: machine.get(k) for k, _ in _MACHINE_FIELDS}
        key = json.dumps(fields, sort_keys=True, default=str)
        if key not in self.seen:
            self.seen[key] = fields
        return f"M{list(self.seen).index(key) + 1}"

    def table(self) -> list[str]:
        if not self.seen:
            return []
        out = ["## Machines", "",
               "As each record's code wrote it (`tvae_experiments.claims.machine`: `platform`, `os.cpu_count()`, "
               "`torch.get_num_threads()` in the process that measured, the Python and torch versions, the GPU "
               "torch used).", "",
               "| machine | " + " | ".join(label for _, label in _MACHINE_FIELDS) + " |",
               "|---" * (len(_MACHINE_FIELDS) + 1) + "|"]
        for i, fields in enumerate(self.seen.values(), 1):
            out.append(f"| M{i} | " + " | ".join(cell(fields[k]) if fields[k] is not None else "none"
                                                 for k, _ in _MACHINE_FIELDS) + " |")
        return out + [""]


# --------------------------------------------------------------------------- sources


def _chapter_metrics(results_dir: Path, chapters: Sequence[str] | None) -> dict[str, dict]:
    """``{chapter: metrics}`` of ``results_dir`` in book order (``chapters``), else every ``NN_name.json``."""
    results_dir = Path(results_dir)
    if chapters is None:
        chapters = sorted(p.stem for p in results_dir.glob("*.json")
                          if not p.name.endswith(".stamp.json") and p.stem[:2].isdigit())
    out = {}
    for name in chapters:
        path = results_dir / f"{name}.json"
        try:
            metrics = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(metrics, dict):
            out[name] = metrics
    return out


def _training_seconds(cache_dir: Path, name: str, key12: str) -> float | None:
    """``seconds`` of the cache entry ``<name>-<key12>.pt`` (read memory-mapped: the weights are not loaded)."""
    path = Path(cache_dir) / f"{name}-{key12}.pt"
    if not path.is_file():
        return None
    import torch

    try:
        blob = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 -- an unreadable entry is shown as unknown; the chapters report it
        return None
    seconds = blob.get("seconds") if isinstance(blob, dict) else None
    return float(seconds) if isinstance(seconds, (int, float)) else None


def _other_results(root: Path, exclude: Path) -> list[Path]:
    """Folders of ``<root>/_results/`` other than ``exclude`` that hold chapter metrics, sorted by name."""
    base = Path(root) / "_results"
    if not base.is_dir():
        return []
    exclude = Path(exclude).resolve()
    return [d for d in sorted(base.iterdir())
            if d.is_dir() and d.resolve() != exclude and _chapter_metrics(d, None)]


def _benchmarks(folder: Path) -> list[dict]:
    records = []
    for path in sorted(Path(folder).glob("*.json")) if Path(folder).is_dir() else []:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and isinstance(record.get("rows"), list):
            records.append({**record, "benchmark": record.get("benchmark") or path.stem})
    return records


# --------------------------------------------------------------------------- sections


def _display(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return Path(path).name


def _chapters_section(heading: str, metrics: Mapping[str, dict], machines: _Machines,
                      titles: Mapping[str, str], *, book_links: bool) -> list[str]:
    out = [heading, ""]
    if not metrics:
        return out + ["No chapter has run into this folder yet.", ""]
    profiles = sorted({str(m.get("profile")) for m in metrics.values()})
    devices = sorted({str(m.get("device")) for m in metrics.values()})
    walls = [m["wall_time_s"] for m in metrics.values() if isinstance(m.get("wall_time_s"), (int, float))]
    out += [f"Profile {', '.join(f'`{p}`' for p in profiles)}, device {', '.join(f'`{d}`' for d in devices)}: "
            f"{len(metrics)} chapter(s), {format_duration(sum(walls))} of chapter time in all "
            "(each chapter's wall time, kernel start to finish; chapters that ran side by side overlap).", "",
            "Wall time: kernel start to finish; cells: the chapter's own clock; models: cached models it loaded, "
            "models it trained itself.", "",
            "| chapter | wall time | cells | loaded | trained | machine | date (UTC) |", "|---|---|---|---|---|---|---|"]
    for name, m in metrics.items():
        models = m.get("models") or []
        loaded = sum(bool(r.get("from_cache")) for r in models)
        title = f"{{doc}}`{name}`" if book_links else f"{cell(titles.get(name) or m.get('title') or name)} (`{name}`)"
        out.append(f"| {title} | {format_duration(m.get('wall_time_s'))} | "
                   f"{format_duration(m.get('elapsed_s'))} | {loaded} | {len(models) - loaded} | "
                   f"{machines.ref(m.get('machine'))} | {_date(m.get('machine'))} |")
    return out + [""]


def _trainings_section(metrics: Mapping[str, dict], cache_dir: Path) -> list[str]:
    """One row per cached model the chapters used, its training's wall time from the cache entry."""
    rows: dict[tuple[str, str], list[str]] = {}
    for chapter, m in metrics.items():
        for rec in m.get("models") or []:
            rows.setdefault((str(rec.get("name")), str(rec.get("key"))[:12]), []).append(chapter)
    out = ["## Training", ""]
    if not rows:
        return out + ["The chapters of this folder used no cached model.", ""]
    seconds = {k: _training_seconds(cache_dir, *k) for k in rows}
    known = [s for s in seconds.values() if s is not None]
    out += [f"{len(rows)} model(s) the chapters use; {len(known)} of them in the weight cache, whose entries "
            f"record {format_duration(sum(known))} of training in all (each training's own wall time, read "
            "from the entry's `seconds`; trainings run as parallel jobs overlap). An entry records no machine: "
            "one installed from a weight bundle was trained where the bundle was packed.", "",
            "| model | cache key | training wall time | used by |", "|---|---|---|---|"]
    order = sorted(rows, key=lambda k: (-(seconds[k] if seconds[k] is not None else -1.0), k))
    for name, key in order:
        shown = format_duration(seconds[(name, key)]) if seconds[(name, key)] is not None else "not in the cache"
        out.append(f"| `{name}` | `{key}` | {shown} | {', '.join(rows[(name, key)])} |")
    return out + [""]


def _benchmark_section(records: Sequence[dict], machines: _Machines) -> list[str]:
    out = ["## Benchmarks", ""]
    if not records:
        return out + ["No benchmark has recorded results yet: each `benchmarks/bench_*.py` writes its record "
                      "into `_results/benchmarks/` when it runs (`python benchmarks/bench_topography.py`).", ""]
    for rec in records:
        command = " ".join(["python", f"benchmarks/{rec['benchmark']}.py", *map(str, rec.get("argv") or [])])
        title = str(rec.get("title") or rec["benchmark"]).strip().rstrip(".")
        out += [f"### {cell(title[:1].upper() + title[1:])}", "",
                f"`{command}` on {machines.ref(rec.get('machine'))}, {_date(rec.get('machine'))} UTC.", ""]
        rows = [r for r in rec["rows"] if isinstance(r, dict)]
        columns: list[str] = []
        for r in rows:
            columns += [c for c in r if c not in columns]
        if columns:
            out += ["| " + " | ".join(cell(c) for c in columns) + " |", "|---" * len(columns) + "|"]
            out += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
            out.append("")
        out += [f"- {cell(n)}" for n in rec.get("notes") or []]
        if rec.get("notes"):
            out.append("")
    return out


def performance_text(results_dir: Path, chapters: Sequence[str] | None = None, *,
                     titles: Mapping[str, str] | None = None, root: Path = _REPO_ROOT,
                     cache_dir: Path | None = None, bench_dir: Path | None = None,
                     other_results: Iterable[Path] | None = None, book_links: bool = False) -> str:
    """The Performance page's Markdown: the chapters of ``results_dir`` (in the order of ``chapters``), the
    trainings of the models they use (``cache_dir``, default the weight cache), the other result folders
    (default: those of ``<root>/_results/``), the benchmark records (``bench_dir``) and the machines."""
    from tvae_experiments.weights import default_cache_dir

    root, results_dir = Path(root), Path(results_dir)
    titles = titles or {}
    machines = _Machines()
    metrics = _chapter_metrics(results_dir, chapters)
    parts = ["# Performance", "",
             "How long the book's chapters, trainings and benchmarks took, and where: every number on this page "
             "is read from a record the code wrote when it ran, with the machine and the date beside it. A run "
             "on another machine rewrites them.", ""]
    parts += _chapters_section(f"## Chapters (`{_display(results_dir, root)}`)", metrics, machines, titles,
                               book_links=book_links)
    parts += _trainings_section(metrics, Path(cache_dir) if cache_dir is not None else default_cache_dir())
    others = _other_results(root, results_dir) if other_results is None else [Path(p) for p in other_results]
    for folder in others:
        other = _chapter_metrics(folder, None)
        parts += _chapters_section(f"## Chapters (`{_display(folder, root)}`)", other, machines, titles,
                                   book_links=False)
        if dry := render_dry_run(other):
            parts += [dry.replace("## Dry run:", f"### Dry run (`{_display(folder, root)}`):", 1), ""]
    parts += _benchmark_section(_benchmarks(Path(bench_dir) if bench_dir is not None else benchmarks_dir(root)),
                                machines)
    parts += machines.table()
    return "\n".join(parts).rstrip() + "\n"


def profile_performance(profile: str = "cpu", root: Path = _REPO_ROOT) -> str:
    """The page for one profile, as a plain ``jupyter-book build .`` shows it (``book/performance.md``):
    ``$TVAE_RESULTS_DIR`` if set, else ``<root>/_results/<profile>``."""
    from tvae_book.chapters import RESULTS_ENV, default_results_dir, discover_chapters

    results_dir = Path(os.environ.get(RESULTS_ENV) or default_results_dir(profile, root))
    return performance_text(results_dir, [c.name for c in discover_chapters(root)], root=root, book_links=True)
