"""Every chapter of the book, executed through papermill in the ``smoke`` profile.

Chapters come from ``_toc.yml`` (``book/NN_name`` jupytext notebooks). Each is run by the same
code as ``make book`` into one results folder for the session (``smoke_run`` in conftest.py);
the HTML book built from those executed notebooks (``smoke_book``, warnings as errors) is shared
with the browser test.
"""

from __future__ import annotations

import json

import nbformat
import pytest

from conftest import run_chapter_once
from tvae_book import chapters as bk, report
from tvae_experiments.chapters import chapter_spec

CHAPTERS = bk.discover_chapters(bk.REPO_ROOT)

# Claims about a *trained* model that the smoke profile must enforce (CI checks something
# learned): chapter 4's toy capsule problem, trained in seconds on every profile.
SMOKE_MUST_ENFORCE = {
    "04_capsules": [f"toy_{n}_{c}" for n in ("x", "y")
                    for c in ("traversal_predicts_pose", "untrained_fails_traversal", "capcorr")]
                   + ["toy_centred_eeq_below_untrained"],
    # chapter 10: appendix C's extensions on the same toy problem, trained on every profile
    "10_capsule_extensions": ["causal_online_equals_full", "lattice_axes_disentangle", "partial_rolls_alpha_per_frame"]
                             + [f"{p}_{n}_{c}" for n in ("x", "y") for p, c in
                                (("causal", "capcorr"), ("causal", "traversal_predicts_pose"),
                                 ("lattice", "capcorr_own_axis"), ("partial", "rolls_on_the_circle"))],
}


def test_toc_has_chapters() -> None:
    assert CHAPTERS, "no chapters found in _toc.yml"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.name for c in CHAPTERS])
def test_chapter_runs_and_its_claims_pass(chapter: bk.Chapter, smoke_run) -> None:
    result = run_chapter_once(chapter, smoke_run)  # executed here, or by the other xdist worker's book build

    nb = nbformat.read(result.notebook, as_version=4)
    errors = [(i, out.get("ename"), out.get("evalue")) for i, cell in enumerate(nb.cells)
              for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert errors == [], f"error outputs in {result.notebook}"

    metrics = json.loads(result.metrics.read_text())
    assert report.validate_metrics(metrics) == []
    assert metrics["chapter"] == chapter.name
    assert metrics["profile"] == "smoke" and metrics["seed"] == smoke_run.config.seed
    enforced = [c for c in metrics["claims"] if c.get("enforced", True)]
    assert len(enforced) >= 1, "smoke must enforce at least one claim (sanity checks)"
    failed = [c["name"] for c in enforced if c["passed"] is not True]
    assert failed == [] and metrics["all_passed"] is True
    # the chapter checked exactly the claims its spec declares for smoke, each with the declared item and kind
    spec = chapter_spec(chapter.name)
    assert sorted(c["name"] for c in metrics["claims"]) == sorted(spec.checked_on("smoke"))
    assert all((c["item"], c["kind"]) == (spec.claim(c["name"]).item, spec.claim(c["name"]).kind)
               for c in metrics["claims"])
    must = SMOKE_MUST_ENFORCE.get(chapter.name, [])
    assert sorted(set(must) - {c["name"] for c in enforced}) == [], "learned-model claims not enforced in smoke"
    assert metrics["wall_time_s"] > 0


@pytest.mark.timeout(1800)
def test_book_builds_without_warnings_from_smoke_results(smoke_book) -> None:
    # The fixture runs any chapter not executed above (executed ones are skipped, unchanged),
    # stages the executed notebooks and builds with -W; a warning fails the fixture.
    html = smoke_book.html_dir
    stage = html.parents[1] / "src"
    assert not [c.name for c in CHAPTERS if (stage / "book" / f"{c.name}.md").exists()]
    for c in CHAPTERS:
        assert (html / "book" / f"{c.name}.html").is_file()
        # the page's download button offers the executed notebook (outputs included)
        assert f"_sources/book/{c.name}.ipynb" in (html / "book" / f"{c.name}.html").read_text()
        executed = nbformat.read(html / "_sources" / "book" / f"{c.name}.ipynb", as_version=4)
        assert any(cell.get("outputs") for cell in executed.cells if cell.cell_type == "code")
    assert f"{len(CHAPTERS)} of {len(CHAPTERS)} chapters have metrics" in (
        html / "book" / "report.html").read_text()


@pytest.mark.timeout(900)
def test_tables_chapter_reports_mean_and_std_over_the_smoke_seeds(smoke_run) -> None:
    """Chapter 5 in smoke runs two seeds (``TablesConfig.seeds``, as ``--param n_seeds=2`` does on
    ``cpu``): every cell of the tables is ``mean ± std`` over seeds 0 and 1, and the claims pass."""
    chapter = next(c for c in CHAPTERS if c.name == "05_tables")
    result = run_chapter_once(chapter, smoke_run)
    nb = nbformat.read(result.notebook, as_version=4)
    text = "".join(o.get("text", "") for cell in nb.cells for o in cell.get("outputs", []))
    assert "seeds [0, 1]" in text
    tables = [o["data"]["text/html"] for cell in nb.cells for o in cell.get("outputs", [])
              if "text/html" in o.get("data", {}) and "CapCorr x" in o["data"]["text/html"]]
    assert len(tables) == 1, "Table 2 is one HTML table"
    row = next(r for r in tables[0].split("<tr>") if "TVAE L=" in r)  # the first model row
    # this run's mean ± std and the untrained control's, for each of the 7 columns (+ the paper's)
    assert row.count("±") >= 2 * 7, row
    assert json.loads(result.metrics.read_text())["all_passed"] is True
