"""Dry runs: a profile's real sizes with only a few optimisation steps per model, measured.

A dry run executes a chapter with everything at the profile's size -- data sets, model widths,
batch sizes, evaluation sets, importance samples, seeds -- except that every training stops after
``TVAE_DRY_RUN_STEPS`` optimiser steps.  It proves that the ``paper`` profile runs (and fits in
memory) before any GPU is lent, and measures what the full run would cost.  The switch is the
environment variable, so no chapter needs code for it::

    make reproduce PROFILE=paper DRY_RUN=3            # every chapter, 3 steps per model
    python -m tvae_book run --profile paper --dry-run 3 --chapters 04_capsules
    %env TVAE_DRY_RUN_STEPS=3                          # in Jupyter, before a chapter's first cell

One size is cut besides the steps: capsule test sets of more than :data:`TEST_CAP` sequences are cut
to it (:func:`test_size`, where test sets are built; the training sets stay exactly the profile's, so
every model keeps the cache key it has in the full run and in the training plan).  Scoring every capsule model on 10,000 test sequences
decodes ~2.7 million frames per model (five traversal passes of ``3 S`` decodes); measured on the
2-core CPU that is ~6 min per MNIST model and would make chapter 4's dry run alone take ~1.5 h.  The
evaluation is forward passes in fixed batches, so its memory does not grow with the test set.

The switch reaches the code through the run context (:class:`~tvae_experiments.run.RunContext`,
``dry_run_steps``), made from the environment once per process.  In a dry run
:func:`~tvae_experiments.train.fit` neither reads nor writes the weight cache (a 3-step model must
never be found under the key of the trained one) and appends one record per model to the context's
``dry_runs``: parameters, the steps of the full run, seconds per step (median after a warm-up step),
FLOPs of one step (``torch.utils.flop_counter``), peak resident memory of the process.
:class:`~tvae_experiments.claims.ClaimReport` writes the records into the chapter's metrics and does
not enforce any claim checked after a shortened training (the reason is said next to each), so a dry
run fails only on errors, memory and claims that need no training.
"""
from __future__ import annotations

import os
import resource
import sys

__all__ = ["ENV", "TEST_CAP", "steps", "test_size", "peak_rss_mb"]

ENV = "TVAE_DRY_RUN_STEPS"
"""Environment variable: optimiser steps per model in a dry run (unset or 0: a normal run)."""

TEST_CAP = 500
"""Test sets (``n_test`` fields of the profile configs) are cut to this many sequences in a dry run."""


def steps() -> int | None:
    """The environment's dry-run steps per model (:data:`ENV`), or None for a normal run; a bad value raises naming
    ``ENV``.  Read once per process, by :meth:`~tvae_experiments.run.RunContext.from_env`."""
    raw = os.environ.get(ENV, "").strip()
    if raw in ("", "0"):
        return None
    try:
        n = int(raw)
    except ValueError:
        n = -1
    if n < 1:
        raise ValueError(f"{ENV}={raw!r}: expected a whole number of optimiser steps >= 1 (or 0 / unset: no dry run)")
    return n


def test_size(n: int, dry_run_steps: int | None) -> int:
    """``n`` test sequences, or :data:`TEST_CAP` of them in a dry run (module doc)."""
    return min(n, TEST_CAP) if dry_run_steps else n


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (``getrusage``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
