"""Every chapter of the book, executed through papermill in the ``smoke`` profile.

Chapters come from ``_toc.yml`` (``book/NN_name`` jupytext notebooks). Each is run by the same
code as ``make book`` into one temporary results folder; the last test builds the HTML book from
those executed notebooks with Sphinx warnings as errors.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from tvae_core import report, runner
from tvae_core.runner import RunConfig

CHAPTERS = runner.discover_chapters(runner.REPO_ROOT)
SMOKE = RunConfig(profile="smoke", seed=0, device="auto")
CELL_TIMEOUT_S = 300


@pytest.fixture(scope="session")
def smoke_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One results folder shared by every chapter run of this session."""
    return tmp_path_factory.mktemp("smoke_results")


def test_toc_has_chapters() -> None:
    assert CHAPTERS, "no chapters found in _toc.yml"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.name for c in CHAPTERS])
def test_chapter_runs_and_its_claims_pass(chapter: runner.Chapter, smoke_dir: Path) -> None:
    result = runner.execute_chapter(chapter, SMOKE, smoke_dir, timeout=CELL_TIMEOUT_S)

    nb = nbformat.read(result.notebook, as_version=4)
    errors = [(i, out.get("ename"), out.get("evalue")) for i, cell in enumerate(nb.cells)
              for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert errors == [], f"error outputs in {result.notebook}"

    metrics = json.loads(result.metrics.read_text())
    assert report.validate_metrics(metrics) == []
    assert metrics["chapter"] == chapter.name
    assert metrics["profile"] == "smoke" and metrics["seed"] == SMOKE.seed
    enforced = [c for c in metrics["claims"] if c.get("enforced", True)]
    assert len(enforced) >= 1, "smoke must enforce at least one claim (sanity checks)"
    failed = [c["name"] for c in enforced if c["passed"] is not True]
    assert failed == [] and metrics["all_passed"] is True
    assert metrics["wall_time_s"] > 0


@pytest.mark.timeout(1800)
def test_book_builds_without_warnings_from_smoke_results(smoke_dir: Path, tmp_path: Path) -> None:
    # Chapters executed above are skipped (unchanged); any not yet run are run now.
    _, failures = runner.run_chapters(CHAPTERS, SMOKE, smoke_dir, timeout=CELL_TIMEOUT_S)
    assert failures == []
    stage = runner.stage_book(CHAPTERS, smoke_dir, tmp_path / "src")
    assert not [c.name for c in CHAPTERS if (stage / "book" / f"{c.name}.md").exists()]
    index = runner.build_html(stage, tmp_path, strict=True)
    html = index.parent
    for c in CHAPTERS:
        assert (html / "book" / f"{c.name}.html").is_file()
    assert f"{len(CHAPTERS)} of {len(CHAPTERS)} chapters have metrics" in (
        html / "book" / "report.html").read_text()
