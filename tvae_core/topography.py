r"""Topographic neighbourhoods ``W`` (TVAE paper, Eq 4-9, appendix A.4-A.5, appendix C).

In the TPoT construction (Eq 5-7) every variable ``T_i`` is divided by the root of a sum
of squared ``U``'s over its neighbourhood ``N(i)``; ``W`` is the 0/1 adjacency matrix of
those neighbourhoods, so the denominator is ``sqrt(W U^2)``.  This module builds ``W`` in
two forms that give the same numbers:

* **dense** ``W`` matrices (``*.dense()``), for teaching, plotting and as the test oracle;
* **fast ops** (``topo(v)`` computes ``W v`` for ``v = u**2``) that never build ``W``: a box
  sum along the circular axes (a strided ``unfold``) plus, for shifting coherence, a
  *shear* (roll frame ``s`` by ``-s``) that turns the diagonal time-capsule neighbourhood
  of Eq 9 into a rectangular one.  No Python loop runs over time steps or capsules.

Names (one explanation for the whole package)
---------------------------------------------
``C`` capsules of ``capsule_dim = D`` units (``n = C*D``); ``K`` neighbourhood size
inside a capsule (offsets ``k = -(K//2) ... K-1-K//2``, symmetric for odd ``K``);
``L`` temporal half-window: ``T_l`` sees ``U_{l+delta}`` for ``delta = -L ... L``
(Eq 7); ``S`` sequence length.  Sequences are cyclic in the paper (A.9-A.10), so time wraps
around by default (``time_boundary="circular"``); ``"zero"`` treats frames outside the
sequence as absent.

Temporal modes (for ``v = U^2``, all indices mod their axis length)
* stationary, Eq 8 (Bubbles):  ``(W v)_{l,c,i} = sum_delta sum_k v_{l+delta, c, i+k}``
  so ``cov(T_{l,i}^2, T_{l-1,i}^2) > 0``;
* shifting, Eq 9:              ``(W v)_{l,c,i} = sum_delta sum_k v_{l+delta, c, i+delta+k}``
  so ``cov(T_{l,i}^2, T_{l-1,i-1}^2) > 0``.

Sign note: with Roll as in Eq 18 (positive shift moves unit ``d`` to ``d+1``), the sum
above is ``sum_delta W_delta Roll_{-delta}(U^2_{l+delta})``.  We take the sign from the
paper's own covariance statement (Sec 4.5.2) and from Eq 13, where an equivariant code
satisfies ``t_{l+delta} = Roll_delta(t_l)``; with this sign the denominator of a sequence
obeys ``v_l = Roll_l(v_0)`` exactly when the window covers the whole cyclic sequence.
This is also the authors' code's sign (its shifting kernel, rebuilt in
:mod:`tvae_experiments.paper_code`, equals ``dense`` with ``window="code", band="code"``).

The authors' code, two options (defaults: the text's full window and band)
* ``window="code"``: the code's time window of ``T = 2L`` frames, offsets
  ``-((T-1)//2) ... T//2`` (centred, one frame later for even ``T``);
* ``band="code"``: the code's shifting kernel is a ``T x T`` band of width ``K`` (time offset
  ``j`` against unit offset ``j + k``) that the square kernel cuts at its corners: the
  pair ``(j, k)`` (``j = 0 .. T-1`` indexing :attr:`TemporalTopography.offsets`) is kept only
  when ``0 <= j + k <= T-1``, so for ``K = 3`` the first time offset loses ``k = -1`` and the
  last loses ``k = +1``: ``3T - 2`` terms instead of ``3T``.  Stationary kernels are full boxes
  in the code, so ``band`` changes only ``mode="shifting"``.

Appendix C's proposed extensions (all off by default; the defaults are the text's Eq 7-9)
* C.4 causal coherence, ``window="causal"`` (Eq 22): ``T_l`` sees ``U_{l+delta}`` for
  ``delta = -L ... 0`` only (``L+1`` frames: the present and ``L`` past frames; ``L`` an
  integer).  With ``time_boundary="zero"`` frame ``l`` never reads a later frame (the first frame
  has no past); with circular time the first ``L`` frames read the end of the sequence.
* C.2 non-cyclic capsules, ``capsule_boundary="zero"``: unit offsets are not taken mod ``D``;
  a term whose unit ``i + delta + k`` falls outside ``0 .. D-1`` is absent (C.2: "filling the
  boundaries with 0").  ``capsule_pad = P`` is C.2's padded construction: ``U`` has ``D + 2P``
  units per capsule (:func:`~tvae_core.roll.pad_capsules`), ``T``'s unit ``i`` reads padded unit
  ``P + i + delta + k``; with ``P`` at least :attr:`TemporalTopography.unit_reach` no window is ever
  cut and every ``T`` unit sees the full Eq 9 neighbourhood without wrapping.
* C.1 partial roll, ``roll="linear"`` or ``"fourier"`` with ``0 < alpha <= 1``: the shifting
  window moves ``alpha`` units per frame.  Eq 9's ``Roll_{-delta}`` (our sign) becomes Eq 19's
  linear partial roll applied ``|delta|`` times (:func:`~tvae_core.roll.linear_roll`) or the
  Fourier phase shift by ``-alpha*delta`` (:func:`~tvae_core.roll.fourier_roll`); ``alpha = 1``
  gives back Eq 9's ``W`` (the same matrix).
* C.3 two-dimensional capsules (Eq 21): :class:`TemporalTopography2D`.

Fast ops for the extensions: ``capsule_boundary="zero"`` runs the circular op on capsules
zero-padded by the window's reach (so every wrapped term lands on a zero) and crops; the partial
rolls replace the shear by one ``einsum`` of the time-unfolded frames with the ``(frames, D, D)``
roll matrices.  ``dense`` builds every ``W`` term by term from the explicit formulas (binomial
weights of Eq 19 repeated, the Dirichlet kernel of the Fourier roll) as the oracle.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .checks import check_choice, check_int
from .roll import LATTICE_AXES, _check_axis, fourier_roll, linear_roll, roll

__all__ = [
    "window_offsets",
    "box_sum",
    "CapsuleTopography",
    "TorusTopography",
    "TemporalTopography",
    "TemporalTopography2D",
    "capsule_W",
    "torus_W",
    "temporal_W",
    "window_W",
    "TEMPORAL_MODES",
    "TIME_BOUNDARIES",
    "TIME_WINDOWS",
    "BANDS",
    "CAPSULE_BOUNDARIES",
    "CAPSULE_ROLLS",
]

TEMPORAL_MODES = ("shifting", "stationary")
TIME_BOUNDARIES = ("circular", "zero")
TIME_WINDOWS = ("centered", "forward", "code", "causal")
BANDS = ("full", "code")
CAPSULE_BOUNDARIES = ("circular", "zero")
CAPSULE_ROLLS = ("integer", "linear", "fourier")


def window_offsets(K: int) -> range:
    """The ``K`` offsets of a neighbourhood window: ``-(K//2) ... K-1-K//2``."""
    check_int("K", K, minimum=1)
    return range(-(K // 2), K - K // 2)


def _sliding_sum(xp: Tensor, dim: int, width: int) -> Tensor:
    """Sums of ``width`` consecutive entries along ``dim`` of a padded tensor (length
    ``n + width - 1`` -> ``n``), by differences of a cumulative sum: O(1) per entry and a cheap
    backward pass (``unfold(...).sum()`` costs ``width`` reads per entry and a slow backward)."""
    if width == 1:
        return xp
    n = xp.shape[dim] - width + 1
    if width <= 4:  # a few shifted views are cheaper than a cumulative sum and its backward
        out = xp.narrow(dim, 0, n)
        for k in range(1, width):
            out = out + xp.narrow(dim, k, n)
        return out
    c = xp.cumsum(dim)
    head = c.narrow(dim, width - 1, 1)
    return torch.cat([head, c.narrow(dim, width, n - 1) - c.narrow(dim, 0, n - 1)], dim=dim)


def box_sum(x: Tensor, dim: int, K: int, boundary: str = "circular") -> Tensor:
    r"""Sum of ``x`` over a window of ``K`` neighbours along ``dim``.

    ``out[..., i, ...] = sum_{k in window_offsets(K)} x[..., i + k, ...]``, indices taken
    mod ``n = x.shape[dim]`` (``boundary="circular"``; ``K`` may exceed ``n``, wrapping more
    than once) or out-of-range terms dropped (``boundary="zero"``).  Same shape as ``x``.
    """
    check_choice("boundary", boundary, TIME_BOUNDARIES)
    dim = dim % x.ndim
    n = x.shape[dim]
    lo = K // 2
    idx = torch.arange(-lo, n + K - 1 - lo, device=x.device)  # (n + K - 1,)
    if boundary == "circular":
        xp = x.index_select(dim, idx % n)
    else:  # map out-of-range indices to an appended zero slice
        zero = torch.zeros_like(x.narrow(dim, 0, 1))
        idx = torch.where((idx < 0) | (idx >= n), torch.full_like(idx, n), idx)
        xp = torch.cat([x, zero], dim=dim).index_select(dim, idx)
    return _sliding_sum(xp, dim, K)


def _dense_from_pairs(n_out: int, n_in: int, rows: Tensor, cols: Tensor) -> Tensor:
    W = torch.zeros(n_out, n_in)
    W.index_put_((rows.reshape(-1), cols.reshape(-1)), torch.ones(rows.numel()), accumulate=True)
    return W


@dataclass(frozen=True)
class CapsuleTopography:
    r"""``C`` disjoint circular capsules of ``capsule_dim`` units, window ``K`` (Fig 2, A.4).

    ``W`` is block diagonal with one circulant ``D x D`` block per capsule, so variables in
    different capsules share no ``U`` and are independent (Sec 4.4).  ``C = 1`` is a single
    1-D ring.  Apply: ``v: (..., C*D) -> (..., C*D)``.

    ``capsule_boundary="zero"`` (appendix C.2, non-cyclic capsules): the window does not wrap
    around, ``(W v)_{c,i} = sum_{k: 0 <= i+k < D} v_{c,i+k}`` (a banded ``D x D`` block).
    """

    n_caps: int
    capsule_dim: int
    K: int = 3
    capsule_boundary: str = "circular"

    def __post_init__(self) -> None:
        check_int("n_caps", self.n_caps, minimum=1)
        check_int("capsule_dim", self.capsule_dim, minimum=1)
        check_int("K", self.K, minimum=1, maximum=self.capsule_dim)
        check_choice("capsule_boundary", self.capsule_boundary, CAPSULE_BOUNDARIES)

    @property
    def n(self) -> int:
        return self.n_caps * self.capsule_dim

    def __call__(self, v: Tensor) -> Tensor:
        _check_last(v, self.n, "v")
        vc = v.reshape(*v.shape[:-1], self.n_caps, self.capsule_dim)  # (..., C, D)
        return box_sum(vc, -1, self.K, self.capsule_boundary).reshape(v.shape)

    def dense(self) -> Tensor:
        """``(n, n)`` matrix: ``W[c*D+i, c*D+(i+k)%D] = 1`` for ``k`` in the window (for
        ``capsule_boundary="zero"`` only the ``k`` with ``0 <= i+k < D``, no ``% D``)."""
        C, D = self.n_caps, self.capsule_dim
        c = torch.arange(C)[:, None, None]
        i = torch.arange(D)[None, :, None]
        k = torch.tensor(list(window_offsets(self.K)))[None, None, :]
        rows = (c * D + i).expand(C, D, self.K)
        if self.capsule_boundary == "zero":
            keep = ((i + k >= 0) & (i + k < D)).expand(C, D, self.K)
            cols = (c * D + i + k).expand(C, D, self.K)
            return _dense_from_pairs(self.n, self.n, rows[keep], cols[keep])
        cols = c * D + (i + k) % D
        return _dense_from_pairs(self.n, self.n, rows, cols)


@dataclass(frozen=True)
class TorusTopography:
    r"""A single 2-D torus of ``side x side`` units with a ``K x K`` window (Sec 6.2, A.4).

    Unit ``(r, c)`` sits at flat index ``r*side + c``; the window wraps around both axes
    (the paper's "2D convolution with a KxK kernel of 1's and cyclic padding").
    Apply: ``v: (..., side*side) -> (..., side*side)``.
    """

    side: int
    K: int = 5

    def __post_init__(self) -> None:
        check_int("side", self.side, minimum=1)
        check_int("K", self.K, minimum=1, maximum=self.side)

    @property
    def n(self) -> int:
        return self.side * self.side

    def __call__(self, v: Tensor) -> Tensor:
        _check_last(v, self.n, "v")
        g = v.reshape(*v.shape[:-1], self.side, self.side)  # (..., H, W)
        g = box_sum(box_sum(g, -1, self.K), -2, self.K)
        return g.reshape(v.shape)

    def dense(self) -> Tensor:
        s = self.side
        r = torch.arange(s)[:, None, None, None]
        c = torch.arange(s)[None, :, None, None]
        off = torch.tensor(list(window_offsets(self.K)))
        dr, dc = off[None, None, :, None], off[None, None, None, :]
        rows = (r * s + c).expand(s, s, self.K, self.K)
        cols = ((r + dr) % s) * s + (c + dc) % s
        return _dense_from_pairs(self.n, self.n, rows, cols)


@dataclass(frozen=True)
class TemporalTopography:
    r"""Capsule neighbourhoods extended over time: stationary (Eq 8) or shifting (Eq 9).

    ``T_{l}`` depends on ``U_{l-L} ... U_{l+L}`` (Eq 7).  ``mode="stationary"`` sums the
    same capsule window at every time offset (Bubbles, BubbleVAE); ``mode="shifting"``
    moves the window by one unit per time step (TVAE).  Apply to a whole sequence:
    ``v: (..., S, C*D) -> (..., S, C*D)``.  ``L = 0`` reduces to :class:`CapsuleTopography`.

    ``window``: ``"centered"`` (Eq 7, ``2L+1`` frames), ``"forward"`` (``2L`` frames from ``l``
    on), ``"code"`` (the authors' code: ``2L`` frames, centred) or ``"causal"`` (Eq 22, appendix
    C.4: the ``L+1`` frames ``l-L .. l``; ``L`` an integer).  ``band``: ``"full"`` (every
    ``k`` at every time offset) or ``"code"`` (the authors' shifting kernel, cut at its first and
    last time offsets; see the module docstring).

    Appendix C options (the defaults are Eq 9 itself):

    * ``capsule_boundary``: ``"circular"`` (unit offsets mod ``D``) or ``"zero"`` (C.2,
      non-cyclic capsules: terms whose unit falls outside the capsule are absent).
    * ``capsule_pad = P >= 0`` (C.2's padded ``U``; needs ``capsule_boundary="zero"``): the input
      ``v`` has ``D + 2P`` units per capsule (``v: (..., S, C*(D+2P)) -> (..., S, C*D)``) and ``T``'s
      unit ``i`` sits at padded unit ``P + i``.  :attr:`unit_reach` gives the ``P`` that leaves
      every window whole (C.2's ``L`` for the centred window with ``K = 1``).
    * ``roll``: ``"integer"`` (Eq 9, whole units per frame), ``"linear"`` (Eq 19 applied
      ``|delta|`` times) or ``"fourier"`` (phase shift by ``alpha*delta``), with ``alpha`` the units
      the window moves per frame (C.1; ``0 < alpha <= 1``, ``alpha = 1`` for ``"integer"``).
      With a partial roll and ``v = U^2``,

      .. math:: (W v)_{l,c,i} = \sum_{\delta} \sum_k [R_\delta v_{l+\delta}]_{c,i+k}, \qquad
                R_\delta = \mathrm{linear\_roll}(\cdot, -\delta, \alpha)
                \ \text{or}\ \mathrm{fourier\_roll}(\cdot, -\alpha\delta)

      (``R_delta = Roll_{-delta}`` for ``roll="integer"``, the sign note of the module docstring).
      The Fourier roll of a non-negative ``v`` can be negative: for ``alpha < 1`` the denominator
      ``W U^2`` is not guaranteed positive (the linear roll's weights are, so its ``W`` is too).
    """

    n_caps: int
    capsule_dim: int
    K: int = 1
    L: float = 1
    mode: str = "shifting"
    time_boundary: str = "circular"
    window: str = "centered"
    band: str = "full"
    capsule_boundary: str = "circular"
    capsule_pad: int = 0
    roll: str = "integer"
    alpha: float = 1.0

    def __post_init__(self) -> None:
        check_int("n_caps", self.n_caps, minimum=1)
        check_int("capsule_dim", self.capsule_dim, minimum=1)
        check_int("K", self.K, minimum=1, maximum=self.capsule_dim)
        if isinstance(self.L, bool) or not isinstance(self.L, (int, float)) or self.L < 0 or not float(2 * self.L).is_integer():
            raise ValueError(f"L={self.L!r} is not allowed: L must be >= 0 with 2L an integer (the window has 2L frames)")
        check_choice("mode", self.mode, TEMPORAL_MODES)
        check_choice("time_boundary", self.time_boundary, TIME_BOUNDARIES)
        check_choice("window", self.window, TIME_WINDOWS)
        check_choice("band", self.band, BANDS)
        if self.window in ("centered", "causal") and not float(self.L).is_integer():
            frames = "2L+1" if self.window == "centered" else "L+1"
            raise ValueError(f"L={self.L} is not allowed with window={self.window!r} ({frames} frames): L must be an integer")
        check_choice("capsule_boundary", self.capsule_boundary, CAPSULE_BOUNDARIES)
        check_int("capsule_pad", self.capsule_pad, minimum=0)
        if self.capsule_pad and self.capsule_boundary != "zero":
            raise ValueError(f"capsule_pad={self.capsule_pad} needs capsule_boundary='zero' (appendix C.2's padded "
                             f"capsules are non-cyclic); got capsule_boundary={self.capsule_boundary!r}")
        check_choice("roll", self.roll, CAPSULE_ROLLS)
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not 0.0 < float(self.alpha) <= 1.0:
            raise ValueError(f"alpha={self.alpha!r} is not allowed; alpha must satisfy 0 < alpha <= 1 (Eq 19)")
        if self.roll == "integer" and self.alpha != 1:
            raise ValueError(f"alpha={self.alpha} needs roll='linear' or roll='fourier' (roll='integer' moves the "
                             f"window by whole units: alpha=1)")
        if self.roll != "integer":
            if self.mode != "shifting":
                raise ValueError(f"roll={self.roll!r} needs mode='shifting' (a stationary window does not move); "
                                 f"got mode={self.mode!r}")
            if self.band != "full":
                raise ValueError(f"roll={self.roll!r} needs band='full' (the code's cut band is defined for whole-unit "
                                 f"rolls only)")
            if self.roll == "fourier" and self.capsule_boundary != "circular":
                raise ValueError("roll='fourier' is a periodic phase shift: it needs capsule_boundary='circular' "
                                 "(use roll='linear' with capsule_boundary='zero')")

    @property
    def offsets(self) -> range:
        """The time offsets ``delta`` that ``T_l`` sees (``U_{l+delta}``)."""
        if self.window == "centered":
            return range(-int(self.L), int(self.L) + 1)
        if self.window == "causal":
            return range(-int(self.L), 1)
        T = max(int(2 * self.L), 1)
        if self.window == "code":
            return range(-((T - 1) // 2), T // 2 + 1)
        return range(T)

    def dropped_terms(self) -> list[tuple[int, int]]:
        """``(delta, k)`` pairs of the full shifting band that ``band="code"`` leaves out (none for
        ``band="full"`` or ``mode="stationary"``): ``U_{l+delta}`` at unit ``i + delta + k``."""
        if self.band == "full" or self.mode != "shifting":
            return []
        T = len(self.offsets)
        return [(delta, k) for j, delta in enumerate(self.offsets) for k in window_offsets(self.K)
                if not 0 <= j + k <= T - 1]

    @property
    def n(self) -> int:
        """Units of ``T`` (and ``Z``) per frame: ``C*D``."""
        return self.n_caps * self.capsule_dim

    @property
    def n_in(self) -> int:
        """Units of ``U`` per frame: ``C*(D + 2*capsule_pad)`` (``n`` without padding)."""
        return self.n_caps * (self.capsule_dim + 2 * self.capsule_pad)

    def displacements(self, delta: int) -> list[tuple[int, float]]:
        r"""``(e, w)`` pairs of the roll at time offset ``delta``: ``[R_delta v]_p = sum w v_{p+e}``.

        ``mode="stationary"``: ``[(0, 1)]``; ``roll="integer"``: ``[(delta, 1)]`` (Eq 9);
        ``"linear"``: ``(sign(delta) j, C(|delta|, j) alpha^j (1-alpha)^(|delta|-j))`` for
        ``j = 0..|delta|`` (Eq 19 applied ``|delta|`` times); ``"fourier"``: ``(e, h(alpha delta - e))``
        for ``e = 0..D-1`` with the Dirichlet kernel ``h`` of :func:`~tvae_core.roll.fourier_roll`.
        Unit indices ``p + e`` are taken mod ``D`` or dropped outside the capsule (``capsule_boundary``)."""
        if self.mode != "shifting":
            return [(0, 1.0)]
        if self.roll == "integer":
            return [(delta, 1.0)]
        a = float(self.alpha)
        if self.roll == "linear":
            sgn, m = (1 if delta >= 0 else -1), abs(delta)
            return [(sgn * j, math.comb(m, j) * a ** j * (1.0 - a) ** (m - j)) for j in range(m + 1)]
        D = self.capsule_dim
        return [(e, _dirichlet(D, a * delta - e)) for e in range(D)]

    @property
    def unit_reach(self) -> tuple[int, int]:
        """``(left, right)``: how far outside unit ``i`` the neighbourhood of ``T_i`` reaches, over all
        time offsets (units ``i - left .. i + right`` of ``U``).  C.2's pad: ``capsule_pad >=
        max(left, right)`` leaves every window whole (``L + K//2`` for the centred shifting window)."""
        ks = list(window_offsets(self.K))
        es = [e for delta in self.offsets for e, _ in self.displacements(delta)]
        return max(0, -(min(es) + min(ks))), max(0, max(es) + max(ks))

    def _check_window(self, S: int) -> None:
        """With circular time a window longer than the sequence would count frames twice.

        ``S = 1`` is allowed: a single frame held still, every offset reading that frame (the
        single-frame codes of chapter 8; the same numbers as the frame repeated ``2L`` times)."""
        width = len(self.offsets)
        if self.time_boundary == "circular" and width > S > 1:
            if self.window == "causal":
                most = S - 1
            else:
                most = S / 2 if self.window != "centered" else (S - 1) // 2
            raise ValueError(f"L={self.L:g} with window={self.window!r} spans {width} frames but the sequence has "
                             f"S={S}: with circular time frames would be counted twice; use L <= {most:g} "
                             f"(or time_boundary='zero')")

    def __call__(self, v: Tensor) -> Tensor:
        _check_last(v, self.n_in, "v")
        if v.ndim < 2:
            raise ValueError(f"v must have shape (..., S, C*D) with a time axis, got {tuple(v.shape)}")
        self._check_window(v.shape[-2])
        if self.capsule_boundary == "circular":  # the text's Eq 9 (and the partial rolls on the ring)
            return self._on_ring(v, self.capsule_dim)
        # C.2: on capsules zero-padded by the reach every wrapped term reads a zero; crop T's units
        S, C, D, P = v.shape[-2], self.n_caps, self.capsule_dim, self.capsule_pad
        left, right = self.unit_reach
        Dr = D + 2 * P + left + right
        vc = torch.nn.functional.pad(v.reshape(*v.shape[:-2], S, C, D + 2 * P), (0, left + right))
        out = self._on_ring(vc.reshape(*v.shape[:-2], S, C * Dr), Dr)  # (..., S, C*Dr)
        return out.reshape(*v.shape[:-2], S, C, Dr)[..., P:P + D].reshape(*v.shape[:-2], S, C * D)

    def _on_ring(self, v: Tensor, D: int) -> Tensor:
        """The circular op on capsules of ``D`` units (``D = capsule_dim`` for the text's Eq 9, larger
        for the zero-padded rings of C.2): ``v: (..., S, C*D) -> (..., S, C*D)``."""
        S, n = v.shape[-2], self.n_caps * D
        width = len(self.offsets)
        shifting = self.mode == "shifting" and self.roll == "integer"
        pad_idx, unshear_idx = _temporal_indices(self.n_caps, D, self.offsets.start, width, S,
                                                 shifting, self.time_boundary == "zero", str(v.device))
        flat = v.reshape(*v.shape[:-2], S * n)  # (..., S*n)
        if self.time_boundary == "zero":  # index S*n points at an appended zero
            flat = torch.cat([flat, flat.new_zeros(*flat.shape[:-1], 1)], dim=-1)
        # one gather does the time padding and (shifting) the shear: frame s rolled by -s
        vt = flat.index_select(-1, pad_idx).reshape(*v.shape[:-2], S + width - 1, self.n_caps, D)
        if self.mode == "shifting" and self.roll != "integer":  # C.1: partial rolls, no shear
            M = _partial_roll_matrices(D, tuple(self.offsets), self.roll, float(self.alpha)).to(v)  # (width, D, D)
            box = torch.einsum("...scmw,wpm->...scp", vt.unfold(-3, width, 1), M)  # sum over delta and m
            return box_sum(box, -1, self.K).reshape(v.shape)
        box = _sliding_sum(vt, -3, width)  # (..., S, C, D): sum over delta
        box = box_sum(box, -1, self.K)  # sum over the capsule window k
        for delta, k in self.dropped_terms():  # band="code": remove the kernel's cut corners
            j = delta - self.offsets.start  # sheared frame l+delta is vt[l + j]; unit m + k
            box = box - torch.roll(vt.narrow(-3, j, S), -k, dims=-1)
        out = box.reshape(*v.shape[:-2], S * n)
        if unshear_idx is not None:  # frame l rolled by +l
            out = out.index_select(-1, unshear_idx)
        return out.reshape(v.shape)

    def dense(self, S: int) -> Tensor:
        r"""``(S*n, S*n_in)`` matrix acting on the flattened sequence ``v.reshape(S*n_in)``.

        Row ``(l, c, i)`` has a 1 at column ``((l+delta) mod S, c, (i + s*delta + k) mod D)``
        for every ``delta`` in :attr:`offsets` and ``k`` in the window, with ``s = 1`` for shifting
        and ``s = 0`` for stationary (``time_boundary="zero"`` drops out-of-range frames,
        ``band="code"`` the pairs of :meth:`dropped_terms`).  Appendix C options: the partial rolls
        put weight ``w`` at unit ``i + k + e`` for each ``(e, w)`` of :meth:`displacements`;
        ``capsule_boundary="zero"`` drops units outside ``0 .. D+2P-1`` instead of taking them
        mod ``D``, and reads padded unit ``P + i + ...`` (``P = capsule_pad``).
        """
        check_int("S", S, minimum=1)
        self._check_window(S)
        if self.roll != "integer" or self.capsule_boundary != "circular":
            return self._dense_general(S)
        C, D, n = self.n_caps, self.capsule_dim, self.n
        sh = 1 if self.mode == "shifting" else 0
        l = torch.arange(S)[:, None, None, None, None]
        c = torch.arange(C)[None, :, None, None, None]
        i = torch.arange(D)[None, None, :, None, None]
        dl = torch.tensor(list(self.offsets))[None, None, None, :, None]
        k = torch.tensor(list(window_offsets(self.K)))[None, None, None, None, :]
        shape = (S, C, D, len(self.offsets), self.K)
        rows = (l * n + c * D + i).expand(shape)
        tl = l + dl
        cols = (tl % S) * n + c * D + (i + sh * dl + k) % D
        cols = cols.expand(shape)
        keep = torch.ones(shape, dtype=torch.bool)
        if self.time_boundary == "zero":
            keep &= ((tl >= 0) & (tl < S)).expand(shape)
        if self.band == "code" and self.mode == "shifting":
            jk = torch.arange(len(self.offsets))[None, None, None, :, None] + k
            keep &= ((jk >= 0) & (jk < len(self.offsets))).expand(shape)
        return _dense_from_pairs(S * n, S * n, rows[keep], cols[keep])

    def _dense_general(self, S: int) -> Tensor:
        """:meth:`dense` for the appendix C options, term by term (an oracle: loops over the window's
        ``(delta, k, e)`` terms, vectorised over ``(l, c, i)``)."""
        C, D, P = self.n_caps, self.capsule_dim, self.capsule_pad
        Din, n, n_in = D + 2 * P, self.n, self.n_in
        l = torch.arange(S)[:, None, None]
        c = torch.arange(C)[None, :, None]
        i = torch.arange(D)[None, None, :]
        shape = (S, C, D)
        rows = (l * n + c * D + i).expand(shape)
        W = torch.zeros(S * n, S * n_in, dtype=torch.float64)
        dropped = set(self.dropped_terms())
        for delta in self.offsets:
            tl = l + delta
            tkeep = (tl >= 0) & (tl < S) if self.time_boundary == "zero" else torch.ones_like(tl, dtype=torch.bool)
            for k in window_offsets(self.K):
                if (delta, k) in dropped:
                    continue
                for e, w in self.displacements(delta):
                    unit = i + k + e
                    if self.capsule_boundary == "circular":
                        unit, ukeep = unit % D, torch.ones_like(unit, dtype=torch.bool)
                    else:
                        unit = unit + P
                        ukeep = (unit >= 0) & (unit < Din)
                    keep = (tkeep & ukeep).expand(shape)
                    cols = ((tl % S) * n_in + c * Din + unit).expand(shape)
                    W.index_put_((rows[keep], cols[keep]), torch.full((int(keep.sum()),), w, dtype=torch.float64),
                                 accumulate=True)
        return W.to(torch.get_default_dtype())

    def window_dense(self) -> Tensor:
        r"""Eq 7's ``W``: ``(n, (2L+1)*n)`` acting on ``[U^2_{l+L}; ...; U^2_{l-L}]``.

        Block ``j`` (time offset ``delta = L - j``) is ``W_delta P_delta`` where ``W_delta``
        is the capsule window and ``P_delta`` the permutation ``Roll_{-delta}`` for shifting
        coherence (identity for stationary).
        """
        if self.window != "centered" or self.band != "full":
            raise ValueError("window_dense is Eq 7's centered form with the full band; use dense(S) for "
                             f"window={self.window!r}, band={self.band!r}")
        if self.roll != "integer" or self.capsule_boundary != "circular":
            raise ValueError("window_dense is Eq 7's form with whole-unit rolls on circular capsules; use dense(S) for "
                             f"roll={self.roll!r}, capsule_boundary={self.capsule_boundary!r}")
        base = CapsuleTopography(self.n_caps, self.capsule_dim, self.K).dense()  # (n, n)
        blocks = []
        for delta in range(int(self.L), -int(self.L) - 1, -1):  # teaching oracle only, not a hot path
            shift = -delta if self.mode == "shifting" else 0
            P = roll(torch.eye(self.n), shift, self.capsule_dim)  # rows: Roll_shift(e_j)
            blocks.append(base @ P.T)
        return torch.cat(blocks, dim=1)


@dataclass(frozen=True)
class TemporalTopography2D:
    r"""Temporal coherence on two-dimensional capsules (appendix C.3, Eq 21).

    Each of the ``C`` capsules is a ``side x side`` lattice of units, row-major (unit ``(r, q)`` of
    capsule ``c`` at flat index ``c*side^2 + r*side + q``).  ``W^d`` (``d`` in
    :data:`~tvae_core.roll.LATTICE_AXES`: 0 = along ``r``, 1 = along ``q``) is the 1-D temporal
    topography of :class:`TemporalTopography` run along axis ``d`` of every lattice, each line of
    ``side`` units being its own capsule: it "sums locally along the d-th dimension of each
    capsule, and not at all along the others", and its shift ``Roll^d_delta`` (:func:`~tvae_core.roll.roll2d`)
    moves along ``d`` only.  Eq 21 combines the axes with a group-sparse denominator:

    .. math:: \mathbf T_l = \frac{\mathbf Z_l - \mu}{\sum_{d} \sqrt{\sum_{\delta} \mathbf W^d_\delta
              \mathrm{Roll}^d_\delta(\mathbf U^2_{l+\delta})}}

    so ``topo(v)`` (no ``axis``) returns ``(sum_d sqrt(W^d v))^2``: with it :func:`~tvae_core.studentt.tpot`'s
    ``(z - mu) / sqrt(topo(u^2))`` is Eq 21 exactly (this ``topo`` is not linear in ``v``).  ``topo(v, axis)``
    returns ``W^axis v`` alone (linear, :meth:`dense`), for sequences whose transformation axis
    is known: ``axis`` an ``int`` or a tensor of 0s and 1s of shape ``v.shape[:-2]`` (e.g. ``(B,)``,
    one axis per sequence).  Shapes: ``v: (..., S, C*side^2) -> (..., S, C*side^2)``.

    Options as :class:`TemporalTopography` (window, boundaries, partial rolls act along the chosen
    axis); ``K`` units along the axis, ``K_cross`` along the other (Eq 21: ``K_cross = 1``, "not at
    all along the others"; ``K_cross = K`` gives a ``K x K`` box).
    """

    n_caps: int
    side: int
    K: int = 1
    L: float = 1
    mode: str = "shifting"
    time_boundary: str = "circular"
    window: str = "centered"
    capsule_boundary: str = "circular"
    roll: str = "integer"
    alpha: float = 1.0
    K_cross: int = 1

    def __post_init__(self) -> None:
        check_int("n_caps", self.n_caps, minimum=1)
        check_int("side", self.side, minimum=1)
        check_int("K_cross", self.K_cross, minimum=1, maximum=self.side)
        _ = self.line  # building it validates the remaining options (K <= side, mode, window, ...)

    @functools.cached_property
    def line(self) -> TemporalTopography:
        """The 1-D topography along one lattice axis: ``C*side`` capsules of ``side`` units."""
        return TemporalTopography(n_caps=self.n_caps * self.side, capsule_dim=self.side, K=self.K, L=self.L,
                                  mode=self.mode, time_boundary=self.time_boundary, window=self.window,
                                  capsule_boundary=self.capsule_boundary, roll=self.roll, alpha=self.alpha)

    @property
    def n(self) -> int:
        return self.n_caps * self.side * self.side

    @property
    def offsets(self) -> range:
        """The time offsets ``delta`` that ``T_l`` sees, as :attr:`TemporalTopography.offsets`."""
        return self.line.offsets

    def along(self, v: Tensor, axis: int) -> Tensor:
        """``W^axis v``: ``(..., S, C*side^2) -> (..., S, C*side^2)``."""
        check_choice("axis", axis, LATTICE_AXES)
        _check_last(v, self.n, "v")
        if v.ndim < 2:
            raise ValueError(f"v must have shape (..., S, C*side^2) with a time axis, got {tuple(v.shape)}")
        S, C, s = v.shape[-2], self.n_caps, self.side
        g = v.reshape(*v.shape[:-2], S, C, s, s)  # (..., S, C, r, q)
        if axis == 0:
            g = g.transpose(-1, -2)  # (..., S, C, q, r): lines along r are contiguous
        out = self.line(g.reshape(*v.shape[:-2], S, self.n)).reshape(g.shape)
        if self.K_cross > 1:
            out = box_sum(out, -2, self.K_cross, self.capsule_boundary)  # the other lattice axis
        if axis == 0:
            out = out.transpose(-1, -2)
        return out.reshape(v.shape)

    def __call__(self, v: Tensor, axis: int | Tensor | None = None) -> Tensor:
        if axis is None:  # Eq 21: the squared group-sparse denominator
            return (self.along(v, 0).sqrt() + self.along(v, 1).sqrt()).pow(2)
        if not isinstance(axis, Tensor):
            return self.along(v, axis)
        _check_axis(axis)
        a = axis.to(v.device)[..., None, None]  # (..., 1, 1) against (..., S, n)
        return torch.where(a == 0, self.along(v, 0), self.along(v, 1))

    def dense(self, S: int, axis: int) -> Tensor:
        r"""``W^axis`` as an ``(S*n, S*n)`` matrix, term by term: row ``(l, c, r, q)`` has weight ``w``
        at ``(l+delta, c, a + k + e, b + k')`` in (along, across) coordinates ``(a, b)`` for every
        ``delta``, ``k`` (``K``), ``k'`` (``K_cross``) and ``(e, w)`` of
        :meth:`TemporalTopography.displacements`; units taken mod ``side`` or dropped outside the
        lattice (``capsule_boundary``), frames mod ``S`` or dropped (``time_boundary``)."""
        check_int("S", S, minimum=1)
        check_choice("axis", axis, LATTICE_AXES)
        self.line._check_window(S)
        C, s, n = self.n_caps, self.side, self.n
        l = torch.arange(S)[:, None, None, None]
        c = torch.arange(C)[None, :, None, None]
        a = torch.arange(s)[None, None, :, None]  # along the axis
        b = torch.arange(s)[None, None, None, :]  # across
        shape = (S, C, s, s)
        r, q = (a, b) if axis == 0 else (b, a)
        rows = (l * n + c * s * s + r * s + q).expand(shape)
        W = torch.zeros(S * n, S * n, dtype=torch.float64)
        circular = self.capsule_boundary == "circular"
        for delta in self.offsets:
            tl = l + delta
            tkeep = (tl >= 0) & (tl < S) if self.time_boundary == "zero" else torch.ones_like(tl, dtype=torch.bool)
            for k in window_offsets(self.K):
                for k2 in window_offsets(self.K_cross):
                    for e, w in self.line.displacements(delta):
                        a2, b2 = a + k + e, b + k2
                        if circular:
                            a2, b2, ukeep = a2 % s, b2 % s, torch.ones(1, dtype=torch.bool)
                        else:
                            ukeep = (a2 >= 0) & (a2 < s) & (b2 >= 0) & (b2 < s)
                        r2, q2 = (a2, b2) if axis == 0 else (b2, a2)
                        keep = (tkeep & ukeep).expand(shape)
                        cols = ((tl % S) * n + c * s * s + r2 * s + q2).expand(shape)
                        W.index_put_((rows[keep], cols[keep]),
                                     torch.full((int(keep.sum()),), w, dtype=torch.float64), accumulate=True)
        return W.to(torch.get_default_dtype())


def _dirichlet(D: int, t: float) -> float:
    """The kernel of :func:`~tvae_core.roll.fourier_roll` on ``D`` units: ``fourier_roll(x, s)_p =
    sum_m h(p - m - s) x_m`` with ``h(t) = (1/D) [1 + 2 sum_{0<q<D/2} cos(2 pi q t/D) + cos(pi t) (even D)]``."""
    total = 1.0 + 2.0 * sum(math.cos(2 * math.pi * q * t / D) for q in range(1, (D + 1) // 2))
    if D % 2 == 0:
        total += math.cos(math.pi * t)
    return total / D


@functools.lru_cache(maxsize=64)
def _partial_roll_matrices(D: int, offsets: tuple[int, ...], kind: str, alpha: float) -> Tensor:
    """``(len(offsets), D, D)`` float64: ``M[j, p, m]`` is the weight of unit ``m`` in unit ``p`` of
    ``R_delta v`` for ``delta = offsets[j]``, built by applying the roll functions of
    :mod:`tvae_core.roll` to the identity (``linear_roll(., -delta, alpha)`` or
    ``fourier_roll(., -alpha*delta)``).  Cached per shape."""
    eye = torch.eye(D, dtype=torch.float64)
    mats = [(linear_roll(eye, -d, alpha, D) if kind == "linear" else fourier_roll(eye, -alpha * d, D)).T
            for d in offsets]  # row m of roll(eye) is R(e_m): transpose to (p, m)
    return torch.stack(mats)


@functools.lru_cache(maxsize=64)
def _temporal_indices(C: int, D: int, lo: int, width: int, S: int, shifting: bool, zero: bool,
                      device: str) -> tuple[Tensor, Tensor | None]:
    """Flat gather indices of :class:`TemporalTopography` (cached per shape).

    ``pad_idx[j, c, m]`` (``j = 0 .. S+width-2`` for frame ``s = lo + j``) points at
    ``v[s mod S, c, (m + s) mod D]`` (``m`` without the ``+ s`` when not shifting); with
    ``zero`` boundaries, out-of-range frames point at index ``S*C*D`` (an appended zero).
    ``unshear_idx[l, c, i]`` points at ``box[l, c, (i - l) mod D]``."""
    n = C * D
    s = torch.arange(lo, lo + S + width - 1)[:, None, None]
    c = torch.arange(C)[None, :, None]
    m = torch.arange(D)[None, None, :]
    unit = (m + s) % D if shifting else m.expand(len(s), 1, D)
    pad_idx = (s % S) * n + c * D + unit
    if zero:
        pad_idx = torch.where((s < 0) | (s >= S), torch.full_like(pad_idx, S * n), pad_idx)
    unshear = None
    if shifting:
        l = torch.arange(S)[:, None, None]
        unshear = (l * n + c * D + (m - l) % D).flatten().to(device)
    return pad_idx.flatten().to(device), unshear


def _check_last(v: Tensor, n: int, name: str) -> None:
    if v.shape[-1] != n:
        raise ValueError(f"{name} has last axis of size {v.shape[-1]}, but this topography has n={n} units")


# Functional shortcuts returning the dense matrices (readers meet these first in chapter 2).
def capsule_W(n_caps: int, capsule_dim: int, K: int = 3) -> Tensor:
    """Dense ``(C*D, C*D)`` capsule neighbourhood matrix, see :class:`CapsuleTopography`."""
    return CapsuleTopography(n_caps, capsule_dim, K).dense()


def torus_W(side: int, K: int = 5) -> Tensor:
    """Dense ``(side^2, side^2)`` torus neighbourhood matrix, see :class:`TorusTopography`."""
    return TorusTopography(side, K).dense()


def temporal_W(n_caps: int, capsule_dim: int, K: int, L: int, S: int, mode: str = "shifting",
               time_boundary: str = "circular", window: str = "centered", band: str = "full", *,
               capsule_boundary: str = "circular", capsule_pad: int = 0, roll: str = "integer",
               alpha: float = 1.0) -> Tensor:
    """Dense ``(S*n, S*n_in)`` temporal neighbourhood matrix, see :class:`TemporalTopography`."""
    return TemporalTopography(n_caps=n_caps, capsule_dim=capsule_dim, K=K, L=L, mode=mode, time_boundary=time_boundary,
                              window=window, band=band, capsule_boundary=capsule_boundary, capsule_pad=capsule_pad,
                              roll=roll, alpha=alpha).dense(S)


def window_W(n_caps: int, capsule_dim: int, K: int, L: int, mode: str = "shifting") -> Tensor:
    """Eq 7's ``(n, (2L+1) n)`` matrix, see :meth:`TemporalTopography.window_dense`."""
    return TemporalTopography(n_caps, capsule_dim, K, L, mode).window_dense()
