"""The README is a newcomer's page: short, no measured timings (they are on the generated Performance page),
every command, link and path it names exists."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tvae_book.chapters import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
MAKEFILE = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")


def test_about_a_page():
    assert len(README.splitlines()) <= 150


@pytest.mark.parametrize("must", [
    "make book", "make test", "_build/html/index.html", "make book WEIGHTS=", "TVAE_WEIGHTS", "make weights-pack",
    "`smoke`", "`cpu`", "`paper`", "tvae_core/", "tvae_experiments/", "chapters/", "tvae_book/", "book/", "tests/",
    "tests_paper/", "benchmarks/", ".ci/run", "make mutate", "Performance"])
def test_names_what_a_newcomer_needs(must):
    assert must in README


def test_no_measured_timings_or_dates():
    durations = re.findall(r"\b\d+(?:[.,]\d+)?\s*(?:s|sec|seconds?|min|minutes?|h|hours?|GPU-hours)\b", README)
    dates = re.findall(r"\b20\d\d-\d\d-\d\d\b", README)
    assert durations == [] and dates == [], "timings belong on the generated Performance page"


def test_links_and_the_picture_exist():
    links = re.findall(r"\]\(([^)\s]+)\)", README)
    local = [link for link in links if not re.match(r"[a-z]+://", link) and not link.startswith("#")]
    assert any(link.endswith(".png") for link in local), "the README shows one picture from the book"
    for link in local:
        path = REPO_ROOT / link.split("#")[0]
        assert path.is_file(), f"README links to {link}, which does not exist"
        if path.suffix == ".png":
            assert path.stat().st_size < 200_000, f"{link}: keep the committed picture small"


def test_make_targets_and_layout_exist():
    targets = set(re.findall(r"^([\w-]+):", MAKEFILE, re.M))
    for target in set(re.findall(r"`make ([\w-]+)", README)):
        assert target in targets, f"README names `make {target}`, which the Makefile lacks"
    layout = README.split("## Where to look", 1)[1].split("```")[1]
    for name in re.findall(r"^(\S+/)", layout, re.M):
        assert (REPO_ROOT / name).is_dir(), f"README's layout lists {name}, which does not exist"


def test_ci_run_is_as_the_readme_says():
    """`.ci/run runs make test, then make test-paper`."""
    lines = [line.strip() for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()
             if line.strip().startswith("make ")]
    assert lines == ["make test", "make test-paper"]
    assert "`make test`, then\n  `make test-paper`" in README or "make test, then make test-paper" in README


def test_pipeline_doc_has_no_timings_either():
    text = Path(REPO_ROOT / "docs" / "pipeline.md").read_text(encoding="utf-8")
    assert re.findall(r"\b\d+(?:\.\d+)?\s*(?:s|min|minutes?|hours?)\b", text) == []
