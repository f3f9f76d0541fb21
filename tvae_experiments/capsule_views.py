r"""Invariant views of TVAE capsule codes (chapter 8: the bridge between the two papers).

A trained TVAE maps a transforming sequence to codes that (approximately) roll:
``t_l ~ Roll_l(t_0)`` (Eq 18; TVAE paper Sec 4.5).  Roll is the action of the cyclic group
``C_D`` on ``C`` capsules of ``D`` units, so the capsule code is an *equivariant*
representation in the sense of "Interpreting Equivariant Representations" (Sec 2): it carries
the content of a frame *and* its pose.  The invariants of :mod:`tvae_core.invariance` remove
the pose:

* ``canonicalised`` -- :func:`~tvae_core.invariance.canonicalize`, a cross-section of
  ``Z / C_D`` (decodable: it is still a code), not isometric;
* ``Fourier modulus`` and ``capsule norms`` -- invariants of the larger group rolling every
  capsule independently (they drop the relative phase of capsules too);
* ``random invariant`` -- :class:`~tvae_core.invariance.RandomInvariantProjection`: a random
  ``C_D``-equivariant linear map, ReLU and a max over the group.  The second paper (Sec 3.2) proposes
  random invariant *linear* maps; on a capsule, where ``C_D`` permutes the units (a regular
  representation), an invariant linear map has the same weight on every unit of a capsule, so it
  only sees the capsule sums.  The nonlinear form is this book's construction;
* the isometric quotient metric ``min_r ||t_1 - Roll_r t_2||`` (the second paper, Sec 2), used directly
  as a kNN distance (:func:`quotient_distance_matrix_cyclic`).

Codes are first standardised over their units (``(t - mean) / std``, as the decoder of the
``cpu`` recipe does, :class:`~tvae_core.models.BernoulliDecoder`): with ``mu = 30`` a code is a
large constant plus a small pose-dependent part, and standardisation commutes with Roll.

Shapes: ``N`` sequences, ``S`` frames, ``n = C * D`` units, ``F`` features.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from tvae_core.checks import check_capsules, check_choice, check_int
from tvae_core.invariance import (
    RandomInvariantProjection,
    canonical_shift,
    canonicalize,
    capsule_norms,
    fourier_modulus,
)
from tvae_core.roll import roll

__all__ = ["capsule_activity", "roll_consistency", "standardize", "canonicalize_codes", "decoded_pose_spread", "invariant_views", "VIEW_NAMES", "within_sequence_fraction", "encode_sequences",
           "encode_frames", "KNN_TASKS",
           "quotient_distance_matrix_cyclic", "knn_vote", "reference_frames", "pose_knn_accuracy", "pose_retrieval_accuracy",
           "pose_knn_curves", "off_pose"]

VIEW_NAMES = ("raw t", "canonicalised", "Fourier modulus", "capsule norms", "random invariant")
"""The views :func:`invariant_views` returns, in order; only ``raw t`` depends on the pose."""
KNN_TASKS = ("retrieval", "class")
"""The two nearest-neighbour tasks of :func:`pose_knn_curves`."""


def standardize(t: Tensor) -> Tensor:
    """``(t - mean_i t_i) / std_i t_i`` over the last axis; commutes with any permutation of units."""
    return (t - t.mean(-1, keepdim=True)) / (t.std(-1, keepdim=True) + 1e-5)


def roll_consistency(t: Tensor, capsule_dim: int) -> Tensor:
    """How closely each capsule of one sequence's codes ``t: (S, C*D)`` follows ``t_l = Roll_l(t_0)``:
    the mean over frames ``l >= 1`` of the cosine between ``Roll_l`` of frame 0's centred capsule and
    frame ``l``'s centred capsule -> ``(C,)`` in [-1, 1] (1: the capsule rolls one unit per frame)."""
    if t.dim() != 2:
        raise ValueError(f"t must be (S, C*D), got shape {tuple(t.shape)}")
    C = check_capsules("t", t.shape[-1], capsule_dim)
    S = t.shape[0]
    c = _centred(t, capsule_dim).reshape(S, C, capsule_dim)
    rolled = torch.stack([roll(c[0], l, capsule_dim) for l in range(S)])         # (S, C, D): Roll_l(t_0)
    cos = torch.nn.functional.cosine_similarity(rolled[1:], c[1:], dim=-1, eps=1e-8)  # (S-1, C)
    return cos.mean(0)


def capsule_activity(t: Tensor, capsule_dim: int, capsule: int | None = None) -> tuple[Tensor, int]:
    """One capsule's activity over a sequence, as an image: ``t: (S, C*D)`` codes of one sequence ->
    ``((S, D), c)``: frames by units of capsule ``c``, each frame's capsule centred (its mean over the
    ``D`` units removed: with ``mu = 30`` a TVAE code is a large constant plus a small part that moves)
    and the whole image scaled to a largest absolute value of 1.

    ``capsule=None`` picks the capsule that best follows ``Roll`` (:func:`roll_consistency`), the same
    rule for every model, so a model without a rolling capsule shows its best attempt."""
    C = check_capsules("t", t.shape[-1], capsule_dim)
    if capsule is None:
        capsule = int(roll_consistency(t, capsule_dim).argmax())
    if not 0 <= capsule < C:
        raise ValueError(f"capsule={capsule} is outside 0..{C - 1}")
    a = _centred(t, capsule_dim).reshape(t.shape[0], C, capsule_dim)[:, capsule]
    return a / a.abs().max().clamp_min(1e-12), capsule


def _centred(t: Tensor, capsule_dim: int) -> Tensor:
    """``t: (..., C*D)`` with every capsule's mean over its ``D`` units removed."""
    c = t.reshape(*t.shape[:-1], -1, capsule_dim)
    return (c - c.mean(-1, keepdim=True)).reshape(t.shape)


def canonicalize_codes(t: Tensor, capsule_dim: int) -> Tensor:
    """Roll raw codes ``t: (..., C*D)`` to the canonical pose of their standardised version.

    ``standardize(canonicalize_codes(t)) == canonicalize(standardize(t))`` (standardisation
    commutes with Roll), but the result keeps the code's own scale, so the decoder can draw it."""
    return roll(t, -canonical_shift(standardize(t), capsule_dim), capsule_dim)


@torch.no_grad()
def decoded_pose_spread(model, t: Tensor, batch_size: int = 256) -> float:
    """How much decoded images vary along a sequence: ``t: (N, S, n)`` codes ->
    mean over sequences and pixels of the variance over the ``S`` frames of ``sigmoid(g(t))``."""
    if t.dim() != 3:
        raise ValueError(f"t must be (N, S, n), got shape {tuple(t.shape)}")
    dev = next(model.parameters()).device
    flat = t.reshape(-1, t.shape[-1])
    img = torch.cat([torch.sigmoid(model.decode(flat[i:i + batch_size].to(dev))).cpu()
                     for i in range(0, len(flat), batch_size)])  # (N*S, P)
    return float(img.reshape(*t.shape[:2], -1).var(1).mean())


def invariant_views(t: Tensor, capsule_dim: int, seed: int = 0, n_random: int = 256) -> dict[str, Tensor]:
    """Every view of :data:`VIEW_NAMES` of the codes ``t: (..., C*D)`` (standardised first).

    Returns ``{name: (..., F_name)}``; every view except ``raw t`` is invariant to ``Roll_r``."""
    C = check_capsules("t", t.shape[-1], capsule_dim)
    check_int("n_random", n_random, minimum=1)
    s = standardize(t)
    proj = RandomInvariantProjection(C, capsule_dim, n_random, pool="max", seed=seed)
    return {"raw t": s, "canonicalised": canonicalize(s, capsule_dim), "Fourier modulus": fourier_modulus(s, capsule_dim),
            "capsule norms": capsule_norms(s, capsule_dim), "random invariant": proj(s)}


def within_sequence_fraction(f: Tensor) -> float:
    """Share of the total variance of ``f: (N, S, F)`` that lies *within* sequences.

    ``sum_{i,l} ||f_il - mean_l f_il||^2 / sum_{i,l} ||f_il - mean_{i,l} f||^2``: 1 when frames of
    one sequence are as spread as the whole set, 0 when each sequence collapses to one point."""
    if f.dim() != 3:
        raise ValueError(f"f must be (N, S, F), got shape {tuple(f.shape)}")
    within = (f - f.mean(1, keepdim=True)).pow(2).sum()
    total = (f - f.mean((0, 1), keepdim=True)).pow(2).sum()
    return float(within / total.clamp_min(1e-12))


@torch.no_grad()
def encode_sequences(model, x: Tensor, batch_size: int = 64) -> Tensor:
    """``model.encode`` in batches on the model's device: ``x: (N, S, P)`` (float in [0, 1] or uint8)
    ``-> (N, S, n)`` on the CPU."""
    dev = next(model.parameters()).device
    model.eval()
    def batch(i: int) -> Tensor:
        xb = x[i:i + batch_size].to(dev)
        return xb.float().div_(255) if xb.dtype == torch.uint8 else xb  # uint8 training sets (paper profile)

    return torch.cat([model.encode(batch(i)).cpu() for i in range(0, len(x), batch_size)])


@torch.no_grad()
def encode_frames(model, x: Tensor, batch_size: int = 512) -> Tensor:
    """Single-frame codes: every frame of ``x: (N, S, P)`` encoded on its own -> ``(N, S, n)`` on the CPU.

    A TVAE code ``t_l`` of a sequence pools ``u`` over frames ``l .. l+2L-1`` (circularly), so with
    ``2L > S/2`` every two codes of one sequence share input frames, and a nearest-neighbour match
    between two poses of a sequence can rest on those shared frames rather than on the content.  Here
    each frame is a one-frame sequence: the temporal window sees that frame alone (held still), so
    codes of different frames share no input.  A VAE's code is per frame anyway (the same codes
    as :func:`encode_sequences`)."""
    if x.dim() != 3:
        raise ValueError(f"x must be (N, S, P), got shape {tuple(x.shape)}")
    N, S, P = x.shape
    return encode_sequences(model, x.reshape(N * S, 1, P), batch_size).reshape(N, S, -1)


@torch.no_grad()
def quotient_distance_matrix_cyclic(a: Tensor, b: Tensor, capsule_dim: int, chunk: int = 256) -> Tensor:
    r"""All pairwise quotient distances ``d([a_i], [b_j]) = min_r ||a_i - Roll_r(b_j)||`` (the second paper, Sec 2).

    ``a: (M, n)``, ``b: (N, n)`` -> ``(M, N)``.  The ``D`` rolled copies of ``b`` are stacked
    once, ``||a - Roll_r b||^2 = ||a||^2 + ||b||^2 - 2 a . Roll_r b`` is one matrix product per
    chunk of ``a``, and the min over ``r`` follows; exact (float64 accumulation)."""
    check_capsules("a", a.shape[-1], capsule_dim)
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must be (M, n) and (N, n) with the same n; got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.double(), b.double()
    rolled = torch.stack([roll(b, r, capsule_dim) for r in range(capsule_dim)], 1)  # (N, D, n)
    flat = rolled.reshape(-1, b.shape[1])  # (N*D, n)
    b2 = b.pow(2).sum(-1)  # (N,)  (a roll keeps the norm)
    out = []
    for i in range(0, len(a), chunk):
        ai = a[i:i + chunk]  # (m, n)
        dots = (ai @ flat.T).reshape(len(ai), len(b), capsule_dim)  # (m, N, D)
        sq = ai.pow(2).sum(-1)[:, None] + b2[None] - 2 * dots.amax(-1)
        out.append(sq.clamp_min(0).sqrt())
    return torch.cat(out).float()


def knn_vote(dist: Tensor, ref_y: Tensor, k: int) -> Tensor:
    """k-nearest-neighbour majority vote from a distance matrix ``(M, N)`` -> labels ``(M,)``.

    Ties go to the class with the nearest member among the tied ones' neighbours (votes are
    weighted ``1 + 1e-3 / rank``)."""
    check_int("k", k, minimum=1, maximum=dist.shape[1])
    idx = dist.topk(k, dim=1, largest=False).indices  # (M, k), nearest first
    labels = ref_y[idx]  # (M, k)
    n_cls = int(ref_y.max()) + 1
    w = 1 + 1e-3 / torch.arange(1, k + 1, dtype=torch.float64)  # (k,)
    votes = torch.zeros(len(dist), n_cls, dtype=torch.float64).scatter_add_(1, labels, w.expand(len(dist), k))
    return votes.argmax(1)


def reference_frames(step: Tensor) -> Tensor:
    """Index of the first canonical frame (``step == 0``) of every sequence: ``(N, S) -> (N,)``.

    Every sequence of :mod:`tvae_experiments.data.sequences` passes its canonical value once per cycle."""
    canon = step == 0
    if not bool(canon.any(1).all()):
        raise ValueError("every sequence needs a frame with step == 0 (its canonical pose)")
    return canon.int().argmax(1)


def pose_knn_accuracy(distance: Callable[[Tensor, Tensor], Tensor], ref: Tensor, ref_y: Tensor, ref_group: Tensor,
                      query: Tensor, query_y: Tensor, query_group: Tensor, query_step: Tensor,
                      k: int = 5) -> dict[int, float]:
    """kNN accuracy of queries at every pose, against references at the canonical pose.

    ``ref: (R, F)`` codes of training frames at the canonical pose with labels ``ref_y (R,)`` and
    transformation ``ref_group (R,)``; ``query: (M, F)`` test frames with ``query_y``,
    ``query_group`` and ``query_step (M,)`` (grid steps away from the canonical pose).  A query
    is compared only with references of its own transformation; ``distance(query, ref) -> (M, R)``.
    Returns ``{step: accuracy}``."""
    dist = distance(query, ref).clone()  # (M, R)
    dist[query_group[:, None] != ref_group[None, :]] = float("inf")
    pred = knn_vote(dist, ref_y, k)
    correct = (pred == query_y).float()
    return {int(s): float(correct[query_step == s].mean()) for s in query_step.unique().tolist()}


def pose_retrieval_accuracy(distance: Callable[[Tensor, Tensor], Tensor], ref: Tensor, query: Tensor,
                            step: Tensor) -> dict[int, float]:
    """Instance retrieval across poses: does a frame's nearest canonical frame belong to its own sequence?

    ``ref: (N, F)`` the canonical frame of each of ``N`` sequences, ``query: (N, S, F)`` all their
    frames, ``step: (N, S)`` grid steps from the canonical pose.  1-NN among the ``N`` references;
    returns ``{step: fraction of frames whose nearest reference is their own sequence's}``."""
    N, S = step.shape
    if query.shape[:2] != (N, S) or ref.shape[0] != N:
        raise ValueError(f"ref (N, F), query (N, S, F) and step (N, S) disagree: {tuple(ref.shape)}, "
                         f"{tuple(query.shape)}, {tuple(step.shape)}")
    zeros = torch.zeros(N * S, dtype=torch.long)
    return pose_knn_accuracy(distance, ref, torch.arange(N), zeros[:N], query.reshape(N * S, -1),
                             torch.arange(N).repeat_interleave(S), zeros, step.reshape(-1), k=1)


def off_pose(curve: dict[int, float]) -> float:
    """Mean accuracy over the poses other than the canonical one (``step != 0``)."""
    vals = [a for s, a in curve.items() if s != 0]
    return float(sum(vals) / len(vals))


def pose_knn_curves(t_train: Tensor, t_test: Tensor, train, test, capsule_dim: int | None, *, k: int = 5,
                    seed: int = 0, n_random: int = 256, pixels: bool = False,
                    tasks: tuple[str, ...] = KNN_TASKS) -> dict[str, dict[str, dict[int, float]]]:
    """Chapter 8's two tasks for every view, against references at the canonical pose.

    ``t_train: (N, S, n)``, ``t_test: (M, S, n)`` codes of the sequences ``train``/``test``
    (:class:`~tvae_experiments.data.sequences.SequenceData`).  ``capsule_dim=None`` (a VAE): raw codes only;
    otherwise every view of :func:`invariant_views` plus the quotient metric.  ``pixels=True`` adds
    raw pixels as a yardstick for the class task.  ``tasks``: a subset of :data:`KNN_TASKS`.  Returns
    ``{"retrieval": {view: {step: acc}}, "class": {view: {step: acc}}}`` (the tasks asked for):

    * retrieval -- :func:`pose_retrieval_accuracy` among the test sequences' canonical frames;
    * class -- :func:`pose_knn_accuracy` of the label against the training sequences' canonical frames.
    """
    for task in tasks:
        check_choice("tasks", task, KNN_TASKS)
    do_cls, do_ret = "class" in tasks, "retrieval" in tasks
    ref = t_train[torch.arange(len(t_train)), reference_frames(train.step)]  # (N, n)
    own = t_test[torch.arange(len(t_test)), reference_frames(test.step)]     # (M, n)
    M, S, n = t_test.shape
    q = t_test.reshape(M * S, n)
    qy, qg, qs = test.label.repeat_interleave(S), test.transform.repeat_interleave(S), test.step.reshape(-1)
    if capsule_dim is None:
        views = {"raw t": (standardize(ref), standardize(own), standardize(q))}
    else:
        vr, vo, vq = (invariant_views(a, capsule_dim, seed=seed, n_random=n_random) for a in (ref, own, q))
        views = {name: (vr[name], vo[name], vq[name]) for name in VIEW_NAMES}
    cls, ret = {}, {}
    for name, (r, o, qq) in views.items():
        if do_cls:
            cls[name] = pose_knn_accuracy(torch.cdist, r, train.label, train.transform, qq, qy, qg, qs, k=k)
        if do_ret:
            ret[name] = pose_retrieval_accuracy(torch.cdist, o, qq.reshape(M, S, -1), test.step)
    if capsule_dim is not None:
        def quot(a: Tensor, b: Tensor) -> Tensor:
            return quotient_distance_matrix_cyclic(a, b, capsule_dim)

        if do_cls:
            cls["quotient metric"] = pose_knn_accuracy(quot, standardize(ref), train.label, train.transform,
                                                       standardize(q), qy, qg, qs, k=k)
        if do_ret:
            ret["quotient metric"] = pose_retrieval_accuracy(quot, standardize(own), standardize(t_test), test.step)
    if pixels and do_cls:
        px_ref = train.x[torch.arange(len(train.x)), reference_frames(train.step)].float()
        cls["pixels"] = pose_knn_accuracy(torch.cdist, px_ref, train.label, train.transform,
                                          test.x.reshape(M * S, -1).float(), qy, qg, qs, k=k)
    out = {"retrieval": ret, "class": cls}
    return {task: out[task] for task in KNN_TASKS if task in tasks}
