r"""Invariant projections of equivariant representations.

Paper: "Interpreting Equivariant Representations" (sections 2-4): a latent space ``Z`` on
which a group ``G`` acts carries, besides the information of interest, the *pose* ``g``; two
latents of the same orbit ``{g . z}`` describe the same object, so distances and linear
methods in ``Z`` can mislead.  The remedy is an **invariant projection**: a map ``p`` with
``p(g . z) = p(z)``, ideally an isometric *cross-section* of the quotient ``Z/G`` whose metric is

.. math:: d([z_1], [z_2]) = \min_{g \in G} \| z_1 - g\cdot z_2 \| .

Here, two groups:

* ``S_n`` acting on ``R^n`` by permuting coordinates (graph node latents):
  :func:`sort_projection` is an isometric cross-section (Prop 2):
  ``d([z1],[z2]) = || sort(z1) - sort(z2) ||``; its image, sorted vectors, is a convex cone.
* the cyclic group ``C_D`` acting on ``C`` capsules of ``D`` units by ``Roll`` (the TVAE's
  capsules, Eq 18; all capsules roll together):
  :func:`quotient_distance_cyclic` is exact via circular cross-correlation;
  :func:`canonicalize` rolls every code so that a chosen statistic sits at unit 0 (a
  cross-section, *not* isometric in general); :func:`fourier_modulus` and
  :func:`capsule_norms` are invariants (of the larger group that rolls capsules
  independently); :class:`RandomInvariantProjection` is a random equivariant linear layer,
  a pointwise nonlinearity and pooling over the group, as the paper's random layers.
"""
from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import Tensor, nn

from .checks import check_capsules, check_choice, check_int
from .roll import roll

__all__ = ["sort_projection", "quotient_distance_sn", "quotient_distance_sn_bruteforce", "quotient_distance_cyclic",
           "quotient_distance_cyclic_bruteforce", "canonicalize", "canonical_shift", "fourier_modulus", "capsule_norms",
           "RandomInvariantProjection", "knn_scores", "knn_neighbours"]


def sort_projection(z: Tensor) -> Tensor:
    """The isometric cross-section of ``R^n / S_n`` (Prop 2): sort the last axis ascending.

    ``z: (..., n) -> (..., n)``."""
    return z.sort(dim=-1).values


def quotient_distance_sn(z1: Tensor, z2: Tensor) -> Tensor:
    """``min_P || z1 - P z2 ||`` over permutations, exactly, as ``|| sort(z1) - sort(z2) ||``."""
    return (sort_projection(z1) - sort_projection(z2)).norm(dim=-1)


def quotient_distance_sn_bruteforce(z1: Tensor, z2: Tensor) -> Tensor:
    """The same by enumerating all ``n!`` permutations (test oracle; ``n <= 8``)."""
    n = check_int("n", z1.shape[-1], minimum=1, maximum=8)
    perms = torch.tensor(list(itertools.permutations(range(n))))  # (n!, n)
    return (z1[..., None, :] - z2[..., perms]).norm(dim=-1).min(dim=-1).values


def quotient_distance_cyclic(t1: Tensor, t2: Tensor, capsule_dim: int) -> Tensor:
    r"""``min_r || t1 - Roll_r(t2) ||`` over the ``D`` joint rolls, via FFT cross-correlation:
    ``||t1 - Roll_r t2||^2 = ||t1||^2 + ||t2||^2 - 2 sum_c cc_c[r]``.  ``(..., C*D) -> (...)``."""
    C = check_capsules("t1", t1.shape[-1], capsule_dim)
    if t2.shape[-1] != t1.shape[-1]:
        raise ValueError(f"t2's last axis has size {t2.shape[-1]} but t1's has {t1.shape[-1]}: both must hold "
                         f"the same C*D = {C}*{capsule_dim} units")
    dtype = t1.dtype
    t1, t2 = t1.double(), t2.double()  # |a|^2 + |b|^2 - 2 cc cancels: keep the digits
    a = t1.reshape(*t1.shape[:-1], C, capsule_dim)
    b = t2.reshape(*t2.shape[:-1], C, capsule_dim)
    cc = torch.fft.irfft(torch.fft.rfft(b, dim=-1).conj() * torch.fft.rfft(a, dim=-1), n=capsule_dim, dim=-1)
    best = cc.sum(-2).max(-1).values  # max_r sum_c sum_d a[d] b[d - r]
    sq = t1.pow(2).sum(-1) + t2.pow(2).sum(-1) - 2 * best
    return sq.clamp_min(0).sqrt().to(dtype)


def quotient_distance_cyclic_bruteforce(t1: Tensor, t2: Tensor, capsule_dim: int) -> Tensor:
    """The same by trying every roll (test oracle)."""
    return torch.stack([(t1 - roll(t2, r, capsule_dim)).norm(dim=-1) for r in range(capsule_dim)]).min(0).values


def canonicalize(t: Tensor, capsule_dim: int, statistic: str = "energy") -> Tensor:
    """Roll every code (all capsules together) so that unit 0 holds the peak of a statistic.

    ``statistic="energy"``: the unit index ``d`` maximising ``sum_c t_{c,d}^2``;
    ``"mean"``: maximising ``sum_c t_{c,d}``.  The result is invariant to joint rolls of ``t``
    (ties aside) and keeps everything else: a cross-section of ``Z / C_D``.  It is **not**
    isometric: two codes whose peaks sit at different units are compared after different rolls,
    not after the best one (compare :func:`quotient_distance_cyclic`).  ``(..., C*D)``."""
    return roll(t, -canonical_shift(t, capsule_dim, statistic), capsule_dim)


def canonical_shift(t: Tensor, capsule_dim: int, statistic: str = "energy") -> Tensor:
    """The roll :func:`canonicalize` undoes: the unit index of the statistic's peak, ``(..., C*D) -> (...)``."""
    check_choice("statistic", statistic, ("energy", "mean"))
    C = check_capsules("t", t.shape[-1], capsule_dim)
    tc = t.reshape(*t.shape[:-1], C, capsule_dim)
    profile = (tc.pow(2) if statistic == "energy" else tc).sum(-2)  # (..., D)
    return profile.argmax(-1)


def fourier_modulus(t: Tensor, capsule_dim: int) -> Tensor:
    """``|DFT|`` of every capsule: invariant to any roll of any capsule.  ``(..., C*D) -> (..., C*(D//2+1))``."""
    C = check_capsules("t", t.shape[-1], capsule_dim)
    return torch.fft.rfft(t.reshape(*t.shape[:-1], C, capsule_dim), dim=-1).abs().flatten(-2)


def capsule_norms(t: Tensor, capsule_dim: int) -> Tensor:
    """``||t_c||`` per capsule: invariant to any roll of any capsule.  ``(..., C*D) -> (..., C)``."""
    C = check_capsules("t", t.shape[-1], capsule_dim)
    return t.reshape(*t.shape[:-1], C, capsule_dim).norm(dim=-1)


class RandomInvariantProjection(nn.Module):
    r"""Random ``C_D``-invariant features: equivariant linear map, ReLU, pooling over the group.

    The linear map is a circular convolution along the capsule axis that mixes capsules,
    ``y_{o,d} = sum_{c,j} W_{o,c,j} t_{c,(d+j) mod D} + b_o`` (it commutes with ``Roll``), the
    ReLU acts pointwise, and max- (or mean-) pooling over ``d`` removes the pose.
    Weights are fixed random draws (seeded).  The second paper (Sec 3.2) proposes random invariant
    *linear* maps; on a regular representation a linear invariant map sees only each channel's group
    mean (``C`` numbers), so this nonlinear form (the ReLU before the pooling) is the book's own.
    ``(..., C*D) -> (..., out_channels)``."""

    def __init__(self, n_caps: int, capsule_dim: int, out_channels: int = 256, pool: str = "max", seed: int = 0) -> None:
        super().__init__()
        check_choice("pool", pool, ("max", "mean"))
        g = torch.Generator().manual_seed(seed)
        self.C, self.D, self.pool = n_caps, capsule_dim, pool
        self.register_buffer("weight", torch.randn(out_channels, n_caps, capsule_dim, generator=g) / (n_caps * capsule_dim) ** 0.5)
        self.register_buffer("bias", 0.1 * torch.randn(out_channels, generator=g))

    def forward(self, t: Tensor) -> Tensor:
        if t.shape[-1] != self.C * self.D:
            raise ValueError(f"t's last axis has size {t.shape[-1]}, but this projection was built for "
                             f"n_caps * capsule_dim = {self.C} * {self.D} = {self.C * self.D} units")
        x = t.reshape(-1, self.C, self.D)  # (B, C, D)
        # circular cross-correlation over d for every (o, c): FFT along the capsule axis
        X = torch.fft.rfft(x, dim=-1)[:, None]  # (B, 1, C, F)
        Wf = torch.fft.rfft(self.weight, dim=-1)[None]  # (1, O, C, F)
        y = torch.fft.irfft((X * Wf.conj()).sum(2), n=self.D, dim=-1) + self.bias[:, None]  # (B, O, D)
        y = torch.relu(y)
        out = y.amax(-1) if self.pool == "max" else y.mean(-1)
        return out.reshape(*t.shape[:-1], -1)


def knn_neighbours(train: Tensor, test: Tensor, k: int) -> np.ndarray:
    """``(M, k)`` indices of each test point's ``k`` nearest training points (Euclidean, float64),
    nearest first.  ``train: (N, F)``, ``test: (M, F)``.  One search serves every ``k' <= k`` and every
    target of :func:`knn_scores` (the neighbours do not depend on the labels)."""
    from sklearn.neighbors import NearestNeighbors

    check_int("k", k, minimum=1)
    Xtr, Xte = np.asarray(train, dtype=np.float64), np.asarray(test, dtype=np.float64)
    if k > len(Xtr):
        raise ValueError(f"k={k} is not allowed: only {len(Xtr)} training points")
    return NearestNeighbors(n_neighbors=k).fit(Xtr).kneighbors(Xte, return_distance=False)


def knn_scores(train: Tensor, train_y: Tensor, test: Tensor, test_y: Tensor, ks=(1, 3, 5, 10, 20),
               task: str = "classification", neighbours: np.ndarray | None = None) -> dict[int, float]:
    """The papers' kNN evaluation: macro F1 (classification) or MAE (regression) for each ``k``.

    ``train: (N, F)``, ``test: (M, F)`` features (Euclidean distance).  The ``k`` nearest are the first
    ``k`` of one search at ``max(ks)`` (:func:`knn_neighbours`; pass ``neighbours`` to reuse a search
    for several targets).  Prediction as scikit-learn's ``KNeighbors*`` with uniform weights: the mean
    of the neighbours' targets, or the most frequent class (the smallest label among tied classes).
    Distance ties at the ``k``-th neighbour may be broken differently from a search at that ``k``."""
    check_choice("task", task, ("classification", "regression"))
    from sklearn.metrics import f1_score, mean_absolute_error

    ks = tuple(ks)
    idx = knn_neighbours(train, test, max(ks)) if neighbours is None else np.asarray(neighbours)
    if idx.shape[0] != len(test) or idx.shape[1] < max(ks):
        raise ValueError(f"neighbours has shape {idx.shape}; need ({len(test)}, >= {max(ks)})")
    ytr, yte = np.asarray(train_y), np.asarray(test_y)
    out = {}
    if task == "regression":
        ytr = ytr.astype(np.float64)
        for k in ks:
            out[k] = float(mean_absolute_error(yte, ytr[idx[:, :k]].mean(1)))
        return out
    classes, codes = np.unique(ytr, return_inverse=True)
    for k in ks:
        votes = np.zeros((len(idx), len(classes)), dtype=np.int64)        # (M, classes)
        np.add.at(votes, (np.arange(len(idx))[:, None], codes[idx[:, :k]]), 1)
        out[k] = float(f1_score(yte, classes[votes.argmax(1)], average="macro"))
    return out
