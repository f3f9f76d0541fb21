"""Invariant views of capsule codes: invariance, known-answer kNN and spread on constructed codes."""
import pytest
import torch

from tvae_core import roll
from tvae_core.invariance import quotient_distance_cyclic
from tvae_experiments.capsule_views import (
    VIEW_NAMES,
    invariant_views,
    knn_vote,
    pose_knn_accuracy,
    quotient_distance_matrix_cyclic,
    reference_frames,
    standardize,
    within_sequence_fraction,
)

C, D = 3, 6


@pytest.fixture
def g() -> torch.Generator:
    """A fresh generator per test, seeded: every test draws the same numbers alone and in any order
    (one module-level generator made each test's draws depend on the tests run before it)."""
    return torch.Generator().manual_seed(0)


def test_every_view_but_raw_is_invariant_to_roll(g):
    t = (torch.randn(20, C * D, generator=g) * 2 + 30).double()  # a large offset, as mu = 30 gives
    base = invariant_views(t, D, seed=1)
    assert tuple(base) == VIEW_NAMES
    for r in range(1, D):
        views = invariant_views(roll(t, r, D), D, seed=1)
        for name in VIEW_NAMES[1:]:
            torch.testing.assert_close(views[name], base[name], atol=1e-5, rtol=1e-5, msg=name)
        assert not torch.allclose(views["raw t"], base["raw t"])  # raw t is equivariant, not invariant


def test_standardize_commutes_with_roll(g):
    t = torch.randn(5, C * D, generator=g)
    torch.testing.assert_close(standardize(roll(t, 2, D)), roll(standardize(t), 2, D))


def test_within_sequence_fraction_known_values(g):
    centres = torch.randn(10, 1, 4, generator=g)
    assert within_sequence_fraction(centres.expand(10, 7, 4)) == pytest.approx(0.0, abs=1e-9)
    same = torch.randn(1, 7, 4, generator=g).expand(10, 7, 4)  # every sequence is the same: all variance within
    assert within_sequence_fraction(same) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"\(N, S, F\)"):
        within_sequence_fraction(torch.zeros(3, 4))


def test_quotient_distance_matrix_matches_pairwise(g):
    a, b = torch.randn(7, C * D, generator=g), torch.randn(9, C * D, generator=g)
    m = quotient_distance_matrix_cyclic(a, b, D, chunk=3)
    pair = quotient_distance_cyclic(a[:, None].expand(7, 9, -1), b[None].expand(7, 9, -1), D)
    torch.testing.assert_close(m, pair, atol=1e-5, rtol=1e-5)
    assert float(quotient_distance_matrix_cyclic(b[:1], roll(b[:1], 4, D), D)) == pytest.approx(0.0, abs=1e-5)


def test_knn_vote_on_a_constructed_case():
    ref = torch.tensor([[0.0], [0.1], [0.2], [5.0], [5.1]])
    ref_y = torch.tensor([0, 0, 0, 1, 1])
    q = torch.tensor([[0.05], [4.9]])
    dist = torch.cdist(q, ref)
    assert knn_vote(dist, ref_y, 1).tolist() == [0, 1]
    assert knn_vote(dist, ref_y, 5).tolist() == [0, 0]  # majority of all five
    with pytest.raises(ValueError, match="k must be"):
        knn_vote(dist, ref_y, 6)


def test_reference_frames_and_missing_canonical():
    step = torch.tensor([[3, 4, 0, 1], [0, 1, 2, 3]])
    assert reference_frames(step).tolist() == [2, 0]
    with pytest.raises(ValueError, match="step == 0"):
        reference_frames(torch.tensor([[1, 2]]))


def test_perfectly_equivariant_codes_classify_at_every_pose_only_when_invariant(g):
    """Codes t = Roll_step(c_class) + noise: raw t only finds its class at the references' pose;
    the quotient metric and the invariant views find it at every pose."""
    n_cls, per = 4, 30
    protos = torch.randn(n_cls, C * D, generator=g) * 2
    y = torch.arange(n_cls).repeat_interleave(per)  # (N,)
    step = torch.randint(0, D, (len(y),), generator=g)
    codes = roll(protos[y], step, D) + 0.05 * torch.randn(len(y), C * D, generator=g)
    ref = protos + 0.05 * torch.randn(n_cls, C * D, generator=g)  # canonical pose
    ref_y, grp_r, grp_q = torch.arange(n_cls), torch.zeros(n_cls, dtype=torch.long), torch.zeros(len(y), dtype=torch.long)

    raw = pose_knn_accuracy(torch.cdist, ref, ref_y, grp_r, codes, y, grp_q, step, k=1)
    quot = pose_knn_accuracy(lambda a, b: quotient_distance_matrix_cyclic(a, b, D), ref, ref_y, grp_r, codes, y, grp_q,
                             step, k=1)
    assert raw[0] == 1.0 and quot[0] == 1.0
    assert all(v == 1.0 for v in quot.values())
    off = [v for s, v in raw.items() if s != 0]
    assert sum(off) / len(off) < 0.7  # raw t confuses poses
    views_q, views_r = invariant_views(codes, D), invariant_views(ref, D)
    for name in VIEW_NAMES[1:]:
        acc = pose_knn_accuracy(torch.cdist, views_r[name], ref_y, grp_r, views_q[name], y, grp_q, step, k=1)
        assert min(acc.values()) >= 0.9, name


def test_group_mask_restricts_neighbours():
    ref = torch.tensor([[0.0], [10.0]])
    q = torch.tensor([[0.1]])
    acc = pose_knn_accuracy(torch.cdist, ref, torch.tensor([0, 1]), torch.tensor([0, 1]), q, torch.tensor([1]),
                            torch.tensor([1]), torch.tensor([0]), k=1)
    assert acc == {0: 1.0}  # the nearer reference belongs to another transformation


def test_canonicalize_codes_keeps_scale_and_agrees_with_the_standardised_cross_section(g):
    from tvae_core.invariance import canonicalize
    from tvae_experiments.capsule_views import canonicalize_codes

    t = (torch.randn(10, C * D, generator=g) + 30).double()
    c = canonicalize_codes(t, D)
    torch.testing.assert_close(standardize(c), canonicalize(standardize(t), D))
    torch.testing.assert_close(c.mean(-1), t.mean(-1))  # same code, rolled: scale kept
    torch.testing.assert_close(canonicalize_codes(roll(t, 3, D), D), c)


def test_decoded_pose_spread_zero_for_constant_codes_positive_for_rolled(g):
    from tvae_experiments.capsule_views import decoded_pose_spread

    torch.manual_seed(0)
    dec = torch.nn.Linear(C * D, 16)
    model = torch.nn.Module()
    model.lin = dec
    model.decode = dec
    t0 = torch.randn(4, 1, C * D, generator=g)
    assert decoded_pose_spread(model, t0.expand(4, 5, C * D)) == pytest.approx(0.0, abs=1e-12)
    rolled = torch.stack([roll(t0[:, 0], r, D) for r in range(D)], 1)  # (4, D, n)
    assert decoded_pose_spread(model, rolled) > 1e-4


def test_retrieval_finds_own_sequence_at_every_pose_only_with_invariants(g):
    from tvae_experiments.capsule_views import pose_retrieval_accuracy

    N = 12
    c = torch.randn(N, C * D, generator=g)
    step = (torch.arange(D)[None] + torch.randint(0, D, (N, 1), generator=g)) % D  # (N, S=D)
    q = torch.stack([roll(c, step[:, l], D) for l in range(D)], 1)  # (N, D, n): frame at pose step
    ref = c  # canonical frames (step 0)
    quot = pose_retrieval_accuracy(lambda a, b: quotient_distance_matrix_cyclic(a, b, D), ref, q, step)
    raw = pose_retrieval_accuracy(torch.cdist, ref, q, step)
    assert all(v == 1.0 for v in quot.values()) and raw[0] == 1.0
    assert min(raw.values()) < 0.5
    with pytest.raises(ValueError, match="disagree"):
        pose_retrieval_accuracy(torch.cdist, ref[:3], q, step)


def test_pose_knn_curves_on_rolled_prototypes(g):
    """Sequences of rolled class prototypes: every invariant view and the quotient metric are
    perfect at every pose in both tasks; raw t is perfect only at the canonical pose."""
    from types import SimpleNamespace

    from tvae_experiments.capsule_views import off_pose, pose_knn_curves

    n_cls, S = 3, D
    protos = torch.randn(n_cls, C * D, generator=g) * 3

    def make(N):
        y = torch.arange(N) % n_cls
        start = torch.randint(0, S, (N, 1), generator=g)
        step = (start + torch.arange(S)[None]) % S  # (N, S)
        own = protos[y] + 0.3 * torch.randn(N, C * D, generator=g)  # each sequence its own instance
        t = torch.stack([roll(own, step[:, l], D) for l in range(S)], 1)
        return t, SimpleNamespace(step=step, label=y, transform=torch.zeros(N, dtype=torch.long),
                                  x=t.detach().clone())

    t_tr, tr = make(30)
    t_te, te = make(12)
    res = pose_knn_curves(t_tr, t_te, tr, te, D, k=3, pixels=True)
    assert set(res) == {"retrieval", "class"}
    assert set(res["class"]) == {*VIEW_NAMES, "quotient metric", "pixels"}
    for name in ("quotient metric", "canonicalised", "random invariant"):
        assert off_pose(res["class"][name]) == 1.0, name
    assert off_pose(res["class"]["raw t"]) < 0.9 and res["class"]["raw t"][0] == 1.0
    assert off_pose(res["retrieval"]["quotient metric"]) == 1.0
    vae = pose_knn_curves(t_tr, t_te, tr, te, None, k=3)
    assert set(vae["class"]) == {"raw t"}


def test_encode_frames_codes_each_frame_alone(g):
    """A TVAE code t_l pools u over 2L frames: encode_frames gives frame l's code from frame l only
    (a one-frame sequence, the frame held still); a VAE's codes are per frame either way."""
    from tvae_core.models import TVAE, VAE, ModelConfig
    from tvae_experiments.capsule_views import encode_frames, encode_sequences

    torch.manual_seed(0)
    cfg = {"in_dim": 10, "enc_hidden": (8,), "dec_hidden": (8,), "n_caps": C, "capsule_dim": D, "K": 1, "mu_init": 2.0}
    tvae = TVAE(ModelConfig(kind="tvae", topography="temporal", L=2, **cfg)).eval()
    vae = VAE(ModelConfig(kind="vae", topography="capsules", **cfg)).eval()
    x = torch.rand(3, D, 10, generator=g)
    single = encode_frames(tvae, x, batch_size=4)
    assert single.shape == (3, D, C * D)
    with torch.no_grad():
        for l in (0, 4):
            torch.testing.assert_close(single[:, l], tvae.encode(x[:, l:l + 1].expand(3, D, 10))[:, 0])
        x2 = x.clone()
        x2[:, 1] = torch.rand(3, 10, generator=g)  # change frame 1: only frame 1's single-frame code moves
        moved = (encode_frames(tvae, x2, batch_size=4) - single).abs().amax((0, 2))
        # The unchanged frames' codes are the same float32 operations on the same inputs; only the
        # summation order inside a matrix product may differ (another batch, another kernel), which
        # moves a code by a few ulps (measured: 1 ulp, 6e-8).  100 ulps of the codes' scale bound that
        # with room and lie 100x below the 1e-3 that frame 1's code must move.
        ulps = 100 * torch.finfo(torch.float32).eps * max(1.0, float(single.abs().max()))
        assert moved[1] > 1e-3 and moved[[0, 2, 3, 4, 5]].max() <= ulps
        windowed = (encode_sequences(tvae, x2) - encode_sequences(tvae, x)).abs().amax((0, 2))
        assert windowed[0] > 1e-3  # t_0's window (frames 0..3) sees frame 1
    torch.testing.assert_close(encode_frames(vae, x), encode_sequences(vae, x))
    with pytest.raises(ValueError, match=r"\(N, S, P\)"):
        encode_frames(tvae, x[0])


def test_pose_knn_curves_runs_only_the_tasks_asked_for(g):
    from types import SimpleNamespace

    from tvae_experiments.capsule_views import pose_knn_curves

    step = (torch.arange(D)[None] + torch.arange(4)[:, None]) % D
    t = torch.randn(4, D, C * D, generator=g)
    seqs = SimpleNamespace(step=step, label=torch.arange(4), transform=torch.zeros(4, dtype=torch.long), x=t)
    assert set(pose_knn_curves(t, t, seqs, seqs, D, k=1, tasks=("retrieval",))) == {"retrieval"}
    with pytest.raises(ValueError, match="tasks"):
        pose_knn_curves(t, t, seqs, seqs, D, tasks=("nearest",))
