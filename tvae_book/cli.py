"""Command line of the book pipeline: one subcommand per stage, each with its own flags
(``python -m tvae_book --help``, ``python -m tvae_book COMMAND --help``)::

    python -m tvae_book run    --profile cpu     # execute chapters + write the report
    python -m tvae_book book   --profile cpu     # the above, then stage + build the HTML
                                                 # (--workers N>1: first train every model as N jobs,
                                                 #  then run the chapters N at a time)
    python -m tvae_book report --profile cpu     # only (re)write the report Markdown
    python -m tvae_book train  --profile cpu --workers 2   # train every model ahead (tvae_book.jobs)
    python -m tvae_book train  --profile paper --ensemble auto  # on a GPU: 16 compatible models at once
    python -m tvae_book weights pack --profile cpu        # every trained model of cpu in one bundle
    python -m tvae_book book --weights URL_OR_PATH        # fill the weight cache from a bundle first

Every command takes the run configuration (--profile, --seed, --device, --data-dir, --param,
--chapters, --root); run, book and report the results folder (--out, --dry-run); run and book the
execution flags (--timeout, --force, --keep-going, --verbose, --quiet, --weights) and --workers; book
--cdn and --no-strict; train --workers, --engine, --slurm, --threads, --ensemble and --plan-only; weights
(pack | install PATH_OR_URL) --out, --sha256 and --lock.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tvae_book.chapters import (REPO_ROOT, Chapter, RunConfig, check_profile, default_results_dir,
                                discover_chapters, parse_param)
from tvae_book.execute import DEFAULT_TIMEOUT_S, run_chapters
from tvae_book.html import build_html, fetch_vendor, stage_book, write_report
from tvae_book.jobs import ENGINES

# --------------------------------------------------------------------------- command line

WORKERS_AUTO = "'auto': one per GPU, else one per CPU core (at most 8), 1 torch thread each (default: 1)"

# run/book --workers N > 1 train ahead through train(): as local jobs with train's own defaults
TRAIN_AHEAD = {"engine": "local", "slurm": (), "threads": None, "plan_only": False, "ensemble": "auto"}

ENSEMBLE_AUTO = 16
"""``--ensemble auto`` on a GPU: at most this many models per ensemble (the capsule models at paper widths
fit many times over in one GPU's memory; the device check measures K = 1, 4, 16)."""


def _config_parser() -> argparse.ArgumentParser:
    """The flags every command takes: which chapters, with which parameters, in which book."""
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("run configuration")
    group.add_argument("--profile", default="cpu", help="smoke, cpu or paper (default: cpu)")
    group.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    group.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (default: auto)")
    group.add_argument("--data-dir", default=None, help="folder with real data sets, if any")
    group.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                       help="extra chapter parameter (repeatable), e.g. --param n_seeds=2 for chapter 5")
    group.add_argument("--chapters", nargs="+", default=None, metavar="NAME",
                       help="only these chapters, e.g. 01_pot (default: all in _toc.yml)")
    group.add_argument("--root", type=Path, default=REPO_ROOT,
                       help="book root holding _toc.yml, _config.yml and book/ (default: this repository)")
    return parser


def _results_parser() -> argparse.ArgumentParser:
    """The results folder: the flags of the commands that read or write executed chapters."""
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("results")
    group.add_argument("--out", type=Path, default=None, help="results folder (default: _results/<profile>)")
    group.add_argument("--dry-run", type=int, nargs="?", const=3, default=0, metavar="STEPS",
                       help="the profile's real sizes, but every model trains only STEPS optimiser steps "
                            "(default 3); measures time, memory and FLOPs per model "
                            "(results: _results/<profile>-dry-run)")
    return parser


def _execution_parser() -> argparse.ArgumentParser:
    """How the chapters execute: the flags of ``run`` and ``book``."""
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("execution")
    group.add_argument("--workers", default="1",
                       help="with N > 1, first train every model of the plan as N local jobs, then run the "
                            "chapters N at a time (they load the weights; a dry run runs them one at a time). "
                            + WORKERS_AUTO)
    group.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                       help=f"per-cell execution timeout in seconds (default: {DEFAULT_TIMEOUT_S})")
    group.add_argument("--force", action="store_true", help="re-run unchanged chapters too")
    group.add_argument("--keep-going", action="store_true", help="run the remaining chapters after a failure")
    group.add_argument("--verbose", action="store_true", help="stream cell outputs to stderr")
    group.add_argument("--quiet", action="store_true",
                       help="one line per chapter (default: also each cell as it starts and every "
                            "training's progress bar with its ETA)")
    group.add_argument("--weights", default=None, metavar="PATH_OR_URL",
                       help="a weight bundle (make weights-pack): its entries that match what this code would "
                            "train fill the weight cache first, checksums verified; the rest train as usual. 'latest': "
                            "this profile's bundle of the release pinned in bundles.lock.json")
    return parser


def _add_book_flags(parser: argparse.ArgumentParser) -> None:
    """``book``'s own flags: how the HTML is built."""
    group = parser.add_argument_group("HTML build")
    group.add_argument("--cdn", action="store_true",
                       help="load MathJax and widget JavaScript from CDNs instead of fetching them with npm "
                            "into _build/vendor")
    group.add_argument("--no-strict", action="store_true", help="do not turn Sphinx warnings into errors")


def _add_weights_flags(parser: argparse.ArgumentParser) -> None:
    """``weights``' own arguments: pack the cached weights of a profile, or install a bundle."""
    parser.add_argument("action", choices=("pack", "install"),
                        help="pack: write every cached model the profile's chapters use into one bundle; "
                             "install: fill the weight cache from a bundle")
    parser.add_argument("source", nargs="?", default=None, metavar="PATH_OR_URL", help="install: the bundle")
    parser.add_argument("--out", type=Path, default=None,
                        help="pack: the bundle file (default: _build/tvae-weights-<profile>.tar)")
    parser.add_argument("--sha256", default=None,
                        help="install: the bundle's expected sha256 (default: its pin in bundles.lock.json)")
    parser.add_argument("--lock", action="store_true", help="pack: pin the new bundle's sha256 in bundles.lock.json")


def _add_train_flags(parser: argparse.ArgumentParser) -> None:
    """``train``'s own flags: where and how the jobs run."""
    group = parser.add_argument_group("jobs")
    group.add_argument("--workers", default="1",
                       help="jobs at a time (local processes, or Slurm array tasks). " + WORKERS_AUTO)
    group.add_argument("--engine", default="local", choices=ENGINES, help="where the jobs run (default: local)")
    group.add_argument("--slurm", action="append", default=[], metavar="NAME=VALUE",
                       help="submitit parameter (repeatable), e.g. --slurm slurm_partition=gpu "
                            "--slurm timeout_min=720")
    group.add_argument("--threads", type=int, default=None,
                       help="torch threads per local worker (default: CPU cores // workers)")
    group.add_argument("--ensemble", default="auto", metavar="auto|N|off",
                       help="train up to N compatible models (same architecture, data and recipe but the seed) "
                            f"together in one process (tvae_experiments.ensemble); 'auto': {ENSEMBLE_AUTO} on a GPU, "
                            "off on a CPU (where batching gains nothing); 'off': each alone (default: auto)")
    group.add_argument("--plan-only", action="store_true", help="print the plan, train nothing")


class _CommandParser(argparse.ArgumentParser):
    """A command's parser: a flag the command does not take is that command's error, shown with its
    own usage (argparse otherwise passes it up to the top-level parser, whose usage lists no flags)."""

    def parse_known_args(self, args=None, namespace=None):
        """argparse's, with no unknown argument left over."""
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)} (see {self.prog} --help)")
        return namespace, extras


def build_parser() -> argparse.ArgumentParser:
    """The parser: one subparser per command, sharing flags through ``parents``."""
    parser = argparse.ArgumentParser(prog="python -m tvae_book", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_CommandParser)
    config, results, execution = _config_parser(), _results_parser(), _execution_parser()
    for name, handler, parents, summary in (
            ("run", cmd_run, [config, results, execution], "execute the chapters, then write the report"),
            ("book", cmd_book, [config, results, execution], "run, then stage and build the HTML book"),
            ("report", cmd_report, [config, results], "only write the report from existing metrics"),
            ("train", cmd_train, [config], "list the chapters' trainings and run the missing ones as jobs"),
            ("weights", cmd_weights, [config], "pack the trained weights of a profile into a bundle, or install one")):
        sub = commands.add_parser(name, parents=parents, help=summary, description=summary)
        sub.set_defaults(handler=handler)
        if name in ("run", "book"):
            sub.set_defaults(**TRAIN_AHEAD)
        if name == "book":
            _add_book_flags(sub)
        if name == "train":
            _add_train_flags(sub)
        if name == "weights":
            _add_weights_flags(sub)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line (argparse exits with status 2 on a flag the command does not take)."""
    return build_parser().parse_args(argv)


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class Context:
    """What every command works on, checked before it starts."""

    root: Path
    config: RunConfig
    chapters: list[Chapter]

    def out_dir(self, args: argparse.Namespace) -> Path:
        """The results folder of ``run``, ``book`` and ``report``."""
        return (args.out or default_results_dir(self.config.profile, self.root, self.config.dry_run)).resolve()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = parse_args(argv)
    root = args.root.resolve()
    try:
        check_profile(args.profile)
        config = RunConfig(args.profile, args.seed, args.device, args.data_dir,
                           tuple(parse_param(p) for p in args.param),
                           dry_run=getattr(args, "dry_run", 0))  # train has no --dry-run
        context = Context(root, config, discover_chapters(root, args.chapters))
        if "workers" in args:                                    # run, book, train
            args.workers = resolve_workers(args.workers, config.device)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    handler: Callable[[argparse.Namespace, Context], int] = args.handler
    return handler(args, context)


def cmd_run(args: argparse.Namespace, context: Context) -> int:
    """``run``: with ``--workers N > 1`` first train every model as N jobs, then execute the chapters
    and write the report; 1 when a training or a chapter failed."""
    config, out_dir = context.config, context.out_dir(args)
    start = time.perf_counter()
    if args.weights and not config.dry_run and install_weights(args.weights, context) != 0:
        return 2
    if args.workers > 1 and not config.dry_run:  # a dry run writes no weights: nothing to train ahead
        print(f"training every model first, {args.workers} jobs at a time (then the chapters load them)", flush=True)
        if train(args, config, context.root, [c.name for c in context.chapters]) != 0:
            print("error: training failed (logs above); no chapter was run", file=sys.stderr)
            return 1
        print(f"trained in {time.perf_counter() - start:.1f} s", flush=True)
    # chapters in parallel too, except in a dry run (the paper's sizes: chapter 6 alone peaks at 15 GB)
    results, failures = run_chapters(context.chapters, config, out_dir, force=args.force,
                                     keep_going=args.keep_going, timeout=args.timeout,
                                     root=context.root, log_output=args.verbose, progress=not args.quiet,
                                     workers=1 if config.dry_run else args.workers)
    ran = sum(r.status == "ran" for r in results)
    print(f"{ran} chapter(s) ran, {len(results) - ran} skipped, {len(failures)} failed "
          f"in {time.perf_counter() - start:.1f} s; results in {out_dir}", flush=True)
    cmd_report(args, context)
    if failures:
        print("error: failed chapter(s): " + ", ".join(f.chapter for f in failures), file=sys.stderr)
        return 1
    return 0


def cmd_book(args: argparse.Namespace, context: Context) -> int:
    """``book``: :func:`cmd_run`, then stage the executed chapters and build the HTML."""
    code = cmd_run(args, context)
    if code != 0:
        return code
    root = context.root
    vendor = None if args.cdn else root / "_build" / "vendor"
    if vendor is not None and not fetch_vendor(vendor):
        vendor = None
    stage = stage_book(context.chapters, context.out_dir(args), root / "_build" / "src", root, vendor)
    try:
        index = build_html(stage, root, strict=not args.no_strict)
    except subprocess.CalledProcessError as err:
        print(f"error: jupyter-book build failed (exit {err.returncode})", file=sys.stderr)
        return 1
    print(f"book: {index}", flush=True)
    return 0


def cmd_report(args: argparse.Namespace, context: Context) -> int:
    """``report``: (re)write the report Markdown from the metrics in the results folder."""
    report_path = write_report(context.chapters, context.out_dir(args))
    print(f"report: {report_path}", flush=True)
    return 0


def cmd_train(args: argparse.Namespace, context: Context) -> int:
    """``train``: see :func:`train`."""
    return train(args, context.config, context.root, [c.name for c in context.chapters])


def cmd_weights(args: argparse.Namespace, context: Context) -> int:
    """``weights pack`` / ``weights install SOURCE`` (:mod:`tvae_experiments.bundles`)."""
    if args.action == "install":
        if not args.source:
            print("error: weights install needs the bundle: python -m tvae_book weights install PATH_OR_URL",
                  file=sys.stderr)
            return 2
        return install_weights(args.source, context, sha256=args.sha256)
    return pack_weights(context, args.out, lock=args.lock)


def _plan(context: Context):
    """The training plan of the context's profile and chapters (every model they use, with its key)."""
    from tvae_experiments.plan import training_plan

    config = context.config
    return training_plan(config.profile, config.seed, config.parameters()["data_dir"],
                         [c.name for c in context.chapters], dict(config.extra))


def install_weights(source: str, context: Context, sha256: str | None = None) -> int:
    """Fill the weight cache from the bundle ``source`` with the entries the plan asks for; says which models
    still train (their key is not in the bundle: other code or another profile trained it)."""
    from tvae_experiments.bundles import BundleError, open_bundle
    from tvae_experiments.weights import WeightCache

    start = time.perf_counter()
    try:
        bundle = open_bundle(source, sha256=sha256, profile=context.config.profile)
        jobs = _plan(context)
        done = bundle.install(WeightCache(), keys=[j.key for j in jobs])
    except BundleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    train = [j.name for j in jobs if not j.cached()]
    print(f"weights from {bundle.path.name}: {len(done['installed'])} installed, {len(done['cached'])} already "
          f"cached, {len(train)} to train" + (f" ({', '.join(train)}: not in the bundle under this code's key)"
                                              if train else "")
          + (f"; {len(done['unused'])} bundle entries this code does not use" if done["unused"] else "")
          + f" ({time.perf_counter() - start:.1f} s)", flush=True)
    return 0


def pack_weights(context: Context, out: Path | None, lock: bool = False) -> int:
    """Write every cached model of the plan into one bundle (``_build/tvae-weights-<profile>.tar``)."""
    import json

    from tvae_experiments.bundles import LOCK_FILE, BundleError, bundle_name, pack_bundle, sha256_of

    profile = context.config.profile
    out = out or context.root / "_build" / bundle_name(profile)
    jobs = _plan(context)
    try:
        path = pack_bundle([(j.name, j.key, j.model, j.train, j.data_id) for j in jobs], out, profile=profile)
    except BundleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    digest = sha256_of(path)
    print(f"bundle {path}: {len(jobs)} models, {path.stat().st_size / 2**20:,.1f} MiB, sha256 {digest}", flush=True)
    if lock:
        lock_path = context.root / LOCK_FILE
        pins = json.loads(lock_path.read_text(encoding="utf-8")) if lock_path.is_file() else {}
        pins[path.name] = {**pins.get(path.name, {}), "sha256": digest}
        lock_path.write_text(json.dumps(pins, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        print(f"pinned in {lock_path}", flush=True)
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
    return _positive("--workers", value, "a positive integer or 'auto'")


def _positive(flag: str, value: str | int, allowed: str) -> int:
    """``value`` as a positive integer, else a ValueError naming ``flag`` and what it allows."""
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{flag} {value!r} is not allowed: {allowed}")
    return n


def resolve_ensemble(value: str | int, device: str = "auto") -> int:
    """``--ensemble``: models per ensemble.  ``"off"``: 1; ``"auto"``: :data:`ENSEMBLE_AUTO` when ``device`` may use
    a GPU and one is there, else 1 (on a CPU an ensemble is as fast as one model after another or slower:
    ``benchmarks/bench_ensemble.py``); a positive integer: itself."""
    if str(value) == "off":
        return 1
    if str(value) == "auto":
        import torch

        return ENSEMBLE_AUTO if device != "cpu" and torch.cuda.is_available() else 1
    return _positive("--ensemble", value, "'auto', 'off' or a positive integer")


def train(args: argparse.Namespace, config: RunConfig, root: Path, chapters: list[str]) -> int:
    """``train``: print the plan of ``config.profile`` and run its missing jobs (:mod:`tvae_book.jobs`)."""
    try:
        slurm = dict(parse_param(p) for p in args.slurm)
    except ValueError as err:
        print(f"error: {err}".replace("--param", "--slurm"), file=sys.stderr)
        return 2
    from tvae_book.jobs import measured_costs, plan_table, run_plan
    from tvae_experiments.plan import training_plan  # imports every chapter spec: only once the flags are valid

    start = time.perf_counter()
    jobs = training_plan(config.profile, config.seed, config.parameters()["data_dir"], chapters, dict(config.extra))
    print(plan_table(jobs, costs=measured_costs(default_results_dir(config.profile, root, dry_run=1))), flush=True)
    if args.plan_only:
        return 0
    try:
        ensemble = resolve_ensemble(args.ensemble, config.device)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    outcomes = run_plan(jobs, workers=args.workers, engine=args.engine, device=config.device, slurm=slurm,
                        threads=args.threads, ensemble=ensemble)
    failed = [o for o in outcomes if o.status == "failed"]
    print(f"{sum(o.status == 'trained' for o in outcomes)} trained, {sum(o.status == 'cached' for o in outcomes)} "
          f"cached, {len(failed)} failed in {time.perf_counter() - start:.1f} s", flush=True)
    return 1 if failed else 0
