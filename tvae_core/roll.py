r"""Roll on capsules and its extensions (TVAE paper, Eq 18, Eq 19, appendix C.1-C.3).

Notation used throughout the package
------------------------------------
A latent vector with ``n = C * D`` units is read as ``C`` *capsules* of
``capsule_dim = D`` units each, capsule ``c`` holding units ``c*D ... c*D + D - 1``
(the flat layout of Eq 18).  ``Roll_delta`` is a cyclic shift *inside every capsule*:

.. math::  \mathrm{Roll}_\delta(\mathbf u)_{c,d} = u_{c,\,(d-\delta) \bmod D}

so a positive ``delta`` moves unit ``d`` to ``d + delta``.  For ``delta = 1`` this is
exactly Eq 18: ``[u_1..u_D] -> [u_D, u_1, ..., u_{D-1}]`` in every capsule.

Shapes: every function acts on the last axis, ``x: (..., C*D) -> (..., C*D)``, except the
appendix C.2 padding helpers (:func:`pad_capsules`, :func:`crop_capsules`,
:func:`pad_sequence_ends`), which change the size of the axis they pad, and :func:`roll2d`
(C.3), which reads each capsule as a ``side x side`` lattice (``D = side * side``, row-major).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .checks import check_capsules, check_choice, check_int

__all__ = ["roll", "partial_roll", "fourier_roll", "noncyclic_roll", "linear_roll", "roll2d", "pad_capsules",
           "crop_capsules", "pad_sequence_ends", "LATTICE_AXES"]

LATTICE_AXES = (0, 1)  # roll2d / TemporalTopography2D: 0 = rows (first lattice index), 1 = columns


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


def fourier_roll(x: Tensor, shift: float | Tensor, capsule_dim: int) -> Tensor:
    r"""Continuous roll by a real ``shift`` as a phase shift in Fourier space (appendix C.1).

    Each capsule is treated as one period of a band-limited periodic signal:
    ``X_k -> X_k exp(-2 pi i k shift / D)``, then the inverse FFT.  For integer ``shift``
    this equals :func:`roll` (up to float error).  For even ``D`` the inverse real FFT reads only
    the real part of the Nyquist term, ``X_{D/2} cos(pi shift)``, so the result is real for every
    shift (a half-unit shift removes that term: two half shifts equal one roll only for odd ``D``).
    Written as a circulant matrix, ``out_p = sum_m h(p - m - shift) x_m`` with the Dirichlet kernel
    ``h(t) = (1/D) [1 + 2 sum_{0<q<D/2} cos(2 pi q t / D) + cos(pi t) (even D only)]``.

    ``shift``: a float, or a real tensor broadcastable to ``x.shape[:-1]`` (one shift per leading
    index, as in :func:`roll`).  Shapes: ``(..., C*D) -> (..., C*D)``.
    """
    xc = _split(x, capsule_dim)  # (..., C, D)
    D = capsule_dim
    X = torch.fft.rfft(xc, dim=-1)  # (..., C, D//2+1)
    k = torch.arange(X.shape[-1], device=x.device, dtype=xc.dtype if xc.is_floating_point() else torch.float32)
    if isinstance(shift, Tensor):
        s = shift.to(device=x.device, dtype=k.dtype)[..., None, None]  # (..., 1, 1): one shift per row
        phase = torch.exp(-2j * math.pi * k * s / D)
    else:
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


def linear_roll(x: Tensor, shift: int, alpha: float, capsule_dim: int) -> Tensor:
    r"""Eq 19's linear partial roll applied ``|shift|`` times (appendix C.1): the roll of a window
    that moves ``alpha`` units per frame, after ``shift`` frames.

    For ``shift > 0`` it is ``partial_roll`` (``Roll_alpha(u)_d = alpha u_{d-1} + (1-alpha) u_d``)
    applied ``shift`` times; for ``shift < 0`` the mirrored step
    ``alpha u_{d+1} + (1-alpha) u_d`` applied ``-shift`` times; ``shift = 0`` is the identity.
    In closed form it spreads unit ``d`` binomially:
    ``out_{d + sign(shift) j} += C(|shift|, j) alpha^j (1-alpha)^(|shift|-j) x_d``, ``j = 0..|shift|``
    (mean displacement ``alpha * shift``).  ``alpha = 1`` is :func:`roll` by ``shift``; for
    ``alpha < 1`` it blurs and is not invertible (``linear_roll(., -s)`` does not undo ``s``).

    Args:
        x: ``(..., C*D)``.
        shift: an ``int``, the number of frames.
        alpha: ``0 < alpha <= 1`` (Eq 19).
        capsule_dim: ``D``.
    Returns: ``(..., C*D)``.
    """
    s = check_int("shift", shift)
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0.0 < float(alpha) <= 1.0:
        raise ValueError(f"alpha={alpha!r} is not allowed; linear_roll needs 0 < alpha <= 1 (Eq 19)")
    check_capsules("x", x.shape[-1], capsule_dim)
    step = 1 if s > 0 else -1
    out = x.clone()
    for _ in range(abs(s)):  # |shift| applications of Eq 19 (a handful of frames)
        out = alpha * roll(out, step, capsule_dim) + (1.0 - alpha) * out
    return out


def _check_axis(axis: int | Tensor) -> None:
    if isinstance(axis, Tensor):
        if axis.is_floating_point() or not bool(((axis == 0) | (axis == 1)).all()):
            raise ValueError(f"axis must hold only the lattice axes {LATTICE_AXES} (0 = rows, 1 = columns); "
                             f"got values {sorted(set(axis.flatten().tolist()))[:6]}")
    else:
        check_choice("axis", axis, LATTICE_AXES)


def roll2d(x: Tensor, shift: int | Tensor, side: int, axis: int | Tensor) -> Tensor:
    r"""``Roll^d_shift`` of Eq 21 (appendix C.3): a cyclic shift along one axis of 2-D capsules.

    Every capsule holds ``side x side`` units in row-major order (unit ``(r, q)`` at ``r*side + q``,
    so ``capsule_dim = side**2``).  ``axis = 0`` rolls along ``r`` (down the columns, every column
    keeps its units), ``axis = 1`` along ``q`` (along the rows):

    .. math:: \mathrm{Roll}^0_s(\mathbf u)_{c,r,q} = u_{c,(r-s) \bmod side,\,q}, \qquad
              \mathrm{Roll}^1_s(\mathbf u)_{c,r,q} = u_{c,r,(q-s) \bmod side}

    i.e. ``torch.roll`` of the ``(..., C, side, side)`` view along dim ``-2`` or ``-1``; a positive
    shift moves units to larger indices as :func:`roll` does, and ``axis = 1`` is :func:`roll` with
    ``capsule_dim = side``.

    Args:
        x: ``(..., C*side*side)``.
        shift: ``int`` or an integer tensor broadcastable to ``x.shape[:-1]``.
        side: lattice side; ``side**2`` must divide ``x.shape[-1]``.
        axis: ``0`` or ``1``, or an integer tensor of 0s and 1s broadcastable to ``x.shape[:-1]``
            (one axis per sequence, e.g. ``(B, 1)`` against ``x: (B, S, n)``).
    Returns: ``(..., C*side*side)``.
    """
    check_int("side", side, minimum=1)
    C = check_capsules("x", x.shape[-1], side * side)
    _check_axis(axis)
    xc = x.reshape(*x.shape[:-1], C, side, side)  # (..., C, side, side)
    if isinstance(shift, int) and not isinstance(axis, Tensor):
        return torch.roll(xc, shifts=shift, dims=-2 if axis == 0 else -1).reshape(x.shape)
    shift = torch.as_tensor(shift, device=x.device)
    if shift.is_floating_point():
        raise TypeError("shift must be an int or an integer tensor")
    a = torch.as_tensor(axis, device=x.device)
    r = torch.arange(side, device=x.device)[:, None]
    q = torch.arange(side, device=x.device)[None, :]
    s, a = shift[..., None, None], a[..., None, None]  # (..., 1, 1)
    src = ((r - s * (a == 0)) % side) * side + (q - s * (a == 1)) % side  # (..., side, side)
    src = src.reshape(*src.shape[:-2], 1, side * side)  # (..., 1, side^2)
    flat = xc.reshape(*x.shape[:-1], C, side * side)
    lead = torch.broadcast_shapes(flat.shape[:-2], src.shape[:-2])
    flat = flat.expand(*lead, C, side * side)
    src = src.expand(*lead, C, side * side)
    return torch.gather(flat, -1, src).reshape(*lead, C * side * side)


def pad_capsules(x: Tensor, pad: int, capsule_dim: int, fill: float | Tensor = 0.0) -> Tensor:
    r"""Appendix C.2's padded capsules: ``pad`` extra units at both ends of every capsule.

    C.2 makes capsules non-cyclic by giving ``U`` ``L`` more units than ``Z`` at each end of each
    capsule (``U`` is a "padded" version of ``Z``'s layout, the padding made of independent random
    variables), so that the shifting window of Eq 9 never has to wrap around.  Capsule ``c`` of the
    result is ``[fill_left (pad), x_c (D), fill_right (pad)]``.

    Args:
        x: ``(..., C*D)``.
        pad: ``>= 0`` units added at each end (C.2: ``L``; ``TemporalTopography.unit_reach`` gives
            the pad at which no window leaves its padded capsule).
        capsule_dim: ``D``.
        fill: a constant, or a tensor broadcastable to ``(..., C*2*pad)`` holding the new units
            capsule by capsule, the ``pad`` left units then the ``pad`` right ones (e.g.
            ``torch.randn(..., C*2*pad)``: C.2's independent units).
    Returns: ``(..., C*(D + 2*pad))``.
    """
    check_int("pad", pad, minimum=0)
    xc = _split(x, capsule_dim)  # (..., C, D)
    C = xc.shape[-2]
    if isinstance(fill, Tensor):
        if fill.shape[-1] != C * 2 * pad:
            raise ValueError(f"fill has last axis of size {fill.shape[-1]}, but pad={pad} needs C*2*pad = "
                             f"{C * 2 * pad} units (pad left and right of each of the C={C} capsules)")
        f = fill.to(xc).reshape(*fill.shape[:-1], C, 2 * pad)
        f = f.expand(*xc.shape[:-1], 2 * pad)  # (..., C, 2*pad)
    else:
        f = xc.new_full((*xc.shape[:-1], 2 * pad), float(fill))
    out = torch.cat([f[..., :pad], xc, f[..., pad:]], dim=-1)  # (..., C, D + 2*pad)
    return out.reshape(*x.shape[:-1], C * (capsule_dim + 2 * pad))


def crop_capsules(x: Tensor, pad: int, capsule_dim: int) -> Tensor:
    r"""Inverse of :func:`pad_capsules`: keep the central ``capsule_dim = D`` units of every padded
    capsule.  ``x: (..., C*(D + 2*pad)) -> (..., C*D)``."""
    check_int("pad", pad, minimum=0)
    check_int("capsule_dim", capsule_dim, minimum=1)
    xc = _split(x, capsule_dim + 2 * pad)  # (..., C, D + 2*pad)
    return xc[..., pad:pad + capsule_dim].reshape(*x.shape[:-1], xc.shape[-2] * capsule_dim)


def pad_sequence_ends(x: Tensor, pad: int, dim: int = -2) -> Tensor:
    r"""Appendix C.2's padded sequences: replicate the first and the last frame ``pad`` times.

    With non-cyclic capsules the transformation sequence is no longer cyclic either; C.2 pads it
    on both sides by repeating its end frames ``L`` times, so frames ``pad .. pad+S-1`` of the
    result (the original ones) have a full temporal window without wrapping around:
    ``out[j] = x[clamp(j - pad, 0, S-1)]`` along ``dim``.

    Args:
        x: any tensor with the sequence along ``dim`` (e.g. images ``(B, S, P)`` or codes ``(S, n)``;
            the default ``dim = -2`` fits both).
        pad: ``>= 0`` frames added at each end.
    Returns: ``x`` with ``S + 2*pad`` frames along ``dim``.
    """
    check_int("pad", pad, minimum=0)
    check_int("dim", dim, minimum=-x.ndim, maximum=x.ndim - 1)
    S = x.shape[dim]
    if S == 0:
        raise ValueError("x has no frames along dim: there is no first or last frame to replicate")
    idx = torch.arange(-pad, S + pad, device=x.device).clamp(0, S - 1)
    return x.index_select(dim, idx)
