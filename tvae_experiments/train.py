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
(:class:`~tvae_experiments.weights.WeightCache`) in a file named by a hash of (model config,
training config, data identity, cache format), so re-running a notebook loads instead of
retraining.  :func:`fit` is the bookkeeping around one plain loop, :func:`train_loop`: the cache,
the run context (:class:`~tvae_experiments.run.RunContext`: dry run, progress sink, the record of
models used) and the dry-run measurements.

Determinism: parameters are initialised after ``torch.manual_seed(seed)``; shuffling and the
augmentation draw from one ``torch.Generator(seed)`` on the CPU, so a CPU run is repeatable.
"""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from tvae_core.checks import check_choice, check_int
from tvae_core.models import TVAE, VAE, ProjectedLinear, project_weights_
from tvae_experiments import dry_run
from tvae_experiments.data.rotation import random_rotation
from tvae_experiments.device import resolve_device
from tvae_experiments.run import RunContext, current
from tvae_experiments.weights import CACHE_FORMAT, WeightCache, cache_key, default_cache_dir

__all__ = ["TrainConfig", "AUGMENTATIONS", "LOSS_SCALES", "objective", "Buildable", "FitResult", "TrainingDiverged",
           "fit", "train_loop", "loss_scale", "evaluate", "batched", "accuracy", "cache_key", "default_cache_dir", "cache_path",
           "CACHE_FORMAT"]

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

    def __post_init__(self) -> None:
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("loss", self.loss, LOSS_SCALES)
        check_choice("augment", self.augment, tuple(AUGMENTATIONS))
        check_int("epochs", self.epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        if self.steps is not None:
            check_int("steps", self.steps, minimum=1)
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")

    def to_dict(self) -> dict:
        """The fields that determine the weights (every one: part of the cache key)."""
        return asdict(self)

    def total_steps(self, n: int) -> int:
        """Optimiser steps of a full training on ``n`` examples: ``steps``, else ``epochs`` passes."""
        return self.steps or self.epochs * (n // self.batch_size)


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


def cache_path(name: str, key: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache_dir>/<name>-<key[:12]>.pt`` (default folder: :func:`default_cache_dir`)."""
    return WeightCache(cache_dir).path(name, key)


def _optimizer(params: Iterable[Tensor], cfg: TrainConfig, capturable: bool = False) -> torch.optim.Optimizer:
    """The optimiser of ``cfg`` over ``params`` (a model's, or an ensemble's stacked tensors: both are
    element-wise, so one optimiser over K stacked models is K optimisers).  ``capturable``: Adam keeps its
    step count on the device, so its step can be captured in a CUDA graph (SGD can be as it is)."""
    params = list(params)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    # fused: one kernel per step, the same maths as torch's loop (benchmarks/bench_train_step.py measures the gain)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True, capturable=capturable)


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
    return loss_scale(loss, batch[0], train_cfg.loss, model), terms


def loss_scale(loss: Tensor, x: Tensor, scale: str, model: nn.Module) -> Tensor:
    """``loss`` as minimised under ``TrainConfig.loss == scale``: unchanged for ``"sequence"``, divided by the
    ``S`` frames of ``x: (B, S, P)`` for ``"frame"`` (a TVAE / VAE only; anything else raises)."""
    if scale != "frame":
        return loss
    if not isinstance(model, (TVAE, VAE)) or x.ndim != 3:
        raise ValueError(f"loss='frame' divides a sequence model's loss by its S frames; it needs a TVAE/VAE "
                         f"on (B, S, P) sequences, got {type(model).__name__} on {tuple(x.shape)}")
    return loss / x.shape[1]


def fit(model_cfg: Buildable, data: Tensor | Sequence[Tensor], train_cfg: TrainConfig, *, data_id: str = "",
        device: str = "auto", cache_dir: str | os.PathLike | None = None, name: str = "model",
        use_cache: bool = True, progress: bool = True, ctx: RunContext | None = None) -> FitResult:
    """Train (or load from the weight cache) ``model_cfg.build()`` on ``data`` by minimising its ``training_loss``.

    Args:
        model_cfg: architecture (:class:`Buildable`); ``train_cfg``: optimiser, steps, augmentation, seed,
            loss scale (:func:`objective`).
        data: one tensor or a tuple of tensors of equal length along dim 0, batched jointly; each
            batch is passed as ``model.training_loss(*batch)``.  A ``uint8`` first tensor (values
            in ``[0, 255]``; 4x less memory, e.g. the paper profile's 60,000 MNIST sequences:
            2.5 GB instead of 10 GB) is scaled to ``[0, 1]`` one batch at a time; then
            ``AUGMENTATIONS[train_cfg.augment]`` is applied to it.
        data_id: identity of the training data for the cache key (e.g.
            :meth:`~tvae_experiments.data.mnist.ImageData.fingerprint`).
        device: ``"auto" | "cpu" | "cuda"``; the returned model is on that device, in eval mode.
        cache_dir: the weight cache folder (default: the run context's cache).
        name: prefix of the cache file name (readable: ``<name>-<hash12>.pt``).
        use_cache: False trains without reading or writing the cache (the toy models, seconds each).
        ctx: the run context (default :func:`~tvae_experiments.run.current`): in a dry run the training stops
            after ``ctx.dry_run_steps`` steps, never touches the cache, and its cost is recorded in ``ctx.dry_runs``.
    Raises:
        TrainingDiverged: the loss became NaN/inf (the message names step, epoch and the terms).
    """
    ctx = ctx if ctx is not None else current()
    tensors = _checked_tensors(data, train_cfg.batch_size)
    dev = resolve_device(device)
    cache = WeightCache(cache_dir) if cache_dir is not None else ctx.cache
    key = cache_key(model_cfg, train_cfg, data_id)
    dry = ctx.dry_run_steps
    if use_cache and not dry and (hit := cache.load(name, key, model_cfg.build)) is not None:
        model, entry = hit
        print(f"{name}: loaded cached weights {cache.path(name, key).name} (trained in {entry['seconds']:.0f} s)")
        ctx.used.append({"name": name, "key": key[:12], "from_cache": True})
        return FitResult(model.to(dev).eval(), entry["history"], entry["seconds"], True, cache.path(name, key))

    n = len(tensors[0])
    full_steps = train_cfg.total_steps(n)
    total = min(full_steps, dry) if dry else full_steps
    torch.manual_seed(train_cfg.seed)
    model = model_cfg.build().to(dev)
    desc = f"training {name}" + (f" (dry run of {full_steps:,})" if dry else "")
    t0 = time.perf_counter()
    with _progress_bar(total, desc, progress, ctx.progress_file) as bar:
        history, timing = train_loop(model, tensors, train_cfg, total, bar=bar, name=name, timed=bool(dry))
    seconds = time.perf_counter() - t0
    if dry:
        _record_dry_run(ctx, name, key, model, train_cfg, n, full_steps, timing, dev, use_cache)
        return FitResult(model, history, seconds, False, None)
    if not use_cache:
        return FitResult(model, history, seconds, False, None)
    path = cache.save(name, key, model, history, seconds)
    ctx.used.append({"name": name, "key": key[:12], "from_cache": False})
    return FitResult(model, history, seconds, False, path)


def _checked_tensors(data: Tensor | Sequence[Tensor], batch_size: int) -> tuple[Tensor, ...]:
    """``data`` as a tuple of tensors, equally long along dim 0 and at least one batch long."""
    tensors = (data,) if isinstance(data, Tensor) else tuple(data)
    n = len(tensors[0])
    if any(len(t) != n for t in tensors):
        raise ValueError(f"the tensors of data must be equally long along dim 0, got {[len(t) for t in tensors]}")
    if n < batch_size:
        raise ValueError(f"batch_size={batch_size} is larger than the training set ({n} examples)")
    return tensors


@dataclass
class StepTiming:
    """What a timed :func:`train_loop` measured: seconds of each step and FLOPs of the first."""

    step_times: list[float] = field(default_factory=list)
    flops: int | None = None


def train_loop(model: nn.Module, tensors: Sequence[Tensor], train_cfg: TrainConfig, total: int, *, bar=None,
               name: str = "model", timed: bool = False) -> tuple[list[dict], StepTiming]:
    """``total`` optimiser steps on ``model`` (in place), minimising :func:`objective` over shuffled batches of
    ``tensors``; returns the history (per epoch: ``epoch``, ``step`` and the mean of every logged term) and, when
    ``timed``, the seconds of every step and the FLOPs of the first.

    Each epoch draws one permutation from a ``torch.Generator(train_cfg.seed)`` (the augmentation draws from it
    too), so a CPU run is repeatable; models with :class:`~tvae_core.models.ProjectedLinear` layers (A.8) are
    projected after every step.  Raises :class:`TrainingDiverged` on a non-finite loss."""
    dev = next(model.parameters()).device
    opt = _optimizer(model.parameters(), train_cfg)
    augment = AUGMENTATIONS[train_cfg.augment]
    g = torch.Generator().manual_seed(train_cfg.seed)
    tensors = tuple(t.to(dev) for t in tensors)
    n, bs = len(tensors[0]), train_cfg.batch_size
    per_epoch = n // bs
    pgd = any(isinstance(m, ProjectedLinear) for m in model.modules())  # A.8; looked up once, not per step
    history, timing, step, epoch = [], StepTiming(), 0, 0
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
            with _flop_counter(timed and step == 0) as counter:  # a timed run's first step: count FLOPs
                loss, terms = objective(model, batch, train_cfg)
                _check_finite(loss, terms, name, step, epoch, train_cfg)
                opt.zero_grad(set_to_none=True)
                loss.backward()
            if counter is not None:
                timing.flops = counter.get_total_flops()
            if train_cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
            opt.step()
            if pgd:
                project_weights_(model)  # A.8: rows back onto the unit sphere after every step
            if timed:
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                timing.step_times.append(time.perf_counter() - ts)
            for k, v in terms.items():
                sums[k] = sums[k] + v.detach() if k in sums else v.detach()
            step += 1
            if bar is not None:
                bar.update(1)
        epoch += 1
        means = dict(zip(sums, (torch.stack(list(sums.values())) / len(batches)).tolist()))
        history.append({"epoch": epoch, "step": step, **means})
        if bar is not None:
            bar.set_postfix({k: f"{v:.3g}" for k, v in means.items()})
    model.eval()
    return history, timing


def _check_finite(loss: Tensor, terms: dict[str, Tensor], name: str, step: int, epoch: int,
                  train_cfg: TrainConfig) -> None:
    """Raise :class:`TrainingDiverged` naming the step, the epoch and the logged terms if ``loss`` is NaN/inf."""
    if not torch.isfinite(loss):
        logged = ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
        raise TrainingDiverged(f"{name}: loss became {loss.item()} at step {step} (epoch {epoch}); {logged}. Lower lr "
                               f"(now {train_cfg.lr}), set grad_clip or check the data for NaN/inf.")


@contextlib.contextmanager
def _progress_bar(total: int, desc: str, enabled: bool, target: str | None):
    """A tqdm bar over ``total`` steps, closed on exit: in the notebook / terminal, or appended to the file
    ``target`` (the run context's progress sink, which the book runner streams to its terminal)."""
    if not (enabled and target):
        bar = tqdm(total=total, desc=desc, disable=not enabled, unit="step", mininterval=1.0)
        try:
            yield bar
        finally:
            bar.close()
        return
    from tqdm.std import tqdm as text_tqdm  # tqdm.auto in a kernel is a widget that ignores `file`

    with open(target, "a", encoding="utf-8", buffering=1) as fh:
        bar = text_tqdm(total=total, desc=desc, unit="step", file=fh, mininterval=2.0, ascii=True, ncols=100)
        try:
            yield bar
        finally:
            bar.close()
            fh.write("\n")


@contextlib.contextmanager
def _flop_counter(active: bool):
    """``torch.utils.flop_counter.FlopCounterMode`` when ``active`` (yields it), else a no-op (yields None)."""
    if not active:
        yield None
        return
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        yield counter


def _record_dry_run(ctx: RunContext, name: str, key: str, model: nn.Module, train_cfg: TrainConfig, n: int,
                    full_steps: int, timing: StepTiming, dev: torch.device, cacheable: bool) -> None:
    """One entry of ``ctx.dry_runs``: what the full training of this model costs."""
    timed = sorted(timing.step_times[1:] or timing.step_times)  # the first step (FLOP counting, warm-up) is left out
    per_step = timed[len(timed) // 2]
    rec = dict(
        name=name, key=key[:12], cached=cacheable, device=str(dev), parameters=sum(p.numel() for p in model.parameters()),
        n_train=n, batch_size=train_cfg.batch_size, steps_full=full_steps, steps_run=len(timing.step_times),
        s_per_step=round(per_step, 5), flops_per_step=timing.flops, est_hours_here=round(per_step * full_steps / 3600, 3),
        peak_rss_mb=round(dry_run.peak_rss_mb(), 1),
        peak_cuda_mb=round(torch.cuda.max_memory_allocated(dev) / 2**20, 1) if dev.type == "cuda" else None)
    ctx.dry_runs.append(rec)
    print(f"{name}: dry run, {rec['steps_run']} of {full_steps:,} steps; {rec['parameters']:,} parameters, "
          f"{per_step * 1e3:.1f} ms/step here (full run ~{rec['est_hours_here']:.2f} h here), "
          f"{(timing.flops or 0) / 1e9:.2f} GFLOP/step, peak RSS {rec['peak_rss_mb']:,.0f} MiB")


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
