"""Session fixtures shared by the notebook and browser tests.

``smoke_run`` is the one results folder every chapter of this session is executed into (smoke
profile); ``smoke_book`` builds the HTML book from it once (warnings as errors, MathJax and the
widget manager vendored from npm when npm is there) for every test that needs the built pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> SmokeRun:
    """One results folder shared by every chapter run of this session."""
    return SmokeRun(SMOKE, tmp_path_factory.mktemp("smoke_results"), CELL_TIMEOUT_S,
                    tuple(bk.discover_chapters(bk.REPO_ROOT)))


@pytest.fixture(scope="session")
def smoke_book(smoke_run: SmokeRun, tmp_path_factory: pytest.TempPathFactory) -> BuiltBook:
    """Build the book once from the smoke results (chapters already executed are skipped).

    The JavaScript comes from ``_build/vendor`` (``npm pack``, as ``make book`` does), so the
    pages work with no network; without npm the build falls back to CDNs and ``vendored`` is
    False.
    """
    chapters = list(smoke_run.chapters)
    _, failures = execute.run_chapters(chapters, smoke_run.config, smoke_run.out_dir,
                                      timeout=smoke_run.timeout)
    if failures:
        pytest.fail("chapters failed, no book to build:\n" + "\n".join(map(str, failures)))
    vendor_dir = bk.REPO_ROOT / "_build" / "vendor"
    vendored = bk_html.fetch_vendor(vendor_dir)
    out = tmp_path_factory.mktemp("smoke_book")
    stage = bk_html.stage_book(chapters, smoke_run.out_dir, out / "src", bk.REPO_ROOT,
                              vendor_dir if vendored else None)
    index = bk_html.build_html(stage, out, strict=True)
    return BuiltBook(index.parent, index, smoke_run.out_dir, tuple(chapters), vendored)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests that need the built book last, so each chapter is executed (and reported)
    by its own test first and the book build only reuses those runs."""
    items.sort(key=lambda item: "smoke_book" in getattr(item, "fixturenames", ()))
