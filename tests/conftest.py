"""Session fixtures shared by the notebook and browser tests.

``smoke_run`` is the one results folder every chapter of this session is executed into (smoke
profile); ``smoke_book`` builds the HTML book from it once (warnings as errors, MathJax and the
widget manager vendored from npm when npm is there) for every test that needs the built pages.

``make test`` runs the suite on two pytest-xdist workers (``-n 2``).  The workers share the results
folder; a chapter is executed under a file lock by whichever worker reaches it first and reused,
unchanged, by the other (``run_chapter_once``).  Every test that needs the built book is in one xdist
group (``"book"``: one worker builds it once).  Each worker and every kernel it starts uses one torch
thread, so two workers never run more threads than the two cores.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

from tvae_book import chapters as bk, execute, html as bk_html
from tvae_book.chapters import RunConfig

SMOKE = RunConfig(profile="smoke", seed=0, device="auto")
"""The run settings of every chapter execution in the test suite."""

CELL_TIMEOUT_S = 300
"""Per-cell timeout of a smoke run (seconds)."""


@dataclass(frozen=True)
class SmokeRun:
    """Where and how this session executes the chapters."""

    config: RunConfig
    out_dir: Path
    timeout: float
    chapters: tuple[bk.Chapter, ...]


@dataclass(frozen=True)
class BuiltBook:
    """The HTML book built from this session's smoke results."""

    html_dir: Path          # <output>/_build/html
    index: Path             # its index.html
    results_dir: Path       # the executed notebooks and metrics it was built from
    chapters: tuple[bk.Chapter, ...]
    vendored: bool          # MathJax, require.js and the widget manager are served locally


XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
"""``gw0``, ``gw1``, ... under pytest-xdist; None in a plain ``pytest`` run."""

if XDIST_WORKER is not None:  # one torch thread per worker (and per kernel: they inherit the variable)
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def shared_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A folder every xdist worker of this session sees (the workers' common temp root), or this
    process's own under a plain ``pytest``."""
    if XDIST_WORKER is None:
        return tmp_path_factory.mktemp(name)
    path = tmp_path_factory.getbasetemp().parent / name
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> SmokeRun:
    """One results folder shared by every chapter run of this session (and by every worker)."""
    return SmokeRun(SMOKE, shared_dir(tmp_path_factory, "smoke_results"), CELL_TIMEOUT_S,
                    tuple(bk.discover_chapters(bk.REPO_ROOT)))


def run_chapter_once(chapter: bk.Chapter, run: SmokeRun) -> bk.ChapterResult:
    """Execute ``chapter`` into the shared results folder unless it is already there, up to date
    (executed by another test or worker this session); a file lock makes one worker run it."""
    paths = bk.output_paths(chapter.name, run.out_dir)
    with FileLock(str(run.out_dir / f".{chapter.name}.lock")):
        if bk.is_up_to_date(chapter, run.config, run.out_dir):
            wall = float(bk.read_json(paths["metrics"])["wall_time_s"])
            return bk.ChapterResult(chapter.name, "skipped", wall, paths["notebook"], paths["metrics"])
        return execute.execute_chapter(chapter, run.config, run.out_dir, timeout=run.timeout)


@pytest.fixture(scope="session")
def smoke_book(smoke_run: SmokeRun, tmp_path_factory: pytest.TempPathFactory) -> BuiltBook:
    """Build the book once from the smoke results (chapters already executed are skipped).

    The JavaScript comes from ``_build/vendor`` (``npm pack``, as ``make book`` does), so the
    pages work with no network; without npm the build falls back to CDNs and ``vendored`` is
    False.
    """
    chapters = list(smoke_run.chapters)
    failures = []
    for chapter in chapters:
        try:
            run_chapter_once(chapter, smoke_run)
        except bk.ChapterError as err:
            failures.append(err)
    if failures:
        pytest.fail("chapters failed, no book to build:\n" + "\n".join(map(str, failures)))
    vendor_dir = bk.REPO_ROOT / "_build" / "vendor"
    vendored = bk_html.fetch_vendor(vendor_dir)
    out = tmp_path_factory.mktemp("smoke_book")
    stage = bk_html.stage_book(chapters, smoke_run.out_dir, out / "src", bk.REPO_ROOT,
                              vendor_dir if vendored else None)
    index = bk_html.build_html(stage, out, strict=True)
    return BuiltBook(index.parent, index, smoke_run.out_dir, tuple(chapters), vendored)


@pytest.fixture(autouse=True)
def seeded_torch(request: pytest.FixtureRequest) -> None:
    """Every test starts from its own fixed state of torch's global random generator (a seed from its
    name), so a test that draws with ``torch.rand``/``torch.randn`` or initialises a model without a
    seed of its own sees the same numbers alone, in its file's order and in any other order (without
    this, its draws were whatever the tests before it had left)."""
    import torch

    torch.manual_seed(zlib.crc32(request.node.nodeid.rsplit("/", 1)[-1].encode()))


@pytest.fixture(autouse=True)
def fresh_run_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts without a process run context.  ``tvae_experiments.run.current()`` makes one
    from the environment at its first use and keeps it for the process, so without this a test's own
    ``TVAE_CACHE_DIR`` (``monkeypatch.setenv``) was ignored whenever an earlier test had made the
    context: its models went to (and were loaded from) that earlier test's folder, and the test
    passed or failed by the order the tests ran in."""
    try:
        from tvae_experiments import run
    except ImportError:  # a tree without the run context
        return
    monkeypatch.setattr(run, "_CURRENT", [])


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests that need the built book last, so each chapter is executed (and reported)
    by its own test first and the book build only reuses those runs; under xdist they form one
    group (``--dist loadgroup``), so one worker builds the book."""
    items.sort(key=lambda item: "smoke_book" in getattr(item, "fixturenames", ()))
    for item in items:
        if "smoke_book" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("book"))


@pytest.fixture
def tiny_mnist(tmp_path):
    """torchvision's four MNIST IDX files in ``tmp_path/MNIST/raw`` with random digits (40 train, 12 test)."""
    import numpy as np

    from tvae_experiments.data.mnist import write_idx

    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    for prefix, n in (("train", 40), ("t10k", 12)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, (n,)))
    return tmp_path
