"""Capsule models shared by chapters 4, 5 and 8: one :class:`~.base.ModelSpec` per ``(variant, L/S[, norm])`` row."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from tvae_experiments.chapters.base import ModelSpec

__all__ = ["capsule_model", "capsule_rows"]


def capsule_model(caps, dataset: str, row: tuple, seed: int, data: str = "capsules", transform: str = "") -> ModelSpec:
    """The capsule model of ``row = (variant, L/S[, norm])`` on ``dataset`` (``"mnist"`` | ``"dsprites"``) of the
    :class:`~tvae_experiments.profiles.CapsulesConfig` ``caps``, trained with seed ``seed``.  ``data``/``transform``:
    a training set other than the data set's own sequences (Fig 1, Figs 18-19: ``"combined"``, ``"color+rotation"``)."""
    from tvae_experiments.capsules import variant_name

    dcfg = getattr(caps, dataset)
    variant, frac, *norm = row
    L = dcfg.L_of(frac)
    name = variant_name(dcfg, variant, L, seed, *norm, data=transform.replace("+", "-"))
    part = dataset if data == "capsules" else data
    return ModelSpec(name, dcfg.model(variant, L, *norm), dcfg.train(seed), data, caps, part)


def capsule_rows(caps, rows: Mapping[str, Iterable[tuple]], seeds: Iterable[int]) -> list[ModelSpec]:
    """:func:`capsule_model` of every row of each data set (``rows``: dataset -> rows) for every seed."""
    return [capsule_model(caps, dataset, tuple(row), s) for s in seeds for dataset, rs in rows.items() for row in rs]
