"""Metrics of learned representations.

Topographic organisation (chapter 3, Sec 6.2 / Fig 3): does a unit's preferred input
resemble its neighbours' on the torus more than a random unit's?

* ``max_activating(t, k)``: the ``k`` test images that activate each unit most (Fig 3 shows
  ``k = 1``).
* ``unit_preferences(t, labels, k)``: each unit's preferred class, the majority label of its
  ``k`` maximum-activating images.
* ``neighbour_agreement(pref, side)``: fraction of torus-adjacent unit pairs (4-neighbourhood,
  wrapping around) with the same preferred class.
* ``agreement_permutation_test``: the same statistic under random placements of the units on
  the torus (the null of *no* topographic organisation): its mean is the random-pair agreement
  and ``p = (1 + #{null >= observed}) / (1 + n_perm)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .checks import check_int

__all__ = ["max_activating", "unit_preferences", "neighbour_agreement", "AgreementTest", "unit_effects",
           "SimilarityTest", "neighbour_similarity_test", "equivariance_error", "capsule_roll", "capcorr",
           "omega_and_rolls", "capcorr_sequences", "Traversal", "capsule_traversal", "held_out_frames",
           "agreement_permutation_test", "capcorr_modulo", "E_EQ_NORMS", "partial_capsule_roll", "PARTIAL_ROLLS"]


def max_activating(t: Tensor, k: int = 1) -> Tensor:
    """Indices of the ``k`` images with the largest activation per unit.

    ``t: (N, n)`` codes of ``N`` images -> ``(n, k)`` image indices, largest first."""
    check_int("k", k, minimum=1, maximum=t.shape[0])
    return t.topk(k, dim=0).indices.T  # (n, k)


def unit_preferences(t: Tensor, labels: Tensor, k: int = 10, n_classes: int | None = None) -> Tensor:
    """Majority label of each unit's ``k`` maximum-activating images: ``(n,)``.

    Ties go to the smaller label. ``t: (N, n)``, ``labels: (N,)`` integers."""
    n_classes = int(labels.max()) + 1 if n_classes is None else n_classes
    top = labels[max_activating(t, k)]  # (n, k)
    counts = torch.nn.functional.one_hot(top, n_classes).sum(1)  # (n, classes)
    return counts.argmax(1)


def neighbour_agreement(pref: Tensor, side: int) -> float:
    """Fraction of the ``2 * side^2`` torus-adjacent pairs with equal ``pref`` (``pref: (side^2,)``)."""
    g = pref.reshape(side, side)
    return ((g == g.roll(1, 0)).float().mean() + (g == g.roll(1, 1)).float().mean()).item() / 2


@dataclass(frozen=True)
class AgreementTest:
    observed: float     # neighbour agreement of the learned layout
    null_mean: float    # mean under random unit placements (= random-pair agreement)
    null_std: float
    p_value: float      # one-sided: P(null >= observed)
    n_perm: int


def agreement_permutation_test(pref: Tensor, side: int, n_perm: int = 2000, seed: int = 0) -> AgreementTest:
    """Permutation test of :func:`neighbour_agreement` against random placements (vectorised)."""
    g = torch.Generator().manual_seed(seed)
    n = side * side
    perms = torch.argsort(torch.rand(n_perm, n, generator=g), dim=1)  # (n_perm, n)
    grids = pref[perms].reshape(n_perm, side, side)
    null = ((grids == grids.roll(1, 1)).float().mean((1, 2)) + (grids == grids.roll(1, 2)).float().mean((1, 2))) / 2
    obs = neighbour_agreement(pref, side)
    p = (1 + (null >= obs).sum().item()) / (1 + n_perm)
    return AgreementTest(obs, null.mean().item(), null.std().item(), p, n_perm)


@torch.no_grad()
def unit_effects(model, x: Tensor) -> Tensor:
    """What each latent unit *draws*: the mean change of the decoded image when unit ``i`` of
    the codes of ``x`` is raised by one standard deviation (over ``x``) of that unit.

    ``x: (B, P)`` -> ``(n, P)``.  Neighbouring units of a topographically organised decoder
    draw similar things; an untrained decoder's units are unrelated.  The ``n`` perturbed
    batches are decoded in one call per chunk of units (no loop over images)."""
    t = model.encode(x)  # (B, n)
    B, n = t.shape
    base = torch.sigmoid(model.decode(t))  # (B, P)
    step = t.std(0)  # (n,)
    out = []
    for units in torch.arange(n).split(max(1, 4096 // B)):
        tp = t.unsqueeze(0).repeat(len(units), 1, 1)  # (u, B, n)
        tp[torch.arange(len(units)), :, units] += step[units, None]
        out.append((torch.sigmoid(model.decode(tp)) - base).mean(1))  # (u, P)
    return torch.cat(out)  # (n, P)


@dataclass(frozen=True)
class SimilarityTest:
    observed: float     # mean cosine similarity of torus-adjacent units
    null_mean: float    # the same under random placements (= random-pair similarity)
    p_value: float
    n_perm: int

    @property
    def excess(self) -> float:
        """Neighbour similarity above random pairs."""
        return self.observed - self.null_mean


def neighbour_similarity_test(features: Tensor, side: int, n_perm: int = 2000, seed: int = 0) -> SimilarityTest:
    """Cosine similarity of torus-adjacent units' ``features: (side^2, F)`` vs random placements."""
    f = features / (features.norm(dim=1, keepdim=True) + 1e-12)
    G = f @ f.T  # (n, n) cosine similarities
    n = side * side
    idx = torch.arange(n).reshape(side, side)
    right, down = idx.roll(-1, 1).flatten(), idx.roll(-1, 0).flatten()

    def stat(perm: Tensor) -> Tensor:  # perm: (m, n) -> (m,)
        a = perm
        return (G[a, a[:, right]].mean(1) + G[a, a[:, down]].mean(1)) / 2

    g = torch.Generator().manual_seed(seed)
    null = stat(torch.argsort(torch.rand(n_perm, n, generator=g), dim=1))
    obs = stat(torch.arange(n)[None]).item()
    p = (1 + (null >= obs).sum().item()) / (1 + n_perm)
    return SimilarityTest(obs, null.mean().item(), p, n_perm)


# --------------------------------------------------------------------------------------------
# Equivariant capsules (Sec 6.1, appendix A.11): E_eq, ObservedRoll, CapCorr, traversals
# --------------------------------------------------------------------------------------------

E_EQ_NORMS = ("capsule", "vector")


def equivariance_error(t: Tensor, capsule_dim: int, norm: str = "capsule", chunk: int = 256) -> Tensor:
    r"""Eq 13: ``sum_{l<l'} || Roll_{l'-l}(t_l / |t_l|) - t_{l'} / |t_{l'}| ||_1`` per sequence.

    ``t: (N, S, C*D)`` -> ``(N,)``.  Computed for all ``S(S-1)/2`` pairs at once, in chunks of
    ``chunk`` sequences to bound memory.  Two normalisations ``t -> t / |t|``:

    * ``norm="capsule"`` (default) -- every capsule divided by its own L2 norm before the L1
      distance.  This is how the published Tables 1, 2, 4 and 5 were computed (the authors' code):
      i.i.d. Gaussian codes give ~13,270 at ``S = C = D = 18`` (the paper's MNIST VAE row:
      13,273.9) and ~6,930 at 15 (dSprites VAE: 6,929), so this run's numbers sit on the paper's
      scale.  Zero for ``t_l = Roll_l(t_0)`` with *any* positive scale per frame and per capsule.
    * ``norm="vector"`` -- the whole ``C*D`` vector divided by its norm: Eq 13 as printed.  Each
      unit's share is then ``~1/sqrt(C)`` of the per-capsule one, so values are ``~sqrt(C)`` times
      smaller on unstructured codes (i.i.d.: ~3,110 at 18), and a code whose capsules roll
      correctly but change their relative scales along the sequence is *not* zero.
    """
    from .checks import check_capsules, check_choice
    from .roll import roll

    check_choice("norm", norm, E_EQ_NORMS)
    if t.ndim != 3:
        raise ValueError(f"t must have shape (N, S, C*D), got {tuple(t.shape)}")
    N, S, n = t.shape
    C = check_capsules("t", n, capsule_dim)
    if norm == "capsule":
        tc = t.reshape(N, S, C, capsule_dim)
        th = (tc / (tc.norm(dim=-1, keepdim=True) + 1e-12)).reshape(N, S, n)  # (N, S, n)
    else:
        th = t / (t.norm(dim=-1, keepdim=True) + 1e-12)  # (N, S, n)
    l, l2 = torch.triu_indices(S, S, offset=1, device=t.device)  # pairs l < l'
    out = []
    for tb in th.split(chunk):
        rolled = roll(tb[:, l], l2 - l, capsule_dim)  # (B, P, n): Roll_{l'-l}(t_l)
        out.append((rolled - tb[:, l2]).abs().sum((-1, -2)))
    return torch.cat(out)


def _mode(votes: Tensor, n_values: int) -> Tensor:
    """Most frequent value along the last axis (ties: the smallest value)."""
    return torch.nn.functional.one_hot(votes, n_values).sum(-2).argmax(-1)


def capsule_roll(t_a: Tensor, t_b: Tensor, capsule_dim: int) -> Tensor:
    r"""ObservedRoll (Eq 16, Eq 20): the shift ``r in [0, D)`` for which ``Roll_r(t_a)`` best matches
    ``t_b`` (argmax over ``r`` of ``t_b . Roll_r(t_a)``, the circular cross-correlation, per
    capsule), mode over capsules.  ``t_a, t_b: (..., C*D)`` -> ``(...,)`` long; so
    ``capsule_roll(t_0, roll(t_0, k)) == k``.

    Direction (one convention for the whole package): Eq 20 as printed,
    ``ObservedRoll(t_Omega, t_0) = argmax_r t_Omega . Roll_r(t_0)``, is ``capsule_roll(t_0, t_Omega)``:
    the roll that takes ``t_0`` to ``t_Omega``.  (The authors' code takes ``t_Omega`` back to
    ``t_0`` and pairs it with a prior rolling by ``-delta``; the book's page on the paper's code
    compares the two.)"""
    from .checks import check_capsules

    C = check_capsules("t_a", t_a.shape[-1], capsule_dim)
    if t_b.shape[-1] != t_a.shape[-1]:
        raise ValueError(f"t_b's last axis has size {t_b.shape[-1]} but t_a's has {t_a.shape[-1]}: both must hold "
                         f"the same C*D = {C}*{capsule_dim} units")
    a = t_a.reshape(*t_a.shape[:-1], C, capsule_dim)
    b = t_b.reshape(*t_b.shape[:-1], C, capsule_dim)
    cc = torch.fft.irfft(torch.fft.rfft(a, dim=-1).conj() * torch.fft.rfft(b, dim=-1), n=capsule_dim, dim=-1)
    return _mode(cc.argmax(-1), capsule_dim)  # cc[r] = sum_d a[d] b[d + r]


PARTIAL_ROLLS = ("fourier", "linear")


def partial_capsule_roll(t_a: Tensor, t_b: Tensor, capsule_dim: int, alpha: float, roll: str = "fourier") -> Tensor:
    r"""ObservedRoll for partial rolls (appendix C.1, Eq 20): the shift ``r`` on the grid
    ``0, alpha, 2 alpha, ... < D`` for which ``Roll_r(t_a)`` best matches ``t_b``, per capsule
    ``argmax_j t_b . Roll_{j alpha}(t_a)``, then the mode over capsules; returned as ``r = j alpha``.

    ``roll="fourier"``: ``Roll_r`` is the phase shift :func:`~tvae_core.roll.fourier_roll` by ``r``;
    ``roll="linear"``: Eq 20's "sequentially partially rolled activation", Eq 19 applied ``j``
    times (:func:`~tvae_core.roll.linear_roll`).  The grid has ``G = ceil(D / alpha)`` points (Eq 20's
    ``0 .. D - alpha`` when ``alpha`` divides ``D``).  ``alpha = 1`` is :func:`capsule_roll` (Eq 16)
    for either roll.  Same direction as :func:`capsule_roll`: ``partial_capsule_roll(t_0, t_Omega)``
    is Eq 20's ``ObservedRoll(t_Omega, t_0)``.

    All ``G`` inner products come from one product in Fourier space (both rolls are circulant:
    ``Roll_r`` multiplies frequency ``k`` by ``exp(-2 pi i k r / D)``, Eq 19 by
    ``lambda_k = alpha exp(-2 pi i k / D) + 1 - alpha``, ``j`` times ``lambda_k^j``), so memory is
    ``(..., G, C)``.  ``t_a, t_b: (..., C*D)`` -> ``(...,)`` float shifts in ``[0, D)``.

    A code Fourier-rolled by a grid point ``s`` is recovered exactly for odd ``D``; for even ``D``
    ``fourier_roll`` damps the Nyquist term by ``cos(pi s)``, which can pull the argmax of a shift
    that is not a multiple of 1/2 to a neighbouring grid point."""
    import math

    from .checks import check_capsules, check_choice

    check_choice("roll", roll, PARTIAL_ROLLS)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < float(alpha) <= 1.0:
        raise ValueError(f"alpha={alpha!r} is not allowed; the grid step of Eq 20 must satisfy 0 < alpha <= 1")
    C = check_capsules("t_a", t_a.shape[-1], capsule_dim)
    if t_b.shape[-1] != t_a.shape[-1]:
        raise ValueError(f"t_b's last axis has size {t_b.shape[-1]} but t_a's has {t_a.shape[-1]}: both must hold "
                         f"the same C*D = {C}*{capsule_dim} units")
    D = capsule_dim
    G = math.ceil(D / float(alpha) - 1e-9)
    dt = torch.float64
    A = torch.fft.rfft(t_a.reshape(*t_a.shape[:-1], C, D).to(dt), dim=-1)  # (..., C, F)
    B = torch.fft.rfft(t_b.reshape(*t_b.shape[:-1], C, D).to(dt), dim=-1)
    F = A.shape[-1]
    k = torch.arange(F, device=t_a.device, dtype=dt)
    j = torch.arange(G, device=t_a.device, dtype=dt)[:, None]  # (G, 1)
    if roll == "fourier":
        mult = torch.exp(-2j * math.pi * k * j * float(alpha) / D)  # (G, F)
    else:
        lam = float(alpha) * torch.exp(-2j * math.pi * k / D) + (1.0 - float(alpha))  # (F,)
        mult = lam[None, :] ** j  # (G, F)
    # Parseval for real signals: sum_d b_d y_d = (1/D) sum_k w_k Re(conj(B_k) Y_k), w = 1 at k = 0 and
    # at the Nyquist term (even D, where irfft reads only the real part), 2 in between
    w = torch.full((F,), 2.0, dtype=dt, device=t_a.device)
    w[0] = 1.0
    if D % 2 == 0:
        w[-1] = 1.0
    scores = torch.einsum("...cf,gf->...gc", B.conj() * A * w, mult).real  # (..., G, C)
    return _mode(scores.argmax(-2), G).to(t_a.dtype if t_a.is_floating_point() else torch.float32) * float(alpha)


def _pearson(x: Tensor, y: Tensor) -> float:
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    den = (x.norm() * y.norm()).item()
    return float((x @ y).item() / den) if den > 0 else 0.0


def capcorr(t_0: Tensor, t_omega: Tensor, factor_shift: Tensor, capsule_dim: int, *, alpha: float | None = None,
            roll: str = "fourier") -> float:
    r"""CapCorr, Eq 17: Pearson correlation over the data set of ``ObservedRoll(t_Omega, t_0)``
    (Eq 20: the roll taking ``t_0`` to ``t_Omega``, :func:`capsule_roll`) with the factor shift
    from frame 0 to frame Omega in the transformation's direction.

    ``t_0, t_omega: (N, C*D)``, ``factor_shift: (N,)`` in grid steps -> float; 1 for a perfectly
    equivariant code: ``capcorr(t_0, roll(t_0, k), k) == 1``.  A constant input gives 0.
    ``alpha`` (appendix C.1): ObservedRoll on the grid of partial rolls ``0, alpha, ...`` with
    ``roll="fourier"`` or ``"linear"`` (:func:`partial_capsule_roll`); ``None`` is Eq 16's whole units."""
    if alpha is None:
        return _pearson(capsule_roll(t_0, t_omega, capsule_dim).float(), factor_shift.float())
    return _pearson(partial_capsule_roll(t_0, t_omega, capsule_dim, alpha, roll).float(), factor_shift.float())


def omega_and_rolls(t: Tensor, step: Tensor, canonical: Tensor, capsule_dim: int,
                    period: Tensor | int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    r"""Pick ``Omega`` per sequence as A.11 does and return ``(omega, observed_roll, factor_shift)``.

    ``t: (N, S, C*D)``; ``step: (N, S)`` the factor's grid step per frame, counted from its
    canonical value in the direction of the transformation, modulo the factor's period ``P``;
    ``canonical: (N, S)`` bool; ``period``: ``P`` per sequence (default: ``step.max(1) + 1``,
    right when a sequence covers a whole period, as every sequence of the book does).

    The factor shift from frame 0 to frame ``l`` in the transformation's direction is
    ``(y_l - y_0) mod P`` -- A.11's ``|y_Omega - y_0|`` written for this package's direction
    (codes roll by ``+1`` per step, Eq 13/18; ObservedRoll as Eq 20).  Among the canonical frames,
    ``Omega`` is the one whose ObservedRoll is closest to that shift (A.11: dSprites scale loops
    three times, so a sequence has several canonical frames).  Sequences without a canonical
    frame are an error."""
    if not bool(canonical.any(1).all()):
        raise ValueError("every sequence needs at least one canonical frame (canonical.any(1) is False somewhere)")
    P = (step.max(1).values + 1) if period is None else torch.as_tensor(period).expand(len(step))
    rolls = capsule_roll(t[:, :1].expand_as(t), t, capsule_dim)  # (N, S): ObservedRoll(t_l, t_0), Eq 20
    shift = torch.remainder(step - step[:, :1], P[:, None])  # (N, S): (y_l - y_0) mod P
    dist = (rolls - shift).abs().float().masked_fill(~canonical, float("inf"))
    omega = dist.argmin(1)  # (N,)
    idx = torch.arange(len(t))
    return omega, rolls[idx, omega], shift[idx, omega]


def capcorr_sequences(t: Tensor, step: Tensor, canonical: Tensor, capsule_dim: int,
                      period: Tensor | int | None = None) -> float:
    """CapCorr (Eq 17) of a set of sequences with A.11's choice of ``Omega`` (:func:`omega_and_rolls`)."""
    _, rolls, shift = omega_and_rolls(t, step, canonical, capsule_dim, period)
    return _pearson(rolls.float(), shift.float())


def capcorr_modulo(shift: Tensor, modulus: Tensor | int) -> float:
    r"""CapCorr (Eq 17) of a code that resolves each factor shift only modulo ``modulus``.

    A code ``t`` with ``Roll_m(t) = t`` has ``D / m`` tied maxima in Eq 16's cross-correlation;
    argmax returns the first, ``shift mod m``.  ``shift: (N,)`` grid steps ``(y_Omega - y_0) mod P``,
    ``modulus``: int or ``(N,)`` -> Pearson correlation of ``shift mod modulus`` with ``shift``.
    With ``modulus = D`` (a fully resolved roll) it is 1; on dSprites orientation, squares repeat
    after 5 of the 15 steps, which caps CapCorr well below 1 (chapter 4)."""
    shift = shift.long()
    return _pearson(torch.remainder(shift, torch.as_tensor(modulus)).float(), shift.float())


def held_out_frames(S: int, L: float) -> Tensor:
    r"""``(S,)`` bool: the frames of a sequence that ``t_0`` never saw (the one place this rule lives).

    With the forward window (:class:`~tvae_core.topography.TemporalTopography`, ``window="forward"``)
    ``t_0`` pools ``u`` over frames ``0 .. 2L-1``, so frames ``l >= 2L`` are held out.  Without
    temporal coherence (``L = 0``), or when ``2L >= S`` (every frame is in the window), every
    frame after the first is reported: the roll still has to predict it from ``t_0``."""
    two_l = int(2 * L)
    return torch.arange(S) >= (two_l if 0 < two_l < S else 1)


@dataclass(frozen=True)
class Traversal:
    """Capsule traversal of Fig 4 in numbers (per sequence and frame, BCE nats per image)."""

    roll_bce: Tensor     # (N, S): decode(Roll_l(t_0)) vs x_l
    direct_bce: Tensor   # (N, S): decode(t_l) vs x_l (t_l encoded from its own window)
    held_out: Tensor     # (S,) bool: frames not in the forward window of t_0 (:func:`held_out_frames`; a causal
                         # window's t_0 saw frame 0 only: there these are the frames compared with the forward one's)
    decoded: Tensor      # (N, S, P) sigmoid(decode(Roll_l(t_0))), for plotting
    wrong_pose_bce: Tensor  # (N, S): decode(Roll_l(t_0)) vs the frame half a cycle away, x_{l+S/2}

    @property
    def ratio(self) -> float:
        """Mean traversal BCE over mean direct BCE on the held-out frames."""
        m = self.held_out
        return (self.roll_bce[:, m].mean() / self.direct_bce[:, m].mean()).item()


@torch.no_grad()
def capsule_traversal(model, x: Tensor, capsule_dim: int | None = None, L: float | None = None,
                      t: Tensor | None = None, origin: int = 0) -> Traversal:
    """Encode each sequence ``x: (N, S, P)``, roll ``t_0`` by ``l`` inside every capsule for
    ``l = 0..S-1`` and decode (Sec 6.1, Fig 4).  ``capsule_dim`` and ``L`` default to the
    model's own (``model.capsule_dim``, ``model.L``; a VAE has ``L = 0``);
    frames outside ``t_0``'s window are marked by :func:`held_out_frames`.  ``t: (N, S, n)``
    replaces ``model.encode(x)`` (e.g. a posterior sample of the codes).  ``origin``: roll
    ``t_origin`` by ``l - origin`` instead (a causal window's code that has seen frames
    ``0 .. origin``, C.4); ``held_out`` then still marks the frames of ``L``'s rule."""
    from .roll import roll

    capsule_dim = model.capsule_dim if capsule_dim is None else capsule_dim
    L = model.L if L is None else L
    N, S, _ = x.shape
    origin = check_int("origin", origin, minimum=0, maximum=S - 1)
    t = model.encode(x) if t is None else t  # (N, S, n)
    shifts = torch.arange(S, device=x.device) - origin  # (S,) roll of t_origin that predicts frame l
    rolled = roll(t[:, origin:origin + 1].expand(-1, S, -1), shifts, capsule_dim)  # (N, S, n)
    logits_roll, logits_direct = model.decode(rolled), model.decode(t)  # (N, S, P)
    bce = lambda lg, y: torch.nn.functional.binary_cross_entropy_with_logits(lg, y, reduction="none").sum(-1)
    opposite = (torch.arange(S, device=x.device) + S // 2) % S
    return Traversal(bce(logits_roll, x).cpu(), bce(logits_direct, x).cpu(), held_out_frames(S, L),
                     torch.sigmoid(logits_roll).cpu(), bce(logits_roll, x[:, opposite]).cpu())
