"""Chapters 4, 5 and 8 read as tutorials: run numbers reach the prose through glue, paper numbers are
declared, no history or config field names in the text, and each page ends with a summary and exercises.

Static checks of the MyST sources (no execution); the smoke book build (``-W``) checks that every glued
key is defined when the chapter runs.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from tvae_experiments.profiles import CapsuleInvariantsConfig, CapsulesConfig, TablesConfig

BOOK = Path(__file__).resolve().parents[1] / "book"
CHAPTERS = ("04_capsules", "05_tables", "08_capsule_invariants")

# Decimal numbers the prose may type: the papers' own values (each marked in the text as the paper's).
PAPER_NUMBERS = {
    "04_capsules": {"1.0", "0.25", "0.75"},                        # Table 2: TVAE L=S/3 1.0, baselines <= 0.25
    "05_tables": {"1.9", "4.1", "3.5", "13,273.9", "0.24", "0.59", "1.0", "184.7", "190.0", "189.0",
                  "0.5"},                                           # Tables 1, 3, 5; 0.5: sigmoid(0), an untrained pixel
    "08_capsule_invariants": set(),
}
SECTION_REF = re.compile(r"(?:Sec\.?|Section)\s+\d+\.\d+(?:,\s*\d+\.\d+)*")
DECIMAL = re.compile(r"(?<![\w.`])\d[\d,]*\.\d+")
HISTORY = re.compile(r"review caught|broken once|removed from the package|\bseed 0\b|measured on this|"
                     r"\b20\d\d-\d\d-\d\d\b|\bminutes? on\b|\bfirst version\b|before the switch", re.I)


def source(chapter: str) -> str:
    return (BOOK / f"{chapter}.md").read_text(encoding="utf-8")


def prose(text: str) -> str:
    """The markdown of a MyST notebook without front matter, code cells and maths."""
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S)
    text = re.sub(r"```\{code-cell\}.*?\n```", "", text, flags=re.S)
    text = re.sub(r"\$\$.*?\$\$", "", text, flags=re.S)
    return re.sub(r"\$[^$\n]+\$", "", text)


def code(text: str) -> str:
    return "\n".join(re.findall(r"```\{code-cell\}.*?\n(.*?)\n```", text, flags=re.S))


def typed_decimals(chapter: str) -> list[str]:
    p = re.sub(r"^\*\*Papers?:\*\*.*?\n\n", "", prose(source(chapter)), flags=re.S | re.M)  # the section list
    p = SECTION_REF.sub("", p)
    return [n for n in DECIMAL.findall(p) if n not in PAPER_NUMBERS[chapter]]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_no_run_number_is_typed_in_prose(chapter):
    assert typed_decimals(chapter) == []


def test_the_decimal_check_sees_a_typed_number():
    assert DECIMAL.findall(prose("The ratio is 1.23 here, $0.5$ in maths.\n```{code-cell} ipython3\nx = 2.5\n```")) \
        == ["1.23"]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_glued_key_in_the_text_is_glued_by_a_cell(chapter):
    """Each ``{glue:text}`key``` of the prose matches a ``put(...)`` (or ``glue(...)``) call of the
    chapter's code; f-string keys match with their fields as wildcards."""
    text = source(chapter)
    prefix = {"04_capsules": "ch4_", "05_tables": "ch5_", "08_capsule_invariants": "ch8_"}[chapter]
    used = set(re.findall(r"\{glue:text\}`([A-Za-z0-9_]+)", text))
    assert used, "a chapter shows at least one glued number"
    calls = re.findall(r"\bput\(\s*f?\"([^\"]+)\"", code(text))
    calls += [k for k in re.findall(r"\bput\(\s*(\w+)\s*,", code(text))]   # put(key, ...) in a loop over names
    loops = set(re.findall(r"for key in \(([^)]*)\)", code(text)))
    names = {n for group in loops for n in re.findall(r"\"(\w+)\"", group)}
    patterns = [re.compile(prefix + re.sub(r"\\\{[^}]*\\\}", r"\\w+", re.escape(c)) + "$") for c in calls if c != "key"]
    patterns += [re.compile(prefix + re.escape(n) + "$") for n in names]
    missing = sorted(k for k in used if not any(p.match(k) for p in patterns))
    assert missing == []


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_no_history_or_config_field_names_in_prose(chapter):
    p = prose(source(chapter))
    assert HISTORY.findall(p) == []
    fields = {f.name for cls in (CapsulesConfig, TablesConfig, CapsuleInvariantsConfig) for f in dataclasses.fields(cls)}
    named = {f for f in re.findall(r"`(\w+)`", p) if f in fields}
    assert named == set(), "say what the quantity means, not the config field"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_summary_and_exercises_end_the_chapter(chapter):
    heads = re.findall(r"^## (.+)$", prose(source(chapter)), flags=re.M)
    assert heads[-2:] == ["Summary", "Exercises"]
    exercises = prose(source(chapter)).split("## Exercises", 1)[1]
    assert 2 <= len(re.findall(r"^\d+\. ", exercises, flags=re.M)) <= 4


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_markdown_tables_have_blank_lines_around_them(chapter):
    lines = prose(source(chapter)).splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|"):
            assert i == 0 or lines[i - 1].startswith("|") or lines[i - 1].strip() == "", (i, line)
            assert i + 1 == len(lines) or lines[i + 1].startswith("|") or lines[i + 1].strip() == "", (i, line)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_claims_cells_are_folded(chapter):
    """Cells that check claims are plumbing: their input is hidden (the claim's statement is in the prose)."""
    for cell in re.findall(r"```\{code-cell\}[^\n]*\n(.*?)\n```", source(chapter), flags=re.S):
        if "report.check" in cell or "report.finish" in cell:
            assert cell.startswith(":tags: [hide-input") or cell.startswith(":tags: [remove-input"), cell[:80]


def test_the_first_picture_comes_before_the_first_definition_section():
    """Chapter 4 shows its capsule picture (frames x units) before it defines Roll."""
    text = source("04_capsules")
    assert text.index("capsule_activity_figure(") < text.index("## Roll and the capsule traversal")


def test_fig4_is_checked_per_transformation_not_on_an_average():
    """An average over transformations hides one that is not learned: the right-pose claims are per
    transformation, and the data set's ratio claim takes the worst transformation."""
    from tvae_experiments.chapters import chapter_spec
    from tvae_experiments.chapters.ch04_capsules import TRANSFORMS

    names = {c.name for c in chapter_spec("04_capsules").claims}
    for ds, transforms in TRANSFORMS.items():
        assert f"{ds}_traversal_right_pose" not in names
        assert {f"{ds}_{t}_traversal_right_pose" for t in transforms} <= names
        assert f"{ds}_traversal_ratio" in names
    text = source("04_capsules")
    assert "worst = max(per, key=lambda n: per[n].ratio)" in text


def test_the_collapse_claim_is_checked_against_the_untrained_tvae():
    cell = next(c for c in re.findall(r"```\{code-cell\}[^\n]*\n(.*?)\n```", source("08_capsule_invariants"), flags=re.S)
                if '"sequences_collapse"' in c)
    assert "best_w0" in cell and "untrained" in cell
