"""Command line of the book pipeline (``python -m tvae_book --help``)::

    python -m tvae_book run    --profile cpu     # execute chapters + write the report
    python -m tvae_book book   --profile cpu     # the above, then stage + build the HTML
                                                 # (--workers N>1: first train every model as N jobs,
                                                 #  then run the chapters N at a time)
    python -m tvae_book report --profile cpu     # only (re)write the report Markdown
    python -m tvae_book train  --profile cpu --workers 2   # train every model ahead (tvae_book.jobs)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tvae_book.chapters import REPO_ROOT, ChapterError, RunConfig, check_profile, default_results_dir, discover_chapters, parse_param
from tvae_book.execute import DEFAULT_TIMEOUT_S, run_chapters
from tvae_book.html import build_html, fetch_vendor, stage_book, write_report

# --------------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m tvae_book", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("run", "book", "report", "train"),
                        help="run: execute chapters + report; book: run, then build the HTML; "
                             "report: only write the report from existing metrics; "
                             "train: list the chapters' trainings and run the missing ones as jobs")
    parser.add_argument("--profile", default="cpu", help="smoke, cpu or paper (default: cpu)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (default: auto)")
    parser.add_argument("--data-dir", default=None, help="folder with real data sets, if any")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="extra chapter parameter (repeatable), e.g. --param n_seeds=2 for chapter 5")
    parser.add_argument("--dry-run", type=int, nargs="?", const=3, default=0, metavar="STEPS",
                        help="the profile's real sizes, but every model trains only STEPS optimiser steps "
                             "(default 3); measures time, memory and FLOPs per model "
                             "(results: _results/<profile>-dry-run)")
    parser.add_argument("--workers", default="1",
                        help="train: jobs at a time (local processes, or Slurm array tasks); run/book: with "
                             "N > 1, first train every model of the plan as N local jobs, then run the chapters "
                             "N at a time (they load the weights; a dry run runs them one at a time). 'auto': one "
                             "per GPU, else one per CPU core (at most 8), 1 torch thread each (default: 1)")
    parser.add_argument("--engine", default="local", help="train: local | slurm | slurm_local (default: local)")
    parser.add_argument("--slurm", action="append", default=[], metavar="NAME=VALUE",
                        help="train: submitit parameter (repeatable), e.g. --slurm slurm_partition=gpu "
                             "--slurm timeout_min=720")
    parser.add_argument("--threads", type=int, default=None,
                        help="train: torch threads per local worker (default: CPU cores // workers)")
    parser.add_argument("--plan-only", action="store_true", help="train: print the plan, train nothing")
    parser.add_argument("--out", type=Path, default=None,
                        help="results folder (default: _results/<profile>)")
    parser.add_argument("--chapters", nargs="+", default=None, metavar="NAME",
                        help="only these chapters, e.g. 01_pot (default: all in _toc.yml)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help="per-cell execution timeout in seconds "
                             f"(default: {DEFAULT_TIMEOUT_S})")
    parser.add_argument("--force", action="store_true", help="re-run unchanged chapters too")
    parser.add_argument("--keep-going", action="store_true",
                        help="run the remaining chapters after a failure")
    parser.add_argument("--verbose", action="store_true", help="stream cell outputs to stderr")
    parser.add_argument("--quiet", action="store_true",
                        help="one line per chapter (default: also each cell as it starts and every "
                             "training's progress bar with its ETA)")
    parser.add_argument("--cdn", action="store_true",
                        help="book: load MathJax and widget JavaScript from CDNs instead of "
                             "fetching them with npm into _build/vendor")
    parser.add_argument("--no-strict", action="store_true",
                        help="book: do not turn Sphinx warnings into errors")
    parser.add_argument("--root", type=Path, default=REPO_ROOT,
                        help="book root holding _toc.yml, _config.yml and book/ "
                             "(default: this repository)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = parse_args(argv)
    root = args.root.resolve()
    try:
        check_profile(args.profile)
        config = RunConfig(args.profile, args.seed, args.device, args.data_dir,
                           tuple(parse_param(p) for p in args.param), dry_run=args.dry_run)
        out_dir = (args.out or default_results_dir(args.profile, root, args.dry_run)).resolve()
        chapters = discover_chapters(root, args.chapters)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    try:
        args.workers = resolve_workers(args.workers, config.device)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.command == "train":
        return train(args, config, root, [c.name for c in chapters])
    failures: list[ChapterError] = []
    if args.command in ("run", "book"):
        start = time.perf_counter()
        if args.workers > 1 and not config.dry_run:  # a dry run writes no weights: nothing to train ahead
            print(f"training every model first, {args.workers} jobs at a time (then the chapters load them)",
                  flush=True)
            if train(args, config, root, [c.name for c in chapters]) != 0:
                print("error: training failed (logs above); no chapter was run", file=sys.stderr)
                return 1
            print(f"trained in {time.perf_counter() - start:.1f} s", flush=True)
        # chapters in parallel too, except in a dry run (the paper's sizes: chapter 6 alone peaks at 15 GB)
        results, failures = run_chapters(chapters, config, out_dir, force=args.force,
                                         keep_going=args.keep_going, timeout=args.timeout,
                                         root=root, log_output=args.verbose, progress=not args.quiet,
                                         workers=1 if config.dry_run else args.workers)
        ran = sum(r.status == "ran" for r in results)
        print(f"{ran} chapter(s) ran, {len(results) - ran} skipped, {len(failures)} failed "
              f"in {time.perf_counter() - start:.1f} s; results in {out_dir}", flush=True)
    report_path = write_report(chapters, out_dir)
    print(f"report: {report_path}", flush=True)
    if failures:
        print("error: failed chapter(s): " + ", ".join(f.chapter for f in failures),
              file=sys.stderr)
        return 1
    if args.command == "book":
        vendor = None if args.cdn else root / "_build" / "vendor"
        if vendor is not None and not fetch_vendor(vendor):
            vendor = None
        stage = stage_book(chapters, out_dir, root / "_build" / "src", root, vendor)
        try:
            index = build_html(stage, root, strict=not args.no_strict)
        except subprocess.CalledProcessError as err:
            print(f"error: jupyter-book build failed (exit {err.returncode})", file=sys.stderr)
            return 1
        print(f"book: {index}", flush=True)
    return 0


def resolve_workers(value: str | int, device: str = "auto") -> int:
    """``--workers``: a positive integer, or ``"auto"``: the number of GPUs (when ``device`` may use
    them), else the CPU cores, at most 8 (2 cores: 2 jobs of 1 thread each; measured on the cpu
    profile's capsule models, 2 single-thread trainings at once do 1.25-1.4x the steps of one
    2-thread training: small matmuls do not split well over 2 threads)."""
    import os

    if str(value) == "auto":
        import torch

        if device not in ("cpu",) and torch.cuda.is_available():
            return torch.cuda.device_count()
        return max(1, min(os.cpu_count() or 1, 8))
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"--workers {value!r} is not allowed: a positive integer or 'auto'")
    return n


def train(args: argparse.Namespace, config: RunConfig, root: Path, chapters: list[str]) -> int:
    """``train``: print the plan of ``config.profile`` and run its missing jobs (:mod:`tvae_book.jobs`)."""
    from tvae_book.jobs import ENGINES, measured_costs, plan_table, run_plan
    from tvae_experiments.plan import training_plan

    if args.engine not in ENGINES:
        print(f"error: --engine {args.engine!r} is not one of {', '.join(ENGINES)}", file=sys.stderr)
        return 2
    try:
        slurm = dict(parse_param(p) for p in args.slurm)
    except ValueError as err:
        print(f"error: {err}".replace("--param", "--slurm"), file=sys.stderr)
        return 2
    start = time.perf_counter()
    jobs = training_plan(config.profile, config.seed, config.parameters()["data_dir"], chapters, dict(config.extra))
    print(plan_table(jobs, costs=measured_costs(default_results_dir(config.profile, root, dry_run=1))), flush=True)
    if args.plan_only:
        return 0
    outcomes = run_plan(jobs, workers=args.workers, engine=args.engine, device=config.device, slurm=slurm,
                        threads=args.threads)
    failed = [o for o in outcomes if o.status == "failed"]
    print(f"{sum(o.status == 'trained' for o in outcomes)} trained, {sum(o.status == 'cached' for o in outcomes)} "
          f"cached, {len(failed)} failed in {time.perf_counter() - start:.1f} s", flush=True)
    return 1 if failed else 0
