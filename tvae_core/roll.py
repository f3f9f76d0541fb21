r"""Roll on capsules and its extensions (TVAE paper, Eq 18, Eq 19, appendix C.1-C.2).

Notation used throughout the package
------------------------------------
A latent vector with ``n = C * D`` units is read as ``C`` *capsules* of
``capsule_dim = D`` units each, capsule ``c`` holding units ``c*D ... c*D + D - 1``
(the flat layout of Eq 18).  ``Roll_delta`` is a cyclic shift *inside every capsule*:

.. math::  \mathrm{Roll}_\delta(\mathbf u)_{c,d} = u_{c,\,(d-\delta) \bmod D}

so a positive ``delta`` moves unit ``d`` to ``d + delta``.  For ``delta = 1`` this is
exactly Eq 18: ``[u_1..u_D] -> [u_D, u_1, ..., u_{D-1}]`` in every capsule.

Shapes: every function acts on the last axis, ``x: (..., C*D) -> (..., C*D)``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .checks import check_capsules

__all__ = ["roll", "partial_roll", "fourier_roll", "noncyclic_roll"]


def _split(x: Tensor, capsule_dim: int) -> Tensor:
    c = check_capsules("x", x.shape[-1], capsule_dim)
    return x.reshape(*x.shape[:-1], c, capsule_dim)  # (..., C, D)


def roll(x: Tensor, shift: int | Tensor, capsule_dim: int) -> Tensor:
    r"""``Roll_shift(x)`` of Eq 18: cyclic shift by ``shift`` inside every capsule.

    Args:
        x: ``(..., C*D)`` activations.
        shift: an ``int``, or an integer tensor broadcastable to ``x.shape[:-1]`` giving one
            shift per leading index (e.g. ``torch.arange(S)`` with ``x: (S, C*D)`` rolls
            frame ``l`` by ``l`` -- the capsule traversal ``Roll_l(t_0)`` in one call).
        capsule_dim: ``D``, units per capsule; must divide ``x.shape[-1]``.

    Returns:
        ``(..., C*D)`` with ``out[..., c*D + (d + shift) % D] = x[..., c*D + d]``.
    """
    xc = _split(x, capsule_dim)  # (..., C, D)
    if isinstance(shift, int):
        return torch.roll(xc, shifts=shift, dims=-1).reshape(x.shape)
    shift = torch.as_tensor(shift, device=x.device)
    if shift.is_floating_point():
        raise TypeError("shift must be an int or an integer tensor; use fourier_roll or partial_roll for fractional shifts")
    d = torch.arange(capsule_dim, device=x.device)
    src = (d - shift[..., None]) % capsule_dim  # (..., D): source unit of each target unit
    src = torch.broadcast_to(src[..., None, :], xc.shape)  # (..., C, D)
    return torch.gather(xc, -1, src).reshape(x.shape)


def partial_roll(x: Tensor, alpha: float, capsule_dim: int) -> Tensor:
    r"""Linear partial roll of Eq 19 (appendix C.1), for ``0 < alpha <= 1``.

    .. math:: \mathrm{Roll}_\alpha(\mathbf u)_d = \alpha\, u_{d-1} + (1-\alpha)\, u_d

    ``alpha = 1`` is ``roll(x, 1)``; ``alpha -> 0`` is the identity.
    Shapes: ``(..., C*D) -> (..., C*D)``.
    """
    if not 0.0 < float(alpha) <= 1.0:
        raise ValueError(f"alpha={alpha} is not allowed; partial_roll needs 0 < alpha <= 1 (Eq 19)")
    return alpha * roll(x, 1, capsule_dim) + (1.0 - alpha) * x


def fourier_roll(x: Tensor, shift: float, capsule_dim: int) -> Tensor:
    r"""Continuous roll by a real ``shift`` as a phase shift in Fourier space (appendix C.1).

    Each capsule is treated as one period of a band-limited periodic signal:
    ``X_k -> X_k exp(-2 pi i k shift / D)``, then the inverse FFT.  For integer ``shift``
    this equals :func:`roll` (up to float error).  For even ``D`` the inverse real FFT reads only
    the real part of the Nyquist term, ``X_{D/2} cos(pi shift)``, so the result is real for every
    shift (a half-unit shift removes that term: two half shifts equal one roll only for odd ``D``).
    Shapes: ``(..., C*D) -> (..., C*D)``.
    """
    xc = _split(x, capsule_dim)  # (..., C, D)
    D = capsule_dim
    X = torch.fft.rfft(xc, dim=-1)  # (..., C, D//2+1)
    k = torch.arange(X.shape[-1], device=x.device, dtype=xc.dtype if xc.is_floating_point() else torch.float32)
    phase = torch.exp(-2j * math.pi * k * float(shift) / D)
    out = torch.fft.irfft(X * phase, n=D, dim=-1)
    return out.to(x.dtype).reshape(x.shape)


def noncyclic_roll(x: Tensor, shift: int, capsule_dim: int, fill: float = 0.0) -> Tensor:
    r"""Non-cyclic roll of appendix C.2: shift inside every capsule, units that leave the
    capsule are dropped and the vacated positions are filled with ``fill`` (0 by default).

    Shapes: ``(..., C*D) -> (..., C*D)``.
    """
    xc = _split(x, capsule_dim)  # (..., C, D)
    out = torch.full_like(xc, fill)
    D = capsule_dim
    s = int(shift)
    if abs(s) < D:
        if s >= 0:
            out[..., s:] = xc[..., : D - s]
        else:
            out[..., : D + s] = xc[..., -s:]
    return out.reshape(x.shape)
