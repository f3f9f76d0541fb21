"""``python -m tvae_book train``: the book's trainings as independent jobs on an existing scheduler.

:func:`~tvae_experiments.plan.training_plan` lists every model a profile's chapters train; this
module prints that plan (cached or not, steps, the cost measured by a dry run when there is one)
and runs the missing jobs, so that the chapters afterwards only load weights:

* ``engine="local"`` -- ``concurrent.futures.ProcessPoolExecutor`` with ``workers`` processes
  (spawned; each gets ``cpu_count // workers`` torch threads, and one GPU of its own when there are
  GPUs: ``CUDA_VISIBLE_DEVICES`` is set per worker).
* ``engine="slurm"`` -- submitit (``pip install -e ".[cluster]"``): one Slurm job array, at most
  ``workers`` jobs at a time, one GPU each; ``slurm_local`` runs the same submitit code as local
  subprocesses (what the tests use when there is no cluster).

Every job writes its log to ``<log_dir>/<name>-<key12>.log`` (local) or submitit's folder (slurm).
A failed job is reported with its log and leaves no cache file (weights are written atomically, at
the end of a training); rerunning skips every job whose cache file exists.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ENGINES", "JobOutcome", "run_plan", "plan_table", "measured_costs", "worker_pool"]

ENGINES = ("local", "slurm", "slurm_local")


@dataclass
class JobOutcome:
    """What happened to one job: ``status`` is ``"cached"`` (skipped), ``"trained"`` or ``"failed"``."""

    name: str
    key: str
    status: str
    seconds: float = 0.0
    log: Path | None = None
    error: str = ""


# --------------------------------------------------------------------------- the plan, printed


def measured_costs(dry_run_dir: Path) -> dict[str, dict]:
    """``key12 -> dry-run record`` from the chapter metrics of a dry run (``_results/<profile>-dry-run``)."""
    import json

    out: dict[str, dict] = {}
    for path in sorted(Path(dry_run_dir).glob("*.json")):
        try:
            metrics = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        dry = metrics.get("dry_run") if isinstance(metrics, dict) else None
        if not isinstance(dry, dict):  # a chapter's ``.stamp.json`` holds the dry run's step count only
            continue
        for rec in dry.get("models", []):
            out.setdefault(rec["key"], rec)
    return out


def plan_table(jobs: Sequence, cache_dir: Path | None = None, costs: dict[str, dict] | None = None) -> str:
    """The plan as a text table: chapter, model, key, cached?, steps, and the time of the full training
    on the machine of the dry run (``costs`` from :func:`measured_costs`), when one was measured."""
    costs = costs or {}
    rows = []
    for j in jobs:
        rec = costs.get(j.key[:12])
        est = f"{rec['s_per_step'] * j.steps / 3600:.2f} h" if rec else "-"
        rows.append((j.chapter, j.name, j.key[:12], "yes" if j.cached(cache_dir) else "no", f"{j.steps:,}", est))
    head = ("chapter", "model", "key", "cached", "steps", "est. time (dry run)")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in [head, *rows]]
    n_cached = sum(j.cached(cache_dir) for j in jobs)
    lines.append(f"{len(jobs)} jobs: {n_cached} cached, {len(jobs) - n_cached} to train")
    return "\n".join(lines)


# --------------------------------------------------------------------------- one job, in a worker


def _init_worker(threads: int, gpu_queue) -> None:
    """Worker start: its share of CPU threads (in this process, and ``OMP_NUM_THREADS`` for the
    processes it starts, e.g. a chapter's kernel), and its own GPU when there are GPUs."""
    if gpu_queue is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_queue.get())
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def worker_pool(workers: int, device: str = "auto", threads: int | None = None):
    """A ``ProcessPoolExecutor`` of ``workers`` spawned processes (fresh interpreters: no forked torch
    thread pools), each with ``threads`` CPU threads (default ``cpu_count // workers``) and, when
    ``device`` may use CUDA and there are GPUs, a GPU of its own (round robin).  Used for the
    training jobs here and for the chapters (:func:`tvae_book.execute.run_chapters`)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import torch

    ctx = multiprocessing.get_context("spawn")
    gpu_queue = None
    if device in ("auto", "cuda") and torch.cuda.is_available():
        gpu_queue = ctx.Manager().Queue()
        for i in range(workers):
            gpu_queue.put(i % torch.cuda.device_count())
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(threads, gpu_queue))


def _run_logged(job, cache_dir: str | None, log_path: str | None, device: str) -> list[dict]:
    """Run one job or ensemble (:class:`~tvae_experiments.plan.Ensemble`) with its output in ``log_path``
    (None: the process's own stdout/stderr, as under submitit, which keeps its own logs); one summary per
    trained model.  A failure re-raises naming the log."""
    from tvae_experiments.plan import Ensemble, run_ensemble, run_job

    def run() -> list[dict]:
        if isinstance(job, Ensemble):
            return run_ensemble(job, device=device, cache_dir=cache_dir)
        return [run_job(job, device=device, cache_dir=cache_dir)]

    if log_path is None:
        return run()
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8", buffering=1) as log, \
            contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        members = f" = {', '.join(j.name for j in job.jobs)}" if isinstance(job, Ensemble) else ""
        print(f"job {job.name}{members} (key {job.key[:12]}, chapter {job.chapter}), pid {os.getpid()}")
        try:
            return run()
        except BaseException as exc:
            traceback.print_exc(file=log)
            raise RuntimeError(f"{type(exc).__name__}: {exc}") from None


def _members(unit) -> tuple:
    """The jobs of a unit of work: an ensemble's jobs, or the job itself."""
    return getattr(unit, "jobs", (unit,))


# --------------------------------------------------------------------------- running the plan


def run_plan(jobs: Sequence, *, workers: int = 1, engine: str = "local", cache_dir: Path | None = None,
             log_dir: Path | None = None, device: str = "auto", slurm: dict | None = None,
             threads: int | None = None, ensemble: int = 1, stream=None) -> list[JobOutcome]:
    """Run every job of ``jobs`` whose cache file is missing; returns one outcome per job, in order.
    Jobs start longest first (:attr:`~tvae_experiments.plan.Job.cost`), so no worker is left with a
    long job at the end while the others idle.

    ``workers``: processes (local) or jobs at a time (slurm).  ``threads``: torch threads per local
    worker (default ``cpu_count // workers``).  On a CPU the weights are bit-identical to a sequential
    run *with the same number of threads*: matmul reductions are split by thread, so 1 and 2 threads
    give weights that differ in the last bits (measured after 60 smoke steps: max |diff| 1.5e-5; 4.4e-4
    after 4 G-CNN steps), under the same cache key.  ``workers=1`` with the default threads trains
    exactly as a chapter does in its own kernel.  ``slurm``: extra submitit parameters (e.g.
    ``{"slurm_partition": "gpu", "timeout_min": 720}``).  ``ensemble``: at most this many compatible jobs
    train together as one (:func:`~tvae_experiments.plan.group_ensembles`; 1: each alone).  Prints a line
    per finished job."""
    from tvae_core.checks import check_choice, check_int

    check_choice("engine", engine, ENGINES)
    workers = check_int("workers", workers, minimum=1)
    stream = stream or sys.stdout
    from tvae_experiments.train import default_cache_dir

    cache_dir = Path(cache_dir or default_cache_dir())
    log_dir = Path(log_dir or cache_dir / "logs")
    outcomes = {j.key: JobOutcome(j.name, j.key, "cached") for j in jobs if j.cached(cache_dir)}
    from tvae_experiments.plan import group_ensembles

    todo = [j for j in jobs if j.key not in outcomes]
    pending = sorted(group_ensembles(todo, ensemble), key=lambda u: -u.cost)
    grouped = f" as {len(pending)} units (ensembles of up to {ensemble})" if len(pending) < len(todo) else ""
    print(f"{len(jobs)} jobs: {len(outcomes)} cached (skipped), {len(todo)} to train{grouped} on {engine} "
          f"with {workers} worker(s)", file=stream, flush=True)
    if pending:
        threads = threads or max(1, (os.cpu_count() or 1) // workers)
        run = _run_local if engine == "local" else _run_submitit
        for o in run(pending, workers, cache_dir, log_dir, device, slurm or {}, engine, threads, stream):
            outcomes[o.key] = o
    result = [outcomes[j.key] for j in jobs]
    failed = [o for o in result if o.status == "failed"]
    for o in failed:
        print(f"FAILED {o.name} ({o.key[:12]}): {o.error}\n  log: {o.log}", file=stream, flush=True)
    return result


def _log_path(log_dir: Path, job) -> Path:
    return log_dir / f"{job.name}-{job.key[:12]}.log"


def _run_local(pending, workers, cache_dir, log_dir, device, _slurm, _engine, threads, stream) -> list[JobOutcome]:
    from concurrent.futures import as_completed

    out: list[JobOutcome] = []
    t0 = time.perf_counter()
    with worker_pool(workers, device, threads) as pool:
        futures = {pool.submit(_run_logged, j, str(cache_dir), str(_log_path(log_dir, j)), device): j for j in pending}
        monitor = _Monitor(futures, log_dir, stream)
        monitor.start()
        for i, fut in enumerate(as_completed(futures), 1):
            j = futures[fut]
            log = _log_path(log_dir, j)
            try:
                rs = fut.result()
                out.extend(JobOutcome(r["name"], r["key"], "trained", r["seconds"], log) for r in rs)
                msg = f"trained in {rs[0]['seconds']:.1f} s"
            except Exception as exc:  # the job's own error (its traceback is in the log) or a dead worker
                out.extend(JobOutcome(m.name, m.key, "failed", 0.0, log, str(exc)) for m in _members(j))
                msg = f"FAILED ({exc})"
            print(f"[{i}/{len(pending)}] {j.name} ({j.key[:12]}): {msg}; {time.perf_counter() - t0:.0f} s so far",
                  file=stream, flush=True)
        monitor.stop()
    return out


PROGRESS_EVERY_S = 30.0
"""Seconds between the progress lines of the running local jobs (their progress bars, read from their logs)."""


def last_progress(log: Path) -> str:
    """The latest progress-bar state in a job's log (tqdm redraws with ``\\r``), or ``""``."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")[-4000:]
    except OSError:
        return ""
    parts = [p.strip() for p in text.replace("\n", "\r").split("\r") if "it/s" in p or "s/it" in p or "%|" in p]
    return parts[-1] if parts else ""


class _Monitor:
    """Prints, every :data:`PROGRESS_EVERY_S` seconds, each running job's progress bar (step, ETA)."""

    def __init__(self, futures: dict, log_dir: Path, stream) -> None:
        import threading

        self.futures, self.log_dir, self.stream = futures, log_dir, stream
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=5)

    def _run(self) -> None:
        while not self.done.wait(PROGRESS_EVERY_S):
            for fut, job in self.futures.items():
                if fut.running() and (bar := last_progress(_log_path(self.log_dir, job))):
                    print(f"  running {job.name}: {bar}", file=self.stream, flush=True)


def _run_submitit(pending, workers, cache_dir, log_dir, device, slurm, engine, _threads, stream) -> list[JobOutcome]:
    try:
        import submitit
    except ImportError as exc:
        raise RuntimeError('engine="slurm" needs submitit: pip install -e ".[cluster]"') from exc
    cluster = "local" if engine == "slurm_local" else "slurm"
    executor = submitit.AutoExecutor(folder=str(log_dir / "submitit" / "%j"), cluster=cluster)
    params = {"timeout_min": 24 * 60, "gpus_per_node": 1, "cpus_per_task": 8, "slurm_array_parallelism": workers,
              "name": "tvae-train", **slurm}
    if cluster == "local":
        params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
        params["gpus_per_node"] = 0 if device == "cpu" else params["gpus_per_node"]
    executor.update_parameters(**params)
    sjobs = executor.map_array(_run_logged, pending, [str(cache_dir)] * len(pending), [None] * len(pending),
                               [device] * len(pending))
    out: list[JobOutcome] = []
    for i, (j, sj) in enumerate(zip(pending, sjobs), 1):
        try:
            rs = sj.result()
            out.extend(JobOutcome(r["name"], r["key"], "trained", r["seconds"], Path(sj.paths.stdout)) for r in rs)
            msg = f"trained in {rs[0]['seconds']:.1f} s"
        except Exception as exc:  # submitit.FailedJobError / UncompletedJobError carry the traceback / log tail
            first = str(exc).strip().splitlines()
            out.extend(JobOutcome(m.name, m.key, "failed", 0.0, Path(sj.paths.stderr),
                                  first[-1] if first else repr(exc)) for m in _members(j))
            msg = "FAILED"
        print(f"[{i}/{len(pending)}] {j.name} ({j.key[:12]}, job {sj.job_id}): {msg}", file=stream, flush=True)
    return out
