"""The run context: what one run (a chapter's kernel, a training job, a test) shares across its trainings.

:class:`RunContext` holds the weight cache, whether this is a dry run (and the measurements it
collects), where progress bars go, and the list of cached models the run trained or loaded.
:func:`~tvae_experiments.train.fit` and :class:`~tvae_experiments.claims.ClaimReport` take one
explicitly (``ctx=``); without it they use :func:`current`, the process's context, made once from the
environment the book runner sets for a chapter's kernel (:meth:`RunContext.from_env`, the one place
these variables are read)::

    TVAE_DRY_RUN_STEPS   every training stops after this many optimiser steps (tvae_experiments.dry_run)
    TVAE_PROGRESS_FILE   progress bars are appended to this file (the runner shows it), not the notebook
    TVAE_CACHE_DIR       the weight cache folder (default <repo>/_cache/models)
    TVAE_WEIGHTS         a weight bundle (path or URL, tvae_experiments.bundles): a missing cache entry whose
                         key it holds is filled from it instead of training
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from tvae_experiments import dry_run
from tvae_experiments.files import PROGRESS_ENV
from tvae_experiments.weights import WeightCache

__all__ = ["RunContext", "current", "using", "WEIGHTS_ENV"]

WEIGHTS_ENV = "TVAE_WEIGHTS"
"""Environment variable: a weight bundle (path or URL) that fills missing cache entries (module doc)."""


@dataclass
class RunContext:
    """One run's shared state (module doc)."""

    cache: WeightCache = field(default_factory=WeightCache)
    dry_run_steps: int | None = None    # every training stops after this many steps; None: a normal run
    progress_file: str | None = None    # append progress bars to this file; None: tqdm in the notebook/terminal
    used: list[dict] = field(default_factory=list)      # cached models trained or loaded: name, key[:12], from_cache
    dry_runs: list[dict] = field(default_factory=list)  # per model trained shortened: what its full training costs

    def __post_init__(self) -> None:
        if self.dry_run_steps is not None and (not isinstance(self.dry_run_steps, int) or self.dry_run_steps < 1):
            raise ValueError(f"dry_run_steps={self.dry_run_steps!r}: expected a whole number >= 1, or None")

    @classmethod
    def from_env(cls) -> RunContext:
        """The context the environment describes (module doc); a bad value raises naming its variable."""
        bundle = None
        if source := os.environ.get(WEIGHTS_ENV):
            from tvae_experiments.bundles import open_bundle

            bundle = open_bundle(source)
            bundle.verify()
        return cls(cache=WeightCache(bundle=bundle), dry_run_steps=dry_run.steps(),
                   progress_file=os.environ.get(PROGRESS_ENV) or None)

    def trained_reason(self) -> str | None:
        """The not-enforced reason of a claim checked after a shortened training in this run, else None."""
        if not self.dry_runs:
            return None
        return (f"dry run: the {len(self.dry_runs)} model(s) trained so far stopped after "
                f"{self.dry_runs[-1]['steps_run']} optimiser step(s) ({dry_run.ENV}); the run checks sizes, memory and "
                "cost, not what training learns")


_CURRENT: list[RunContext] = []  # the process's context, created at first use (a stack: `using` pushes)


def current() -> RunContext:
    """This process's run context: the innermost :func:`using`, else one made once from the environment."""
    if not _CURRENT:
        _CURRENT.append(RunContext.from_env())
    return _CURRENT[-1]


@contextlib.contextmanager
def using(ctx: RunContext) -> Iterator[RunContext]:
    """Make ``ctx`` the process's context inside the ``with`` block (tests, a job that trains several models)."""
    current()
    _CURRENT.append(ctx)
    try:
        yield ctx
    finally:
        _CURRENT.remove(ctx)
