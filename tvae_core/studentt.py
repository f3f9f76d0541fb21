r"""Student-t, Product of Student-t (PoT) and Topographic PoT from Gaussians (Eq 2-7).

A univariate Student-t variable with ``nu`` degrees of freedom is a ratio of independent
standard normals (Eq 2):

.. math:: T = \frac{Z}{\sqrt{\frac{1}{\nu}\sum_{k=1}^{\nu} U_k^2}}, \qquad Z, U_k \sim \mathcal N(0, 1).

Giving every ``T_i`` its own ``U``'s gives a PoT vector (Eq 3); *sharing* ``U``'s between
neighbours through an adjacency matrix ``W`` makes it topographic (Eq 4-5), and with the
paper's learned mean ``mu`` and ``sigma = sqrt(nu)`` the TVAE uses (Eq 6-7)

.. math:: \mathbf T = \frac{\mathbf Z - \mu}{\sqrt{\mathbf W \mathbf U^2}} .

Note the ``1/nu`` has been absorbed: for one neighbourhood of ``K`` shared ``U``'s and
``mu = 0``, ``T_i = t_K / sqrt(K)`` where ``t_K`` is a standard Student-t.
A ``T_i`` is large when the ``U``'s of its neighbourhood are small: the ``U``'s act as
*constraint violations* (Sec 4.2).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor

from .checks import check_int

__all__ = ["student_t", "tpot", "PriorSample", "sample_pot", "sample_tpot"]

Topography = Callable[[Tensor], Tensor]


def student_t(z: Tensor, u: Tensor) -> Tensor:
    r"""Eq 2-3: ``t_i = z_i / sqrt(mean_k u_{ik}^2)``.

    Args:
        z: ``(..., n)`` numerators.
        u: ``(..., n, nu)`` -- ``nu`` private ``U``'s per variable.
    Returns:
        ``(..., n)``; ``Student-t(nu)`` distributed when ``z, u`` are standard normal.
    """
    if u.ndim != z.ndim + 1 or u.shape[:-1] != z.shape:
        raise ValueError(
            f"u must have shape (*z.shape, nu) = ({', '.join(map(str, z.shape))}, nu); "
            f"got z {tuple(z.shape)} and u {tuple(u.shape)}"
        )
    return z / torch.sqrt(u.pow(2).mean(dim=-1))


def tpot(z: Tensor, u: Tensor, W: Tensor | Topography, mu: float | Tensor = 0.0, eps: float = 0.0) -> Tensor:
    r"""Eq 5-7: ``T = (Z - mu) / sqrt(W U^2 + eps)``.

    The one implementation of Eq 6: the TVAE (:class:`tvae_core.models.TVAE`) calls it with its
    learned ``mu`` and ``eps = 1e-8``; the chapters sample the prior with it (``eps = 0``).

    Args:
        z: ``(..., n)``.
        u: ``(..., m)``; ``m = n`` for a square ``W``, ``m = (2L+1) n`` for Eq 7's window form.
        W: a dense ``(n, m)`` adjacency tensor, or a topography from
            :mod:`tvae_core.topography` (any callable mapping ``u**2 -> W u**2`` without
            building ``W``; e.g. ``TemporalTopography`` with ``z, u: (..., S, n)``).
        mu: scalar or ``(n,)`` mean (the TVAE learns it, A.2).
        eps: added under the root (numerical guard of a trained model; 0 in the maths).
    Returns:
        ``(..., n)``.
    """
    if isinstance(W, Tensor):
        if W.ndim != 2:
            raise ValueError(f"W must be a 2-D (n, m) tensor, got shape {tuple(W.shape)}")
        n, m = W.shape
        if u.shape[-1] != m:
            raise ValueError(f"u's last axis has size {u.shape[-1]} but W has m={m} columns (W: (n, m) = {tuple(W.shape)})")
        if z.shape[-1] != n:
            raise ValueError(f"z's last axis has size {z.shape[-1]} but W has n={n} rows (W: (n, m) = {tuple(W.shape)})")
        denom = u.pow(2) @ W.to(u.dtype).T  # (..., n)
    else:
        denom = W(u.pow(2))  # (..., n)
        if denom.shape != z.shape:
            raise ValueError(f"the topography maps u {tuple(u.shape)} to {tuple(denom.shape)}, which does not match z {tuple(z.shape)}")
    return (z - mu) / torch.sqrt(denom + eps if eps else denom)


class PriorSample(NamedTuple):
    """A draw from a (T)PoT prior: the ``t`` and the Gaussians it was built from."""

    t: Tensor
    z: Tensor
    u: Tensor


def _generator(seed: int | None) -> torch.Generator | None:
    if seed is None:
        return None
    return torch.Generator().manual_seed(int(seed))


def sample_pot(num_samples: int, n: int, nu: int, seed: int | None = None) -> PriorSample:
    """Sample ``num_samples`` PoT(nu) vectors of ``n`` units (Eq 3).

    Returns ``PriorSample(t: (N, n), z: (N, n), u: (N, n, nu))``.
    """
    check_int("num_samples", num_samples, minimum=1)
    check_int("n", n, minimum=1)
    check_int("nu", nu, minimum=1)
    g = _generator(seed)
    z = torch.randn(num_samples, n, generator=g)  # (N, n)
    u = torch.randn(num_samples, n, nu, generator=g)  # (N, n, nu)
    return PriorSample(student_t(z, u), z, u)


def sample_tpot(num_samples: int, W: Tensor | Topography, shape: tuple[int, ...] | None = None,
                mu: float = 0.0, seed: int | None = None) -> PriorSample:
    """Sample the TPoT prior of Eq 6-7 (the TVAE's generative prior, no data involved).

    Args:
        num_samples: ``N``.
        W: dense ``(n, n)`` matrix or a topography callable.
        shape: per-sample shape of ``z`` and ``u``; default ``(n,)`` for a dense ``W`` or
            ``(topo.n,)``; pass ``(S, n)`` for a :class:`~tvae_core.topography.TemporalTopography`.
        mu: the prior mean shift (0 for the prior itself).
    Returns:
        ``PriorSample(t, z, u)``, each ``(N, *shape)``.
    """
    check_int("num_samples", num_samples, minimum=1)
    if shape is None:
        n = W.shape[0] if isinstance(W, Tensor) else getattr(W, "n", None)
        if n is None:
            raise ValueError("shape is required when W is a plain callable without an `n` attribute")
        shape = (int(n),)
    g = _generator(seed)
    z = torch.randn(num_samples, *shape, generator=g)
    u = torch.randn(num_samples, *shape, generator=g)
    return PriorSample(tpot(z, u, W, mu), z, u)
