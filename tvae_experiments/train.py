"""Seeded training with a progress bar, a NaN guard and a weight cache keyed by config.

``fit(model_cfg, train_x, train_cfg)`` builds the model from its config, trains it by
maximising the ELBO (Eq 12) and returns a :class:`FitResult`.  The weights are cached
under ``cache_dir`` (default ``$TVAE_CACHE_DIR`` or ``<repo>/_cache/models``) in a file
named by a hash of (model config, training config, data fingerprint, cache format), so
re-running a notebook loads instead of retraining.  A cache file that cannot be read, was
written for another config, or does not fit the model is reported and retrained, never used.
Files are written atomically (temporary file + ``os.replace``).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from tvae_core.checks import check_choice, check_int
from tvae_experiments.files import atomic_file
from tvae_experiments.files import repo_root
from tvae_core.models import ModelConfig, TVAE, VAE, build_model
from tvae_experiments.device import resolve_device

__all__ = ["TrainConfig", "FitResult", "TrainingDiverged", "fit", "evaluate", "cache_key", "default_cache_dir",
           "cache_path", "load_cached", "save_cached", "make_optimizer", "optimizer_step", "check_finite"]

CACHE_FORMAT = 1
OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class TrainConfig:
    """How to train (A.1): the defaults are the paper's torus-TVAE optimiser."""

    epochs: int = 100          # passes over the training set (A.1: 100)
    batch_size: int = 128      # A.1: 128 images (torus model); 8 sequences (capsule models)
    optimizer: str = "sgd"     # "sgd" (paper) | "adam"
    lr: float = 1e-3           # A.1: 1e-3 (torus), 1e-4 (capsules)
    momentum: float = 0.9      # SGD momentum (A.1)
    seed: int = 0              # seeds init, shuffling and the reparameterisation noise
    grad_clip: float | None = None  # clip the global gradient norm (None: off)
    steps: int | None = None   # if set: exactly this many optimiser steps (overrides epochs)
    kl_warmup: int = 0         # KL weight rises linearly 0 -> 1 over this many steps (0: off, the paper)
    coherence_warmup: int = 0  # TVAE with temporal W: frame-only window for the first half of these
                               # steps, then blended linearly into Eq 9's window (0: off, the paper)

    def __post_init__(self) -> None:
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_int("epochs", self.epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        if self.steps is not None:
            check_int("steps", self.steps, minimum=1)
        check_int("kl_warmup", self.kl_warmup, minimum=0)
        check_int("coherence_warmup", self.coherence_warmup, minimum=0)

    def to_dict(self) -> dict:
        """The fields that determine the weights; the warm-ups only when on, so keys of models
        trained before they existed are unchanged."""
        d = asdict(self)
        for late in ("kl_warmup", "coherence_warmup"):
            if not d[late]:
                d.pop(late)
        return d


def coherence_at(step: int, warmup: int) -> float:
    """The coherence weight ``alpha`` of :meth:`TVAE.pooled` at ``step``: 0 for the first
    ``warmup // 2`` steps, then linear to 1 at ``warmup`` (1 throughout when ``warmup = 0``)."""
    if not warmup:
        return 1.0
    hold = warmup // 2
    return min(1.0, max(0.0, (step - hold) / max(warmup - hold, 1)))


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step."""


@dataclass
class FitResult:
    """A trained (or cache-loaded) model, shared by :func:`fit` and the other trainers
    (:func:`~tvae_experiments.graph_train.fit_graph_vae`, :func:`~tvae_experiments.supervised.fit_classifier`)."""

    model: nn.Module
    history: list[dict] = field(default_factory=list)  # one dict of means per epoch
    seconds: float = 0.0        # training wall time (of the run that produced the weights)
    from_cache: bool = False
    path: Path | None = None


def default_cache_dir() -> Path:
    env = os.environ.get("TVAE_CACHE_DIR")
    return Path(env) if env else repo_root() / "_cache" / "models"


def cache_key(model_cfg: ModelConfig, train_cfg: TrainConfig, data_id: str) -> str:
    """SHA-256 over everything that determines the trained weights."""
    blob = json.dumps({"model": model_cfg.to_dict(), "train": train_cfg.to_dict(), "data": data_id,
                       "format": CACHE_FORMAT}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def cache_path(name: str, key: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache_dir>/<name>-<key[:12]>.pt`` (default folder: :func:`default_cache_dir`)."""
    return Path(cache_dir or default_cache_dir()) / f"{name}-{key[:12]}.pt"


def load_cached(path: Path, key: str, build: Callable[[], nn.Module], device: torch.device,
                name: str) -> FitResult | None:
    """The cached weights at ``path`` in a fresh ``build()`` on ``device`` (eval mode), or None.

    A file written for another key, unreadable, or not fitting the model is reported and ignored."""
    if not path.exists():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob.get("key") != key:
            raise ValueError("it was written for a different configuration")
        model = build()
        model.load_state_dict(blob["state_dict"], strict=True)
    except Exception as e:  # corrupt, truncated, incompatible: never use it
        print(f"cache file {path} is unusable ({type(e).__name__}: {e}); retraining")
        return None
    print(f"{name}: loaded cached weights {path.name} (trained in {blob['seconds']:.0f} s)")
    return FitResult(model.to(device).eval(), blob["history"], blob["seconds"], True, path)


def save_cached(path: Path, key: str, model: nn.Module, history: list[dict], seconds: float) -> None:
    """Write the weights (on the CPU), history and training time atomically."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_file(path, "wb") as fh:
        torch.save({"key": key, "state_dict": state, "history": history, "seconds": seconds}, fh)


def make_optimizer(params, optimizer: str, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """``"sgd"`` (with momentum) or ``"adam"``."""
    check_choice("optimizer", optimizer, OPTIMIZERS)
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def optimizer_step(opt: torch.optim.Optimizer, loss: Tensor, model: nn.Module, grad_clip: float | None = None) -> None:
    """One step on ``loss``: zero the gradients, backpropagate, clip the global norm (if set), step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()


def check_finite(loss: Tensor, bar, message: Callable[[], str]) -> None:
    """The NaN guard: close the progress bar and raise :class:`TrainingDiverged` with ``message()``."""
    if not torch.isfinite(loss):
        bar.close()
        raise TrainingDiverged(message())


def fit(model_cfg: ModelConfig, train_x: Tensor, train_cfg: TrainConfig, *, data_id: str = "",
        device: str = "auto", cache_dir: str | os.PathLike | None = None, name: str = "model",
        use_cache: bool = True, progress: bool = True) -> FitResult:
    """Train (or load from cache) the model described by ``model_cfg`` on ``train_x``.

    Args:
        model_cfg: architecture; ``train_cfg``: optimiser, epochs, seed.
        train_x: ``(N, P)`` images or ``(N, S, P)`` sequences in ``[0, 1]``; or ``uint8`` in
            ``[0, 255]`` (4x less memory, e.g. the paper profile's 60,000 MNIST sequences: 2.5 GB
            instead of 10 GB), scaled to ``[0, 1]`` one batch at a time.
        data_id: identity of the training data for the cache key (e.g.
            :meth:`~tvae_experiments.data.mnist.ImageData.fingerprint`).
        device: ``"auto" | "cpu" | "cuda"``; the returned model is on that device.
        name: prefix of the cache file name (readable: ``<name>-<hash12>.pt``).
    Raises:
        TrainingDiverged: the loss became NaN/inf (message names epoch and step).
    """
    dev = resolve_device(device)
    key = cache_key(model_cfg, train_cfg, data_id)
    path = cache_path(name, key, cache_dir)
    if use_cache and (hit := load_cached(path, key, lambda: build_model(model_cfg), dev, name)) is not None:
        return hit

    torch.manual_seed(train_cfg.seed)
    model = build_model(model_cfg).to(dev)
    opt = make_optimizer(model.parameters(), train_cfg.optimizer, train_cfg.lr, train_cfg.momentum)
    g = torch.Generator().manual_seed(train_cfg.seed)
    x_all = train_x.to(dev)
    n, bs = len(x_all), train_cfg.batch_size
    if n < bs:
        raise ValueError(f"batch_size={bs} is larger than the training set ({n} examples)")
    steps_per_epoch = n // bs
    total = train_cfg.steps or train_cfg.epochs * steps_per_epoch
    n_epochs = -(-total // steps_per_epoch)
    history: list[dict] = []
    t0 = time.perf_counter()
    bar = tqdm(total=total, desc=f"training {name}", disable=not progress, unit="step", mininterval=1.0)
    step = 0
    model.train()
    for epoch in range(n_epochs):
        perm = torch.randperm(n, generator=g)[: steps_per_epoch * bs].to(dev)
        batches = perm.view(steps_per_epoch, bs)[: total - step]
        sums = torch.zeros(3, device=dev)
        for idx in batches:
            xb = x_all[idx]
            if train_cfg.coherence_warmup and isinstance(model, TVAE):
                model.coherence = coherence_at(step, train_cfg.coherence_warmup)
            parts = model(xb.float().div_(255) if xb.dtype == torch.uint8 else xb)
            # KL weight; at 1 the ELBO itself, so runs without a warm-up stay bit-identical to cached ones
            beta = min(1.0, step / train_cfg.kl_warmup) if train_cfg.kl_warmup else 1.0
            loss = -(parts.elbo if beta == 1.0 else parts.recon - beta * (parts.kl_z + parts.kl_u)).mean()
            check_finite(loss, bar, lambda: (
                f"{name}: loss became {loss.item()} at step {step} (epoch {epoch}); "
                f"recon={parts.recon.mean().item():.4g}, kl_z={parts.kl_z.mean().item():.4g}, "
                f"kl_u={parts.kl_u.mean().item():.4g}. Lower lr or enable grad_clip."))
            optimizer_step(opt, loss, model, train_cfg.grad_clip)
            sums += torch.stack([parts.recon.mean(), parts.kl_z.mean(), parts.kl_u.mean()]).detach()
            step += 1
            bar.update(1)
        recon, kl_z, kl_u = (sums / len(batches)).tolist()
        rec = {"epoch": epoch + 1, "elbo": recon - kl_z - kl_u, "recon": recon, "kl_z": kl_z, "kl_u": kl_u}
        if isinstance(model, TVAE):
            rec["mu"] = model.mu.mean().item()
        history.append(rec)
        bar.set_postfix(elbo=f"{rec['elbo']:.1f}", recon=f"{recon:.1f}", kl_z=f"{kl_z:.1f}", kl_u=f"{kl_u:.1f}")
    bar.close()
    seconds = time.perf_counter() - t0
    model.eval()
    if isinstance(model, TVAE):
        model.coherence = 1.0  # the trained model is the paper's (Eq 9) whatever the warm-up
    if use_cache:
        save_cached(path, key, model, history, seconds)
    return FitResult(model, history, seconds, False, path if use_cache else None)


@torch.no_grad()
def evaluate(model: TVAE | VAE, x: Tensor, batch_size: int = 500, seed: int = 0) -> dict[str, float]:
    """Mean one-sample ELBO parts on ``x`` (nats per example), with seeded noise."""
    torch.manual_seed(seed)
    dev = next(model.parameters()).device
    sums = torch.zeros(3)
    for xb in x.split(batch_size):
        p = model(xb.to(dev))
        sums += torch.stack([p.recon.sum(), p.kl_z.sum(), p.kl_u.sum()]).cpu()
    recon, kl_z, kl_u = (sums / len(x)).tolist()
    return {"elbo": recon - kl_z - kl_u, "recon": recon, "kl_z": kl_z, "kl_u": kl_u}
