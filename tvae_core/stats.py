r"""Energy correlations of (T)PoT samples, with confidence intervals (chapter 2).

Topographic models correlate *energies* ``T_i^2`` of neighbouring units (Sec 3.1, 4.3).
With ``K`` shared ``U``'s, ``T_i`` is ``t_K / sqrt(K)``, whose fourth moment is infinite for
``K <= 4``: a Pearson correlation of ``T_i^2`` does not converge.  We therefore measure the
**rank (Spearman) correlation** of energies, which is well defined for every ``K`` and
identical for ``T^2`` and ``|T|`` (any monotone function of the energy).

Estimator: ranks are taken along the sample axis for every unit and standardised; for paired
tensors ``a, b: (N, ...)`` of energies, ``r = mean over samples s of m_s`` with
``m_s = mean over units of rank_a * rank_b`` -- the Spearman correlation pooled over all unit
pairs.  Samples are independent, so ``r +- z * std(m_s)/sqrt(N)`` is a CLT confidence
interval that accounts for the dependence between unit pairs of one sample.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .roll import roll

__all__ = ["EnergyCorr", "standardized_ranks", "energy_corr", "ring_energy_profile",
           "torus_energy_map", "cross_capsule_energy_corr", "temporal_energy_corr", "lag_shift_energy_map"]


@dataclass(frozen=True)
class EnergyCorr:
    """A pooled rank correlation with its confidence interval ``[lo, hi]``."""

    r: float
    lo: float
    hi: float
    n: int

    def __str__(self) -> str:
        return f"{self.r:+.4f} [{self.lo:+.4f}, {self.hi:+.4f}] (N={self.n})"


def standardized_ranks(x: Tensor) -> Tensor:
    """Ranks along axis 0, shifted and scaled to mean 0 and variance 1 per unit. ``(N, ...)``."""
    n = x.shape[0]
    r = x.argsort(dim=0).argsort(dim=0).to(torch.float64)  # (N, ...): 0 .. N-1
    return (r - (n - 1) / 2) / (((n * n - 1) / 12) ** 0.5)


def energy_corr(a: Tensor, b: Tensor, z: float = 1.96, ranked: bool = False) -> EnergyCorr:
    """Pooled Spearman correlation of paired energies ``a, b: (N, ...)`` with a CI.

    ``ranked=True`` means ``a`` and ``b`` are already :func:`standardized_ranks`."""
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    ra, rb = (a, b) if ranked else (standardized_ranks(a), standardized_ranks(b))
    m = (ra * rb).reshape(a.shape[0], -1).mean(dim=1)  # (N,) per-sample mean product
    r, se = m.mean().item(), (m.std() / a.shape[0] ** 0.5).item()
    return EnergyCorr(r, r - z * se, r + z * se, int(a.shape[0]))


def ring_energy_profile(t: Tensor, capsule_dim: int, max_dist: int | None = None) -> list[EnergyCorr]:
    """Energy correlation between units ``d`` apart inside each circular capsule.

    ``t: (N, C*D)``; returns one :class:`EnergyCorr` for each ``d = 0 .. max_dist``
    (default ``D // 2``), pooled over all units and capsules."""
    R = standardized_ranks(t.pow(2))  # (N, C*D)
    max_dist = capsule_dim // 2 if max_dist is None else max_dist
    return [energy_corr(R, roll(R, d, capsule_dim), ranked=True) for d in range(max_dist + 1)]


def torus_energy_map(t: Tensor, side: int) -> Tensor:
    """Energy correlation for every 2-D offset on a ``side x side`` torus.

    ``t: (N, side*side)`` -> ``(side, side)`` map, entry ``[dr, dc]`` pooled over all units
    (computed for all offsets at once as a circular cross-correlation via FFT)."""
    R = standardized_ranks(t.pow(2)).reshape(-1, side, side)  # (N, H, W)
    F = torch.fft.fft2(R)
    cc = torch.fft.ifft2(F.conj() * F).real  # (N, H, W): sum_u R[u] R[u + offset]
    return cc.mean(0) / (side * side)


def cross_capsule_energy_corr(t: Tensor, capsule_dim: int) -> EnergyCorr:
    """Energy correlation between the same unit index of *different* capsules.

    ``t: (N, C*D)``; pairs capsule ``c`` with ``c + j`` for every ``j = 1 .. C-1``."""
    N = t.shape[0]
    R = standardized_ranks(t.pow(2)).reshape(N, -1, capsule_dim)  # (N, C, D)
    C = R.shape[1]
    if C < 2:
        raise ValueError("cross_capsule_energy_corr needs at least 2 capsules")
    a = R.unsqueeze(1).expand(N, C - 1, C, capsule_dim)
    b = torch.stack([R.roll(j, dims=1) for j in range(1, C)], dim=1)  # (N, C-1, C, D)
    return energy_corr(a, b, ranked=True)


def temporal_energy_corr(t: Tensor, capsule_dim: int, time_lag: int = 1, unit_shift: int = 0) -> EnergyCorr:
    r"""``corr(T_{l,i}^2, T_{l-lag, i-shift}^2)`` pooled over frames, capsules and units.

    ``t: (N, S, C*D)``; frames are paired cyclically (sequences are cyclic, A.9-A.10).
    ``unit_shift=0``: stationary coherence (Eq 8); ``unit_shift=1``: shifting (Eq 9)."""
    R = standardized_ranks(t.pow(2))  # (N, S, C*D)
    past = roll(R.roll(time_lag, dims=1), unit_shift, capsule_dim)  # [l, i] <- [l-lag, i-shift]
    return energy_corr(R, past, ranked=True)


def lag_shift_energy_map(t: Tensor, capsule_dim: int) -> Tensor:
    r"""Energy correlation for every (time lag, unit shift) at once.

    ``t: (N, S, C*D)`` -> ``(S, D)`` map whose entry ``[a, b]`` is
    ``corr(T^2_{l,i}, T^2_{l-a, i-b})`` pooled over frames, capsules, units (both axes
    cyclic; negative lags/shifts are the entries ``S-a``, ``D-b``).  Computed as a 2-D
    circular cross-correlation via FFT; ``[1, 1]`` equals
    ``temporal_energy_corr(t, capsule_dim, 1, 1).r``."""
    N, S, n = t.shape
    R = standardized_ranks(t.pow(2)).reshape(N, S, n // capsule_dim, capsule_dim)  # (N, S, C, D)
    R = R.transpose(1, 2)  # (N, C, S, D)
    F = torch.fft.fft2(R)
    cc = torch.fft.ifft2(F * F.conj()).real  # [a, b] = sum R[l, i] R[l - a, i - b]
    return cc.mean(dim=(0, 1)) / (S * capsule_dim)
