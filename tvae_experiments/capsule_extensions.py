"""Appendix C's proposed extensions of the TVAE, trained and measured at toy and MNIST scale (chapter 10).

The paper proposes four extensions (appendix C) and publishes no experiment with them (for C.3 one
sentence says such models "can indeed disentangle up to 2 distinct transformations").  Each is already a
building block of ``tvae_core`` (:class:`~tvae_core.models.AppendixModelConfig`, tested in
``tests/test_appendix_c.py``); this module trains them on chapter 4's toy problem (a 5-pixel plus
on a torus moving one column or one row per frame, :func:`~tvae_experiments.capsules.learn_toy`)
and measures whether they do what the appendix says, each beside the same architecture at its
initialisation:

* C.4 causal coherence (Eq 22): :func:`online_codes` -- ``t_l`` from frames ``0 .. l`` only
  (toy: :func:`causal_section`; chapter 4's MNIST sequences: :func:`causal_mnist_section`);
* C.3 two-dimensional capsules (Eq 21): :func:`lattice_lines`, :func:`lattice_capcorr` -- CapCorr
  along each axis of the ``side x side`` lattice;
* C.1 partial roll (Eq 19-20): :func:`partial_rolls` -- Eq 20's ObservedRoll on the grid of
  ``alpha`` steps, and :func:`roll_slope`, the units rolled per frame;
* C.2 non-cyclic capsules: :func:`offset_rolls` -- the roll of every frame's code against the
  first original frame's, on sequences padded at both ends (:func:`~tvae_core.roll.pad_sequence_ends`);
  toy: :func:`noncyclic_section`; MNIST scale sequences cut so they never wrap: :func:`scale_ramps`,
  :func:`ramp_section`.

Every toy model trains with the toy recipe (:func:`~tvae_experiments.capsules.fit_toy`: Adam, always
trained, seconds on a CPU); the ``*_mnist_section`` and :func:`ramp_section` models are chapter 4's MNIST
TVAE with one building block changed, trained with the profile's MNIST recipe and cached like chapter 4's
(:data:`~tvae_experiments.chapters.ch10_capsule_extensions.MNIST_MODELS`).  The ``*_section`` functions train and score one section each.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

import torch
from torch import Tensor

from tvae_core.checks import check_capsules, check_choice, check_int
from tvae_core.metrics import capsule_roll, held_out_frames, partial_capsule_roll
from tvae_core.roll import LATTICE_AXES, pad_sequence_ends, roll2d
from tvae_experiments.capsule_views import encode_sequences
from tvae_experiments.chapters.ch10_capsule_extensions import mnist_model
from tvae_experiments.capsules import (CapsuleScores, ToyCapsules, TraversalScores, capcorr_per_transform,
                                       evaluate_capsules, fit_toy, learn_toy, sample_codes, toy_data, traversal_scores,
                                       untrained_toy)
from tvae_experiments.train import as_float
from tvae_experiments.profiles import CapsuleExtensionsConfig

if TYPE_CHECKING:
    from tvae_core.models import TVAE
    from tvae_experiments.data.sequences import SequenceData

__all__ = ["online_codes", "online_error", "with_config", "lattice_lines", "lattice_capcorr", "axis_of",
           "PoseScores", "rolled_traversal", "omega_shift", "partial_rolls", "circular_match", "roll_slope", "pearson", "offset_rolls",
           "CausalSection", "causal_section", "LatticeSection", "lattice_section", "score_lattice", "lattice_mnist_section", "PartialSection", "partial_section",
           "IntegerRollControl", "LinearRollReading", "PartialMnistSection", "partial_mnist_section",
           "CausalMnistSection", "causal_mnist_section",
           "NoncyclicSection", "noncyclic_section", "noncyclic_data", "scale_ramps", "ramp_data", "RampSection",
           "ramp_section"]


# ------------------------------------------------------------------------------ C.4: causal


@torch.no_grad()
def online_codes(model, x: Tensor) -> Tensor:
    """``t_l`` computed from the frames ``0 .. l`` only, for every ``l``: ``x: (N, S, P) -> (N, S, n)``.

    Frame ``l``'s code is the last code of the prefix ``x[:, :l+1]`` (what an online encoder that has
    seen ``l + 1`` frames can compute).  With Eq 22's causal window and a zero time boundary
    (``window="causal", time_boundary="zero"``) it equals ``model.encode(x)`` exactly: ``T_l`` reads
    ``U_{l-L} .. U_l`` only."""
    S = x.shape[-2]
    return torch.stack([model.encode(x[..., :l + 1, :])[..., l, :] for l in range(S)], dim=-2)


def online_error(online: Tensor, full: Tensor) -> Tensor:
    """Per frame, ``max |online - full|`` over sequences and units divided by ``max |full|``: ``(S,)``."""
    return (online - full).abs().amax(dim=(0, 2)) / full.abs().max()


def with_config(model, **changes):
    """The same weights in the architecture ``model.cfg`` with ``changes`` (fields of
    :class:`~tvae_core.models.AppendixModelConfig`, e.g. another window): topographies have no
    parameters, so only the code's construction changes.  Eval mode, on the model's device."""
    from tvae_core.models import AppendixModelConfig

    cfg = AppendixModelConfig(**{**dataclasses.asdict(model.cfg), **changes})
    out = cfg.build().to(next(model.parameters()).device)
    out.load_state_dict(model.state_dict())
    return out.eval()


# ----------------------------------------------------------------------------- C.3: lattices


def lattice_lines(t: Tensor, side: int, axis: int) -> Tensor:
    """Codes of 2-D capsules (``side x side`` lattices, row-major as :func:`~tvae_core.roll.roll2d`)
    re-ordered so that the lines along ``axis`` are contiguous capsules of ``side`` units:
    ``(..., C*side^2) -> (..., C*side^2)``.  Then ``roll(lattice_lines(t, s, a), k, s) ==
    lattice_lines(roll2d(t, k, s, a), s, a)``: a 1-D ObservedRoll of the result is the roll along ``axis``."""
    check_int("side", side, minimum=1)
    check_choice("axis", axis, LATTICE_AXES)
    C = check_capsules("t", t.shape[-1], side * side)
    g = t.reshape(*t.shape[:-1], C, side, side)  # (..., C, r, q)
    if axis == 0:
        g = g.transpose(-1, -2)  # (..., C, q, r): lines along r are contiguous
    return g.reshape(t.shape)


def lattice_capcorr(t: Tensor, test, side: int) -> dict[str, tuple[float, float]]:
    """CapCorr (Eq 17, A.11's ``Omega``) of every transformation of ``test`` along each lattice axis:
    ``t: (N, S, C*side^2)`` codes -> ``{name: (CapCorr along axis 0, along axis 1)}``.  A code that
    rolls along the other axis only replaces each line along this one by another line of ``t_0``,
    so its ObservedRoll here compares different lines: CapCorr well below 1 (0.18 and 0.34 on random
    planted codes, ``tests/test_capsule_extensions.py``)."""
    from tvae_experiments.capsules import capcorr_per_transform

    per_axis = [capcorr_per_transform(lattice_lines(t, side, a), test, side) for a in LATTICE_AXES]
    return {name: (per_axis[0][name], per_axis[1][name]) for name in per_axis[0]}


def axis_of(capcorr: Mapping[str, tuple[float, float]]) -> dict[str, int]:
    """The lattice axis each transformation rolls along: the one with the larger CapCorr."""
    return {name: int(cc[1] > cc[0]) for name, cc in capcorr.items()}


@dataclass(frozen=True)
class PoseScores:
    """A traversal in numbers for one transformation: means over the held-out frames, nats per image."""

    traversal_bce: float   # decode(rolled t_0) vs x_l
    wrong_pose_bce: float  # decode(rolled t_0) vs the frame half a cycle away


@torch.no_grad()
def rolled_traversal(model, test, roll_fn: Callable[[Tensor, Tensor, Tensor], Tensor], held_out: Tensor,
                     n_samples: int = 4, seed: int = 0) -> dict[str, PoseScores]:
    """Decode ``roll_fn(t_0, l, transform)`` for every frame ``l`` and score it against ``x_l`` and
    against the frame half a cycle away, on the frames of ``held_out: (S,)`` bool; the expected BCE
    over ``n_samples`` posterior samples of the code (chapter 4's fair rule,
    :func:`~tvae_experiments.capsules.sample_codes`).  ``roll_fn`` gets ``t_0`` expanded to
    ``(N, S, n)``, the shifts ``(S,)`` and the transformation index per sequence ``(N,)``; e.g. a 2-D
    capsule's roll along the axis of each sequence's transformation.  -> ``{name: PoseScores}``."""
    check_int("n_samples", n_samples, minimum=1)
    dev = next(model.parameters()).device
    x = test.x.float().to(dev)
    N, S, _ = x.shape
    g = torch.Generator(device=dev).manual_seed(int(seed))
    shifts = torch.arange(S)
    opposite = (shifts + S // 2) % S
    acc = torch.zeros(N, 2, S, dtype=torch.float64)
    for _ in range(n_samples):
        t = sample_codes(model, x, g)  # (N, S, n)
        logits = model.decode(roll_fn(t[:, :1].expand_as(t), shifts, test.transform))
        bce = lambda y: torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none").sum(-1)
        acc += torch.stack([bce(x), bce(x[:, opposite.to(dev)])], 1).double().cpu()
    per = (acc / n_samples)[:, :, held_out].mean(-1)  # (N, 2)
    out = {}
    for k, name in enumerate(test.transforms):
        sel = test.transform == k
        if int(sel.sum()):
            tr, wr = per[sel].mean(0).tolist()
            out[name] = PoseScores(tr, wr)
    return out


# --------------------------------------------------------------------------- C.1: partial roll


def omega_shift(test) -> tuple[Tensor, Tensor]:
    """Per sequence, its canonical frame ``Omega`` (the first one) and the factor shift from frame 0
    to ``Omega`` in the transformation's direction, ``(y_Omega - y_0) mod P`` (A.11, the book's
    direction, :func:`~tvae_core.metrics.omega_and_rolls`): ``((N,), (N,))`` long."""
    if not bool(test.canonical.any(1).all()):
        raise ValueError("every sequence needs a canonical frame (Omega of A.11)")
    omega = test.canonical.float().argmax(1)
    idx = torch.arange(len(omega))
    P = test.step.max(1).values + 1
    return omega, torch.remainder(test.step[idx, omega] - test.step[:, 0], P)


def partial_rolls(t: Tensor, test, capsule_dim: int, alpha: float, roll_kind: str = "linear") -> tuple[Tensor, Tensor]:
    """Eq 20's ObservedRoll between ``t_0`` and ``t_Omega`` on the grid ``0, alpha, ..., D - alpha``
    (:func:`~tvae_core.metrics.partial_capsule_roll`, the roll taking ``t_0`` to ``t_Omega``) and the
    factor shift in frames: ``((N,) float units, (N,) frames)``.  A code that rolls ``alpha`` units per
    frame has ObservedRoll ``= alpha * shift`` (while that is below ``D``)."""
    omega, shift = omega_shift(test)
    idx = torch.arange(len(omega))
    observed = partial_capsule_roll(t[:, 0], t[idx, omega], capsule_dim, alpha, roll_kind)
    return observed.double(), shift.double()


def circular_match(observed: Tensor, shift: Tensor, alpha: float, capsule_dim: int) -> float:
    """Fraction of sequences whose ObservedRoll is ``alpha * shift`` on the capsule's circle: within
    ``alpha / 2`` modulo ``D`` (a roll by ``D`` units is no roll; Pearson's CapCorr counts ``D - alpha``
    read as ``0`` as an error of ``D - alpha``)."""
    d = torch.remainder(observed.double() - alpha * shift.double() + capsule_dim / 2, capsule_dim) - capsule_dim / 2
    return float((d.abs() < alpha / 2).double().mean())


def roll_slope(observed: Tensor, shift: Tensor) -> float:
    """Units rolled per frame: the least-squares slope through the origin, ``sum(o s) / sum(s^2)``."""
    s = shift.double()
    return float((observed.double() * s).sum() / (s * s).sum().clamp_min(1e-12))


def pearson(a: Tensor, b: Tensor) -> float:
    """Pearson correlation (0 when either is constant), as CapCorr (Eq 17) computes it."""
    a, b = a.double().flatten(), b.double().flatten()
    a, b = a - a.mean(), b - b.mean()
    den = float(a.norm() * b.norm())
    return float((a @ b) / den) if den > 0 else 0.0


# --------------------------------------------------------------------------- C.2: non-cyclic


def offset_rolls(t: Tensor, capsule_dim: int, first: int = 0, frames: int | None = None) -> tuple[Tensor, Tensor]:
    """ObservedRoll (Eq 16, the roll taking ``t_first`` to ``t_{first+l}``) of the frames
    ``first .. first+frames-1`` of every sequence, with their offsets ``l``: ``((N, frames), (N, frames))``.
    For sequences that do not wrap around there is no canonical frame to count from; a capsule that
    rolls one unit per frame has ObservedRoll ``l``."""
    S = t.shape[-2]
    frames = S - first if frames is None else frames
    check_int("first", first, minimum=0, maximum=S - 1)
    check_int("frames", frames, minimum=1, maximum=S - first)
    part = t[:, first:first + frames]
    observed = capsule_roll(part[:, :1].expand_as(part), part, capsule_dim)
    return observed, torch.arange(frames).expand_as(observed)


# ------------------------------------------------------------------------------- the sections


@dataclass
class CausalSection:
    """C.4: the causal model and chapter 4's forward-window toy model, with their controls."""

    causal: ToyCapsules                        # the causal toy TVAE (Eq 22, zero time boundary), its scores, controls
    forward: ToyCapsules                       # chapter 4's toy TVAE (forward window), the run chapter 4 opens with
    online_error: Tensor                       # (S,) causal model: online vs full-sequence codes (online_error)
    forward_online_error: Tensor               # (S,) forward model read with a zero time boundary: full vs online codes
    online_bce: dict[str, PoseScores]          # name -> decode(online t_l) scored on every frame (trained)
    untrained_online_bce: dict[str, PoseScores]  # the same for the untrained causal model (init = seed)


@torch.no_grad()
def _online_pose(model, test, batch_size: int = 64) -> dict[str, PoseScores]:
    """Per transformation, decode(online ``t_l``) (C.4, Eq 22: ``t_l`` from frames ``0 .. l`` only) scored
    against ``x_l`` and against the frame half a cycle away, nats per image averaged over every frame; batches
    of ``batch_size`` sequences on the model's device."""
    dev = next(model.parameters()).device
    S = test.x.shape[1]
    opposite = (torch.arange(S) + S // 2) % S
    right, wrong = [], []
    for i in range(0, len(test.x), batch_size):
        x = as_float(test.x[i:i + batch_size].to(dev))  # (B, S, P)
        logits = model.decode(online_codes(model, x))
        bce = lambda y: torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none").sum(-1).mean(-1)
        right.append(bce(x).cpu())
        wrong.append(bce(x[:, opposite]).cpu())
    right, wrong = torch.cat(right), torch.cat(wrong)
    return {name: PoseScores(right[test.transform == k].mean().item(), wrong[test.transform == k].mean().item())
            for k, name in enumerate(test.transforms)}


@torch.no_grad()
def _online_errors(causal, forward, x: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`online_error` (C.4, Eq 22's known answer) per frame, ``(S,)`` each, of the ``causal`` model and of
    ``forward``'s weights read with a zero time boundary (cut off from the future, nothing wraps) on
    ``x: (N, S, P)`` (moved to each model's device)."""
    out = []
    for m in (causal, with_config(forward, time_boundary="zero")):
        xd = as_float(x.to(next(m.parameters()).device))
        out.append(online_error(online_codes(m, xd), m.encode(xd)).cpu())
    return out[0], out[1]


def causal_section(cfg: CapsuleExtensionsConfig, seed: int = 0) -> CausalSection:
    """Train the causal toy TVAE (Eq 22) and chapter 4's forward one; measure the online codes."""
    causal = learn_toy(cfg.toy, seed, model=cfg.model("causal"), name="toy-causal")
    forward = learn_toy(cfg.toy, seed)  # chapter 4's toy model, the same run
    err, ferr = _online_errors(causal.model, forward.model, causal.test.x)
    untrained = untrained_toy(cfg.model("causal"), seed)
    return CausalSection(causal=causal, forward=forward, online_error=err, forward_online_error=ferr,
                         online_bce=_online_pose(causal.model, causal.test),
                         untrained_online_bce=_online_pose(untrained, causal.test))


@dataclass
class LatticeSection:
    """C.3: the 2-D capsule model, its untrained controls, and chapter 4's 1-D model for comparison."""

    model: TVAE                                          # the trained model with 2-D capsules (Eq 21)
    test: SequenceData                                   # the test sequences, x (N, S, P)
    seconds: float                                       # training time (of the cached weights at MNIST scale)
    side: int                                            # each capsule is a side x side lattice
    capcorr: dict[str, tuple[float, float]]              # name -> CapCorr (along axis 0, along axis 1), trained
    untrained_capcorr: dict[str, tuple[float, float]]    # the same, mean over cfg.n_inits initialisations
    axis: dict[str, int]                                 # name -> the axis it rolls along (trained): 0 or 1
    traversal: dict[str, PoseScores]                     # name -> held-out traversal rolled along its axis (trained)
    untrained_traversal: dict[str, PoseScores]           # the same rule for the untrained model (init = seed)
    codes: Tensor                                        # (N, S, C*side^2) the trained model's test codes (figures)


def lattice_section(cfg: CapsuleExtensionsConfig, seed: int = 0) -> LatticeSection:
    """Train the toy TVAE with 2-D capsules (Eq 21, one lattice cell per pixel of the torus)."""
    mcfg = cfg.model("lattice")
    train, test = toy_data(cfg.toy, seed)
    r = fit_toy(cfg.toy, seed, model=mcfg, train=train, name="toy-lattice")
    controls = [untrained_toy(mcfg, i) for i in range(seed, seed + cfg.n_inits)]
    return score_lattice(r.model, r.seconds, controls, test, cfg.toy.S, seed)


def score_lattice(model, seconds: float, controls, test, side: int, seed: int = 0) -> LatticeSection:
    """CapCorr along each lattice axis of ``model`` and of its untrained ``controls`` (averaged), the
    axis each transformation takes, and the traversal rolled along it (``controls[0]``'s too) on ``test``."""
    t = encode_sequences(model, test.x)  # (N, S, C*side^2), batched on the model's device
    cc = lattice_capcorr(t, test, side)
    ccs = [lattice_capcorr(encode_sequences(c, test.x), test, side) for c in controls]
    ucc = {k: tuple(sum(c[k][a] for c in ccs) / len(ccs) for a in LATTICE_AXES) for k in cc}
    axis = axis_of(cc)
    axes = torch.tensor([axis[name] for name in test.transforms])

    def along(t0: Tensor, shifts: Tensor, transform: Tensor) -> Tensor:
        return roll2d(t0, shifts[None, :].to(t0.device), side, axes[transform][:, None].to(t0.device))

    held = held_out_frames(test.x.shape[1], model.L)
    return LatticeSection(model=model, test=test, seconds=seconds, side=side, capcorr=cc, untrained_capcorr=ucc,
                          axis=axis, traversal=rolled_traversal(model, test, along, held, seed=seed),
                          untrained_traversal=rolled_traversal(controls[0], test, along, held, seed=seed), codes=t)


def lattice_mnist_section(cfg: CapsuleExtensionsConfig, train, test, data_id: str, seed: int = 0,
                          device: str = "auto") -> LatticeSection:
    """C.3 at MNIST scale: train (or load, cached) :meth:`CapsuleExtensionsConfig.mnist_lattice_model` on
    ``train`` (rotation and colour sequences) and score it as the toy (:func:`score_lattice`) on ``test``."""
    mcfg = cfg.mnist_lattice_model()
    r = mnist_model("lattice", cfg, seed).fit(train.x, data_id, device=device)
    controls = [untrained_toy(mcfg, i, device) for i in range(seed, seed + cfg.n_inits)]
    return score_lattice(r.model, r.seconds, controls, test, cfg.capsules.mnist.S, seed)


class IntegerRollControl(TypedDict):
    """:class:`PartialSection`'s broken control, the same capsules trained with Eq 9's whole-unit roll, read as
    the trained model (Eq 20, Fourier phase shift)."""

    capcorr: dict[str, float]  # name -> Pearson(observed, shift)
    slope: float               # units rolled per frame (roll_slope)
    observed: Tensor           # (N,) ObservedRoll(t_Omega, t_0), units
    match: dict[str, float]    # name -> circular_match


class LinearRollReading(TypedDict):
    """:class:`PartialSection`'s trained model read with Eq 19's linear roll in Eq 20 instead of the Fourier shift."""

    capcorr: dict[str, float]  # name -> Pearson(observed, shift)
    slope: float               # units rolled per frame (roll_slope)


@dataclass
class PartialSection:
    """C.1: capsules of ``D < S`` units rolled ``alpha`` per frame (Eq 19), measured by Eq 20.

    ObservedRoll uses the Fourier phase shift on the grid ``0, alpha, ...`` (``roll_kind``, C.1's
    "more principled partial roll"): Eq 20 with Eq 19's linear roll cannot tell a roll of ``j alpha``
    from ``(j-1) alpha`` on 3-unit capsules (each linear step halves the one non-constant frequency
    while turning it by half a unit, so the two inner products are equal); its numbers are kept in
    ``linear``."""

    model: TVAE                          # the trained toy TVAE, D = S/2 units per capsule, Eq 19's linear roll
    test: SequenceData                   # the toy test sequences, x (N, S, P)
    seconds: float                       # training time
    alpha: float                         # units rolled per frame (Eq 19)
    observed: Tensor                     # (N,) float64 Eq 20's ObservedRoll(t_Omega, t_0), units (Fourier shift)
    shift: Tensor                        # (N,) float64 frames from 0 to Omega
    capcorr: dict[str, float]            # name -> Pearson(observed, shift) (CapCorr with Eq 20)
    slope: float                         # units per frame (roll_slope)
    untrained_capcorr: dict[str, float]  # name -> the same, mean over cfg.n_inits initialisations
    untrained_slope: float               # the same, mean over cfg.n_inits initialisations
    untrained_observed: Tensor           # (N,) float64 ObservedRoll of the model's own initialisation (init = seed)
    integer: IntegerRollControl          # the broken control: Eq 9's whole-unit roll, D < S
    linear: LinearRollReading            # the trained model measured with Eq 19's linear roll in Eq 20
    match: dict[str, float]              # name -> circular_match of the trained model
    untrained_match: dict[str, float]    # name -> the same, mean over cfg.n_inits initialisations
    roll_kind: str = "fourier"           # the partial roll of Eq 20 behind observed (partial_capsule_roll)


def _partial_scores(model, test, D: int, alpha: float,
                    kind: str = "fourier") -> tuple[Tensor, Tensor, dict[str, float], float]:
    with torch.no_grad():
        t = model.encode(test.x.float())
    obs, shift = partial_rolls(t, test, D, alpha, kind)
    cc = {name: pearson(obs[test.transform == k], shift[test.transform == k]) for k, name in enumerate(test.transforms)}
    return obs, shift, cc, roll_slope(obs, shift)


def partial_section(cfg: CapsuleExtensionsConfig, seed: int = 0) -> PartialSection:
    """Train the toy TVAE with ``D = S/2`` units per capsule and Eq 19's linear partial roll by
    ``alpha = 1/2``, and the same capsules with Eq 9's whole-unit roll (the control that breaks C.1)."""
    mcfg, icfg = cfg.model("partial"), cfg.model("partial_integer")
    D, a = cfg.partial_dim, cfg.partial_alpha
    train, test = toy_data(cfg.toy, seed)
    r = fit_toy(cfg.toy, seed, model=mcfg, train=train, name="toy-partial")
    obs, shift, cc, slope = _partial_scores(r.model, test, D, a)
    _, _, lcc, lslope = _partial_scores(r.model, test, D, a, "linear")
    controls = [_partial_scores(untrained_toy(mcfg, i), test, D, a) for i in range(seed, seed + cfg.n_inits)]
    ucc = {k: sum(c[2][k] for c in controls) / cfg.n_inits for k in cc}
    ri = fit_toy(cfg.toy, seed, model=icfg, train=train, name="toy-partial-integer")
    iobs, _, icc, islope = _partial_scores(ri.model, test, D, a)

    def match(o: Tensor) -> dict[str, float]:
        return {name: circular_match(o[test.transform == k], shift[test.transform == k], a, D)
                for k, name in enumerate(test.transforms)}

    umatch = [match(c[0]) for c in controls]
    return PartialSection(model=r.model, test=test, seconds=r.seconds, alpha=a, observed=obs, shift=shift,
                          capcorr=cc, slope=slope, untrained_capcorr=ucc,
                          untrained_slope=sum(c[3] for c in controls) / cfg.n_inits,
                          untrained_observed=controls[0][0],
                          integer=IntegerRollControl(capcorr=icc, slope=islope, observed=iobs, match=match(iobs)),
                          linear=LinearRollReading(capcorr=lcc, slope=lslope), match=match(obs),
                          untrained_match={k: sum(u[k] for u in umatch) / cfg.n_inits for k in cc})


@dataclass
class PartialMnistSection:
    """C.1 at MNIST scale: chapter 4's MNIST TVAE with capsules of ``D = S/2`` units rolled ``alpha`` per
    frame (Eq 19), read by Eq 20 (Fourier phase shift) per transformation, beside the untrained model
    and the same capsules trained with Eq 9's whole-unit roll."""

    test: SequenceData                  # chapter 4's MNIST test sequences, x (N, S, P)
    seconds: dict[str, float]           # "linear" | "integer" -> training seconds of the cached weights
    alpha: float                        # units rolled per frame (Eq 19)
    capsule_dim: int                    # D = S/2 units per capsule
    observed: Tensor                    # (N,) float64 ObservedRoll(t_Omega, t_0), units, of the Eq 19 model
    shift: Tensor                       # (N,) float64 frames from 0 to Omega
    match: dict[str, dict[str, float]]  # model ("trained" | "untrained" | "integer" | "reference") -> transformation
                                        # -> circular_match ("reference": chapter 4's TVAE, D = S, read at alpha = 1)
    slope: dict[str, dict[str, float]]  # model -> transformation -> units rolled per frame (roll_slope)
    capcorr: dict[str, dict[str, float]]  # model -> transformation -> Pearson(observed, shift)
    direct_bce: dict[str, float]        # "trained" | "integer" -> BCE of every frame from its own code, nats per image


def partial_mnist_section(cfg: CapsuleExtensionsConfig, train, test, data_id: str, seed: int = 0,
                          device: str = "auto", reference=None) -> PartialMnistSection:
    """Train (or load: cached like chapter 4's models) the MNIST TVAE of :meth:`CapsuleExtensionsConfig.mnist_model`
    with Eq 19's partial roll and with Eq 9's whole-unit roll on ``train``; score both and ``cfg.n_inits``
    untrained initialisations on ``test`` (chapter 4's MNIST sequences).  ``reference``: a model with
    capsules of ``D = S`` units (chapter 4's TVAE), scored the same way at ``alpha = 1`` -- what the
    measure gives at this scale without C.1."""
    a = cfg.partial_alpha
    D = cfg.mnist_model().capsule_dim
    models, seconds = {}, {}
    for roll, key in (("linear", "trained"), ("integer", "integer")):
        r = mnist_model(f"partial-{roll}", cfg, seed).fit(train.x, data_id, device=device)
        models[key], seconds[roll] = r.model, r.seconds
    for i in range(cfg.n_inits):
        models[f"untrained{i}"] = untrained_toy(cfg.mnist_model(), seed + i, device)
    if reference is not None:
        models["reference"] = reference
    per = {name: test.transform == k for k, name in enumerate(test.transforms)}
    match, slope, capcorr, direct, obs0, shift0 = {}, {}, {}, {}, None, None
    for key, model in models.items():
        t = encode_sequences(model, test.x)  # (N, S, n), batched on the model's device
        if key in ("trained", "integer"):
            direct[key] = _direct_bce(model, t, test.x)
        cap, alpha = (reference.capsule_dim, 1.0) if key == "reference" else (D, a)
        obs, shift = partial_rolls(t, test, cap, alpha, "fourier")
        if key == "trained":
            obs0, shift0 = obs, shift
        match[key] = {n: circular_match(obs[m], shift[m], alpha, cap) for n, m in per.items()}
        slope[key] = {n: roll_slope(obs[m], shift[m]) for n, m in per.items()}
        capcorr[key] = {n: pearson(obs[m], shift[m]) for n, m in per.items()}
    inits = [k for k in models if k.startswith("untrained")]
    for table in (match, slope, capcorr):
        table["untrained"] = {n: sum(table[k][n] for k in inits) / len(inits) for n in table["trained"]}
        for k in inits:
            del table[k]
    return PartialMnistSection(test=test, seconds=seconds, alpha=a, capsule_dim=D, observed=obs0, shift=shift0,
                               match=match, slope=slope, capcorr=capcorr, direct_bce=direct)


@dataclass
class CausalMnistSection:
    """C.4 at MNIST scale: chapter 4's MNIST TVAE with Eq 22's causal window, its untrained controls, and
    chapter 4's forward-window TVAE on the same test sequences (the price of causality)."""

    model: TVAE                   # the trained causal model (Eq 22, L = S/3, zero time boundary)
    test: SequenceData            # chapter 4's MNIST test sequences, x (N, S, P)
    seconds: float                # training time of the cached weights
    scores: CapsuleScores         # chapter 4's evaluate_capsules: held-out frames l >= 2L, trained
    scores_end: TraversalScores   # fair rule, the same frames rolled from t_L (which saw frames 0 .. L, its whole
                                  # window) instead of t_0; CapCorr etc. are those of ``scores``
    untrained: CapsuleScores      # the same as ``scores`` for its initialisation (init = seed)
    untrained_capcorr: dict[str, float]  # name -> CapCorr, mean over cfg.n_inits initialisations
    reference: CapsuleScores      # chapter 4's TVAE L = S/3 (forward window)
    wide: CapsuleScores           # the causal model with L' = 2L - 1 (as many frames as the forward window), on the
                                  # same held-out frames l >= 2L, rolled from t_0 (saw frame 0)
    wide_end: TraversalScores     # the same model rolled from t_{L'} (saw frames 0 .. 2L-1, as the forward t_0)
    wide_untrained_end: TraversalScores  # the same for its initialisation (init = seed)
    wide_seconds: float           # training time of the wide model's cached weights
    online_error: Tensor          # (S,) online_error of the causal model on the first n_online test sequences
    forward_online_error: Tensor  # (S,) the same for the reference's weights with a zero time boundary
    online: dict[str, PoseScores]  # name -> decode(online t_l) scored over every frame, trained
    untrained_online: dict[str, PoseScores]  # the same, the untrained model (init = seed)


def causal_mnist_section(cfg: CapsuleExtensionsConfig, train, test, data_id: str, reference, seed: int = 0,
                         device: str = "auto", n_online: int = 64) -> CausalMnistSection:
    """C.4 at MNIST scale: train (or load, cached like chapter 4's models)
    :meth:`CapsuleExtensionsConfig.mnist_causal_model` (Eq 22's causal window) on ``train`` (chapter 4's
    MNIST sequences, ``x: (N, S, P)``) and score it with chapter 4's :func:`evaluate_capsules` on ``test``,
    beside its untrained initialisations and ``reference``, chapter 4's trained TVAE (Eq 9's forward
    window): the price of causality, and the broken variant of the online known answer (its weights cut
    off from the future).  Beside them the causal model as wide as the forward window
    (``mnist_causal_model(wide=True)``, ``L' = 2L - 1``), scored on the same held-out frames ``l >= 2L``
    twice: rolled from ``t_0`` (which saw frame 0) and from ``t_{L'}`` (which saw frames ``0 .. 2L-1``,
    the forward ``t_0``'s frames); the causal model too from ``t_L`` (frames ``0 .. L``).  The known answer
    is read on the first ``n_online`` test sequences."""
    mcfg = cfg.mnist_causal_model()
    r = mnist_model("causal", cfg, seed).fit(train.x, data_id, device=device)
    controls = [untrained_toy(mcfg, i, device) for i in range(seed, seed + cfg.n_inits)]
    ccs = [capcorr_per_transform(encode_sequences(c, test.x), test, mcfg.capsule_dim) for c in controls]
    ucc = {k: sum(c[k] for c in ccs) / len(ccs) for k in ccs[0]}
    err, ferr = _online_errors(r.model, reference, test.x[:n_online])
    wcfg = cfg.mnist_causal_model(wide=True)
    w = mnist_model("causal-wide", cfg, seed).fit(train.x, data_id, device=device)
    def later(model, origin):  # the traversal alone (fair rule) from t_origin: the codes' other metrics do not change
        return traversal_scores(model, test, seed=seed, held_out_L=mcfg.L, origin=origin)

    return CausalMnistSection(
        model=r.model, test=test, seconds=r.seconds, scores=evaluate_capsules(r.model, test, seed),
        scores_end=later(r.model, mcfg.L), untrained=evaluate_capsules(controls[0], test, seed), untrained_capcorr=ucc,
        reference=evaluate_capsules(reference, test, seed),
        wide=evaluate_capsules(w.model, test, seed, held_out_L=mcfg.L), wide_end=later(w.model, wcfg.L),
        wide_untrained_end=later(untrained_toy(wcfg, seed, device), wcfg.L), wide_seconds=w.seconds,
        online_error=err, forward_online_error=ferr, online=_online_pose(r.model, test),
        untrained_online=_online_pose(controls[0], test))


@torch.no_grad()
def _direct_bce(model, t: Tensor, x: Tensor, batch_size: int = 64) -> float:
    """Mean BCE of every frame of ``x: (N, S, P)`` decoded from its own code ``t: (N, S, n)``, nats per image."""
    dev = next(model.parameters()).device
    total = 0.0
    for i in range(0, len(x), batch_size):
        logits = model.decode(t[i:i + batch_size].to(dev))
        total += float(torch.nn.functional.binary_cross_entropy_with_logits(
            logits, as_float(x[i:i + batch_size].to(dev)), reduction="none").sum())
    return total / (x.shape[0] * x.shape[1])


@dataclass
class NoncyclicSection:
    """C.2: non-cyclic capsules and the cyclic model on the same padded, non-wrapping sequences."""

    test: SequenceData                          # the unpadded test sequences, x (N, S, P)
    pad: int                                    # frames replicated at each end (C.2: L)
    models: dict[str, TVAE]                     # "noncyclic" | "cyclic" -> trained model, on (N, S + 2 pad, P)
    seconds: dict[str, float]                   # model -> training time
    roll_corr: dict[str, dict[str, float]]      # model -> name -> Pearson(ObservedRoll, frame offset), original frames
    exact: dict[str, dict[str, float]]          # model -> name -> fraction of frames with ObservedRoll == offset
    untrained_roll_corr: dict[str, dict[str, float]]  # model -> name -> the same, untrained, mean over cfg.n_inits
    direct_bce: dict[str, float]                # model -> mean BCE of each original frame from its own code, nats


def noncyclic_data(cfg: CapsuleExtensionsConfig, seed: int = 0):
    """``(train, test)`` non-cyclic toy sequences (:func:`~tvae_experiments.data.sequences.bump_sequences`
    with ``cyclic=False`` on a ``noncyclic_size`` grid), not padded; seeds as :func:`toy_data`."""
    from tvae_experiments.data.sequences import bump_sequences

    t = cfg.toy
    return tuple(bump_sequences(n, t.S, t.radius, seed=s, size=cfg.noncyclic_size, cyclic=False)
                 for n, s in ((t.n_train, seed), (t.n_test, 1000 + seed)))


def _roll_scores(model, x_padded: Tensor, test, D: int, pad: int, S: int) -> tuple[dict, dict, float]:
    """Per transformation of ``test``: Pearson(ObservedRoll, offset) and the share of frames with ObservedRoll ==
    offset, both over the original frames after the first (frame 0 is the reference: its ``(0, 0)`` pair would
    add a perfect point to every sequence), and the direct BCE of the original frames (nats per image).
    ``x_padded: (N, S + 2 pad, P)``; batched on the model's device.  An untrained code whose ObservedRoll is
    constant has correlation 0 (:func:`pearson`)."""
    t = encode_sequences(model, x_padded)  # (N, S + 2 pad, n) on the CPU
    obs, off = offset_rolls(t, D, pad, S)   # (N, S) each
    obs, off = obs[:, 1:], off[:, 1:]
    corr, exact = {}, {}
    for k, name in enumerate(test.transforms):
        sel = test.transform == k
        corr[name] = pearson(obs[sel], off[sel])
        exact[name] = float((obs[sel] == off[sel]).double().mean())
    return corr, exact, _direct_bce(model, t[:, pad:pad + S], test.x)


def _noncyclic_vs_cyclic(cfg: CapsuleExtensionsConfig, model_of, fit_one, device, test, x_padded: Tensor, D: int,
                         pad: int, S: int, seed: int) -> dict:
    """C.2's comparison, shared by the toy and MNIST sections: for ``kind`` in non-cyclic / cyclic, train
    ``fit_one(kind, model_of(kind))`` (a fit result) and score it and ``cfg.n_inits`` untrained
    initialisations with :func:`_roll_scores` on ``x_padded``.  Returns ``{field: {kind: value}}`` with fields
    models, seconds, corr, exact, direct, ucorr, uexact (the untrained means)."""
    out = {k: {} for k in ("models", "seconds", "corr", "exact", "direct", "ucorr", "uexact")}
    for kind in ("noncyclic", "cyclic"):
        mcfg = model_of(kind)
        r = fit_one(kind, mcfg)
        out["models"][kind], out["seconds"][kind] = r.model, r.seconds
        out["corr"][kind], out["exact"][kind], out["direct"][kind] = _roll_scores(r.model, x_padded, test, D, pad, S)
        controls = [_roll_scores(untrained_toy(mcfg, i, device), x_padded, test, D, pad, S)
                    for i in range(seed, seed + cfg.n_inits)]
        out["ucorr"][kind] = {k: sum(c[0][k] for c in controls) / cfg.n_inits for k in out["corr"][kind]}
        out["uexact"][kind] = {k: sum(c[1][k] for c in controls) / cfg.n_inits for k in out["corr"][kind]}
    return out


def noncyclic_section(cfg: CapsuleExtensionsConfig, seed: int = 0) -> NoncyclicSection:
    """Train C.2's non-cyclic capsules (padded ``U``, zero capsule and time boundaries) and the cyclic
    model on the same non-wrapping sequences, padded by ``L`` replicated frames at each end (C.2):
    ``(N, S, P) -> (N, S + 2L, P)``; both built as Eq 7 and 9 on the padded ``U``."""
    train, test = noncyclic_data(cfg, seed)
    pad, S, D = cfg.noncyclic_L, cfg.toy.S, cfg.noncyclic_dim
    ptrain = dataclasses.replace(train, x=pad_sequence_ends(train.x, pad))
    out = _noncyclic_vs_cyclic(cfg, cfg.model, lambda kind, mcfg: fit_toy(cfg.toy, seed, model=mcfg, train=ptrain,
                                                                          name=f"toy-{kind}"),
                               "cpu", test, pad_sequence_ends(test.x.float(), pad), D, pad, S, seed)
    return NoncyclicSection(test=test, pad=pad, models=out["models"], seconds=out["seconds"], roll_corr=out["corr"],
                            exact=out["exact"], untrained_roll_corr=out["ucorr"], direct_bce=out["direct"])


# ------------------------------------------------------------------------- C.2 at MNIST scale


def scale_ramps(data, frames: int, seed: int = 0):
    """C.2's non-cyclic MNIST sequences, cut from A.9's cyclic scale sequences.

    ``data``: :func:`~tvae_experiments.data.sequences.mnist_sequences` with ``transforms=("scale",)``, whose ``S``
    frames visit the ``S`` scale levels ``60% .. 126%`` once and jump from 126% back to 60% somewhere.  Each
    sequence keeps ``frames`` consecutive frames climbing one level per frame from a random first level in
    ``0 .. S - frames`` (seeded by ``seed``), so no sequence crosses the jump.  ``step``: each frame's level
    (0 = 60%), ``canonical``: level 0 -- both redefined: in A.9's sequences ``step`` counts from the level
    nearest 100%, which a ramp may not contain (nothing here reads ``canonical``: C.2 has no canonical frame,
    :func:`offset_rolls` counts from each ramp's first frame).  Returns a
    :class:`~tvae_experiments.data.sequences.SequenceData`."""
    S = data.x.shape[1]
    frames = check_int("frames", frames, minimum=2, maximum=S - 1)
    if tuple(data.transforms) != ("scale",):
        raise ValueError(f"scale_ramps cuts scale sequences (transforms=('scale',)), got transforms={data.transforms!r}")
    g = torch.Generator().manual_seed(seed)
    level0 = torch.randint(0, S - frames + 1, (len(data.x),), generator=g)    # (N,) first level of each ramp
    idx = (data.factor.argmin(1)[:, None] + level0[:, None] + torch.arange(frames)) % S  # (N, frames) frame numbers
    ar = torch.arange(len(data.x))[:, None]
    step = level0[:, None] + torch.arange(frames)                               # (N, frames) scale levels
    return dataclasses.replace(data, x=data.x[ar, idx], factor=data.factor[ar, idx], step=step, canonical=step == 0,
                               latents=data.latents[ar, idx],
                               source=f"{data.source}; C.2 ramps of {frames} frames (seed {seed})")


def ramp_data(cfg: CapsuleExtensionsConfig, data_dir=None, seed: int = 0):
    """``(train, test)`` C.2 ramps (:func:`scale_ramps`, ``cfg.ramp_frames`` frames) from chapter 4's MNIST data
    and recipe sizes (:func:`~tvae_experiments.capsules.mnist_transform_data` with ``("scale",)``), not padded,
    and the training set's data id (the padding ``cfg.ramp_L`` included)."""
    from tvae_experiments.capsules import mnist_transform_data, sequence_data_id

    train, test = mnist_transform_data(cfg.capsules.mnist, ("scale",), data_dir, seed)
    train, test = scale_ramps(train, cfg.ramp_frames, seed), scale_ramps(test, cfg.ramp_frames, 1000 + seed)
    return train, test, f"{sequence_data_id(train, seed)}|pad={cfg.ramp_L}"


@dataclass
class RampSection:
    """C.2 at MNIST scale: non-cyclic capsules and the cyclic model on the same padded scale ramps."""

    test: SequenceData                          # the unpadded test ramps, x (N, frames, P)
    pad: int                                    # frames replicated at each end (cfg.ramp_L)
    models: dict[str, TVAE]                     # "noncyclic" | "cyclic" -> trained model, on (N, frames + 2 pad, P)
    seconds: dict[str, float]                   # model -> training time of the cached weights
    roll_corr: dict[str, dict[str, float]]      # model -> {"scale": Pearson(ObservedRoll, level offset)}, orig. frames
    exact: dict[str, dict[str, float]]          # model -> {"scale": share of frames with ObservedRoll == offset}
    untrained_roll_corr: dict[str, dict[str, float]]  # model -> the same, untrained, mean over cfg.n_inits
    untrained_exact: dict[str, dict[str, float]]      # model -> the same for ``exact``, mean over cfg.n_inits
    direct_bce: dict[str, float]                # model -> BCE of each original frame from its own code, nats per image


def ramp_section(cfg: CapsuleExtensionsConfig, train, test, data_id: str, seed: int = 0,
                 device: str = "auto") -> RampSection:
    """C.2 at MNIST scale: train (or load, cached like chapter 4's) :meth:`CapsuleExtensionsConfig.mnist_ramp_model`
    non-cyclic and cyclic (Eq 7's centred window, Eq 9's shifting W, on the padded ``U``) on ``train`` ramps
    (``x: (N, frames, P)``) padded by ``cfg.ramp_L`` replicated frames at each end (``(N, frames + 2 ramp_L, P)``);
    score both and their untrained initialisations with :func:`offset_rolls` on the padded ``test`` ramps."""
    pad, frames = cfg.ramp_L, cfg.ramp_frames
    ptrain = pad_sequence_ends(train.x, pad)

    def fit_one(kind, mcfg):
        return mnist_model(f"ramps-{kind}", cfg, seed).fit(ptrain, data_id, device=device)  # its model is mcfg

    out = _noncyclic_vs_cyclic(cfg, cfg.mnist_ramp_model, fit_one, device, test, pad_sequence_ends(test.x, pad),
                               cfg.mnist_ramp_model().capsule_dim, pad, frames, seed)
    return RampSection(test=test, pad=pad, models=out["models"], seconds=out["seconds"], roll_corr=out["corr"],
                       exact=out["exact"], untrained_roll_corr=out["ucorr"], untrained_exact=out["uexact"],
                       direct_bce=out["direct"])
