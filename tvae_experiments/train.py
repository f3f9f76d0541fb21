"""The one training loop: seeded, a progress bar, a NaN guard and a weight cache keyed by config.

``fit(model_cfg, data, train_cfg)`` trains every model of the book -- the TVAE / VAE (maximising
the ELBO, Eq 12), the graph VAE of chapter 6 and the classifiers of chapter 7 -- and returns a
:class:`FitResult`.  What a model needs to be trained:

* ``model_cfg.build() -> nn.Module`` (a fresh model) and ``model_cfg.to_dict() -> dict`` (its
  JSON-able architecture, part of the cache key);
* ``model.training_loss(*batch) -> (loss, terms)``: the scalar to minimise on one batch, and
  named per-batch means (``{"elbo": .., "kl_z": ..}``, ``{"cross_entropy": .., "acc": ..}``)
  that go into the per-epoch history, the progress bar and the NaN message.

``data`` is one tensor (``x``) or a tuple of tensors indexed jointly along dim 0 (``(X, E)``,
``(X, E, mask)``, ``(x, y)``); every batch is passed on in that order.  The weights are cached
under ``cache_dir`` (default ``$TVAE_CACHE_DIR`` or ``<repo>/_cache/models``) in a file named by
a hash of (model config, training config, data identity, cache format), so re-running a
notebook loads instead of retraining.  A cache file that cannot be read, was written for another
config, or does not fit the model is reported and retrained, never used.  Files are written
atomically (temporary file + ``os.replace``).

Determinism: parameters are initialised after ``torch.manual_seed(seed)``; shuffling and the
augmentation draw from one ``torch.Generator(seed)`` on the CPU, so a CPU run is repeatable.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from tvae_core.checks import check_choice, check_int, config_dict
from tvae_core.models import TVAE, VAE, ProjectedLinear, project_weights_
from tvae_experiments import dry_run
from tvae_experiments.data.rotation import random_rotation
from tvae_experiments.device import resolve_device
from tvae_experiments.files import PROGRESS_ENV, atomic_file, repo_root

__all__ = ["TrainConfig", "AUGMENTATIONS", "LOSS_SCALES", "objective", "Buildable", "FitResult", "TrainingDiverged",
           "fit", "evaluate", "batched", "accuracy", "cache_key", "default_cache_dir", "cache_path"]

CACHE_FORMAT = 1
OPTIMIZERS = ("sgd", "adam")
#: how the minimised loss of a sequence model is scaled: per sequence (Eq 12) or per frame (the authors' code)
LOSS_SCALES = ("sequence", "frame")
#: name -> ``augment(first_tensor_of_batch, generator) -> same shape``, applied to every training batch
AUGMENTATIONS: dict[str, Callable[[Tensor, torch.Generator], Tensor] | None] = {
    "none": None, "rotation": random_rotation}


@dataclass(frozen=True)
class TrainConfig:
    """How to train (A.1): the defaults are the paper's torus-TVAE optimiser."""

    epochs: int = 100          # passes over the training set (A.1: 100)
    batch_size: int = 128      # A.1: 128 images (torus model); 8 sequences (capsule models); appendix C/D: 32/128
    optimizer: str = "sgd"     # "sgd" (paper) | "adam"
    lr: float = 1e-3           # A.1: 1e-3 (torus), 1e-4 (capsules); appendix D: 0.01
    momentum: float = 0.9      # SGD momentum (A.1)
    seed: int = 0              # seeds init, shuffling, augmentation and the reparameterisation noise
    grad_clip: float | None = None  # clip the global gradient norm (None: off)
    steps: int | None = None   # if set: exactly this many optimiser steps (overrides epochs)
    weight_decay: float = 0.0  # L2 penalty of the optimiser (0: off)
    augment: str = "none"      # a key of AUGMENTATIONS, applied to the first tensor of every batch
    loss: str = "sequence"     # sequence models: "sequence" (minus the ELBO of Eq 12 per sequence, batch mean) |
                               # "frame" (divided by the S frames: the authors' code, S x smaller gradients)
    adam: str = "fused"        # Adam's implementation: "fused" (one kernel per step; measured x1.12 TVAE, x1.15 VAE
                               # per step on 2 CPU cores, benchmarks/bench_train_step.py) | "loop" (torch's CPU
                               # default, the models cached before 2026-12-02). Same maths, last-bit differences.

    def __post_init__(self) -> None:
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("loss", self.loss, LOSS_SCALES)
        check_choice("augment", self.augment, tuple(AUGMENTATIONS))
        check_choice("adam", self.adam, ADAM_IMPLEMENTATIONS)
        check_int("epochs", self.epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        if self.steps is not None:
            check_int("steps", self.steps, minimum=1)
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")

    def to_dict(self) -> dict:
        """The fields that determine the weights.  Fields added after the first cached models
        (:data:`_LATE_FIELDS`) are left out at their defaults, so those models keep their keys; ``adam``
        only counts when the optimiser is Adam (SGD models keep their keys)."""
        d = config_dict(self, _LATE_FIELDS)
        if self.optimizer != "adam":
            d.pop("adam", None)
        return d


_LATE_FIELDS = {"weight_decay": 0.0, "augment": "none", "loss": "sequence", "adam": "loop"}
ADAM_IMPLEMENTATIONS = ("fused", "loop")


USED: list[dict] = []
"""Every cached model :func:`fit` trained or loaded in this process (``name``, ``key[:12]``, ``from_cache``);
:class:`~tvae_experiments.claims.ClaimReport` writes it into the chapter's metrics (``"models"``)."""


class Buildable(Protocol):
    """What :func:`fit` needs of a model config (``ModelConfig``, ``GraphVAEConfig``, ``GCNNConfig``)."""

    def build(self) -> nn.Module: ...  # a fresh model with ``training_loss(*batch) -> (loss, terms)``

    def to_dict(self) -> dict: ...     # JSON-able architecture, for the cache key


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the logged terms."""


@dataclass
class FitResult:
    """A trained (or cache-loaded) model."""

    model: nn.Module
    history: list[dict] = field(default_factory=list)  # per epoch: "epoch", "step" and the mean of every term
    seconds: float = 0.0        # training wall time (of the run that produced the weights)
    from_cache: bool = False
    path: Path | None = None


def default_cache_dir() -> Path:
    env = os.environ.get("TVAE_CACHE_DIR")
    return Path(env) if env else repo_root() / "_cache" / "models"


def cache_key(model_cfg: Buildable, train_cfg: TrainConfig, data_id: str) -> str:
    """SHA-256 over everything that determines the trained weights."""
    blob = json.dumps({"model": model_cfg.to_dict(), "train": train_cfg.to_dict(), "data": data_id,
                       "format": CACHE_FORMAT}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def cache_path(name: str, key: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache_dir>/<name>-<key[:12]>.pt`` (default folder: :func:`default_cache_dir`)."""
    return Path(cache_dir or default_cache_dir()) / f"{name}-{key[:12]}.pt"


def _load_cached(path: Path, key: str, build: Callable[[], nn.Module], device: torch.device,
                 name: str) -> FitResult | None:
    """The cached weights at ``path`` in a fresh ``build()`` on ``device`` (eval mode), or None.

    A file written for another key, unreadable, or not fitting the model is reported and ignored."""
    if not path.exists():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob.get("key") != key:
            raise ValueError("it was written for a different configuration")
        missing = [f for f in ("state_dict", "history", "seconds") if f not in blob]
        if missing:
            raise ValueError(f"it lacks the field(s) {', '.join(missing)}")
        model = build()
        model.load_state_dict(blob["state_dict"], strict=True)
    except Exception as e:  # corrupt, truncated, incomplete, incompatible: never use it
        print(f"cache file {path} is unusable ({type(e).__name__}: {e}); retraining")
        return None
    print(f"{name}: loaded cached weights {path.name} (trained in {blob['seconds']:.0f} s)")
    return FitResult(model.to(device).eval(), blob["history"], blob["seconds"], True, path)


def _save_cached(path: Path, key: str, model: nn.Module, history: list[dict], seconds: float) -> None:
    """Write the weights (on the CPU), history and training time atomically."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_file(path, "wb") as fh:
        torch.save({"key": key, "state_dict": state, "history": history, "seconds": seconds}, fh)


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=cfg.adam == "fused")


def as_float(x: Tensor) -> Tensor:
    """``uint8`` in ``[0, 255]`` -> float32 in ``[0, 1]``; anything else unchanged."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x


def objective(model: nn.Module, batch: Sequence[Tensor], train_cfg: TrainConfig) -> tuple[Tensor, dict[str, Tensor]]:
    """The scalar :func:`fit` minimises on one batch, and the logged terms.

    ``model.training_loss(*batch)`` (for the TVAE / VAE: minus the batch-mean ELBO of Eq 12, a sum
    over the ``S`` frames of each sequence); with ``train_cfg.loss == "frame"`` divided by ``S``,
    as the authors' code does (it averages the negative ELBO over ``batch x S`` frames).  The
    logged terms stay per sequence either way.  ``"frame"`` needs a TVAE / VAE on sequences
    ``(B, S, P)``; anything else raises."""
    loss, terms = model.training_loss(*batch)
    if train_cfg.loss == "frame":
        x = batch[0]
        if not isinstance(model, (TVAE, VAE)) or x.ndim != 3:
            raise ValueError(f"loss='frame' divides a sequence model's loss by its S frames; it needs a TVAE/VAE "
                             f"on (B, S, P) sequences, got {type(model).__name__} on {tuple(x.shape)}")
        loss = loss / x.shape[1]
    return loss, terms


def fit(model_cfg: Buildable, data: Tensor | Sequence[Tensor], train_cfg: TrainConfig, *, data_id: str = "",
        device: str = "auto", cache_dir: str | os.PathLike | None = None, name: str = "model",
        use_cache: bool = True, progress: bool = True) -> FitResult:
    """Train (or load from cache) ``model_cfg.build()`` on ``data`` by minimising its ``training_loss``.

    Args:
        model_cfg: architecture (:class:`Buildable`); ``train_cfg``: optimiser, epochs, augmentation, seed,
            loss scale (:func:`objective`).
        data: one tensor or a tuple of tensors of equal length along dim 0, batched jointly; each
            batch is passed as ``model.training_loss(*batch)``.  A ``uint8`` first tensor (values
            in ``[0, 255]``; 4x less memory, e.g. the paper profile's 60,000 MNIST sequences:
            2.5 GB instead of 10 GB) is scaled to ``[0, 1]`` one batch at a time; then
            ``AUGMENTATIONS[train_cfg.augment]`` is applied to it.
        data_id: identity of the training data for the cache key (e.g.
            :meth:`~tvae_experiments.data.mnist.ImageData.fingerprint`).
        device: ``"auto" | "cpu" | "cuda"``; the returned model is on that device, in eval mode.
        name: prefix of the cache file name (readable: ``<name>-<hash12>.pt``).
    Raises:
        TrainingDiverged: the loss became NaN/inf (the message names step, epoch and the terms).
    """
    tensors = (data,) if isinstance(data, Tensor) else tuple(data)
    n = len(tensors[0])
    if any(len(t) != n for t in tensors):
        raise ValueError(f"the tensors of data must be equally long along dim 0, got {[len(t) for t in tensors]}")
    bs = train_cfg.batch_size
    if n < bs:
        raise ValueError(f"batch_size={bs} is larger than the training set ({n} examples)")
    dev = resolve_device(device)
    key = cache_key(model_cfg, train_cfg, data_id)
    path = cache_path(name, key, cache_dir)
    dry_steps = dry_run.steps()
    cacheable = use_cache  # a model of the training plan (tvae_experiments.plan), whether or not this is a dry run
    if dry_steps:  # a dry run never reads or writes the cache (module doc of tvae_experiments.dry_run)
        use_cache = False
    if use_cache and (hit := _load_cached(path, key, model_cfg.build, dev, name)) is not None:
        USED.append({"name": name, "key": key[:12], "from_cache": True})
        return hit

    torch.manual_seed(train_cfg.seed)
    model = model_cfg.build().to(dev)
    opt = _optimizer(model, train_cfg)
    augment = AUGMENTATIONS[train_cfg.augment]
    g = torch.Generator().manual_seed(train_cfg.seed)
    tensors = tuple(t.to(dev) for t in tensors)
    per_epoch = n // bs
    full_steps = train_cfg.steps or train_cfg.epochs * per_epoch
    total = min(full_steps, dry_steps) if dry_steps else full_steps
    history: list[dict] = []
    step_times: list[float] = []
    flops = None
    t0 = time.perf_counter()
    bar = _progress_bar(total, f"training {name}" + (f" (dry run of {full_steps:,})" if dry_steps else ""), progress)
    step, epoch = 0, 0
    pgd = any(isinstance(m, ProjectedLinear) for m in model.modules())  # A.8; found once: a module walk per step
    # costs ~3% of a toy fit (and projecting here would change the last bits of already-cached PGD models)
    model.train()
    while step < total:
        batches = torch.randperm(n, generator=g)[: per_epoch * bs].to(dev).view(per_epoch, bs)[: total - step]
        sums: dict[str, Tensor] = {}
        for idx in batches:
            ts = time.perf_counter()
            batch = [t[idx] for t in tensors]
            batch[0] = as_float(batch[0])
            if augment is not None:
                batch[0] = augment(batch[0], g)
            with _flop_counter(dry_steps and step == 0) as counter:  # a dry run's first step: count FLOPs
                loss, terms = objective(model, batch, train_cfg)
                if not torch.isfinite(loss):
                    bar.close()
                    logged = ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
                    raise TrainingDiverged(f"{name}: loss became {loss.item()} at step {step} (epoch {epoch}); "
                                           f"{logged}. Lower lr (now {train_cfg.lr}), set grad_clip or check the "
                                           f"data for NaN/inf.")
                opt.zero_grad(set_to_none=True)
                loss.backward()
            if counter is not None:
                flops = counter.get_total_flops()
            if train_cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
            opt.step()
            if pgd:
                project_weights_(model)  # A.8: rows back onto the unit sphere after every step
            if dry_steps:
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                step_times.append(time.perf_counter() - ts)
            for k, v in terms.items():
                sums[k] = sums[k] + v.detach() if k in sums else v.detach()
            step += 1
            bar.update(1)
        epoch += 1
        means = dict(zip(sums, (torch.stack(list(sums.values())) / len(batches)).tolist()))
        history.append({"epoch": epoch, "step": step, **means})
        bar.set_postfix({k: f"{v:.3g}" for k, v in means.items()})
    bar.close()
    seconds = time.perf_counter() - t0
    model.eval()
    if dry_steps:
        _record_dry_run(name, key, model, train_cfg, n, full_steps, step_times, flops, dev, cacheable)
    if use_cache:
        _save_cached(path, key, model, history, seconds)
        USED.append({"name": name, "key": key[:12], "from_cache": False})
    return FitResult(model, history, seconds, False, path if use_cache else None)


def _progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar over ``total`` steps: in the notebook / terminal, or in ``$TVAE_PROGRESS_FILE``."""
    target = os.environ.get(PROGRESS_ENV)
    if enabled and target:
        from tqdm.std import tqdm as text_tqdm  # tqdm.auto in a kernel is a widget that ignores `file`

        fh = open(target, "a", encoding="utf-8", buffering=1)  # closed with the bar (below)
        bar = text_tqdm(total=total, desc=desc, unit="step", file=fh, mininterval=2.0, ascii=True, ncols=100)
        close = bar.close

        def close_both() -> None:
            close()
            if not fh.closed:
                fh.write("\n")
                fh.close()

        bar.close = close_both
        return bar
    return tqdm(total=total, desc=desc, disable=not enabled, unit="step", mininterval=1.0)


@contextlib.contextmanager
def _flop_counter(active: bool):
    """``torch.utils.flop_counter.FlopCounterMode`` when ``active`` (yields it), else a no-op (yields None)."""
    if not active:
        yield None
        return
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        yield counter


def _record_dry_run(name: str, key: str, model: nn.Module, train_cfg: TrainConfig, n: int, full_steps: int,
                    step_times: list[float], flops: int | None, dev: torch.device, cacheable: bool) -> None:
    """One :data:`tvae_experiments.dry_run.RECORDS` entry: what the full training of this model costs."""
    timed = sorted(step_times[1:] or step_times)  # the first step (FLOP counting, warm-up) is left out
    per_step = timed[len(timed) // 2]
    rec = dry_run.record(
        name=name, key=key[:12], cached=cacheable, device=str(dev), parameters=sum(p.numel() for p in model.parameters()),
        n_train=n, batch_size=train_cfg.batch_size, steps_full=full_steps, steps_run=len(step_times),
        s_per_step=round(per_step, 5), flops_per_step=flops, est_hours_here=round(per_step * full_steps / 3600, 3),
        peak_rss_mb=round(dry_run.peak_rss_mb(), 1),
        peak_cuda_mb=round(torch.cuda.max_memory_allocated(dev) / 2**20, 1) if dev.type == "cuda" else None)
    print(f"{name}: dry run, {rec['steps_run']} of {full_steps:,} steps; {rec['parameters']:,} parameters, "
          f"{per_step * 1e3:.1f} ms/step here (full run ~{rec['est_hours_here']:.2f} h here), "
          f"{(flops or 0) / 1e9:.2f} GFLOP/step, peak RSS {rec['peak_rss_mb']:,.0f} MiB")


@torch.no_grad()
def evaluate(model: TVAE | VAE, x: Tensor, batch_size: int = 500, seed: int = 0) -> dict[str, float]:
    """Mean one-sample ELBO parts on ``x`` (nats per example), with seeded noise; ``uint8`` ``x``
    is scaled to ``[0, 1]`` one batch at a time, as in :func:`fit`."""
    torch.manual_seed(seed)
    dev = next(model.parameters()).device
    sums = torch.zeros(3)
    for xb in x.split(batch_size):
        p = model(as_float(xb.to(dev)))
        sums += torch.stack([p.recon.sum(), p.kl_z.sum(), p.kl_u.sum()]).cpu()
    recon, kl_z, kl_u = (sums / len(x)).tolist()
    if not torch.isfinite(sums).all():
        raise FloatingPointError(f"evaluation gave non-finite ELBO terms (recon={recon}, kl_z={kl_z}, kl_u={kl_u}) "
                                 f"on {len(x)} examples: check the inputs and the model's weights for NaN/inf")
    return {"elbo": recon - kl_z - kl_u, "recon": recon, "kl_z": kl_z, "kl_u": kl_u}


@torch.no_grad()
def batched(fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int = 500, device: str | torch.device = "cpu") -> Tensor:
    """``fn`` applied to ``x`` in batches (no grad), concatenated on the CPU."""
    dev = resolve_device(device, verbose=False)
    return torch.cat([fn(xb.to(dev)).cpu() for xb in x.split(batch_size)])


def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 500) -> float:
    """Share of ``x`` that the classifier ``model`` (put in eval mode) assigns to ``y``."""
    model.eval()
    dev = next(model.parameters()).device
    return float((batched(model, x, batch_size, dev).argmax(1) == y).float().mean())
