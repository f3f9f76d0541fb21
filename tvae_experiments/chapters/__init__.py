"""Each chapter of the book in one place: the models it trains and the claims it checks.

One module per chapter, named after its notebook (``ch04_capsules`` for ``book/04_capsules.md``),
each with a :class:`~.base.ChapterSpec` called ``SPEC``.  Everything that needs to know a chapter reads
its spec: the notebook (models to train or load, claim declarations), the training plan behind
``make train`` (:mod:`tvae_experiments.plan`), the claim checks (:mod:`tvae_experiments.claims`:
whether a claim is enforced on a profile) and the report (:mod:`tvae_book.report`: which paper item a
claim stands for, what kind of claim it is).

To add a model to a chapter, add it to the chapter's ``models``.  To add a claim, declare it with
:func:`~.base.claim` (statement, rule, paper value, kind, where it is enforced) and pass its values
from the notebook, ``report.check("name", value=...)``; to rename one, change its name in both.
"""
from __future__ import annotations

from tvae_experiments.chapters import (ch01_pot, ch02_tpot, ch03_tvae_torus, ch04_capsules, ch05_tables,
                                       ch06_invariant_graphs, ch07_invariant_rotation, ch08_capsule_invariants,
                                       ch09_paper_vs_code, ch10_capsule_extensions)
from tvae_experiments.chapters.base import ChapterSpec, ClaimSpec, ModelSpec, UndeclaredClaim

__all__ = ["CHAPTERS", "chapter_spec", "planned_chapters", "ChapterSpec", "ClaimSpec", "ModelSpec", "UndeclaredClaim"]

CHAPTERS: dict[str, ChapterSpec] = {m.SPEC.name: m.SPEC for m in (
    ch01_pot, ch02_tpot, ch03_tvae_torus, ch04_capsules, ch05_tables, ch06_invariant_graphs, ch07_invariant_rotation,
    ch08_capsule_invariants, ch09_paper_vs_code, ch10_capsule_extensions)}
"""Every chapter's spec by name, in book order (the notebook is ``book/<name>.md``)."""


def chapter_spec(chapter: str) -> ChapterSpec:
    """The :class:`ChapterSpec` of ``chapter`` (e.g. ``"04_capsules"``); an unknown name raises naming the chapters."""
    if chapter not in CHAPTERS:
        raise ValueError(f"chapter={chapter!r} has no spec; chapters are: {', '.join(CHAPTERS)}")
    return CHAPTERS[chapter]


def planned_chapters() -> list[str]:
    """The chapters that train cached models (``make train`` plans their models)."""
    return [c for c in CHAPTERS if chapter_spec(c).models is not None]
