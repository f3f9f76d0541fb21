"""Command line of the book pipeline (``python -m tvae_book --help``)::

    python -m tvae_book run    --profile cpu     # execute chapters + write the report
    python -m tvae_book book   --profile cpu     # the above, then stage + build the HTML
    python -m tvae_book report --profile cpu     # only (re)write the report Markdown
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
    parser.add_argument("command", choices=("run", "book", "report"),
                        help="run: execute chapters + report; book: run, then build the HTML; "
                             "report: only write the report from existing metrics")
    parser.add_argument("--profile", default="cpu", help="smoke, cpu or paper (default: cpu)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (default: auto)")
    parser.add_argument("--data-dir", default=None, help="folder with real data sets, if any")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="extra chapter parameter (repeatable), e.g. --param n_seeds=2 for chapter 5")
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
                           tuple(parse_param(p) for p in args.param))
        out_dir = (args.out or default_results_dir(args.profile, root)).resolve()
        chapters = discover_chapters(root, args.chapters)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    failures: list[ChapterError] = []
    if args.command in ("run", "book"):
        start = time.perf_counter()
        results, failures = run_chapters(chapters, config, out_dir, force=args.force,
                                         keep_going=args.keep_going, timeout=args.timeout,
                                         root=root, log_output=args.verbose)
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
