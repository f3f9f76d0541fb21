r"""The authors' constructions (github.com/akandykeller/TopographicVAE), rebuilt for comparison.

Chapter 9 ("Paper vs code") compares the paper's text, the code that produced its numbers and
this book.  The book's own implementations live in :mod:`tvae_core`; this module rebuilds, in a
few lines of plain torch each, the pieces of the authors' code whose behaviour differs from the
text, so that the differences can be *measured* rather than described:

* :func:`authors_temporal_W` -- the capsule grouping of the authors' ``tvae/containers/grouper.py``:
  circular padding then a ``ConvTranspose3d`` over (time, unit) whose ``T x T`` weight is a band of
  width ``2 n_off_diag + 1`` (shifting coherence) or all ones ``T x K`` (stationary, BubbleVAE and
  TVAE ``L = 0``), with the paddings of the experiment scripts.  Returned as the dense
  ``(S*D, S*D)`` matrix of one capsule, to compare with :meth:`TemporalTopography.dense`.
* :func:`authors_observed_roll` -- ``argmax`` of the authors' ``periodic_corr(t_0, t_Omega)``
  (``ifft(fft(t_0) * conj(fft(t_Omega)))``) per capsule, mode over capsules: the roll that takes
  ``t_Omega`` back to ``t_0``.
* :func:`authors_tpot` -- the authors' ``(z + beta) / sqrt(W u^2 + 1e-6)`` with one scalar ``beta``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tvae_core.checks import check_capsules, check_choice, check_int

__all__ = ["authors_temporal_W", "authors_observed_roll", "authors_tpot", "AUTHORS_EPS"]

AUTHORS_EPS = 1e-6
"""The constant the authors' groupers add under the root (``eps=1e-6``)."""


@torch.no_grad()
def authors_temporal_W(S: int, D: int, T: int, K: int = 3, mode: str = "shifting") -> Tensor:
    r"""Dense ``(S*D, S*D)`` grouping matrix of one capsule as the authors' code computes it.

    ``T``: time extent of the kernel (the scripts' ``group_kernel[0]`` = ``2L`` frames);
    ``K``: for ``"shifting"`` the band width ``2 n_off_diag + 1`` (odd; the weight is ``T x T``,
    so the capsule extent equals ``T`` as in every script); for ``"stationary"`` the unit extent of
    the all-ones kernel (``group_size`` / ``k_space``).  Paddings as the scripts with ``pad_fix``
    (even extents shift the window by one), circular in time and units.  Row ``l*D + i`` holds
    the weights of ``U^2`` that ``T_{l,i}`` divides by."""
    check_choice("mode", mode, ("shifting", "stationary"))
    check_int("T", T, minimum=1, maximum=S)
    check_int("K", K, minimum=1, maximum=D)
    kT, kD = (T, T) if mode == "shifting" else (T, K)
    if mode == "shifting" and K % 2 == 0:
        raise ValueError(f"K={K}: the authors' shifting band has odd width 2 * n_off_diag + 1")
    f0, f1 = (kT + 1) % 2, (kD + 1) % 2
    conv = nn.ConvTranspose3d(1, 1, (kT, kD, 1), padding=(2 * (kT // 2) - f0, 2 * (kD // 2) - f1, 0), bias=False)
    if mode == "shifting":
        band = torch.triu(torch.ones(kT, kT), -(K // 2))
        conv.weight.zero_()
        conv.weight[0, 0, :, :, 0] = band * band.T  # |a - b| <= n_off_diag
    else:
        nn.init.ones_(conv.weight)
    basis = torch.eye(S * D).reshape(S * D, 1, S, D, 1)  # one input U^2 per column
    padded = F.pad(basis, (0, 0, kD // 2 - f1, kD // 2, kT // 2 - f0, kT // 2), mode="circular")
    return conv(padded).reshape(S * D, S * D).T.contiguous()


def authors_observed_roll(t_0: Tensor, t_omega: Tensor, capsule_dim: int) -> Tensor:
    r"""The authors' ObservedRoll: per capsule ``argmax_r sum_d t_0[d + r] t_Omega[d]`` (their
    ``periodic_corr(t_0, t_Omega)``), mode over capsules (ties: the smallest).  ``(..., C*D)``
    -> ``(...,)``.  For ``t_Omega = Roll_k(t_0)`` it returns ``(-k) mod D``: the roll taking
    ``t_Omega`` back to ``t_0`` (Eq 20 as printed, :func:`tvae_core.capsule_roll`, returns ``k``)."""
    C = check_capsules("t_0", t_0.shape[-1], capsule_dim)
    a = t_0.reshape(*t_0.shape[:-1], C, capsule_dim)
    b = t_omega.reshape(*t_omega.shape[:-1], C, capsule_dim)
    pcc = torch.fft.ifft(torch.fft.fft(a, dim=-1) * torch.fft.fft(b, dim=-1).conj(), dim=-1).real
    votes = pcc.argmax(-1)  # (..., C)
    return torch.nn.functional.one_hot(votes, capsule_dim).sum(-2).argmax(-1)


def authors_tpot(z: Tensor, u: Tensor, topo, beta: float | Tensor, eps: float = AUTHORS_EPS) -> Tensor:
    r"""The authors' ``t = (z + beta) / sqrt(W u^2 + eps)``: one scalar ``beta`` for every unit
    (``correlated_mean_beta``, initialised to ``mu_init = 30``), ``eps = 1e-6`` inside the root.
    ``topo`` maps ``u**2 -> W u**2`` (a :mod:`tvae_core.topography` object)."""
    return (z + beta) / torch.sqrt(topo(u.pow(2)) + eps)
