r"""Analysing the graph VAE's equivariant latent ``z in Z = R^n`` (chapter 6, Sec 5.1, Fig 2-5).

* :func:`invariant_features` -- the representations compared in Fig 5: the equivariant code
  itself, its sorted cross-section ``s(z)`` (Eq 2-3, Prop 2) and the pooling summaries
  (sum / mean / max over nodes) often used to make equivariant codes invariant.
* :func:`interpolate` -- Eq 5, the straight line between two codes; in ``Z`` between ``z_1``
  and ``z_2``, in ``Z_s`` between ``s(z_1)`` and ``s(z_2)`` (meaningful because ``Z_s`` is a
  convex cone, Prop 2).
* :func:`graph_hamming` and :func:`interpolation_hamming` -- Fig 4: the Hamming distance
  between consecutive graphs decoded along a line.
* :func:`pca_2d` -- the first two principal components (Fig 2, Fig 3 right).
"""
from __future__ import annotations

import torch
from torch import Tensor

from tvae_core.checks import check_choice, check_int
from tvae_core.invariance import sort_projection

__all__ = ["REPRESENTATIONS", "invariant_features", "interpolate", "graph_hamming", "interpolation_hamming",
           "decode_path", "pca_2d"]

REPRESENTATIONS = ("equivariant", "sorted", "sum", "mean", "max")


def invariant_features(z: Tensor, kind: str) -> Tensor:
    """``z: (N, n) -> (N, F)``: ``"equivariant"`` (``z``, not invariant), ``"sorted"``
    (``s(z)``, the isometric cross-section), or pooling over nodes ``"sum"``, ``"mean"``,
    ``"max"`` (invariant, ``F = 1`` with one latent channel: most information is lost)."""
    check_choice("kind", kind, REPRESENTATIONS)
    if kind == "equivariant":
        return z
    if kind == "sorted":
        return sort_projection(z)
    return {"sum": z.sum, "mean": z.mean, "max": lambda **kw: z.amax(**kw)}[kind](dim=-1, keepdim=True)


def interpolate(z1: Tensor, z2: Tensor, steps: int) -> Tensor:
    """Eq 5: ``(1 - a) z_1 + a z_2`` for ``a = 0, 1/(steps-1), ..., 1``.
    ``z1, z2: (..., n) -> (..., steps, n)`` (the first point is ``z_1``, the last ``z_2``)."""
    check_int("steps", steps, minimum=2)
    a = torch.linspace(0, 1, steps, dtype=z1.dtype, device=z1.device)[:, None]  # (steps, 1)
    return (1 - a) * z1[..., None, :] + a * z2[..., None, :]


def graph_hamming(X1: Tensor, E1: Tensor, X2: Tensor, E2: Tensor) -> Tensor:
    """Entries that differ between two graphs in the same node order: node types that differ
    plus unordered pairs ``i < j`` whose edge types differ.  One-hot (or logit) inputs
    ``X: (..., n, A)``, ``E: (..., n, n, B)`` -> ``(...,)`` integer counts."""
    nodes = (X1.argmax(-1) != X2.argmax(-1)).sum(-1)
    n = X1.shape[-2]
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool, device=X1.device), diagonal=1)
    edges = ((E1.argmax(-1) != E2.argmax(-1)) & upper).sum((-1, -2))
    return nodes + edges


@torch.no_grad()
def decode_path(model, path: Tensor, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """Decode every point of ``path: (..., steps, n)`` to its most likely graph:
    ``X (..., steps, n, A)``, ``E (..., steps, n, n, B)``; ``chunk`` points at a time (each graph is
    decoded on its own; the paper's 10,000 lines x 25 points at once need more than 24 GB)."""
    flat = path.reshape(-1, path.shape[-1])
    parts = [model.decode_graph(flat[i:i + chunk]) for i in range(0, len(flat), chunk)]
    X, E = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    return X.reshape(*path.shape, -1), E.reshape(*path.shape, path.shape[-1], -1)


@torch.no_grad()
def interpolation_hamming(model, z1: Tensor, z2: Tensor, steps: int, space: str) -> Tensor:
    """Fig 4: Hamming distance between consecutive decoded graphs along the line from ``z_1``
    to ``z_2``, in ``space="equivariant"`` (``Z``) or ``"sorted"`` (``Z_s``: the line from
    ``s(z_1)`` to ``s(z_2)``).  ``z1, z2: (P, n) -> (P, steps - 1)``."""
    check_choice("space", space, ("equivariant", "sorted"))
    if space == "sorted":
        z1, z2 = sort_projection(z1), sort_projection(z2)
    X, E = decode_path(model, interpolate(z1, z2, steps))
    return graph_hamming(X[:, 1:], E[:, 1:], X[:, :-1], E[:, :-1])


def pca_2d(features: Tensor, fit_on: Tensor | None = None) -> Tensor:
    """Project ``features: (N, F)`` on the first two principal components of ``fit_on``
    (default: ``features``).  ``-> (N, 2)`` (``F = 1``: the second column is 0)."""
    ref = (features if fit_on is None else fit_on).double()
    mean = ref.mean(0)
    _, _, V = torch.linalg.svd(ref - mean, full_matrices=False)
    out = (features.double() - mean) @ V[:2].T
    return torch.nn.functional.pad(out, (0, 2 - out.shape[1])) if out.shape[1] < 2 else out
