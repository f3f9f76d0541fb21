"""Seeded training of the graph VAE (chapter 6) with :mod:`tvae_experiments.train`'s cache machinery.

``train.fit`` builds its models from a :class:`~tvae_core.models.ModelConfig` and feeds them a
single tensor; the graph VAE takes ``(X, E, mask)``.  ``fit_graph_vae`` keeps ``fit``'s
contract -- :class:`~tvae_experiments.train.TrainConfig`, weights cached in ``_cache/models`` under a
hash of (model config, training config, data fingerprint) by :func:`~tvae_experiments.train.cache_key`,
atomic writes, a tqdm bar, a NaN guard raising :class:`~tvae_experiments.train.TrainingDiverged` --
and returns the same :class:`~tvae_experiments.train.FitResult`.
"""
from __future__ import annotations

import os
import time

import torch
from torch import Tensor
from tqdm.auto import tqdm

from tvae_experiments.graphvae import GraphVAE, GraphVAEConfig
from tvae_experiments.device import resolve_device
from tvae_experiments.train import (FitResult, TrainConfig, cache_key, cache_path, check_finite, load_cached, make_optimizer,
                    optimizer_step, save_cached)

__all__ = ["fit_graph_vae", "evaluate_graph_vae"]


def fit_graph_vae(model_cfg: GraphVAEConfig, X: Tensor, E: Tensor, train_cfg: TrainConfig, *, mask: Tensor | None = None,
                  data_id: str = "", device: str = "auto", cache_dir: str | os.PathLike | None = None,
                  name: str = "graphvae", use_cache: bool = True, progress: bool = True) -> FitResult:
    """Train (or load) a :class:`GraphVAE` on one-hot graphs by maximising the ELBO.

    Args:
        X: ``(N, n, A)`` node types; ``E``: ``(N, n, n, B)`` edge types; ``mask``: ``(N, n)`` or
            ``None`` (the paper's setting: padding is a node type, every node is modelled).
        data_id: identity of the training data for the cache key
            (:meth:`~tvae_experiments.data.molecules.MoleculeGraphs.fingerprint`).
    Raises:
        TrainingDiverged: the loss became NaN/inf (message names the step and the ELBO terms).
    """
    dev = resolve_device(device)
    key = cache_key(model_cfg, train_cfg, f"graphvae|mask={mask is not None}|{data_id}")
    path = cache_path(name, key, cache_dir)
    if use_cache and (hit := load_cached(path, key, lambda: GraphVAE(model_cfg), dev, name)) is not None:
        return hit

    torch.manual_seed(train_cfg.seed)
    model = GraphVAE(model_cfg).to(dev)
    opt = make_optimizer(model.parameters(), train_cfg.optimizer, train_cfg.lr, train_cfg.momentum)
    g = torch.Generator().manual_seed(train_cfg.seed)
    X, E = X.to(dev), E.to(dev)
    M = None if mask is None else mask.to(dev)
    n, bs = len(X), train_cfg.batch_size
    if n < bs:
        raise ValueError(f"batch_size={bs} is larger than the training set ({n} graphs)")
    per_epoch = n // bs
    total = train_cfg.steps or train_cfg.epochs * per_epoch
    history: list[dict] = []
    t0 = time.perf_counter()
    bar = tqdm(total=total, desc=f"training {name}", disable=not progress, unit="step", mininterval=1.0)
    step, epoch = 0, 0
    model.train()
    while step < total:
        batches = torch.randperm(n, generator=g)[: per_epoch * bs].view(per_epoch, bs)[: total - step].to(dev)
        sums = torch.zeros(4, device=dev)
        for idx in batches:
            parts = model(X[idx], E[idx], None if M is None else M[idx])
            loss = -parts.elbo.mean()
            check_finite(loss, bar, lambda: (
                f"{name}: loss became {loss.item()} at step {step} (epoch {epoch}); "
                f"node_ll={parts.node_ll.mean().item():.4g}, edge_ll={parts.edge_ll.mean().item():.4g}, "
                f"kl={parts.kl.mean().item():.4g}. Lower lr or set grad_clip."))
            optimizer_step(opt, loss, model, train_cfg.grad_clip)
            sums += torch.stack([parts.elbo.mean(), parts.node_ll.mean(), parts.edge_ll.mean(), parts.kl.mean()]).detach()
            step += 1
            bar.update(1)
        epoch += 1
        elbo, node_ll, edge_ll, kl = (sums / len(batches)).tolist()
        history.append({"epoch": epoch, "step": step, "elbo": elbo, "node_ll": node_ll, "edge_ll": edge_ll, "kl": kl})
        bar.set_postfix(elbo=f"{elbo:.2f}", kl=f"{kl:.2f}")
    bar.close()
    seconds = time.perf_counter() - t0
    model.eval()
    if use_cache:
        save_cached(path, key, model, history, seconds)
    return FitResult(model, history, seconds, False, path if use_cache else None)


@torch.no_grad()
def evaluate_graph_vae(model: GraphVAE, X: Tensor, E: Tensor, mask: Tensor | None = None, seed: int = 0,
                       batch_size: int = 256) -> dict[str, float]:
    """Mean one-sample ELBO terms (nats per graph) and the reconstruction accuracy at the
    posterior mean: the fraction of graphs decoded exactly (every node and edge type)."""
    torch.manual_seed(seed)
    dev = next(model.parameters()).device
    sums, exact = torch.zeros(4), 0
    for i in range(0, len(X), batch_size):
        xb, eb = X[i:i + batch_size].to(dev), E[i:i + batch_size].to(dev)
        mb = None if mask is None else mask[i:i + batch_size].to(dev)
        p = model(xb, eb, mb)
        sums += torch.stack([p.elbo.sum(), p.node_ll.sum(), p.edge_ll.sum(), p.kl.sum()]).cpu()
        Xd, Ed = model.decode_graph(model.encode(xb, eb, mb)[0])
        exact += int(((Xd.argmax(-1) == xb.argmax(-1)).all(-1) & (Ed.argmax(-1) == eb.argmax(-1)).flatten(1).all(-1)).sum())
    elbo, node_ll, edge_ll, kl = (sums / len(X)).tolist()
    return {"elbo": elbo, "node_ll": node_ll, "edge_ll": edge_ll, "kl": kl, "exact_recon": exact / len(X)}
