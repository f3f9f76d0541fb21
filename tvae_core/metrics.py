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

from ._checks import check_int

__all__ = ["max_activating", "unit_preferences", "neighbour_agreement", "AgreementTest", "unit_effects",
           "SimilarityTest", "neighbour_similarity_test",
           "agreement_permutation_test"]


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
