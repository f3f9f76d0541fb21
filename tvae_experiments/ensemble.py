r"""Train K models of one architecture together: one batched step instead of K small ones.

The capsule models of the papers are MLPs on batches of 8 sequences: a step is a few small matrix
products, so on a GPU one model at a time is bound by kernel launches, not arithmetic.  An
*ensemble* stacks the parameters of K models that share their layer shapes (the rows and seeds of
Tables 1-5, chapter 10's MNIST variants) along a leading model axis and trains them with one step
(``torch.func.stack_module_state`` + ``functional_call`` + ``vmap``).  Each model keeps everything it
has when trained alone by :func:`~tvae_experiments.train.fit`:

* its seed: initialisation after ``torch.manual_seed(seed)``, its own ``torch.Generator(seed)`` for
  the batch order and the augmentation, and its own state of torch's global generator for the
  reparameterisation noise (:meth:`~tvae_core.models.TVAE.draw_noise`), set and saved around each
  draw -- so model k sees exactly the noise it would see alone;
* its topography (``L``, window, ``K``, mode, boundaries) and decoder normalisation: the layers
  run batched, ``t = (z - mu) / sqrt(W u^2)`` runs per model (:meth:`~tvae_core.models.TVAE.sample_t`)
  when the topographies differ, batched when they are equal;
* its optimiser state (SGD momentum, Adam moments: element-wise, so one optimiser over the stacked
  tensors is K optimisers), its gradient clipping (the norm per model) and PGD projection;
* its weight-cache entry, under the key :func:`fit` would give it, so chapters load it unchanged.

What must be equal across an ensemble (:func:`ensemble_key`): the model class and every parameter
shape, the training data, and the training config but its seed.

Two ways to compute, one result on a CPU (``tests/test_ensemble.py``, with PGD, ``uint8`` data, gradient
clipping, ``loss="frame"`` and different windows in one ensemble):

* per model (``vectorized=False``, the CPU default): the stacked tensors are shared, each model's
  layers run in turn with the kernels of a single training.  Bit-identical to :func:`fit`.  On a CPU
  batching gains nothing (``benchmarks/bench_ensemble.py`` measures both ways against one after
  another), so this is what a CPU ensemble is: one process, one optimiser, the same weights.
* vectorized (``vmap``, the CUDA default): one batched matrix product per layer for all K models.
  A batched product sums in another order than K single ones, so the last bits differ, and
  training amplifies such differences like any change of kernels (another GPU, another library):
  within :data:`EXACT_RTOL` of separate trainings for the tests' steps, drifting further over a
  full training, most under Adam, whose normalised step turns a gradient that is rounding noise
  into a full-size step.  A model's weights still do not depend on which other models share its
  ensemble (bit for bit on a CPU: the batched products treat each model alone).

A non-finite loss in any model stops the whole ensemble with :class:`~tvae_experiments.train.TrainingDiverged`
naming the model(s), the step and their logged terms; nothing of that ensemble is written to the cache.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.func import functional_call, stack_module_state, vmap
from torch.utils._pytree import tree_map

from tvae_core.models import TVAE, VAE, ProjectedLinear, loss_terms, project_rows_
from tvae_experiments.device import resolve_device
from tvae_experiments.run import RunContext, current
from tvae_experiments.train import (AUGMENTATIONS, FitResult, TrainConfig, TrainingDiverged, _checked_tensors,
                                    _optimizer, _progress_bar, as_float, loss_scale)
from tvae_experiments.weights import WeightCache, cache_key

__all__ = ["Member", "EXACT_RTOL", "ensemble_key", "fit_ensemble", "train_ensemble"]

EXACT_RTOL = 1e-4
"""Relative tolerance (largest absolute difference over the largest absolute value, per parameter tensor)
within which a vectorized ensemble's weights equal those of separate trainings after the tests' 12 steps.
Per model (``vectorized=False``) the tolerance is 0."""


@dataclass(frozen=True)
class Member:
    """One model of an ensemble: what :func:`~tvae_experiments.train.fit` would be called with."""

    name: str             # cache-file prefix
    model: object         # ModelConfig (TVAE / VAE)
    train: TrainConfig


def ensemble_key(model_cfg, train_cfg: TrainConfig, data_id: str) -> tuple | None:
    """What models must share to train in one ensemble (None: this model cannot, e.g. the graph VAE):
    the model class, every parameter's name and shape, the data and the training config but its seed."""
    if getattr(model_cfg, "kind", None) not in ("tvae", "vae"):
        return None
    with torch.device("meta"):
        model = model_cfg.build()
    shapes = tuple((n, tuple(p.shape)) for n, p in model.named_parameters())
    train = {k: v for k, v in train_cfg.to_dict().items() if k != "seed"}
    return type(model).__name__, shapes, tuple(sorted(train.items())), data_id


class _Method(nn.Module):
    """``functional_call`` calls a module's ``forward``; this calls one named method of ``model``."""

    def __init__(self, model: nn.Module, method: str) -> None:
        super().__init__()
        self.model, self.method = model, method

    def forward(self, *args):
        return getattr(self.model, self.method)(*args)


def _prefixed(d: dict[str, Tensor]) -> dict[str, Tensor]:
    return {f"model.{k}": v for k, v in d.items()}


class _Stack:
    """K models of one architecture as stacked tensors ``(K, ...)``, and their batched loss."""

    def __init__(self, models: Sequence[TVAE | VAE], loss: str, vectorized: bool = True) -> None:
        self.models = list(models)
        params, buffers = stack_module_state(self.models)           # name -> (K, ...) leaves
        self.params, self.buffers = params, buffers
        self.vectorized = vectorized
        # The vmapped calls run on a copy without weight-norm parametrisations (vmap has no batching rule for
        # torch._weight_norm): :meth:`_weights` computes each weight-normalised layer's weight, batched.
        self.weight_norm = [n for n, m in self.models[0].named_modules() if parametrize.is_parametrized(m, "weight")]
        with torch.device("meta"):
            base = dataclasses.replace(self.models[0].cfg, weight_norm=False).build()
        self.pgd = [f"{n}.weight" for n, m in base.named_modules() if isinstance(m, ProjectedLinear)]
        self.calls = {m: _Method(base, m) for m in ("posterior", "decode", "sample_t")}
        self.same_topography = all(_topography(m) == _topography(self.models[0]) for m in self.models)
        self.loss = loss
        self.elbo_parts = type(base).elbo_parts

    def _batched(self, method: str, *args):
        """``method`` of every model on its slice of ``args`` (tensors ``(K, ...)``): one vmapped call, or
        (not :attr:`vectorized`) each model in turn with the kernels of a single training."""
        if not self.vectorized:
            return self._per_model(method, *args)

        def one(p, b, *a):
            return functional_call(self.calls[method], (_prefixed(self._weights(p)), _prefixed(b)), a)
        return vmap(one)(self.params, self.buffers, *args)

    def _per_model(self, method: str, *args):
        outs = []
        for k, model in enumerate(self.models):
            pk = {n: p[k] for n, p in self.params.items()}
            bk = {n: b[k] for n, b in self.buffers.items()}
            ak = tree_map(lambda t: t[k], args)
            outs.append(functional_call(_Method(model, method), (_prefixed(pk), _prefixed(bk)), ak))
        return tree_map(lambda *ts: torch.stack(ts), *outs)

    def _weights(self, p: dict[str, Tensor]) -> dict[str, Tensor]:
        """One model's parameters with each weight-normalised layer's ``(g, v)`` replaced by its weight
        ``w = g v / ||v||`` (Eq 15, rows), the weight ``torch.nn.utils.parametrizations.weight_norm`` computes."""
        if not self.weight_norm:
            return p
        p = dict(p)
        for layer in self.weight_norm:
            g = p.pop(f"{layer}.parametrizations.weight.original0")            # (out, 1)
            v = p.pop(f"{layer}.parametrizations.weight.original1")            # (out, in)
            p[f"{layer}.weight"] = v * (g / torch.linalg.vector_norm(v, dim=1, keepdim=True))
        return p

    def _sample_t(self, post: tuple[Tensor, ...], noise: tuple[Tensor, ...]) -> Tensor:
        if self.same_topography:
            return self._batched("sample_t", post, noise)
        return self._per_model("sample_t", post, noise)                # per model: its own W

    def losses(self, xs: Tensor, rng: list[Tensor], dev: torch.device) -> tuple[Tensor, dict[str, Tensor]]:
        """Each model's loss on its batch ``xs[k]`` (``xs: (K, B, ...)``): ``(K,)`` losses and ``(K,)`` terms.
        Model k's noise is drawn with its generator state ``rng[k]`` (updated in place of the list)."""
        post = self._batched("posterior", xs)                          # tuple of (K, B, ..., n)
        noise = []
        for k, model in enumerate(self.models):
            _set_rng_state(dev, rng[k])
            noise.append(model.draw_noise(tuple(p[k] for p in post)))
            rng[k] = _rng_state(dev)
        noise = tuple(torch.stack(e) for e in zip(*noise))             # tuple of (K, B, ..., n)
        logits = self._batched("decode", self._sample_t(post, noise))  # (K, B, ..., P)
        def terms_of(x, p, lg):
            return loss_terms(self.elbo_parts(x, p, lg))
        if self.vectorized:
            loss, terms = vmap(terms_of)(xs, post, logits)
        else:   # each model's sums and means as a single training reduces them
            loss, terms = tree_map(lambda *ts: torch.stack(ts), *[
                terms_of(xs[k], tree_map(lambda t: t[k], post), logits[k]) for k in range(len(self.models))])
        return loss_scale(loss, xs[0], self.loss, self.models[0]), terms

    @torch.no_grad()
    def clip_(self, max_norm: float) -> None:
        """``torch.nn.utils.clip_grad_norm_`` per model, with its arithmetic: each model's gradient scaled
        to a global norm of at most ``max_norm``."""
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        for k in range(len(self.models)):
            gk = [g[k] for g in grads]
            total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(gk, 2.0)), 2.0)
            torch._foreach_mul_(gk, torch.clamp(max_norm / (total + 1e-6), max=1.0))

    @torch.no_grad()
    def project_(self) -> None:
        """A.8's PGD projection of every :class:`ProjectedLinear` weight, per model."""
        for name in self.pgd:
            project_rows_(self.params[name])

    def unstack(self) -> list[nn.Module]:
        """The K models with their trained weights (the stacked tensors copied back), in eval mode."""
        for k, model in enumerate(self.models):
            state = {n: p[k].detach() for n, p in self.params.items()}
            state.update({n: b[k] for n, b in self.buffers.items()})
            model.load_state_dict(state)
            model.eval()
        return self.models


def _topography(model: nn.Module):
    cfg = model.cfg
    return getattr(model, "topo", None), cfg.decoder_norm


def _rng_state(dev: torch.device) -> Tensor:
    return torch.cuda.get_rng_state(dev) if dev.type == "cuda" else torch.get_rng_state()


def _set_rng_state(dev: torch.device, state: Tensor) -> None:
    if dev.type == "cuda":
        torch.cuda.set_rng_state(state, dev)
    else:
        torch.set_rng_state(state)


def train_ensemble(members: Sequence[Member], tensors: Sequence[Tensor], total: int, *, device: str = "auto",
                   vectorized: bool | None = None, bar=None) -> tuple[list[nn.Module], list[list[dict]]]:
    """Build and train the models of ``members`` together for ``total`` steps on ``tensors`` (shared data);
    returns the trained models and each one's history (per epoch, as :func:`~tvae_experiments.train.train_loop`).

    ``vectorized``: the layers of all models in one ``vmap``-ed call (batched matrix products: the point of an
    ensemble on a GPU), or each model's layers in turn with the kernels of a single training (bit-identical to
    :func:`~tvae_experiments.train.fit` on a CPU, where batching gains nothing).  Default: vectorized on CUDA."""
    dev = resolve_device(device)
    vectorized = dev.type == "cuda" if vectorized is None else vectorized
    cfg0 = members[0].train
    models, rng = [], []
    for m in members:
        torch.manual_seed(m.train.seed)
        models.append(m.model.build().to(dev))
        rng.append(_rng_state(dev))                                     # this model's noise stream
    stack = _Stack(models, cfg0.loss, vectorized)
    opt = _optimizer(stack.params.values(), cfg0)
    augment = AUGMENTATIONS[cfg0.augment]
    gens = [torch.Generator().manual_seed(m.train.seed) for m in members]
    tensors = tuple(t.to(dev) for t in tensors)
    n, bs, K = len(tensors[0]), cfg0.batch_size, len(members)
    per_epoch = n // bs
    histories: list[list[dict]] = [[] for _ in members]
    step, epoch = 0, 0
    while step < total:
        orders = [torch.randperm(n, generator=g)[: per_epoch * bs].to(dev).view(per_epoch, bs)[: total - step]
                  for g in gens]                                         # each model's batches of this epoch
        sums: dict[str, Tensor] = {}
        for i in range(len(orders[0])):
            xs = []
            for k in range(K):
                x = as_float(tensors[0][orders[k][i]])
                xs.append(augment(x, gens[k]) if augment is not None else x)
            xs = torch.stack(xs)                                         # (K, B, ...)
            loss, terms = stack.losses(xs, rng, dev)
            _check_finite(loss, terms, members, step, epoch)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()                                        # model k's gradient is d loss_k
            if cfg0.grad_clip:
                stack.clip_(cfg0.grad_clip)
            opt.step()
            stack.project_()
            for name, v in terms.items():
                sums[name] = sums[name] + v.detach() if name in sums else v.detach()
            step += 1
            if bar is not None:
                bar.update(1)
        epoch += 1
        for k in range(K):
            histories[k].append({"epoch": epoch, "step": step,
                                 **{name: (v[k] / len(orders[0])).item() for name, v in sums.items()}})
    return stack.unstack(), histories


def _check_finite(loss: Tensor, terms: dict[str, Tensor], members: Sequence[Member], step: int, epoch: int) -> None:
    bad = (~torch.isfinite(loss)).nonzero().flatten().tolist()
    if bad:
        lines = [f"{members[k].name}: loss {loss[k].item()}; " + ", ".join(f"{n}={v[k].item():.4g}"
                                                                          for n, v in terms.items()) for k in bad]
        raise TrainingDiverged(f"ensemble of {len(members)} stopped at step {step} (epoch {epoch}): a non-finite loss "
                               f"in {len(bad)} model(s); none of the ensemble is cached.\n  " + "\n  ".join(lines)
                               + f"\nLower lr (now {members[0].train.lr}), set grad_clip or train these alone.")


def fit_ensemble(members: Sequence[Member], data: Tensor | Sequence[Tensor], *, data_id: str = "",
                 device: str = "auto", progress: bool = True, ctx: RunContext | None = None) -> list[FitResult]:
    """:func:`~tvae_experiments.train.fit` for several models at once: the cached ones are loaded, the rest
    are trained as one ensemble and each is cached under its own key.  Results are in ``members``' order."""
    ctx = ctx if ctx is not None else current()
    members = list(members)
    keys = [ensemble_key(m.model, m.train, data_id) for m in members]
    if keys[0] is None or any(k != keys[0] for k in keys):
        raise ValueError("fit_ensemble: the members must share model class, parameter shapes, data and training "
                         "config but the seed (ensemble_key); got " + ", ".join(m.name for m in members))
    tensors = _checked_tensors(data, members[0].train.batch_size)
    dev, cache, dry = resolve_device(device), ctx.cache, ctx.dry_run_steps
    results: dict[int, FitResult] = {}
    todo = []
    for i, m in enumerate(members):
        key = cache_key(m.model, m.train, data_id)
        hit = None if dry else cache.load(m.name, key, m.model.build)
        if hit is None:
            todo.append(i)
            continue
        model, entry = hit
        ctx.used.append({"name": m.name, "key": key[:12], "from_cache": True})
        results[i] = FitResult(model.to(dev).eval(), entry["history"], entry["seconds"], True, cache.path(m.name, key))
    if todo:
        train = [members[i] for i in todo]
        n = len(tensors[0])
        full = train[0].train.steps or train[0].train.epochs * (n // train[0].train.batch_size)
        total = min(full, dry) if dry else full
        t0 = time.perf_counter()
        with _progress_bar(total, f"training {len(train)} models together ({train[0].name}, ...)", progress,
                           ctx.progress_file) as bar:
            models, histories = train_ensemble(train, tensors, total, device=device, bar=bar)
        seconds = time.perf_counter() - t0
        for i, m, model, history in zip(todo, train, models, histories):
            key = cache_key(m.model, m.train, data_id)
            path = None if dry else cache.save(m.name, key, model, history, seconds)
            if not dry:
                ctx.used.append({"name": m.name, "key": key[:12], "from_cache": False})
            results[i] = FitResult(model, history, seconds, False, path)
    return [results[i] for i in range(len(members))]
