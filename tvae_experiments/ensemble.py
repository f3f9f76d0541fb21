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
  run batched, but ``t = (z - mu) / sqrt(W u^2)`` (:meth:`~tvae_core.models.TVAE.sample_t`) runs per
  model when the topographies differ, and the decoder when its input standardisation differs;
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

Launch overhead (:data:`MODES`): on CUDA the step -- forward, backward, clipping, optimiser, PGD --
runs on fixed input buffers and is captured once as a CUDA graph after three eager warm-up steps, then
replayed; the batch gather and each model's noise draw stay outside the graph (a handful of kernels per
step).  ``mode="static"`` runs the same buffered step without capture, so the CPU tests cover it
(bit-identical to the eager step).  ``benchmarks/gpu_check.py`` (``make gpu-check``) measures eager
against graphed, and ensembles of 1, 4 and 16.

A non-finite loss in any model stops the whole ensemble with :class:`~tvae_experiments.train.TrainingDiverged`
naming the model(s), the step and their logged terms; nothing of that ensemble is written to the cache.  The
eager step checks every step; the buffered step keeps a flag on the device and reads it every
:data:`CHECK_EVERY` steps and at each epoch's end (each read waits for the GPU), so it names a range of steps.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.func import functional_call, stack_module_state, vmap
from torch.utils._pytree import tree_map

from tvae_core.checks import check_choice
from tvae_core.models import TVAE, VAE, ProjectedLinear, loss_terms, project_rows_
from tvae_experiments.device import resolve_device
from tvae_experiments.run import RunContext, current
from tvae_experiments.train import (AUGMENTATIONS, FitResult, TrainConfig, TrainingDiverged, _checked_tensors,
                                    _optimizer, _progress_bar, as_float, loss_scale)
from tvae_experiments.weights import WeightCache, cache_key

__all__ = ["Member", "EXACT_RTOL", "MODES", "ensemble_key", "fit_ensemble", "train_ensemble"]

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
        # torch._weight_norm): :meth:`posterior` computes every weight-normalised layer's K weights at once.
        self.weight_norm = [n for n, m in self.models[0].named_modules() if parametrize.is_parametrized(m, "weight")]
        with torch.device("meta"):
            base = dataclasses.replace(self.models[0].cfg, weight_norm=False).build()
        self.pgd = [f"{n}.weight" for n, m in base.named_modules() if isinstance(m, ProjectedLinear)]
        self.calls = {m: _Method(base, m) for m in ("posterior", "decode", "sample_t")}
        self.same_topography = all(getattr(m, "topo", None) == getattr(self.models[0], "topo", None)
                                   for m in self.models)
        self.same_decoder = all(m.cfg.decoder_norm == self.models[0].cfg.decoder_norm for m in self.models)
        self.loss = loss
        self.elbo_parts = type(base).elbo_parts

    def _batched(self, method: str, *args):
        """``method`` of every model on its slice of ``args`` (tensors ``(K, ...)``): one vmapped call over the
        step's weights (:meth:`posterior`), or (not :attr:`vectorized`) each model in turn with the kernels of a
        single training."""
        if not self.vectorized:
            return self._per_model(method, *args)

        def one(p, b, *a):
            return functional_call(self.calls[method], (_prefixed(p), _prefixed(b)), a)
        return vmap(one)(self.step_params, self.buffers, *args)

    def _per_model(self, method: str, *args):
        outs = []
        for k, model in enumerate(self.models):
            pk = {n: p[k] for n, p in self.params.items()}
            bk = {n: b[k] for n, b in self.buffers.items()}
            ak = tree_map(lambda t: t[k], args)
            outs.append(functional_call(_Method(model, method), (_prefixed(pk), _prefixed(bk)), ak))
        return tree_map(lambda *ts: torch.stack(ts), *outs)

    def _weights(self) -> dict[str, Tensor]:
        """The stacked parameters with each weight-normalised layer's ``(g, v)`` replaced by its K weights
        ``w = g v / ||v||`` (Eq 15, rows): ``torch._weight_norm`` -- the kernel the parametrisation calls -- on the
        K layers' rows at once."""
        p = dict(self.params)
        for layer in self.weight_norm:
            g = p.pop(f"{layer}.parametrizations.weight.original0")            # (K, out, 1)
            v = p.pop(f"{layer}.parametrizations.weight.original1")            # (K, out, in)
            p[f"{layer}.weight"] = torch._weight_norm(v.flatten(0, 1), g.flatten(0, 1), 0).view_as(v)
        return p

    def _sample_t(self, post: tuple[Tensor, ...], noise: tuple[Tensor, ...]) -> Tensor:
        if self.same_topography:
            return self._batched("sample_t", post, noise)
        return self._per_model("sample_t", post, noise)                # per model: its own W

    def posterior(self, xs: Tensor) -> tuple[Tensor, ...]:
        """Every model's posterior on its batch ``xs[k]`` (``xs: (K, B, ...)``): a tuple of ``(K, B, ..., n)``.
        Starts a step: the weights of this step (:meth:`_weights`) are computed here, for the rest of it."""
        if self.vectorized:
            self.step_params = self._weights()
        return self._batched("posterior", xs)

    def draw_noise(self, post: tuple[Tensor, ...], rng: list[Tensor], dev: torch.device) -> tuple[Tensor, ...]:
        """Each model's reparameterisation noise, drawn with its own generator state ``rng[k]`` (updated in the
        list): exactly the numbers it draws when trained alone.  ``post`` only gives the shapes."""
        noise = []
        for k, model in enumerate(self.models):
            _set_rng_state(dev, rng[k])
            noise.append(model.draw_noise(tuple(p[k] for p in post)))
            rng[k] = _rng_state(dev)
        return tuple(torch.stack(e) for e in zip(*noise))             # tuple of (K, B, ..., n)

    def losses(self, xs: Tensor, post: tuple[Tensor, ...], noise: tuple[Tensor, ...]) -> tuple[Tensor, dict[str, Tensor]]:
        """Each model's loss (as :func:`~tvae_experiments.train.objective` scales it) and logged terms, ``(K,)`` each."""
        t = self._sample_t(post, noise)                                # (K, B, ..., n)
        logits = self._batched("decode", t) if self.same_decoder else self._per_model("decode", t)  # (K, B, ..., P)

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


def _rng_state(dev: torch.device) -> Tensor:
    return torch.cuda.get_rng_state(dev) if dev.type == "cuda" else torch.get_rng_state()


def _set_rng_state(dev: torch.device, state: Tensor) -> None:
    if dev.type == "cuda":
        torch.cuda.set_rng_state(state, dev)
    else:
        torch.set_rng_state(state)


MODES = ("eager", "static", "graph")
"""How an ensemble step runs: ``"eager"`` (op by op, the loss checked every step), ``"static"`` (on fixed
input buffers, the loss checked every :data:`CHECK_EVERY` steps: what a CUDA graph replays, run eagerly), or
``"graph"`` (the static step captured once as a CUDA graph and replayed: no kernel launches from Python)."""
WARMUP_STEPS = 3       # eager steps before a static / graph step is set up (on a side stream on CUDA, as capture needs)
CHECK_EVERY = 100      # static / graph steps between two checks for a non-finite loss (each check waits for the GPU)


def train_ensemble(members: Sequence[Member], tensors: Sequence[Tensor], total: int, *, device: str = "auto",
                   vectorized: bool | None = None, mode: str | None = None,
                   bar=None) -> tuple[list[nn.Module], list[list[dict]]]:
    """Build and train the models of ``members`` together for ``total`` steps on ``tensors`` (shared data);
    returns the trained models and each one's history (per epoch, as :func:`~tvae_experiments.train.train_loop`).

    ``vectorized``: the layers of all models in one ``vmap``-ed call (batched matrix products: the point of an
    ensemble on a GPU), or each model's layers in turn with the kernels of a single training (bit-identical to
    :func:`~tvae_experiments.train.fit` on a CPU, where batching gains nothing).  Default: vectorized on CUDA.
    ``mode``: one of :data:`MODES`; default ``"graph"`` on CUDA when vectorized, else ``"eager"``."""
    dev = resolve_device(device)
    vectorized = dev.type == "cuda" if vectorized is None else vectorized
    mode = ("graph" if dev.type == "cuda" and vectorized else "eager") if mode is None else mode
    check_choice("mode", mode, MODES)
    if mode == "graph" and dev.type != "cuda":
        raise ValueError(f"mode='graph' captures a CUDA graph and needs a CUDA device, got {dev}; "
                         "use mode='static' to run the same step eagerly")
    trainer = _Trainer(members, tensors, dev, vectorized, mode)
    while trainer.step < total:
        trainer.epoch_(total, bar)
    return trainer.stack.unstack(), trainer.histories


class _Trainer:
    """The state of one ensemble training: models, optimiser, generators, and the static step once set up."""

    def __init__(self, members: Sequence[Member], tensors: Sequence[Tensor], dev: torch.device, vectorized: bool,
                 mode: str) -> None:
        self.members, self.dev, self.mode, self.cfg = list(members), dev, mode, members[0].train
        models, self.rng = [], []
        for m in members:
            torch.manual_seed(m.train.seed)
            models.append(m.model.build().to(dev))
            self.rng.append(_rng_state(dev))                             # this model's noise stream
        self.stack = _Stack(models, self.cfg.loss, vectorized)
        self.opt = _optimizer(self.stack.params.values(), self.cfg, capturable=mode == "graph")
        self.augment = AUGMENTATIONS[self.cfg.augment]
        self.gens = [torch.Generator().manual_seed(m.train.seed) for m in members]
        self.x = tensors[0].to(dev)
        self.histories: list[list[dict]] = [[] for _ in members]
        self.step, self.epoch = 0, 0
        self.static: _StaticStep | None = None
        self.sums: dict[str, Tensor] = {}

    def batch(self, orders: Tensor, i: int) -> Tensor:
        """Every model's batch ``i`` of this epoch (``orders: (K, batches, B)``), ``(K, B, ...)`` as float, augmented
        with each model's own generator; without augmentation one gather for all models."""
        if self.augment is None:
            return as_float(self.x[orders[:, i]])
        return torch.stack([self.augment(as_float(self.x[order[i]]), g) for order, g in zip(orders, self.gens)])

    def epoch_(self, total: int, bar) -> None:
        n, bs = len(self.x), self.cfg.batch_size
        per_epoch = n // bs
        orders = torch.stack([torch.randperm(n, generator=g)[: per_epoch * bs].view(per_epoch, bs)[: total - self.step]
                              for g in self.gens]).to(self.dev)          # (K, batches, B): each model's batches
        for v in self.sums.values():
            v.zero_()
        for i in range(len(orders[0])):
            xs = self.batch(orders, i)
            if self.static is None and self.mode != "eager" and self.step >= WARMUP_STEPS:
                self.static = _StaticStep(self, xs)
            if self.static is None:
                self.eager_step(xs)
            else:
                self.static.run(xs)
            self.step += 1
            if bar is not None:
                bar.update(1)
        if self.static is not None:
            self.static.check()
        self.epoch += 1
        for k, history in enumerate(self.histories):
            history.append({"epoch": self.epoch, "step": self.step,
                            **{name: (v[k] / len(orders[0])).item() for name, v in self.sums.items()}})

    def eager_step(self, xs: Tensor) -> None:
        side = torch.cuda.Stream(self.dev) if self.mode == "graph" else None   # graph capture wants warm-up aside
        with torch.cuda.stream(side) if side is not None else contextlib.nullcontext():
            if side is not None:
                side.wait_stream(torch.cuda.current_stream(self.dev))
            post = self.stack.posterior(xs)
            loss, terms = self.stack.losses(xs, post, self.stack.draw_noise(post, self.rng, self.dev))
            _check_finite(loss, terms, self.members, self.step, self.epoch)
            self.opt.zero_grad(set_to_none=True)
            self.update(loss, terms)
        if side is not None:
            torch.cuda.current_stream(self.dev).wait_stream(side)

    def update(self, loss: Tensor, terms: dict[str, Tensor]) -> None:
        """Backward, clipping, the optimiser step, PGD, and the terms added to the epoch's sums (all in place)."""
        loss.sum().backward()                                            # model k's gradient is d loss_k
        if self.cfg.grad_clip:
            self.stack.clip_(self.cfg.grad_clip)
        self.opt.step()
        self.stack.project_()
        with torch.no_grad():
            for name, v in terms.items():
                if name not in self.sums:
                    self.sums[name] = torch.zeros_like(v)
                self.sums[name].add_(v.detach())


class _StaticStep:
    """One ensemble step on fixed buffers: the batch and the noise are copied in, the step reads them.

    In ``"graph"`` mode the step is captured once as a CUDA graph (PyTorch's whole-network capture: warm-up
    steps on a side stream, gradients set to None, the optimiser capturable) and every later step replays it.
    The loss is checked for NaN/inf inside the step into a flag, read every :data:`CHECK_EVERY` steps and at
    the end of every epoch (reading it waits for the GPU)."""

    def __init__(self, trainer: _Trainer, xs: Tensor) -> None:
        self.t = trainer
        self.x = xs.clone()
        with torch.no_grad():   # tensors of the posterior's shapes (draw_noise reads only shapes), and the noise buffers
            self.post_like = tuple(p.detach() for p in trainer.stack.posterior(xs))
        self.noise = trainer.stack.draw_noise(self.post_like, [s.clone() for s in trainer.rng], trainer.dev)
        self.bad = torch.zeros(len(trainer.members), dtype=torch.bool, device=trainer.dev)
        self.since_check = 0
        self.graph = None
        if trainer.mode == "graph":
            trainer.opt.zero_grad(set_to_none=True)
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph):
                    self.body()
                self.graph = graph
            except Exception as err:  # noqa: BLE001 -- say it and train on with the same step, uncaptured
                print(f"note: the ensemble step could not be captured as a CUDA graph ({type(err).__name__}: "
                      f"{str(err)[:300]}); training on with the same step, launched op by op", flush=True)

    def body(self) -> None:
        t = self.t
        if self.graph is None:
            t.opt.zero_grad(set_to_none=True)
        loss, terms = t.stack.losses(self.x, t.stack.posterior(self.x), self.noise)
        with torch.no_grad():
            self.bad.logical_or_(~torch.isfinite(loss))
        self.loss, self.terms = loss.detach(), {k: v.detach() for k, v in terms.items()}
        t.update(loss, terms)

    def run(self, xs: Tensor) -> None:
        t = self.t
        self.x.copy_(xs)
        with torch.no_grad():
            for buf, e in zip(self.noise, t.stack.draw_noise(self.post_like, t.rng, t.dev)):
                buf.copy_(e)
        if self.graph is not None:
            self.graph.replay()
        else:
            self.body()
        self.since_check += 1
        if self.since_check >= CHECK_EVERY:
            self.check()

    def check(self) -> None:
        """Raise :class:`TrainingDiverged` naming every model whose loss was non-finite since the last check."""
        if self.since_check and bool(self.bad.any()):
            first = self.t.step - self.since_check + 1
            loss = torch.where(self.bad, torch.full_like(self.loss, float("nan")), self.loss)
            _check_finite(loss, self.terms, self.t.members, f"{first}-{self.t.step}", self.t.epoch)
        self.since_check = 0


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
    cache_keys = [cache_key(m.model, m.train, data_id) for m in members]
    for i, (m, key) in enumerate(zip(members, cache_keys)):
        hit = None if dry else cache.load(m.name, key, m.model.build)
        if hit is None:
            todo.append(i)
            continue
        model, entry = hit
        ctx.used.append({"name": m.name, "key": key[:12], "from_cache": True})
        results[i] = FitResult(model.to(dev).eval(), entry["history"], entry["seconds"], True, cache.path(m.name, key))
    if todo:
        train = [members[i] for i in todo]
        full = train[0].train.total_steps(len(tensors[0]))
        total = min(full, dry) if dry else full
        t0 = time.perf_counter()
        with _progress_bar(total, f"training {len(train)} models together ({train[0].name}, ...)", progress,
                           ctx.progress_file) as bar:
            models, histories = train_ensemble(train, tensors, total, device=device, bar=bar)
        seconds = time.perf_counter() - t0
        for i, m, model, history in zip(todo, train, models, histories):
            key = cache_keys[i]
            path = None if dry else cache.save(m.name, key, model, history, seconds)
            if not dry:
                ctx.used.append({"name": m.name, "key": key[:12], "from_cache": False})
            results[i] = FitResult(model, history, seconds, False, path)
    return [results[i] for i in range(len(members))]
