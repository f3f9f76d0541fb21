"""Train, load and score the capsule models of Sec 6.3 -- one place for chapters 4, 5 and 8.

A *variant* is one row of the paper's tables: ``(kind, L/S)`` with kind ``"tvae"`` (shifting
coherence, Eq 9), ``"bubble"`` (stationary, Eq 8), ``"tvae_l0"`` (no temporal coherence) or
``"vae"``.  :func:`capsule_models` trains (or loads from the weight cache) a set of variants and
builds their untrained controls; :func:`score_models` runs :func:`evaluate_capsules` on each.

Two decode rules (``DECODE_RULES``) score reconstructions and traversals:

* ``"mean"`` -- decode the deterministic code (``model.encode``: ``z`` at its posterior mean,
  ``u^2`` at its expectation).  For a VAE whose units mostly sit at the prior this is an atypical
  point for the decoder (chapter 4's section "Scoring a traversal" shows the two rules side by side),
  so it is unfair to the baselines.
* ``"sample"`` (:data:`FAIR_DECODE`, what the claims use) -- the expected BCE over posterior
  samples of ``(z, u)`` (the ELBO's reconstruction term, Monte Carlo), for the direct
  reconstruction and for the traversal alike (the traversal rolls the sampled ``t_0``).
Every model is cached under a name of data set, variant, ``L`` and seed, so a model trained in
one chapter is loaded in the next.  A model carries its own ``capsule_dim`` and ``L``
(:class:`~tvae_core.models.TVAE`), so evaluation never needs them passed again.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from tvae_core.checks import check_capsules, check_choice, check_int
from tvae_core.metrics import capcorr_sequences, capsule_traversal, equivariance_error, held_out_frames
from tvae_core.models import TVAE, VAE
from tvae_experiments.device import resolve_device
from tvae_experiments.profiles import CapsuleDataConfig, ToyCapsulesConfig
from tvae_experiments.train import FitResult, as_float, evaluate, fit

__all__ = ["table_rows", "TableRows", "variant_name", "train_variant", "untrained_variant", "CapsuleModel", "capsule_models", "score_models", "CapsuleScores",
           "evaluate_capsules", "variant_label", "PAPER_TABLE1", "PAPER_TABLE2", "PAPER_TABLE3",
           "NORM_LABELS", "PAPER_FIG5", "frac_key",
           "CapsuleData", "capsule_data", "combined_data", "COMBINED_TRANSFORMS", "mnist_transform_data", "sequence_data_id", "capcorr_per_transform", "TraversalScores", "DECODE_RULES", "FAIR_DECODE",
           "centre_capsules", "sample_codes", "traversal_scores", "ToyCapsules", "learn_toy", "toy_data", "fit_toy",
           "untrained_toy", "appendix_d_picks", "TraversalSheet", "traversal_sheet"]

DECODE_RULES = ("mean", "sample")
"""How codes are decoded for BCE: the deterministic code, or posterior samples (module doc)."""
FAIR_DECODE = "sample"
"""The rule the claims use: the expected BCE over posterior samples, fair to every model."""


NORM_LABELS = {"wn": "WN", "pgd": "PGD", "none": "no norm"}
"""How Table 3 names a normalisation."""


def variant_label(variant: str, L: float, S: int, norm: str | None = None) -> str:
    """Readable name, e.g. ``TVAE L=6 (1/3 S)``; with ``norm`` (a resolved method, Table 3)
    ``TVAE L=2.5 (5/36 S) PGD``."""
    from fractions import Fraction

    frac = Fraction(int(2 * L), 2 * S) if L else 0
    base = {"tvae": "TVAE", "bubble": "BubbleVAE", "tvae_l0": "TVAE", "vae": "VAE"}[variant]
    label = base if variant == "vae" else f"{base} L={L:g}" + (f" ({frac.numerator}/{frac.denominator} S)" if L else "")
    return f"{label} {NORM_LABELS[norm]}" if norm else label


def variant_name(dcfg: CapsuleDataConfig, variant: str, L: float, seed: int, norm: str = "paper",
                 data: str = "") -> str:
    """Cache-file prefix of a capsule model, e.g. ``caps-mnist-tvae-L6-s0``; a normalisation other
    than the paper's for that variant (Table 3) is named, e.g. ``caps-mnist-vae-L0-pgd-s0``, and so
    is a training set other than the data set's sequences (``data``, e.g. ``caps-mnist-color-perspective-...``)."""
    resolved = dcfg.norm_of(variant, norm)
    suffix = "" if resolved == dcfg.norm_of(variant) else f"-{resolved}"
    return f"caps-{dcfg.dataset}{'-' + data if data else ''}-{variant}-L{L:g}{suffix}-s{seed}"


def train_variant(dcfg: CapsuleDataConfig, variant: str, L: float, train_x: torch.Tensor, data_id: str, seed: int,
                  device: str = "auto", progress: bool = True, norm: str = "paper", data: str = "") -> FitResult:
    """Train (or load) one capsule model; ``train_x: (N, S, P)``; ``norm``, ``data``: :func:`variant_name`."""
    name = variant_name(dcfg, variant, L, seed, norm, data)
    return fit(dcfg.model(variant, L, norm), train_x, dcfg.train(seed), data_id=data_id, device=device, name=name,
               progress=progress)


def untrained_variant(dcfg: CapsuleDataConfig, variant: str, L: float, seed: int, device: torch.device | str = "auto",
                      norm: str = "paper"):
    """The same architecture at its initialisation: the control every capsule claim needs."""
    return untrained_toy(dcfg.model(variant, L, norm), seed, device)


@dataclass
class CapsuleModel:
    """One trained (or untrained) variant, ready to score."""

    variant: str          # "tvae" | "bubble" | "tvae_l0" | "vae"
    frac: float           # L / S as in the paper's tables (L itself: ``model.L``)
    trained: bool         # False: the control at its initialisation
    label: str            # e.g. "TVAE L=6 (1/3 S)", "untrained TVAE L=9 (1/2 S)"
    model: nn.Module
    seconds: float = 0.0  # training time of the cached weights (0 for untrained)
    from_cache: bool = False


def _row(key, row) -> tuple[str, float, str]:
    """``(variant, L/S)`` or ``(variant, L/S, norm)`` -> ``(variant, L/S, norm)``."""
    if isinstance(row, tuple) and len(row) in (2, 3):
        return (row[0], row[1], row[2] if len(row) == 3 else "paper")
    raise ValueError(f"variants[{key!r}]={row!r}: expected (variant, L/S) or (variant, L/S, norm)")


def capsule_models(dcfg: CapsuleDataConfig, variants: Mapping[str, tuple], train, data_id: str,
                   seed: int, device: str = "auto", *, untrained: Mapping[str, str] | None = None,
                   progress: bool = True) -> dict[str, CapsuleModel]:
    """Train/load every variant and build the untrained controls.

    Args:
        variants: key -> ``(variant, L/S)``, e.g. ``{"tvae_S/3": ("tvae", 1/3), "vae": ("vae", 0)}``, or
            ``(variant, L/S, norm)`` with a normalisation of :data:`~tvae_experiments.profiles.NORM_METHODS`
            (Table 3; the label then names it).
        train: the training :class:`~tvae_experiments.data.sequences.SequenceData`.
        untrained: control key -> key of ``variants``, e.g. ``{"untrained_S/2": "tvae_S/2"}``, or a
            ``(variant, L/S[, norm])`` tuple that need not be trained, e.g. ``{"untrained_L0": ("tvae_l0", 0)}``:
            the same architecture at its initialisation, the control every capsule claim needs
            (an untrained model costs evaluation only).
    """
    def label(variant, L, norm, named):
        return variant_label(variant, L, dcfg.S, dcfg.norm_of(variant, norm) if named else None)

    out: dict[str, CapsuleModel] = {}
    for key, row in variants.items():
        variant, frac, norm = _row(key, row)
        L = dcfg.L_of(frac)
        r = train_variant(dcfg, variant, L, train.x, data_id, seed, device, progress, norm)
        out[key] = CapsuleModel(variant, frac, True, label(variant, L, norm, len(row) == 3), r.model, r.seconds,
                                r.from_cache)
    for key, of in (untrained or {}).items():
        if of in variants:
            row = variants[of]
        elif isinstance(of, tuple) and len(of) in (2, 3):
            row = of
        else:
            raise ValueError(f"untrained[{key!r}]={of!r} is not one of the variants {sorted(variants)} "
                             f"nor a (variant, L/S[, norm]) tuple")
        variant, frac, norm = _row(key, row)
        L = dcfg.L_of(frac)
        out[key] = CapsuleModel(variant, frac, False, "untrained " + label(variant, L, norm, len(row) == 3),
                                untrained_variant(dcfg, variant, L, seed, device, norm))
    return out


def score_models(models: Mapping[str, CapsuleModel], test, seed: int = 0) -> dict[str, "CapsuleScores"]:
    """:func:`evaluate_capsules` of every model on ``test``."""
    return {k: evaluate_capsules(m.model, test, seed) for k, m in models.items()}


class TableRows(NamedTuple):
    """Tables 1-3's rows scored over seeds (:func:`table_rows`)."""

    scores: dict[tuple, list[dict]]      # row (variant, L/S[, norm]) -> one record per seed (E_eq, CapCorr, ...)
    controls: dict[tuple, list[dict]]    # row -> the same for the untrained model of its architecture
    first: dict[tuple, CapsuleModel]     # row -> the first seed's trained model (appendix D's figures)


def table_rows(dcfg: CapsuleDataConfig, rows, train, test, data_id: str, seeds, device: str = "auto", *,
               loglik: tuple[int, int] | None = None, scored: TableRows | None = None) -> TableRows:
    """Train/load every ``(variant, L/S[, norm])`` row for every seed in ``seeds`` and score it on ``test``,
    beside the untrained model of the same architecture as its control.  ``loglik = (n_sequences, samples)``:
    also the importance-sampled ``log p(x)`` per frame (Table 1: 10 samples) of the first ``n_sequences`` test
    sequences.  ``scored``: an earlier call's result; a ``(variant, L/S, norm)`` row that is one of its models (the
    paper's normalisation for that variant: Table 3's WN TVAE and plain VAE are Table 1's) is copied, not scored again."""
    from tvae_core.models import log_likelihood_is

    out = TableRows({row: [] for row in rows}, {row: [] for row in rows}, {})
    for row in rows:
        same = row[:2] if len(row) == 3 and dcfg.norm_of(row[0], row[2]) == dcfg.norm_of(row[0]) else None
        if scored is not None and same in scored.scores:
            out.scores[row], out.controls[row] = scored.scores[same], scored.controls[same]
    todo = [row for row in rows if not out.scores[row]]
    variants = {row: row for row in todo}  # key: (variant, L/S[, norm])
    controls = {("untrained",) + row: row for row in todo}
    dev = resolve_device(device, verbose=False)
    for s in seeds:
        models = capsule_models(dcfg, variants, train, data_id, s, device, untrained=controls)
        for key, sc in score_models(models, test, s).items():
            rec = {"e_eq": sc.e_eq, "e_eq_vector": sc.e_eq_vector, "e_eq_centred": sc.e_eq_centred, **sc.capcorr,
                   "traversal_ratio": sc.traversal_ratio, "traversal_bce": sc.traversal_bce}
            if key[0] == "untrained":
                out.controls[key[1:]].append(rec)
                continue
            if loglik is not None:
                torch.manual_seed(s)
                xs = test.x[: loglik[0]].to(dev)
                rec["log_p"] = log_likelihood_is(models[key].model, xs, k=loglik[1], batch_size=16).mean().item() / dcfg.S
            out.scores[key].append(rec)
            if s == seeds[0]:
                out.first[key] = models[key]
    return out


@dataclass(frozen=True)
class TraversalScores:
    """Capsule traversal (Fig 4) in numbers under one decode rule: means over the held-out frames
    (``l >= 2L``, :func:`~tvae_core.metrics.held_out_frames`), BCE in nats per image."""

    traversal_bce: float     # decode(Roll_l(t_0)) vs x_l
    direct_bce: float        # decode(t_l) vs x_l: the frame reconstructed from its own code
    wrong_pose_bce: float    # decode(Roll_l(t_0)) vs the frame half a cycle away
    per_transform: dict      # transformation name -> TraversalScores of its sequences ({} inside)

    @property
    def ratio(self) -> float:
        """Held-out traversal BCE / direct BCE (1: the roll predicts unseen frames as well as encoding them)."""
        return self.traversal_bce / self.direct_bce


@dataclass(frozen=True)
class CapsuleScores:
    """Every capsule metric of one model on one test set.  The traversal fields are those of the
    fair decode rule (``decode``, :data:`FAIR_DECODE`); ``by_decode`` holds every rule."""

    traversal_bce: float     # held-out frames: decode(Roll_l(t_0)) vs x_l, nats per image
    direct_bce: float        # the same frames reconstructed from their own code
    wrong_pose_bce: float    # decode(Roll_l(t_0)) vs the frame half a cycle away
    e_eq: float              # Eq 13 (per-capsule norm, as the published tables), mean over test sequences
    capcorr: dict            # transformation name -> CapCorr (Eq 17, A.11)
    elbo: float              # test ELBO per sequence
    e_eq_vector: float       # Eq 13 as printed (the whole C*D vector normalised)
    e_eq_centred: float      # Eq 13 on codes with every capsule's mean over its D units removed
    per_transform: dict      # transformation name -> TraversalScores (rule ``decode``)
    by_decode: dict          # rule -> TraversalScores, for every rule of DECODE_RULES
    decode: str = FAIR_DECODE

    @property
    def traversal_ratio(self) -> float:
        return self.traversal_bce / self.direct_bce


def centre_capsules(t: Tensor, capsule_dim: int) -> Tensor:
    """``t: (..., C*D)`` with every capsule's mean over its ``D`` units removed.

    The mean of a capsule is invariant to Roll, so centring commutes with Roll and removes exactly
    the part of a code that every Roll leaves unchanged -- e.g. the offset ``-mu / sqrt(W u^2)``
    that dominates TVAE codes with ``mu = 30`` early in training.  ``E_eq`` of the centred codes
    measures the roll structure alone."""
    C = check_capsules("t", t.shape[-1], capsule_dim)
    tc = t.reshape(*t.shape[:-1], C, capsule_dim)
    return (tc - tc.mean(-1, keepdim=True)).reshape(t.shape)


@torch.no_grad()
def sample_codes(model, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One posterior sample of the code of ``x: (..., P)`` (or ``(..., S, P)``) -> ``(..., n)``.

    TVAE: ``z ~ q(z|x)``, ``u ~ q(u|x)``, ``t = model.to_t(z, u)`` (Eq 11; the temporal window
    pools the sampled ``u``); VAE: ``t = z ~ q(z|x)``; any other model (a deterministic encoder,
    e.g. a hand-built test model) returns ``model.encode(x)``.  A posterior std of 0 gives exactly
    the code ``model.encode`` decodes (``u``'s second moment is then ``u_mean^2``)."""
    def draw(mean: Tensor, log_std: Tensor) -> Tensor:
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(log_std) * eps

    if isinstance(model, TVAE):
        zm, zs, um, us = model.posterior(x)
        return model.to_t(draw(zm, zs), draw(um, us))
    if isinstance(model, VAE):
        return draw(*model.enc_z(x))
    return model.encode(x)


@torch.no_grad()
def traversal_scores(model, test, decode: str = FAIR_DECODE, n_samples: int = 4, seed: int = 0,
                     batch_size: int = 128, held_out_L: float | None = None, origin: int = 0) -> TraversalScores:
    """Capsule traversal of every test sequence under one decode rule.

    For each code ``t`` of a sequence (``model.encode`` for ``"mean"``; each of ``n_samples``
    posterior samples, :func:`sample_codes`, for ``"sample"``): decode ``Roll_l(t_0)`` and ``t_l``
    and score them against ``x_l`` (and ``Roll_l(t_0)`` against the frame half a cycle away), BCE
    summed over pixels; the sample rule averages the BCE over the samples (the expected BCE, not
    the BCE of an averaged image).  Means over the held-out frames of ``model.L`` (or of ``held_out_L``: two
    models scored on the same frames), overall and per transformation of ``test``.  ``origin``: roll
    ``t_origin`` by ``l - origin`` instead of ``t_0`` by ``l`` (:func:`~tvae_core.metrics.capsule_traversal`).
    Seeded by ``seed``; batches of ``batch_size`` sequences."""
    check_choice("decode", decode, DECODE_RULES)
    check_int("n_samples", n_samples, minimum=1)
    dev = next(model.parameters()).device
    N, S, _ = test.x.shape
    g = torch.Generator(device=dev).manual_seed(int(seed))
    k = 1 if decode == "mean" else n_samples
    parts = []  # (B, 3, S) per batch: traversal, direct, wrong pose
    for i in range(0, N, batch_size):
        xb = as_float(test.x[i:i + batch_size].to(dev))
        acc = torch.zeros(len(xb), 3, S, dtype=torch.float64)
        for _ in range(k):
            t = None if decode == "mean" else sample_codes(model, xb, g)  # (B, S, n) or model.encode's
            tr = capsule_traversal(model, xb, t=t, origin=origin)
            acc += torch.stack([tr.roll_bce, tr.direct_bce, tr.wrong_pose_bce], 1).double()
        parts.append(acc / k)
    held = held_out_frames(S, model.L if held_out_L is None else held_out_L)
    per = torch.cat(parts)[:, :, held].mean(-1)  # (N, 3): means over held-out frames

    def summary(sel: Tensor, inner: dict) -> TraversalScores:
        tr, di, wr = per[sel].mean(0).tolist()
        return TraversalScores(tr, di, wr, inner)

    by_t = {name: summary(test.transform == j, {}) for j, name in enumerate(test.transforms)
            if int((test.transform == j).sum()) > 0}
    return summary(torch.ones(N, dtype=torch.bool), by_t)


def capcorr_per_transform(t: torch.Tensor, test, capsule_dim: int, where: torch.Tensor | None = None) -> dict:
    """CapCorr (Eq 17, A.11 Omega) per transformation of ``test``: ``t: (N, S, n)`` codes of its
    sequences; ``where: (N,)`` bool restricts to some sequences (e.g. one dSprites shape).
    Transformations with fewer than 3 sequences are left out."""
    cc = {}
    for k, name in enumerate(test.transforms):
        sel = test.transform == k if where is None else (test.transform == k) & where
        if int(sel.sum()) >= 3:
            cc[name] = capcorr_sequences(t[sel], test.step[sel], test.canonical[sel], capsule_dim)
    return cc


@torch.no_grad()
def evaluate_capsules(model, test, seed: int = 0, *, decode: str = FAIR_DECODE, n_samples: int = 4,
                      held_out_L: float | None = None, origin: int = 0) -> CapsuleScores:
    """All capsule metrics of ``model`` on ``test`` (a :class:`~tvae_experiments.data.sequences.SequenceData`);
    ``capsule_dim`` and ``L`` are the model's own.  Traversals are scored under every decode rule
    (:func:`traversal_scores`, ``n_samples`` posterior samples, seeded by ``seed``); the top-level
    traversal fields are rule ``decode``'s (on the held-out frames of ``held_out_L``, default the model's
    ``L``; rolled from ``t_origin``, default ``t_0``).  ``E_eq`` and CapCorr read the deterministic codes."""
    check_choice("decode", decode, DECODE_RULES)
    dev = next(model.parameters()).device
    x = test.x.to(dev)  # (N, S, P)
    rules = {rule: traversal_scores(model, test, rule, n_samples, seed, held_out_L=held_out_L, origin=origin)
             for rule in DECODE_RULES}
    fair = rules[decode]
    D = model.capsule_dim
    t = model.encode(x).cpu()  # (N, S, n)
    cc = capcorr_per_transform(t, test, D)
    return CapsuleScores(
        traversal_bce=fair.traversal_bce, direct_bce=fair.direct_bce, wrong_pose_bce=fair.wrong_pose_bce,
        e_eq=equivariance_error(t, D).mean().item(), capcorr=cc,
        elbo=evaluate(model, x, batch_size=64, seed=seed)["elbo"],
        e_eq_vector=equivariance_error(t, D, norm="vector").mean().item(),
        e_eq_centred=equivariance_error(centre_capsules(t, D), D).mean().item(),
        per_transform=fair.per_transform, by_decode=rules, decode=decode)


@dataclass
class ToyCapsules:
    """The known-answer problem (:class:`~tvae_experiments.profiles.ToyCapsulesConfig`) after training:
    the trained model's scores and its untrained controls' on the same held-out sequences."""

    model: TVAE
    test: object                      # the held-out SequenceData (seed 1000 + seed)
    trained: CapsuleScores
    untrained: CapsuleScores          # the trained model's own initialisation (torch.manual_seed(seed))
    untrained_capcorr: dict           # transformation -> CapCorr averaged over cfg.n_inits initialisations
    seconds: float                    # training time


def toy_data(cfg: ToyCapsulesConfig, seed: int = 0):
    """The toy problem's ``(train, test)`` sequences: :func:`~tvae_experiments.data.sequences.bump_sequences`
    with train seed ``seed`` and test seed ``1000 + seed``."""
    from tvae_experiments.data.sequences import bump_sequences

    seed = check_int("seed", seed)
    return (bump_sequences(cfg.n_train, cfg.S, cfg.radius, seed=seed),
            bump_sequences(cfg.n_test, cfg.S, cfg.radius, seed=1000 + seed))


def fit_toy(cfg: ToyCapsulesConfig, seed: int = 0, *, model=None, train=None, name: str = "toy-tvae", cache_dir=None,
            progress: bool = False) -> FitResult:
    """Train a toy model with ``cfg``'s recipe (``cfg.train(seed)``) on the CPU; it always trains
    (``use_cache=False``).  ``model``: a model config (default ``cfg.model()``, chapter 4's toy TVAE;
    chapter 10 passes appendix C's :class:`~tvae_core.models.AppendixModelConfig` variants);
    ``train``: training :class:`~tvae_experiments.data.sequences.SequenceData` (default
    :func:`toy_data`'s).  The run is named ``<name>-s<seed>``."""
    seed = check_int("seed", seed)
    train = toy_data(cfg, seed)[0] if train is None else train
    return fit(cfg.model() if model is None else model, train.x, cfg.train(seed), data_id=train.source, device="cpu",
               cache_dir=cache_dir, name=f"{name}-s{seed}", use_cache=False, progress=progress)


def untrained_toy(model_cfg, init: int, device: torch.device | str = "cpu"):
    """The architecture ``model_cfg`` at initialisation ``init`` (``torch.manual_seed(init)`` then build),
    on ``device``: with ``init == seed`` the trained model's own starting point (any model config, not only
    the toy's: chapter 10's MNIST controls too)."""
    torch.manual_seed(init)
    return model_cfg.build().to(resolve_device(device, verbose=False)).eval()


def learn_toy(cfg: ToyCapsulesConfig, seed: int = 0, cache_dir=None, progress: bool = False, *, model=None,
              name: str = "toy-tvae") -> ToyCapsules:
    """Train the toy TVAE with ``seed`` on :func:`~tvae_experiments.data.sequences.bump_sequences`
    (train seed ``seed``, test seed ``1000 + seed``) on the CPU and score it and its untrained controls
    with :func:`evaluate_capsules`.  It always trains (``use_cache=False``: seconds, and a cached model
    would hide a bug in the code that trains it), so the numbers are repeatable on any machine.

    ``model`` replaces ``cfg.model()`` (e.g. chapter 10's causal window, appendix C.4) and ``name``
    the run's name; the controls are the same architecture at their initialisations."""
    seed = check_int("seed", seed)
    train, test = toy_data(cfg, seed)
    mcfg = cfg.model() if model is None else model
    r = fit_toy(cfg, seed, model=mcfg, train=train, name=name, cache_dir=cache_dir, progress=progress)
    trained = evaluate_capsules(r.model, test, seed)
    controls = [evaluate_capsules(untrained_toy(mcfg, init), test, seed) for init in range(seed, seed + cfg.n_inits)]
    mean_cc = {k: sum(c.capcorr[k] for c in controls) / cfg.n_inits for k in test.transforms}
    return ToyCapsules(r.model, test, trained, controls[0], mean_cc, r.seconds)


def appendix_d_picks(test, n: int = 12, seed: int = 0, by_label: bool = False) -> list[int]:
    """Indices of ``n`` test sequences for appendix D's figures: "randomly selected such that all
    transformations (and dSprites shapes) are shown evenly".  Groups are the transformations (with
    ``by_label``: transformation x label, the sprite's shape); the groups take turns, each giving a
    random member not yet drawn (seeded by ``seed``), so with 4 transformations x 3 shapes and
    ``n = 12`` every group appears once, and with 3 MNIST transformations 4 times each."""
    n = check_int("n", n, minimum=1, maximum=len(test.x))
    key = test.transform * (int(test.label.max()) + 1) + test.label if by_label else test.transform
    g = torch.Generator().manual_seed(int(seed))
    groups = [(key == k).nonzero().flatten() for k in torch.unique(key)]
    queues = [grp[torch.randperm(len(grp), generator=g)].tolist() for grp in groups]
    order = torch.randperm(len(queues), generator=g).tolist()
    picks: list[int] = []
    while len(picks) < n:
        for q in (queues[i] for i in order):
            if q and len(picks) < n:
                picks.append(q.pop(0))
    return picks


@dataclass(frozen=True)
class TraversalSheet:
    """Appendix D's three rows for ``n`` sequences: the data ``x_l``, the direct reconstruction
    ``g(t_l)`` and the traversal ``g(Roll_l(t_0))``.  Images: one posterior sample of the codes
    (:data:`FAIR_DECODE`; the deterministic code is an atypical input for a VAE's decoder, see the
    module doc); BCE per frame: the expectation over ``n_samples`` samples, as the chapters' claims."""

    index: list[int]       # the test sequences shown
    data: Tensor           # (n, S, P)
    direct: Tensor         # (n, S, P) sigmoid(decode(t_l)), t one posterior sample
    rolled: Tensor         # (n, S, P) sigmoid(decode(Roll_l(t_0))), the same sample
    direct_bce: Tensor     # (n, S) nats per image, mean over the samples
    rolled_bce: Tensor     # (n, S)
    held_out: Tensor       # (S,) bool: frames outside t_0's window (:func:`~tvae_core.metrics.held_out_frames`)

    def ratio(self) -> float:
        """Mean rolled BCE / mean direct BCE over the held-out frames (over every frame but 0 when the
        window covers the whole sequence, ``L = S/2``): about 1 for capsules that roll with the input."""
        frames = self.held_out if bool(self.held_out.any()) else torch.arange(self.data.shape[1]) > 0
        return float(self.rolled_bce[:, frames].mean() / self.direct_bce[:, frames].mean())


@torch.no_grad()
def traversal_sheet(model, test, index: list[int], seed: int = 0, n_samples: int = 4) -> TraversalSheet:
    """The :class:`TraversalSheet` of ``model`` for the test sequences ``index`` (samples seeded by ``seed``)."""
    check_int("n_samples", n_samples, minimum=1)
    dev = next(model.parameters()).device
    x = as_float(test.x[index].to(dev))                       # (n, S, P)
    g = torch.Generator(device=dev).manual_seed(int(seed))
    t = sample_codes(model, x, g)                             # (n, S, C*D): the sample drawn
    first = capsule_traversal(model, x, t=t)
    direct_bce, rolled_bce = first.direct_bce.clone(), first.roll_bce.clone()
    for _ in range(n_samples - 1):
        tr = capsule_traversal(model, x, t=sample_codes(model, x, g))
        direct_bce += tr.direct_bce
        rolled_bce += tr.roll_bce
    direct = torch.sigmoid(model.decode(t)).cpu()
    return TraversalSheet(list(index), x.cpu(), direct, first.decoded, direct_bce / n_samples,
                          rolled_bce / n_samples, first.held_out)


# The paper's numbers (Tables 1, 2, 4, 5; mean +- std over 3 initialisations), keyed by
# (variant, L/S as a string); printed next to this run's values.
PAPER_TABLE1 = {  # MNIST: log p(x) per image (IS, 10 samples) and E_eq; Table 1, then Table 4's other rows
    ("tvae", "1/2"): {"log_p": "-188.5 ± 1.0", "e_eq": "386.7 ± 1.0"},
    ("tvae", "5/36"): {"log_p": "-184.7 ± 0.7", "e_eq": "3149.6 ± 20.7"},
    ("tvae_l0", "0"): {"log_p": "-217.3 ± 1.3", "e_eq": "3047.8 ± 59.2"},
    ("bubble", "5/36"): {"log_p": "-190.0 ± 0.3", "e_eq": "2522.5 ± 21.3"},
    ("vae", "0"): {"log_p": "-189.0 ± 0.8", "e_eq": "13273.9 ± 0.5"},
    # the other rows of Table 4 (B; its TVAE L=S/2 log p and E_eq std read 1.1, Table 1's 1.0)
    ("tvae", "13/36"): {"log_p": "-187.1 ± 1.2", "e_eq": "990.6 ± 10.7"},
    ("tvae", "1/4"): {"log_p": "-186.9 ± 0.6", "e_eq": "2045.7 ± 3.3"},
    ("bubble", "1/2"): {"log_p": "-196.3 ± 1.1", "e_eq": "2066.5 ± 596.7"},
    ("bubble", "1/4"): {"log_p": "-203.2 ± 2.1", "e_eq": "1005.3 ± 12.7"},
}
PAPER_TABLE3 = {  # MNIST, A.8: (variant, normalisation) -> log p(x) per image and E_eq, mean +- std over 3 seeds
    ("tvae", "pgd"): {"log_p": "-189.0 ± 0.1", "e_eq": "3196.7 ± 5.0"},
    ("tvae", "wn"): {"log_p": "-184.9 ± 0.8", "e_eq": "3137.9 ± 6.4"},
    ("vae", "pgd"): {"log_p": "-209.1 ± 1.1", "e_eq": "13262.0 ± 0.5"},
    ("vae", "wn"): {"log_p": "-192.5 ± 0.5", "e_eq": "13273.2 ± 1.4"},
    ("vae", "none"): {"log_p": "-189.0 ± 0.8", "e_eq": "13273.9 ± 0.5"},
}
PAPER_TABLE2 = {  # dSprites: CapCorr per factor and E_eq (Table 5 has every L)
    ("tvae", "1/2"): {"x": "1.0 ± 0", "y": "1.0 ± 0", "orientation": "1.0 ± 0", "scale": "1.0 ± 0", "e_eq": "131 ± 0"},
    ("tvae", "2/5"): {"x": "1.0 ± 0", "y": "1.0 ± 0", "orientation": "1.0 ± 0", "scale": "1.0 ± 0", "e_eq": "679 ± 4"},
    ("tvae", "1/3"): {"x": "1.0 ± 0", "y": "1.0 ± 0", "orientation": "1.0 ± 0", "scale": "1.0 ± 0", "e_eq": "964 ± 9"},
    ("tvae", "4/15"): {"x": "0.96 ± 0.01", "y": "0.97 ± 0.01", "orientation": "0.90 ± 0.01", "scale": "0.97 ± 0.00",
                       "e_eq": "1298 ± 5"},
    ("tvae", "1/6"): {"x": "0.68 ± 0.02", "y": "0.69 ± 0.02", "orientation": "0.57 ± 0.01", "scale": "0.42 ± 0.01",
                      "e_eq": "2313 ± 33"},
    ("tvae_l0", "0"): {"x": "0.17 ± 0.03", "y": "0.17 ± 0.04", "orientation": "0.11 ± 0.02", "scale": "0.52 ± 0.01",
                       "e_eq": "1075 ± 20"},
    ("bubble", "1/6"): {"x": "0.07 ± 0.02", "y": "0.08 ± 0.01", "orientation": "0.05 ± 0.01", "scale": "0.26 ± 0.00",
                        "e_eq": "1397 ± 29"},
    ("vae", "0"): {"x": "0.24 ± 0.01", "y": "0.25 ± 0.01", "orientation": "0.09 ± 0.01", "scale": "0.47 ± 0.00",
                   "e_eq": "6929 ± 1"},
    # the other BubbleVAE rows of Table 5 (B)
    ("bubble", "1/2"): {"x": "0.17 ± 0.01", "y": "0.16 ± 0.01", "orientation": "0.12 ± 0.03", "scale": "0.52 ± 0.00",
                        "e_eq": "3543 ± 441"},
    ("bubble", "2/5"): {"x": "0.14 ± 0.01", "y": "0.14 ± 0.00", "orientation": "0.13 ± 0.01", "scale": "0.53 ± 0.00",
                        "e_eq": "6922 ± 6"},
    ("bubble", "1/3"): {"x": "0.13 ± 0.02", "y": "0.12 ± 0.01", "orientation": "0.10 ± 0.01", "scale": "0.52 ± 0.02",
                        "e_eq": "2037 ± 924"},
    ("bubble", "4/15"): {"x": "0.12 ± 0.03", "y": "0.12 ± 0.02", "orientation": "0.09 ± 0.01", "scale": "0.49 ± 0.03",
                         "e_eq": "2420 ± 1192"},
}
PAPER_FIG5 = {  # mean CapCorr over the four dSprites factors vs L/S (from Table 5)
    "tvae": {0.0: 0.24, 1 / 6: 0.59, 4 / 15: 0.95, 1 / 3: 1.0, 2 / 5: 1.0, 1 / 2: 1.0},
    "bubble": {1 / 6: 0.115, 4 / 15: 0.205, 1 / 3: 0.2175, 2 / 5: 0.235, 1 / 2: 0.2425},
}


def frac_key(frac: float) -> str:
    """``5/36``-style key of ``L/S`` for the paper tables."""
    from fractions import Fraction

    f = Fraction(frac).limit_denominator(36)
    return "0" if f == 0 else f"{f.numerator}/{f.denominator}"


@dataclass(frozen=True)
class CapsuleData:
    """The train/test sequences of both data sets, as chapters 4, 5 and 8 use them."""

    mnist_train: object
    mnist_test: object
    dsprites_train: object
    dsprites_test: object

    seed: int = 0

    def data_id(self, train) -> str:
        """:func:`sequence_data_id` of a training set built with this data's seed."""
        return sequence_data_id(train, self.seed)


def sequence_data_id(train, seed: int) -> str:
    """Cache-key identity of a training set of sequences: source, size, data seed, and the combined
    transformation when there is one (Fig 1)."""
    combined = "|color+rotation" if tuple(train.transforms) == ("color+rotation",) else ""
    return f"{train.source}|n={len(train.x)}|seed={seed}{combined}"


def capsule_data(cm: CapsuleDataConfig, cd: CapsuleDataConfig, data_dir=None, seed: int = 0) -> CapsuleData:
    """MNIST sequences (train from the training digits, test from the test digits) and a
    train/test split of dSprites sequences, all seeded by ``seed``."""
    from tvae_experiments.data.mnist import mnist
    from tvae_experiments.data.sequences import dsprites_sequences, mnist_sequences
    from tvae_experiments.dry_run import test_size
    from tvae_experiments.run import current

    dry = current().dry_run_steps  # a dry run cuts the test sets (tvae_experiments.dry_run)

    digits = mnist(data_dir, seed=seed)
    # Large training sets (paper profile) are built and kept as uint8: 60,000 MNIST sequences take 2.5 GB
    # instead of 10 GB; `fit` rescales each batch.  The cpu/smoke sets (<= 2,000) stay float32.
    mtrain = mnist_sequences(digits.train_x, digits.train_y, cm.n_train, S=cm.S, seed=seed,
                             uint8=cm.n_train > UINT8_ABOVE)
    mtest = mnist_sequences(digits.test_x, digits.test_y, test_size(cm.n_test, dry), S=cm.S, seed=seed + 1)
    dall = dsprites_sequences(cd.n_train + cd.n_test, S=cd.S, data_dir=data_dir, seed=seed, image_size=cd.image_size,
                              uint8=cd.n_train > UINT8_ABOVE)
    dtrain, dtest = dall.split(cd.n_test)  # a dry run cuts the test part only: the same training set
    return CapsuleData(mtrain, mtest, dtrain, dtest.head(test_size(cd.n_test, dry)).as_float(), seed)


COMBINED_TRANSFORMS = ("color+rotation", "color+perspective")
"""The combined MNIST sequences of Fig 1 / Fig 18 (colour + rotation) and Fig 19 (colour + perspective)."""


def combined_data(cm: CapsuleDataConfig, data_dir=None, seed: int = 0, transform: str = "color+rotation"):
    """MNIST sequences that change colour and a second factor together, ``(train, test)``: ``transform``
    ``"color+rotation"`` (Fig 1, Fig 18) or ``"color+perspective"`` (Fig 19,
    :func:`~tvae_experiments.data.sequences.perspective_frames`); :func:`mnist_transform_data`."""
    check_choice("transform", transform, COMBINED_TRANSFORMS)
    return mnist_transform_data(cm, (transform,), data_dir, seed)


def mnist_transform_data(cm: CapsuleDataConfig, transforms: tuple[str, ...], data_dir=None, seed: int = 0):
    """MNIST sequences of the given transformations (e.g. ``("rotation", "color")`` for chapter 10's 2-D
    capsules), ``(train, test)``, seeded as :func:`capsule_data` (train ``uint8`` when large, test cut in
    a dry run)."""
    from tvae_experiments.data.mnist import mnist
    from tvae_experiments.data.sequences import mnist_sequences
    from tvae_experiments.dry_run import test_size
    from tvae_experiments.run import current

    dry = current().dry_run_steps  # a dry run cuts the test sets (tvae_experiments.dry_run)

    digits = mnist(data_dir, seed=seed, verbose=False)
    ctrain = mnist_sequences(digits.train_x, digits.train_y, cm.n_train, S=cm.S, seed=seed, transforms=transforms,
                             uint8=cm.n_train > UINT8_ABOVE)
    ctest = mnist_sequences(digits.test_x, digits.test_y, test_size(cm.n_test, dry), S=cm.S, seed=seed + 1,
                            transforms=transforms)
    return ctrain, ctest


UINT8_ABOVE = 10_000
"""Training sets with more sequences than this are stored as ``uint8`` (see :func:`capsule_data`)."""
