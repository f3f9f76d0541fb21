r"""Topographic neighbourhoods ``W`` (TVAE paper, Eq 4-9, appendix A.4-A.5).

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
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor

from .checks import check_choice, check_int
from .roll import roll

__all__ = [
    "window_offsets",
    "box_sum",
    "CapsuleTopography",
    "TorusTopography",
    "TemporalTopography",
    "capsule_W",
    "torus_W",
    "temporal_W",
    "window_W",
    "TEMPORAL_MODES",
    "TIME_BOUNDARIES",
    "TIME_WINDOWS",
    "BANDS",
]

TEMPORAL_MODES = ("shifting", "stationary")
TIME_BOUNDARIES = ("circular", "zero")
TIME_WINDOWS = ("centered", "forward", "code")
BANDS = ("full", "code")


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
    """

    n_caps: int
    capsule_dim: int
    K: int = 3

    def __post_init__(self) -> None:
        check_int("n_caps", self.n_caps, minimum=1)
        check_int("capsule_dim", self.capsule_dim, minimum=1)
        check_int("K", self.K, minimum=1, maximum=self.capsule_dim)

    @property
    def n(self) -> int:
        return self.n_caps * self.capsule_dim

    def __call__(self, v: Tensor) -> Tensor:
        _check_last(v, self.n, "v")
        vc = v.reshape(*v.shape[:-1], self.n_caps, self.capsule_dim)  # (..., C, D)
        return box_sum(vc, -1, self.K).reshape(v.shape)

    def dense(self) -> Tensor:
        """``(n, n)`` matrix: ``W[c*D+i, c*D+(i+k)%D] = 1`` for ``k`` in the window."""
        C, D = self.n_caps, self.capsule_dim
        c = torch.arange(C)[:, None, None]
        i = torch.arange(D)[None, :, None]
        k = torch.tensor(list(window_offsets(self.K)))[None, None, :]
        rows = (c * D + i).expand(C, D, self.K)
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
    on) or ``"code"`` (the authors' code: ``2L`` frames, centred).  ``band``: ``"full"`` (every
    ``k`` at every time offset) or ``"code"`` (the authors' shifting kernel, cut at its first and
    last time offsets; see the module docstring).
    """

    n_caps: int
    capsule_dim: int
    K: int = 1
    L: float = 1
    mode: str = "shifting"
    time_boundary: str = "circular"
    window: str = "centered"
    band: str = "full"

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
        if self.window == "centered" and not float(self.L).is_integer():
            raise ValueError(f"L={self.L} is not allowed with window='centered' (2L+1 frames): L must be an integer")

    @property
    def offsets(self) -> range:
        """The time offsets ``delta`` that ``T_l`` sees (``U_{l+delta}``)."""
        if self.window == "centered":
            return range(-int(self.L), int(self.L) + 1)
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
        return self.n_caps * self.capsule_dim

    def _check_window(self, S: int) -> None:
        """With circular time a window longer than the sequence would count frames twice.

        ``S = 1`` is allowed: a single frame held still, every offset reading that frame (the
        single-frame codes of chapter 8; the same numbers as the frame repeated ``2L`` times)."""
        width = len(self.offsets)
        if self.time_boundary == "circular" and width > S > 1:
            most = S / 2 if self.window != "centered" else (S - 1) // 2
            raise ValueError(f"L={self.L:g} with window={self.window!r} spans {width} frames but the sequence has "
                             f"S={S}: with circular time frames would be counted twice; use L <= {most:g} "
                             f"(or time_boundary='zero')")

    def __call__(self, v: Tensor) -> Tensor:
        _check_last(v, self.n, "v")
        if v.ndim < 2:
            raise ValueError(f"v must have shape (..., S, C*D) with a time axis, got {tuple(v.shape)}")
        S, n = v.shape[-2], self.n
        width = len(self.offsets)
        self._check_window(S)
        pad_idx, unshear_idx = _temporal_indices(self.n_caps, self.capsule_dim, self.offsets.start, width, S,
                                                 self.mode == "shifting", self.time_boundary == "zero", str(v.device))
        flat = v.reshape(*v.shape[:-2], S * n)  # (..., S*n)
        if self.time_boundary == "zero":  # index S*n points at an appended zero
            flat = torch.cat([flat, flat.new_zeros(*flat.shape[:-1], 1)], dim=-1)
        # one gather does the time padding and (shifting) the shear: frame s rolled by -s
        vt = flat.index_select(-1, pad_idx).reshape(*v.shape[:-2], S + width - 1, self.n_caps, self.capsule_dim)
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
        r"""``(S*n, S*n)`` matrix acting on the flattened sequence ``v.reshape(S*n)``.

        Row ``(l, c, i)`` has a 1 at column ``((l+delta) mod S, c, (i + s*delta + k) mod D)``
        for every ``delta`` in :attr:`offsets` and ``k`` in the window, with ``s = 1`` for shifting
        and ``s = 0`` for stationary (``time_boundary="zero"`` drops out-of-range frames,
        ``band="code"`` the pairs of :meth:`dropped_terms`).
        """
        check_int("S", S, minimum=1)
        self._check_window(S)
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

    def window_dense(self) -> Tensor:
        r"""Eq 7's ``W``: ``(n, (2L+1)*n)`` acting on ``[U^2_{l+L}; ...; U^2_{l-L}]``.

        Block ``j`` (time offset ``delta = L - j``) is ``W_delta P_delta`` where ``W_delta``
        is the capsule window and ``P_delta`` the permutation ``Roll_{-delta}`` for shifting
        coherence (identity for stationary).
        """
        if self.window != "centered" or self.band != "full":
            raise ValueError("window_dense is Eq 7's centered form with the full band; use dense(S) for "
                             f"window={self.window!r}, band={self.band!r}")
        base = CapsuleTopography(self.n_caps, self.capsule_dim, self.K).dense()  # (n, n)
        blocks = []
        for delta in range(int(self.L), -int(self.L) - 1, -1):  # teaching oracle only, not a hot path
            shift = -delta if self.mode == "shifting" else 0
            P = roll(torch.eye(self.n), shift, self.capsule_dim)  # rows: Roll_shift(e_j)
            blocks.append(base @ P.T)
        return torch.cat(blocks, dim=1)


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
               time_boundary: str = "circular", window: str = "centered", band: str = "full") -> Tensor:
    """Dense ``(S*n, S*n)`` temporal neighbourhood matrix, see :class:`TemporalTopography`."""
    return TemporalTopography(n_caps, capsule_dim, K, L, mode, time_boundary, window, band).dense(S)


def window_W(n_caps: int, capsule_dim: int, K: int, L: int, mode: str = "shifting") -> Tensor:
    """Eq 7's ``(n, (2L+1) n)`` matrix, see :meth:`TemporalTopography.window_dense`."""
    return TemporalTopography(n_caps, capsule_dim, K, L, mode).window_dense()
