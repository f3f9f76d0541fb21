"""Execute chapters with papermill on an ipykernel running this interpreter.

Each chapter is converted to a notebook in memory, parameterised by papermill (``profile``,
``seed``, ``device``, ``data_dir`` and any extra parameters) and executed with ``cwd=book/``.
The chapter writes its claims to ``$TVAE_RESULTS_DIR/<chapter>.json``; the runner points that
variable at the results folder, checks the file and adds the wall time.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tvae_book import report
from tvae_book.chapters import (REPO_ROOT, RESULTS_ENV, Chapter, ChapterError, ChapterResult, RunConfig,
                                atomic_write_json, check_profile, environment, fingerprint, is_up_to_date,
                                output_paths, read_json)
from tvae_book.tidy import tidy_notebook
from tvae_experiments.files import PROGRESS_ENV, atomic_write_text

KERNEL_NAME = "python3"
"""Kernel name written into executed notebooks; the kernel always runs ``sys.executable``."""

DEFAULT_TIMEOUT_S = 3600
"""Default per-cell execution timeout in seconds."""

KERNEL_START_TIMEOUT_S = 300
"""Seconds a kernel may take to start (papermill's default, 60, is too short on a loaded 2-core machine)."""




def load_notebook(path: Path) -> Any:
    """Read a jupytext notebook into an ``nbformat.NotebookNode`` (no file is written)."""
    import jupytext

    nb = jupytext.read(path)
    if not any("parameters" in cell.get("metadata", {}).get("tags", []) for cell in nb.cells):
        raise ChapterError(Path(path).stem, f"{path} has no code cell tagged 'parameters'")
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python 3",
                                 "language": "python"}
    return nb


def this_python_kernel_manager() -> type:
    """A kernel manager class whose kernel is ipykernel on ``sys.executable``, whatever name.

    This makes the run independent of which ``python3`` kernelspec happens to be registered.
    On POSIX it talks to the kernel over local IPC sockets (no TCP port, no plain-text warning),
    named uniquely per kernel: jupyter_client's default (``kernel-ipc-<n>`` in the working
    directory, ``n`` the first free number) lets two chapters started at once in one folder take
    the same sockets (the symptoms: "Invalid Signature", then "Kernel didn't respond").
    """
    import tempfile
    import uuid

    from ipykernel.kernelspec import RESOURCES, get_kernel_dict
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from traitlets import CaselessStrEnum, default

    class ThisPythonKernelSpecManager(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            return KernelSpec(resource_dir=RESOURCES, **get_kernel_dict())

    class ThisPythonKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], config=True,
                                    default_value="ipc" if os.name == "posix" else "tcp")

        @default("ip")
        def _unique_ip(self) -> str:
            if self.transport == "ipc":
                return os.path.join(tempfile.gettempdir(), f"tvae-kernel-{uuid.uuid4().hex[:16]}-ipc")
            return super()._ip_default()

        @default("kernel_spec_manager")
        def _kernel_spec_manager_default(self) -> KernelSpecManager:
            return ThisPythonKernelSpecManager(data_dir=self.data_dir)

    return ThisPythonKernelManager


def describe_failure(exc: BaseException) -> str:
    """One readable line for a notebook failure, naming the cell and the error."""
    ename = getattr(exc, "ename", None)
    if ename is not None:  # papermill.exceptions.PapermillExecutionError
        first_line = next((ln for ln in str(exc.source).splitlines() if ln.strip()), "")
        return (f"cell {exc.cell_index} (In [{exc.exec_count}], starting {first_line!r}) "
                f"raised {ename}: {exc.evalue}")
    return f"{type(exc).__name__}: {exc}"


class Progress:
    """What a running chapter shows on the terminal: ``cell k/N`` as each code cell starts, and the
    training progress bars that :func:`~tvae_experiments.train.fit` appends to ``path`` (streamed
    by a thread every half second).  Used as a context manager around the execution."""

    def __init__(self, chapter: str, path: Path, n_cells: int, stream=None) -> None:
        self.chapter, self.path, self.n_cells = chapter, Path(path), n_cells
        self.stream = stream or sys.stderr
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._t0 = time.perf_counter()
        self._k = 0

    def __enter__(self) -> "Progress":
        self.path.unlink(missing_ok=True)
        self.path.touch()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.path.unlink(missing_ok=True)

    def cell_started(self, cell: Any, cell_index: int, **_: Any) -> None:
        """nbclient's ``on_cell_start`` hook."""
        if cell.get("cell_type") != "code":
            return
        self._k += 1
        first = next((ln.strip() for ln in cell.get("source", "").splitlines() if ln.strip()), "")
        elapsed = time.perf_counter() - self._t0
        self.stream.write(f"    {self.chapter}: cell {self._k}/{self.n_cells} at {elapsed:5.0f} s  {first[:70]}\n")
        self.stream.flush()

    def _follow(self) -> None:
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            while True:
                stopping = self._stop.wait(0.5)
                chunk = fh.read()
                if chunk:
                    self.stream.write(chunk.replace("\r", "\n    ") if not self.stream.isatty() else chunk)
                    self.stream.flush()
                if stopping:
                    return


def execute_chapter(chapter: Chapter, config: RunConfig, out_dir: Path, *,
                    timeout: float = DEFAULT_TIMEOUT_S, root: Path = REPO_ROOT,
                    log_output: bool = False, progress: bool = False) -> ChapterResult:
    """Execute one chapter with papermill into ``out_dir`` and return its result.

    Writes ``<chapter>.ipynb`` (executed), ``<chapter>.json`` (the chapter's metrics plus
    ``wall_time_s``) and ``<chapter>.stamp.json``. On failure the executed notebook is kept as
    ``<chapter>.failed.ipynb`` and :class:`ChapterError` names the failing cell and error.
    ``progress``: show each cell as it starts and every training's progress bar (:class:`Progress`).
    """
    import papermill

    check_profile(config.profile)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = output_paths(chapter.name, out_dir)
    for key in ("stamp", "metrics", "failed"):
        paths[key].unlink(missing_ok=True)

    nb = load_notebook(chapter.path)
    stamp_fingerprint = fingerprint(chapter, config, root)  # before running: code may change
    start = time.perf_counter()
    n_cells = sum(c.cell_type == "code" for c in nb.cells) + 1  # + papermill's injected parameters
    shown = Progress(chapter.name, out_dir / f".{chapter.name}.progress", n_cells) if progress else None
    env = {RESULTS_ENV: str(out_dir), **config.kernel_env(), PROGRESS_ENV: str(shown.path) if shown else ""}
    try:
        with environment(**env), (shown or contextlib.nullcontext()):
            executed = papermill.execute_notebook(
                nb, str(paths["running"]), parameters=config.parameters(),
                kernel_name=KERNEL_NAME, language="python", cwd=str(chapter.path.parent),
                execution_timeout=timeout, start_timeout=KERNEL_START_TIMEOUT_S, progress_bar=False,
                log_output=log_output,
                kernel_manager_class=this_python_kernel_manager(),
                **({"on_cell_start": shown.cell_started} if shown else {}))
    except Exception as exc:  # papermill, nbclient timeouts, dead kernels
        failed = None
        if paths["running"].is_file():
            import nbformat

            save_notebook(nbformat.read(paths["running"], as_version=4), paths["failed"],
                          source=chapter.path)
            paths["running"].unlink()
            failed = paths["failed"]
        raise ChapterError(chapter.name, describe_failure(exc), failed) from exc
    wall = time.perf_counter() - start
    save_notebook(tidy_notebook(executed), paths["notebook"], source=chapter.path)
    paths["running"].unlink(missing_ok=True)

    metrics = finish_metrics(chapter.name, config, paths["metrics"], wall)
    if metrics.get("all_passed") is not True:
        raise ChapterError(chapter.name, "metrics report all_passed != true", paths["notebook"])
    atomic_write_json(paths["stamp"], {
        "chapter": chapter.name, "fingerprint": stamp_fingerprint,
        **asdict(config), "wall_time_s": round(wall, 3),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return ChapterResult(chapter.name, "ran", wall, paths["notebook"], paths["metrics"])


def save_notebook(nb: Any, path: Path, *, source: Path) -> None:
    """Atomically write an executed notebook, recording its source path (not the whole
    input notebook, which papermill stores when given a NotebookNode)."""
    import nbformat

    info = nb.metadata.get("papermill", {})
    info["input_path"] = str(source)
    info["output_path"] = str(path)
    atomic_write_text(path, nbformat.writes(nb))


def finish_metrics(chapter: str, config: RunConfig, path: Path, wall_time_s: float) -> dict:
    """Check the metrics a chapter wrote and add ``wall_time_s``; raise if missing or invalid."""
    if not path.is_file():
        raise ChapterError(chapter, f"it ran but wrote no metrics file {path.name} "
                                    f"(expected via ${RESULTS_ENV}/<chapter>.json)")
    metrics = read_json(path)
    problems = report.validate_metrics(metrics)
    if metrics.get("chapter") != chapter:
        problems.append(f"chapter is {metrics.get('chapter')!r}, expected {chapter!r}")
    if metrics.get("profile") != config.profile:
        problems.append(f"profile is {metrics.get('profile')!r}, expected {config.profile!r}")
    if problems:
        raise ChapterError(chapter, f"invalid metrics {path}: " + "; ".join(problems))
    metrics["wall_time_s"] = round(wall_time_s, 3)
    atomic_write_json(path, metrics)
    return metrics


def run_chapters(chapters: Sequence[Chapter], config: RunConfig, out_dir: Path, *,
                 force: bool = False, keep_going: bool = False,
                 timeout: float = DEFAULT_TIMEOUT_S, root: Path = REPO_ROOT,
                 log_output: bool = False, progress: bool = False,
                 workers: int = 1) -> tuple[list[ChapterResult], list[ChapterError]]:
    """Execute (or skip, if unchanged) each chapter, printing progress (with ``progress``: every
    cell and training bar too, see :class:`Progress`) and, at the end, a time table.

    ``workers > 1``: the chapters to run are executed ``workers`` at a time, each in a process of
    :func:`tvae_book.jobs.worker_pool` (its kernel gets ``cpu_count // workers`` threads through
    ``OMP_NUM_THREADS``, and a GPU of its own when there are GPUs), longest first by the wall time of
    their last run.  Chapters read nothing another chapter writes except cached models, so they must
    be trained first (``run``/``book`` with ``--workers`` do: :mod:`tvae_book.jobs`); a chapter whose
    model is missing trains it in its own kernel, as in a sequential run.

    Stops at the first failure unless ``keep_going`` (with workers: no new chapter starts, the
    running ones finish).  Returns results (in chapter order) and failures.
    """
    check_profile(config.profile)
    results: dict[str, ChapterResult] = {}
    failures: list[ChapterError] = []
    total = len(chapters)
    todo: list[tuple[str, Chapter]] = []
    for i, chapter in enumerate(chapters, 1):
        tag = f"[{i}/{total}] {chapter.name}"
        paths = output_paths(chapter.name, out_dir)
        if not force and is_up_to_date(chapter, config, out_dir, root):
            wall = float(read_json(paths["metrics"]).get("wall_time_s", 0.0))
            print(f"{tag}: unchanged since its last successful run, skipped "
                  f"(took {wall:.1f} s then)", flush=True)
            results[chapter.name] = ChapterResult(chapter.name, "skipped", wall, paths["notebook"], paths["metrics"])
        else:
            todo.append((tag, chapter))
    kwargs = dict(timeout=timeout, root=root, log_output=log_output, progress=progress)
    if workers > 1 and len(todo) > 1:
        _run_parallel(todo, config, out_dir, workers, keep_going, kwargs, results, failures)
    else:
        for tag, chapter in todo:
            try:
                results[chapter.name] = _run_one(tag, chapter, config, out_dir, kwargs)
            except ChapterError as err:
                _report_failure(tag, err, failures)
                if not keep_going:
                    break
    ordered = [results[c.name] for c in chapters if c.name in results]
    print(time_table(ordered, failures), flush=True)
    return ordered, failures


def _run_one(tag: str, chapter: Chapter, config: RunConfig, out_dir: Path, kwargs: dict) -> ChapterResult:
    """Execute one chapter with its start and end lines (in this process or a worker's)."""
    print(f"{tag}: running (profile={config.profile}, seed={config.seed}, "
          f"device={config.device}) ...", flush=True)
    result = execute_chapter(chapter, config, out_dir, **kwargs)
    print(f"{tag}: ok in {result.wall_time_s:.1f} s", flush=True)
    return result


def _report_failure(tag: str, err: ChapterError, failures: list[ChapterError]) -> None:
    print(f"{tag}: FAILED\n  {err}", file=sys.stderr, flush=True)
    failures.append(err)


def _run_parallel(todo, config, out_dir, workers, keep_going, kwargs, results, failures) -> None:
    from concurrent.futures import CancelledError, as_completed

    from tvae_book.jobs import worker_pool

    def last_wall(chapter: Chapter) -> float:  # longest first; never run: first
        try:
            return float(read_json(output_paths(chapter.name, out_dir)["metrics"])["wall_time_s"])
        except (OSError, ValueError, KeyError, TypeError):
            return float("inf")

    todo = sorted(todo, key=lambda tc: -last_wall(tc[1]))
    print(f"{len(todo)} chapters to run, {workers} at a time", flush=True)
    with worker_pool(workers, config.device) as pool:
        futures = {pool.submit(_run_one, tag, chapter, config, out_dir, kwargs): (tag, chapter)
                   for tag, chapter in todo}
        for fut in as_completed(futures):
            tag, chapter = futures[fut]
            try:
                results[chapter.name] = fut.result()
            except CancelledError:  # queued behind a failure (not keep_going): never started, not a failure
                print(f"{tag}: not run (an earlier chapter failed)", flush=True)
            except ChapterError as err:
                _report_failure(tag, err, failures)
                if not keep_going:
                    for f in futures:
                        f.cancel()  # the queued ones; the running ones finish
            except Exception as exc:  # a dead worker process
                _report_failure(tag, ChapterError(chapter.name, f"its worker process died: {exc}"), failures)


def time_table(results: Sequence[ChapterResult], failures: Sequence[ChapterError] = ()) -> str:
    """The per-chapter time table printed at the end of a run (skipped chapters: their last time)."""
    rows = [(r.chapter, r.status, r.wall_time_s) for r in results] + [(f.chapter, "FAILED", None) for f in failures]
    width = max([len(c) for c, _, _ in rows] + [7])
    lines = [f"{'chapter':<{width}}  {'status':<8}  {'time':>9}"]
    lines += [f"{c:<{width}}  {st:<8}  {'-' if t is None else _mmss(t):>9}" for c, st, t in rows]
    ran = sum(t for _, st, t in rows if st == "ran")
    lines.append(f"{'total':<{width}}  {'ran':<8}  {_mmss(ran):>9}")
    return "\n".join(lines)


def _mmss(seconds: float) -> str:
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}" if seconds >= 60 else f"{seconds:.1f} s"


