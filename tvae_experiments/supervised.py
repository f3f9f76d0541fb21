"""Seeded supervised training of a classifier (cross-entropy), cached like :mod:`tvae_experiments.train`.

:func:`tvae_experiments.train.fit` maximises an ELBO; this is its counterpart for classifiers (used by
the rotated-MNIST chapter for the G-CNN and the plain CNN).  It shares ``train.py``'s machinery:
the cache folder (:func:`~tvae_experiments.train.default_cache_dir`), :class:`~tvae_experiments.train.TrainingDiverged`
for a NaN/inf loss, and atomic writes.  Weights are cached as ``<name>-<hash12>.pt``, the hash
covering (model config, training config, data identity, cache format); an unreadable or
mismatched file is reported and retrained, never used.

Determinism: parameters are initialised after ``torch.manual_seed(seed)``; shuffling and the
augmentation draw from one ``torch.Generator(seed)`` on the CPU, so a CPU run is repeatable.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from tvae_core.checks import check_choice, check_int
from tvae_experiments.device import resolve_device
from tvae_experiments.data.rotation import random_rotation
from tvae_experiments.train import FitResult, cache_path, check_finite, load_cached, make_optimizer, optimizer_step, save_cached

__all__ = ["ClassifierTrainConfig", "ClassifierFit", "AUGMENTATIONS", "fit_classifier", "batched", "accuracy"]

CACHE_FORMAT = 1
#: name -> ``augment(x_batch, generator) -> x_batch``, applied to every training batch
AUGMENTATIONS: dict[str, Callable[[Tensor, torch.Generator], Tensor] | None] = {
    "none": None, "rotation": random_rotation}


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """Optimiser, epochs and augmentation of :func:`fit_classifier`."""

    epochs: int = 10
    batch_size: int = 128          # appendix D: 128
    optimizer: str = "adam"        # "adam" | "sgd"
    lr: float = 1e-3               # appendix D: 0.01
    momentum: float = 0.9          # SGD only
    weight_decay: float = 0.0
    augment: str = "none"          # a key of AUGMENTATIONS
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_choice("optimizer", self.optimizer, ("adam", "sgd"))
        check_choice("augment", self.augment, tuple(AUGMENTATIONS))
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


ClassifierFit = FitResult
"""What :func:`fit_classifier` returns (the same record as :func:`~tvae_experiments.train.fit`)."""


def _key(model_cfg: dict, train_cfg: ClassifierTrainConfig, data_id: str) -> str:
    blob = json.dumps({"model": model_cfg, "train": asdict(train_cfg), "data": data_id, "format": CACHE_FORMAT},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def fit_classifier(build: Callable[[], nn.Module], model_cfg: dict, x: Tensor, y: Tensor,
                   train_cfg: ClassifierTrainConfig, *, data_id: str = "", device: str = "auto",
                   cache_dir: str | os.PathLike | None = None, name: str = "classifier",
                   use_cache: bool = True, progress: bool = True) -> ClassifierFit:
    """Train (or load) ``build()`` on ``(x, y)`` with cross-entropy; return it in eval mode.

    Args:
        build: makes a fresh model mapping ``x`` batches to logits ``(B, n_classes)``.
        model_cfg: a JSON-able description of the architecture (part of the cache key).
        x: ``(N, ...)`` inputs; ``y``: ``(N,)`` integer labels.
        train_cfg: optimiser, epochs, augmentation (``AUGMENTATIONS[augment]`` per batch), seed.
        data_id: identity of the training data for the cache key.
    Raises:
        TrainingDiverged: the loss became NaN/inf (message names epoch and step).
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)} labels")
    dev = resolve_device(device)
    key = _key(model_cfg, train_cfg, data_id)
    path = cache_path(name, key, cache_dir)
    if use_cache and (hit := load_cached(path, key, build, dev, name)) is not None:
        return hit

    torch.manual_seed(train_cfg.seed)
    model = build().to(dev)
    opt = make_optimizer(model.parameters(), train_cfg.optimizer, train_cfg.lr, train_cfg.momentum,
                         train_cfg.weight_decay)
    augment = AUGMENTATIONS[train_cfg.augment]
    g = torch.Generator().manual_seed(train_cfg.seed)
    n, bs = len(x), train_cfg.batch_size
    if n < bs:
        raise ValueError(f"batch_size={bs} is larger than the training set ({n} examples)")
    steps = n // bs
    history: list[dict] = []
    t0 = time.perf_counter()
    bar = tqdm(total=steps * train_cfg.epochs, desc=f"training {name}", disable=not progress, unit="step",
               mininterval=1.0)
    model.train()
    for epoch in range(train_cfg.epochs):
        perm = torch.randperm(n, generator=g)[: steps * bs].view(steps, bs)
        loss_sum, correct = 0.0, 0
        for step, idx in enumerate(perm):
            xb, yb = x[idx], y[idx]
            if augment is not None:
                xb = augment(xb, g)
            xb, yb = xb.to(dev), yb.to(dev)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            check_finite(loss, bar, lambda: (
                f"{name}: cross-entropy became {loss.item()} at step {step} of epoch {epoch}; "
                f"lower lr (now {train_cfg.lr}) or check the inputs for NaN/inf"))
            optimizer_step(opt, loss, model)
            loss_sum += loss.item()
            correct += int((logits.argmax(1) == yb).sum())
            bar.update(1)
        rec = {"epoch": epoch + 1, "loss": loss_sum / steps, "acc": correct / (steps * bs)}
        history.append(rec)
        bar.set_postfix(loss=f"{rec['loss']:.3f}", acc=f"{rec['acc']:.3f}")
    bar.close()
    seconds = time.perf_counter() - t0
    model.eval()
    if use_cache:
        save_cached(path, key, model, history, seconds)
    return ClassifierFit(model, history, seconds, False, path if use_cache else None)


@torch.no_grad()
def batched(fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int = 500, device: str | torch.device = "cpu") -> Tensor:
    """``fn`` applied to ``x`` in batches (no grad), concatenated on the CPU."""
    dev = resolve_device(device, verbose=False)
    return torch.cat([fn(xb.to(dev)).cpu() for xb in x.split(batch_size)])


def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 500) -> float:
    """Share of ``x`` that ``model`` (in eval mode) classifies as ``y``."""
    model.eval()
    dev = next(model.parameters()).device
    return float((batched(model, x, batch_size, dev).argmax(1) == y).float().mean())
