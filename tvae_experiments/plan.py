"""The book's trainings as a list of independent jobs: what every chapter trains, for any profile.

Every model of the book is trained by :func:`~tvae_experiments.train.fit` and cached under a key of
(model config, training config, data identity).  :func:`training_plan` lists those trainings for a
profile -- one :class:`Job` per cache entry, with the chapter that first needs it -- so they can run
ahead of the chapters, in parallel or on a cluster (``make train``, :mod:`tvae_book.jobs`); the
chapters then load every model from the cache.  ``tests/test_plan.py`` checks that the plan of the
smoke profile is exactly the set of models the smoke chapters use, so the two cannot drift apart.

A job carries a :class:`DataSpec` (how to build its training data, in any process) rather than the
data itself; :func:`run_job` builds it (memoised per process), trains and returns a summary.

Not planned: chapter 4's toy model (``learn_toy``) and chapter 10's appendix-C toy models (``fit_toy``)
always train, in seconds, by design.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tvae_experiments.capsules import variant_name
from tvae_experiments.profiles import config_for, tables_config

__all__ = ["CHAPTER4_VARIANTS", "CHAPTER8_VARIANTS", "DataSpec", "Job", "training_plan", "run_job", "PLANNED"]

CHAPTER4_VARIANTS = {"tvae_S/3": ("tvae", 1 / 3), "tvae_S/2": ("tvae", 1 / 2), "bubble": ("bubble", 1 / 3),
                     "vae": ("vae", 0)}
"""Chapter 4's trained capsule models per data set: key -> (variant, L/S)."""

CHAPTER8_VARIANTS = {"TVAE": ("tvae", 1 / 3), "VAE": ("vae", 0)}
"""Chapter 8 reuses two of chapter 4's models (same cache entries)."""

PLANNED = ("03_tvae_torus", "04_capsules", "05_tables", "06_invariant_graphs", "07_invariant_rotation",
           "08_capsule_invariants", "10_capsule_extensions")
"""Chapters that train (or load) cached models; the others train nothing."""


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


COMBINED_KINDS = {"combined": "color+rotation", "perspective": "color+perspective"}
"""DataSpec kinds of the combined MNIST sequences (Fig 1, 18 / Fig 19) -> their transform."""
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
        return self.train.steps or self.train.epochs * (self.n_train // self.train.batch_size)

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


def _capsule_jobs(chapter: str, caps, data: DataSpec, rows: dict[str, Sequence[tuple]], seeds: Sequence[int]):
    """``(chapter, name, model, train, spec, part)`` of the capsule rows of each data set
    (``rows``: part -> ``(variant, L/S)`` or ``(variant, L/S, norm)`` tuples) for every seed."""
    for s in seeds:
        for part, dcfg in (("mnist", caps.mnist), ("dsprites", caps.dsprites)):
            for variant, frac, *norm in rows[part]:
                L = dcfg.L_of(frac)
                yield (chapter, variant_name(dcfg, variant, L, s, *norm), dcfg.model(variant, L, *norm),
                       dcfg.train(s), data, part)


def _raw_jobs(chapter: str, profile: str, seed: int, data_dir: str | None, extra: dict):
    if chapter == "03_tvae_torus":
        cfg = config_for(chapter, profile)
        spec = DataSpec("mnist", cfg, data_dir, seed)
        for kind in ("tvae", "vae"):
            yield chapter, f"ch3-{kind}-{profile}", cfg.model(kind), cfg.train(seed), spec, "images"
    elif chapter in ("04_capsules", "08_capsule_invariants"):
        caps = config_for(chapter, profile)
        caps = caps if chapter == "04_capsules" else caps.capsules
        spec = DataSpec("capsules", caps, data_dir, seed)
        variants = CHAPTER4_VARIANTS if chapter == "04_capsules" else CHAPTER8_VARIANTS
        pairs = list(variants.values())
        yield from _capsule_jobs(chapter, caps, spec, {"mnist": pairs, "dsprites": pairs}, [seed])
        if chapter == "04_capsules":  # Fig 1: colour + rotation together
            cm = caps.mnist
            L = cm.L_of(1 / 3)
            yield (chapter, variant_name(cm, "tvae", L, seed), cm.model("tvae", L), cm.train(seed),
                   DataSpec("combined", caps, data_dir, seed), "combined")
    elif chapter == "05_tables":
        cfg = tables_config(profile, extra.get("n_seeds"), extra.get("rows", "profile"))
        spec = DataSpec("capsules", cfg.capsules, data_dir, seed)
        yield from _capsule_jobs(chapter, cfg.capsules, spec,
                                 {"mnist": cfg.mnist_rows + cfg.norm_rows, "dsprites": cfg.dsprites_rows},
                                 [seed + s for s in cfg.seeds])
        cm, s0 = cfg.capsules.mnist, seed + cfg.seeds[0]  # Figs 18-19: the first seed's model for each figure
        L = cm.L_of(cfg.combined_frac)
        for kind, transform in COMBINED_KINDS.items():
            yield (chapter, variant_name(cm, "tvae", L, s0, data=transform.replace("+", "-")), cm.model("tvae", L),
                   cm.train(s0), DataSpec(kind, cfg.capsules, data_dir, seed), kind)
    elif chapter == "10_capsule_extensions":  # C.1-C.4 at MNIST scale (the toy models always train, in seconds)
        from tvae_experiments.capsule_extensions import mnist_extension_name

        cfg = config_for(chapter, profile)
        spec = DataSpec("capsules", cfg.capsules, data_dir, seed)
        for roll in ("linear", "integer"):
            yield (chapter, mnist_extension_name(f"partial-{roll}", seed), cfg.mnist_model(roll),
                   cfg.capsules.mnist.train(seed), spec, "mnist")
        for wide in (False, True):
            yield (chapter, mnist_extension_name("causal-wide" if wide else "causal", seed),
                   cfg.mnist_causal_model(wide), cfg.capsules.mnist.train(seed), spec, "mnist")
        for kind in ("noncyclic", "cyclic"):  # C.2 on padded scale ramps
            yield (chapter, mnist_extension_name(f"ramps-{kind}", seed), cfg.mnist_ramp_model(kind),
                   cfg.capsules.mnist.train(seed), DataSpec("scale-ramps", cfg, data_dir, seed), "scale-ramps")
        yield (chapter, mnist_extension_name("lattice", seed), cfg.mnist_lattice_model(), cfg.capsules.mnist.train(seed),
               DataSpec("rotation+color", cfg.capsules, data_dir, seed), "rotation+color")
    elif chapter == "06_invariant_graphs":
        cfg = config_for(chapter, profile)
        yield (chapter, f"graphvae-{cfg.source}-s{seed}", cfg.model(), cfg.train(seed),
               DataSpec("molecules", cfg, data_dir, seed), "graphs")
    elif chapter == "07_invariant_rotation":
        cfg = config_for(chapter, profile)
        spec = DataSpec("mnist", cfg, data_dir, seed)
        for kind, name in (("gcnn", f"gcnn_c{cfg.N}"), ("cnn", "cnn_aug")):
            yield chapter, name, cfg.model(kind), cfg.train(seed, kind), spec, "labelled"


def training_plan(profile: str, seed: int = 0, data_dir: str | None = None, chapters: Sequence[str] | None = None,
                  extra: dict | None = None) -> list[Job]:
    """Every training the chapters of ``profile`` need, once each (a model shared by chapters is listed
    under the first), grouped by training data.  Builds each data set once to compute the cache keys.

    ``extra``: chapter parameters that change what is trained (chapter 5's ``{"n_seeds": 2}``, ``{"rows": "all"}``)."""
    from tvae_experiments.profiles import check_profile
    from tvae_experiments.train import cache_key

    check_profile(profile)
    chapters = PLANNED if chapters is None else [c for c in chapters if c in PLANNED]
    raw = [r for c in chapters for r in _raw_jobs(c, profile, seed, data_dir, dict(extra or {}))]
    first: dict[DataSpec, int] = {}
    for r in raw:
        first.setdefault(r[4], len(first))
    raw.sort(key=lambda r: first[r[4]])  # stable: chapter order within a data set; one data set in memory at a time
    jobs: dict[tuple[str, str], Job] = {}
    for chapter, name, model, train, spec, part in raw:
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
