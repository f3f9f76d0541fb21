"""The book's trainings as a list of independent jobs: what every chapter trains, for any profile.

Every model of the book is trained by :func:`~tvae_experiments.train.fit` and cached under a key of
(model config, training config, data identity).  :func:`training_plan` lists those trainings for a
profile -- one :class:`Job` per cache entry, with the chapter that first needs it, read from the chapter
specs (:mod:`tvae_experiments.chapters`, each chapter's ``models``) -- so they can run
ahead of the chapters, in parallel or on a cluster (``make train``, :mod:`tvae_book.jobs`); the
chapters then load every model from the cache.  ``tests/test_plan.py`` checks that the plan of the
smoke profile is exactly the set of models the smoke chapters use, so the two cannot drift apart.

A job carries a :class:`DataSpec` (how to build its training data, in any process) rather than the
data itself; :func:`run_job` builds it (memoised per process), trains and returns a summary.

Not planned: chapter 4's toy model (``learn_toy``) and chapter 10's appendix-C toy models (``fit_toy``)
always train, in seconds, by design.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tvae_experiments.chapters import chapter_spec, planned_chapters
from tvae_experiments.chapters.ch05_tables import COMBINED_KINDS

__all__ = ["DataSpec", "Job", "Ensemble", "training_plan", "run_job", "group_ensembles", "run_ensemble"]


@dataclass(frozen=True)
class DataSpec:
    """How to build a job's training data: ``kind`` and what sizes it (hashable, picklable)."""

    kind: str            # "mnist" (ch 3, 7) | "capsules" (ch 4, 5, 8) | "combined" (Fig 1, 18) | "perspective"
                         # (Fig 19) | "rotation+color" (ch 10's 2-D capsules) | "scale-ramps" (ch 10's C.2)
                         # | "molecules" (ch 6)
    cfg: Any             # the chapter config whose fields size the data
    data_dir: str | None
    seed: int            # the data seed (the chapter's base seed)

    def load(self) -> dict[str, tuple[tuple, str]]:
        """``part -> (tensors passed to fit, data_id)``; memoised per process (one spec at a time)."""
        return _load(self)


@functools.lru_cache(maxsize=1)
def _load(spec: DataSpec) -> dict[str, tuple[tuple, str]]:
    if spec.kind == "mnist":
        from tvae_experiments.data.mnist import mnist

        d = mnist(spec.data_dir, seed=spec.seed, n_train=spec.cfg.n_train, n_test=spec.cfg.n_test)
        return {"images": ((d.train_x,), d.fingerprint()), "labelled": ((d.train_x, d.train_y), d.fingerprint())}
    if spec.kind == "capsules":
        from tvae_experiments.capsules import capsule_data

        cm, cd = spec.cfg.mnist, spec.cfg.dsprites
        d = capsule_data(cm, cd, spec.data_dir, spec.seed)
        return {"mnist": ((d.mnist_train.x,), d.data_id(d.mnist_train)),
                "dsprites": ((d.dsprites_train.x,), d.data_id(d.dsprites_train))}
    if spec.kind in MNIST_KINDS:
        from tvae_experiments.capsules import mnist_transform_data, sequence_data_id

        ctrain, _ = mnist_transform_data(spec.cfg.mnist, MNIST_KINDS[spec.kind], spec.data_dir, spec.seed)
        return {spec.kind: ((ctrain.x,), sequence_data_id(ctrain, spec.seed))}
    if spec.kind == "scale-ramps":  # chapter 10's C.2 at MNIST scale: spec.cfg is its CapsuleExtensionsConfig
        from tvae_core.roll import pad_sequence_ends
        from tvae_experiments.capsule_extensions import ramp_data

        train, _, data_id = ramp_data(spec.cfg, spec.data_dir, spec.seed)
        return {"scale-ramps": ((pad_sequence_ends(train.x, spec.cfg.ramp_L),), data_id)}
    if spec.kind == "molecules":
        from tvae_experiments.data.molecules import load_molecules
        from tvae_experiments.graphvae import graph_data_id

        cfg = spec.cfg
        train, _ = load_molecules(cfg.source, cfg.n_max, spec.data_dir, limit=cfg.n_molecules).split(cfg.test_frac,
                                                                                                    spec.seed)
        return {"graphs": ((train.X, train.E), graph_data_id(train.fingerprint()))}
    raise ValueError(f"DataSpec.kind={spec.kind!r} is not one of 'mnist', 'capsules', "
                     f"{', '.join(map(repr, MNIST_KINDS))}, 'scale-ramps', 'molecules'")


MNIST_KINDS = {**{k: (t,) for k, t in COMBINED_KINDS.items()}, "rotation+color": ("rotation", "color")}
"""DataSpec kinds of MNIST sequences other than chapter 4's -> their transformations (chapter 10's 2-D
capsules: rotation and colour sequences)."""


@dataclass(frozen=True)
class Job:
    """One training: the arguments of :func:`~tvae_experiments.train.fit` and where its data come from."""

    chapter: str          # the first chapter that uses the model
    name: str             # cache-file prefix (``<name>-<key[:12]>.pt``)
    model: Any            # model config (``build()``, ``to_dict()``)
    train: Any            # :class:`~tvae_experiments.train.TrainConfig`
    data: DataSpec
    part: str             # which of ``data.load()``'s parts is the training set
    data_id: str
    key: str              # :func:`~tvae_experiments.train.cache_key`
    n_train: int          # training examples (sequences, images, graphs)
    example: tuple = ()   # (shape without the batch axis, dtype name) of each training tensor, for :attr:`cost`

    @property
    def steps(self) -> int:
        """Optimiser steps of the full training (``steps``, else ``epochs`` passes)."""
        return self.train.total_steps(self.n_train)

    @property
    def cost(self) -> float:
        """The FLOPs of the whole training, for ordering (longest job first): ``steps`` x the FLOPs of one
        step (forward and backward of ``training_loss`` on one batch of :attr:`example`'s shapes, counted
        by ``torch.utils.flop_counter`` on the meta device: nothing is computed, ~0.1 s per job).  Without
        ``example`` (or if counting fails): ``steps x batch x frames x parameters``, which ranks the MLPs
        right but the convolutions far too low (measured on cpu: the C4 G-CNN is 22.3 GFLOP per step with
        16,000 parameters; as the last job it left one of two workers idle for 73 s)."""
        import torch

        if self.example:
            try:
                return float(self.steps) * _step_flops(self.model, self.example, self.train.batch_size)
            except Exception:  # a model the meta device cannot run: fall back to the parameter count
                pass
        with torch.device("meta"):
            params = sum(p.numel() for p in self.model.build().parameters())
        frames = getattr(self.model, "capsule_dim", 1) if getattr(self.model, "topography", "") in ("temporal", "capsules") \
            else 1
        return float(self.steps) * self.train.batch_size * frames * params

    def path(self, cache_dir: str | Path | None = None) -> Path:
        from tvae_experiments.train import cache_path

        return cache_path(self.name, self.key, cache_dir)

    def cached(self, cache_dir: str | Path | None = None) -> bool:
        return self.path(cache_dir).is_file()


def _step_flops(model_cfg, example: tuple, batch_size: int) -> float:
    """FLOPs of one training step (forward + backward of ``training_loss``) on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = model_cfg.build()
        batch = []
        for shape, dtype in example:  # uint8 images are trained as float (train.fit); labels stay integer
            dt = torch.float32 if dtype in ("uint8", "float32", "float64") else getattr(torch, dtype)
            batch.append(torch.zeros((batch_size, *shape), dtype=dt))
    with FlopCounterMode(display=False) as counter:
        loss, _ = model.training_loss(*batch)
        loss.backward()
    return float(counter.get_total_flops())


def training_plan(profile: str, seed: int = 0, data_dir: str | None = None, chapters: Sequence[str] | None = None,
                  extra: dict | None = None) -> list[Job]:
    """Every training the chapters of ``profile`` need, once each (a model shared by chapters is listed
    under the first), grouped by training data.  Builds each data set once to compute the cache keys.

    ``extra``: chapter parameters that change what is trained (chapter 5's ``{"n_seeds": 2}``, ``{"rows": "all"}``)."""
    from tvae_experiments.profiles import check_profile
    from tvae_experiments.train import cache_key

    check_profile(profile)
    planned = planned_chapters()
    chapters = planned if chapters is None else [c for c in chapters if c in planned]
    raw = [(c, m, DataSpec(m.data, m.data_cfg, data_dir, seed)) for c in chapters
           for m in chapter_spec(c).models(profile, seed, **dict(extra or {}))]
    first: dict[DataSpec, int] = {}
    for r in raw:
        first.setdefault(r[2], len(first))
    raw.sort(key=lambda r: first[r[2]])  # stable: chapter order within a data set; one data set in memory at a time
    jobs: dict[tuple[str, str], Job] = {}
    for chapter, m, spec in raw:
        name, model, train, part = m.name, m.model, m.train, m.part
        tensors, data_id = spec.load()[part]
        key = cache_key(model, train, data_id)
        example = tuple((tuple(t.shape[1:]), str(t.dtype).removeprefix("torch.")) for t in tensors)
        jobs.setdefault((name, key), Job(chapter, name, model, train, spec, part, data_id, key, len(tensors[0]), example))
    return list(jobs.values())


def run_job(job: Job, device: str = "auto", cache_dir: str | Path | None = None, progress: bool = True) -> dict:
    """Train ``job`` (or load it when cached) and return ``{name, key, path, seconds, from_cache}``."""
    from tvae_experiments.train import fit

    tensors, data_id = job.data.load()[job.part]
    if data_id != job.data_id:
        raise RuntimeError(f"{job.name}: the training data built here ({data_id!r}) differ from the planned "
                           f"({job.data_id!r}); the data must be deterministic given the spec")
    r = fit(job.model, tensors, job.train, data_id=data_id, device=device, cache_dir=cache_dir, name=job.name,
            progress=progress)
    return {"name": job.name, "key": job.key, "path": str(r.path), "seconds": r.seconds, "from_cache": r.from_cache}


@dataclass(frozen=True)
class Ensemble:
    """Jobs trained together in one process (:mod:`tvae_experiments.ensemble`): the same data, architecture and
    training config but the seed.  Has a job's ``name``, ``key``, ``chapter`` and ``cost`` for the runner."""

    jobs: tuple[Job, ...]

    @property
    def name(self) -> str:
        return f"{self.jobs[0].name}+{len(self.jobs) - 1}"

    @property
    def key(self) -> str:
        return self.jobs[0].key

    @property
    def chapter(self) -> str:
        return self.jobs[0].chapter

    @property
    def cost(self) -> float:
        return sum(j.cost for j in self.jobs)


def group_ensembles(jobs: Sequence[Job], size: int) -> list[Job | Ensemble]:
    """``jobs`` with those that can train together (:func:`~tvae_experiments.ensemble.ensemble_key`) gathered
    into ensembles of at most ``size`` (in plan order); ``size`` 1 leaves every job alone."""
    from tvae_experiments.ensemble import ensemble_key

    if size < 1:
        raise ValueError(f"ensemble size must be >= 1, got {size}")
    groups: dict[object, list[Job]] = {}
    for i, job in enumerate(jobs):
        key = ensemble_key(job.model, job.train, job.data_id) if size > 1 else None
        groups.setdefault(key if key is not None else ("alone", i), []).append(job)
    units: list[Job | Ensemble] = []
    for members in groups.values():
        for start in range(0, len(members), size):
            chunk = tuple(members[start:start + size])
            units.append(chunk[0] if len(chunk) == 1 else Ensemble(chunk))
    return units


def run_ensemble(ensemble: Ensemble, device: str = "auto", cache_dir: str | Path | None = None,
                 progress: bool = True) -> list[dict]:
    """Train the jobs of ``ensemble`` together (the cached ones are loaded); one :func:`run_job` summary each."""
    from tvae_experiments.ensemble import Member, fit_ensemble
    from tvae_experiments.run import current
    from tvae_experiments.weights import WeightCache

    jobs = ensemble.jobs
    tensors, data_id = jobs[0].data.load()[jobs[0].part]
    if data_id != jobs[0].data_id:
        raise RuntimeError(f"{ensemble.name}: the training data built here ({data_id!r}) differ from the planned "
                           f"({jobs[0].data_id!r}); the data must be deterministic given the spec")
    ctx = current() if cache_dir is None else dataclasses.replace(current(), cache=WeightCache(cache_dir))
    results = fit_ensemble([Member(j.name, j.model, j.train) for j in jobs], tensors, data_id=data_id, device=device,
                           progress=progress, ctx=ctx)
    return [{"name": j.name, "key": j.key, "path": str(r.path), "seconds": r.seconds, "from_cache": r.from_cache}
            for j, r in zip(jobs, results)]
