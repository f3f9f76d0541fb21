"""Known answers written against the survivors of the mutation run (``make mutate``): each test
names the mutants it kills.  The rest of the package's tests use 2-D inputs, default arguments
and single seeds, which leave whole classes of mutants alive:

* **batch axes** -- ``dim=-1`` replaced by ``dim=1`` or the default, ``shape[:-1]`` by
  ``shape[:+1]``: equal on a ``(N, C*D)`` input, wrong on ``(A, B, C*D)``.  Every function
  documented as ``(..., C*D)`` must give on a 3-D input what it gives row by row.
* **seeded draws** -- ``generator=g`` dropped: two objects built with one seed must be equal
  whatever the global RNG did in between.
* **formulas behind an FFT** -- the random invariant projection against its defining sum.
* **documented defaults** -- the defaults the docstrings and the book state.
"""
from __future__ import annotations

import inspect
import re

import pytest
import torch

from tvae_core import invariance as inv
from tvae_core import metrics as met
from tvae_core import topography as tp
from tvae_core.roll import fourier_roll, noncyclic_roll, partial_roll, roll

C, D = 3, 5
A, B = 2, 4        # two leading batch axes


@pytest.fixture
def t3():
    return torch.randn(A, B, C * D, generator=torch.Generator().manual_seed(0))  # (A, B, C*D)


def rowwise(f, t3, *args, **kw):
    """``f`` applied to every ``(C*D,)`` row of ``t3`` on its own, stacked back to ``(A, B, ...)``."""
    return torch.stack([torch.stack([torch.as_tensor(f(t3[a, b], *args, **kw)) for b in range(B)]) for a in range(A)])


# ---------------------------------------------------------------------------------- batch axes

@pytest.mark.parametrize("f,args", [
    (roll, (2, D)), (partial_roll, (0.3, D)), (fourier_roll, (1.5, D)), (fourier_roll, (-0.25, 4)),
    (noncyclic_roll, (2, D)), (noncyclic_roll, (-2, D)),
    (inv.canonicalize, (D,)), (inv.canonical_shift, (D,)), (inv.canonical_shift, (D, "mean")),
    (inv.fourier_modulus, (D,)), (inv.capsule_norms, (D,)),
])
def test_capsule_functions_act_on_the_last_axis_whatever_the_batch_shape(f, args, t3):
    dim = args[-1] if isinstance(args[-1], int) else args[-2]
    x = t3[..., : (C * D // dim) * dim] if (C * D) % dim else t3
    torch.testing.assert_close(f(x, *args), rowwise(f, x, *args))


def test_quotient_distances_act_on_the_last_axis(t3):
    s3 = torch.randn_like(t3)
    got = inv.quotient_distance_cyclic(t3, s3, D)
    want = torch.stack([torch.stack([inv.quotient_distance_cyclic(t3[a, b], s3[a, b], D) for b in range(B)])
                        for a in range(A)])
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(inv.quotient_distance_cyclic_bruteforce(t3, s3, D), want, rtol=1e-4, atol=1e-4)
    assert got.shape == (A, B)


def test_capsule_roll_on_extra_batch_axes(t3):
    k = torch.randint(0, D, (A, B), generator=torch.Generator().manual_seed(1))
    assert torch.equal(met.capsule_roll(t3, roll(t3, k[..., None].expand(-1, -1, 1).squeeze(-1), D), D), k)


def test_random_projection_keeps_the_batch_shape(t3):
    p = inv.RandomInvariantProjection(C, D, out_channels=7)
    out = p(t3)
    assert out.shape == (A, B, 7)
    torch.testing.assert_close(out, p(t3.reshape(A * B, C * D)).reshape(A, B, 7))


# ------------------------------------------------------------------ the projection's definition

@pytest.mark.parametrize("pool", ["max", "mean"])
def test_random_projection_is_its_defining_sum(pool):
    """y_{o,d} = sum_{c,j} W_{o,c,j} t_{c,(d+j) mod D} + b_o, ReLU, pooled over d (the docstring)."""
    p = inv.RandomInvariantProjection(C, D, out_channels=6, pool=pool, seed=3)
    t = torch.randn(5, C * D)
    x = t.reshape(5, C, D)
    y = torch.zeros(5, 6, D)
    for d in range(D):
        for j in range(D):
            y[:, :, d] += torch.einsum("oc,bc->bo", p.weight[:, :, j], x[:, :, (d + j) % D])
    y = torch.relu(y + p.bias[:, None])
    want = y.amax(-1) if pool == "max" else y.mean(-1)
    torch.testing.assert_close(p(t), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(p(roll(t, 2, D)), p(t), rtol=1e-5, atol=1e-5)      # invariant


def test_random_projection_draws_are_seeded_and_scaled_as_documented():
    torch.manual_seed(0)
    a = inv.RandomInvariantProjection(C, D, seed=4)
    torch.manual_seed(1)                          # the global RNG must not matter
    b = inv.RandomInvariantProjection(C, D, seed=4)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert not torch.equal(a.weight, inv.RandomInvariantProjection(C, D, seed=5).weight)
    big = inv.RandomInvariantProjection(4, 16, out_channels=4000, seed=0)
    assert big.weight.shape == (4000, 4, 16) and big.bias.shape == (4000,)
    # weights N(0, 1/(C*D)): unit-variance input gives unit-variance pre-activations; bias N(0, 0.1^2)
    assert abs(big.weight.std().item() * 8 - 1) < 0.02 and abs(big.weight.mean().item()) < 0.002
    assert abs(big.bias.std().item() / 0.1 - 1) < 0.05 and abs(big.bias.mean().item()) < 0.01


def test_random_projection_names_the_expected_size():
    p = inv.RandomInvariantProjection(C, D)
    with pytest.raises(ValueError, match=re.escape("t's last axis has size 14, but this projection was built for "
                                                   "n_caps * capsule_dim = 3 * 5 = 15 units")):
        p(torch.randn(2, 3, 14))


def test_quotient_distance_cyclic_names_both_sizes():
    with pytest.raises(ValueError, match=re.escape("t2's last axis has size 10 but t1's has 15")):
        inv.quotient_distance_cyclic(torch.randn(2, 3, 15), torch.randn(2, 3, 10), D)


# --------------------------------------------------------------------------- canonical shifts

def test_canonical_shift_known_answers():
    """Capsule energy profile peaks at unit 3 for "energy"; the signed mean peaks at unit 1."""
    t = torch.zeros(2, 2 * D)
    t[:, 3], t[:, D + 3] = -3.0, -3.0      # big energy, negative mean at unit 3
    t[:, 1], t[:, D + 1] = 1.0, 1.0        # positive mean at unit 1
    assert inv.canonical_shift(t, D).tolist() == [3, 3]
    assert inv.canonical_shift(t, D, "energy").tolist() == [3, 3]
    assert inv.canonical_shift(t, D, "mean").tolist() == [1, 1]
    # canonicalize puts the statistic's peak at unit 0 (the default statistic is the energy)
    assert inv.canonicalize(t, D)[0, 0] == -3.0 and inv.canonicalize(t, D, "mean")[0, 0] == 1.0
    # energy is the square, not another power: -3 and a +2.5 pair -> 9 beats 2 * 2.5^2 / 2 ... per unit
    u = torch.zeros(1, D)
    u[0, 0], u[0, 2] = -2.0, 1.9
    assert inv.canonical_shift(u, D).item() == 0 and inv.canonical_shift(u, D, "mean").item() == 2
    v = torch.zeros(1, 2 * D)
    v[0, 0], v[0, D + 0], v[0, 2] = 1.5, 1.5, 2.0   # energy at unit 0: 4.5 (sum of squares) > 4.0;
    assert inv.canonical_shift(v, D).item() == 0     # a cube (6.75 vs 8) would pick unit 2


# ------------------------------------------------------------------------------- roll variants

def test_fourier_roll_is_exact_in_float64_and_keeps_the_dtype():
    x = torch.randn(3, C * 4, dtype=torch.float64)
    out = fourier_roll(x, 1, 4)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, roll(x, 1, 4), rtol=0, atol=1e-12)
    # even capsules: the Nyquist term follows cos(pi * shift), so integer shifts stay exact
    for d in (4, 6, 8):
        y = torch.randn(2, d, dtype=torch.float64)
        torch.testing.assert_close(fourier_roll(y, 3, d), roll(y, 3, d), rtol=0, atol=1e-12)
    z = torch.randn(2, 5, dtype=torch.float64)       # odd capsules: two half shifts make one roll
    torch.testing.assert_close(fourier_roll(fourier_roll(z, 0.5, 5), 0.5, 5), roll(z, 1, 5), rtol=0, atol=1e-12)


def test_noncyclic_roll_known_answers():
    x = torch.arange(1.0, 6.0)[None]                  # one capsule [1, 2, 3, 4, 5]
    assert noncyclic_roll(x, 0, 5).tolist() == [[1, 2, 3, 4, 5]]
    assert noncyclic_roll(x, 2, 5).tolist() == [[0, 0, 1, 2, 3]]
    assert noncyclic_roll(x, -2, 5).tolist() == [[3, 4, 5, 0, 0]]
    assert noncyclic_roll(x, 5, 5).tolist() == [[0, 0, 0, 0, 0]]
    assert noncyclic_roll(x, -5, 5, fill=-1.0).tolist() == [[-1, -1, -1, -1, -1]]
    assert noncyclic_roll(x, 4, 5).tolist() == [[0, 0, 0, 0, 1]]


def test_partial_roll_rejects_alpha_above_one():
    with pytest.raises(ValueError, match=re.escape("alpha=1.5 is not allowed; partial_roll needs 0 < alpha <= 1")):
        partial_roll(torch.randn(2, D), 1.5, D)


# ------------------------------------------------------------------------- permutation test

def test_agreement_permutation_test_known_answers():
    """A constant map agrees everywhere, and so does every permutation of it: p = 1 exactly.  The
    null mean of the agreement of random permutations of a labelling with counts n_k is
    sum_k n_k (n_k - 1) / (N (N - 1))."""
    side = 6
    const = torch.zeros(side * side, dtype=torch.long)
    r = met.agreement_permutation_test(const, side, n_perm=19)
    assert (r.observed, r.p_value, r.n_perm) == (1.0, 1.0, 19) and r.null_mean == 1.0 and r.null_std == 0.0
    halves = (torch.arange(side * side) // side >= side // 2).long()      # top half 0, bottom half 1
    r = met.agreement_permutation_test(halves, side, n_perm=4000, seed=2)
    N, n_k = side * side, side * side // 2
    assert abs(r.null_mean - 2 * n_k * (n_k - 1) / (N * (N - 1))) < 0.005
    assert r.p_value == 1 / 4001 and r.observed == pytest.approx(5 / 6)     # no permutation does as well
    assert 0.03 < r.null_std < 0.12
    again = met.agreement_permutation_test(halves, side, n_perm=50, seed=2)
    torch.manual_seed(123)
    assert met.agreement_permutation_test(halves, side, n_perm=50, seed=2) == again   # seeded, not global


# ------------------------------------------------------------------------ documented defaults

DEFAULTS = {
    met.max_activating: {"k": 1},
    met.unit_preferences: {"k": 10, "n_classes": None},
    met.agreement_permutation_test: {"n_perm": 2000, "seed": 0},
    met.neighbour_similarity_test: {"n_perm": 2000, "seed": 0},
    met.equivariance_error: {"norm": "capsule"},
    inv.canonical_shift: {"statistic": "energy"},
    inv.canonicalize: {"statistic": "energy"},
    inv.RandomInvariantProjection.__init__: {"out_channels": 256, "pool": "max", "seed": 0},
    inv.knn_scores: {"ks": (1, 3, 5, 10, 20), "task": "classification"},
    tp.capsule_W: {"K": 3},
    tp.torus_W: {"K": 5},
    tp.temporal_W: {"mode": "shifting"},
    tp.window_W: {"mode": "shifting"},
    noncyclic_roll: {"fill": 0.0},
}


def _stats_defaults():
    from tvae_core import stats

    return {stats.energy_corr: {"z": 1.96, "ranked": False},
            stats.temporal_energy_corr: {"time_lag": 1, "unit_shift": 0},
            stats.ring_energy_profile: {"max_dist": None}}


DEFAULTS.update(_stats_defaults())


@pytest.mark.parametrize("f", list(DEFAULTS), ids=lambda f: f.__qualname__)
def test_documented_defaults(f):
    sig = inspect.signature(f)
    assert {k: sig.parameters[k].default for k in DEFAULTS[f]} == DEFAULTS[f]


def test_dense_helpers_pass_K_and_band_through():
    """capsule_W / torus_W / temporal_W are the classes' dense matrices *with the K, band given*."""
    assert torch.equal(tp.capsule_W(2, 5, 1), torch.eye(10))
    assert torch.equal(tp.torus_W(4, 1), torch.eye(16))
    assert tp.capsule_W(1, 5).sum().item() == 15 and tp.torus_W(6).sum().item() == 36 * 25   # defaults K = 3, 5
    for band in ("full", "code"):
        want = tp.TemporalTopography(2, 6, 3, 2, "shifting", "circular", "forward", band).dense(6)
        assert torch.equal(tp.temporal_W(2, 6, 3, 2, 6, window="forward", band=band), want)
    assert not torch.equal(tp.temporal_W(2, 6, 3, 2, 6, window="forward", band="full"),
                           tp.temporal_W(2, 6, 3, 2, 6, window="forward", band="code"))
    assert torch.equal(tp.window_W(2, 5, 1, 1), tp.window_W(2, 5, 1, 1, "shifting"))
    assert not torch.equal(tp.window_W(2, 5, 1, 1), tp.window_W(2, 5, 1, 1, "stationary"))
    assert not torch.equal(tp.TemporalTopography(2, 5, K=1, L=1).window_dense(),
                           tp.TemporalTopography(2, 5, K=3, L=1).window_dense())


# ------------------------------------------------------------------ torus neighbour similarity

def test_neighbour_similarity_known_answers():
    """Features one-hot in the column's parity: right-hand neighbours are orthogonal (0), lower
    neighbours identical (1), so the observed similarity is exactly 1/2 (a neighbour 2 columns away,
    or a mean over the wrong axis, gives another value); constant features give 1 everywhere, p = 1."""
    side = 6
    col = torch.arange(side * side) % side
    parity = torch.nn.functional.one_hot(col % 2, 2).float()
    r = met.neighbour_similarity_test(parity, side, n_perm=200, seed=1)
    assert r.observed == pytest.approx(0.5) and r.n_perm == 200
    # null: a random pair has the same parity with probability (18 - 1) / 35
    assert abs(r.null_mean - 17 / 35) < 0.02
    rows = torch.nn.functional.one_hot(torch.arange(side * side) // side % 2, 2).float()
    assert met.neighbour_similarity_test(rows, side, n_perm=10).observed == pytest.approx(0.5)
    const = torch.ones(side * side, 3)
    c = met.neighbour_similarity_test(const, side, n_perm=9)
    assert (c.observed, c.p_value) == (pytest.approx(1.0), 1.0) and c.null_mean == pytest.approx(1.0)
    smooth = torch.stack([torch.cos(2 * torch.pi * col / side), torch.sin(2 * torch.pi * col / side)], 1)
    s = met.neighbour_similarity_test(smooth, side, n_perm=999, seed=0)
    assert s.observed == pytest.approx((torch.cos(torch.tensor(2 * torch.pi / side)).item() + 1) / 2)
    assert s.p_value == 1 / 1000                                             # no placement does better
    torch.manual_seed(5)
    assert met.neighbour_similarity_test(smooth, side, n_perm=30, seed=3) == \
        met.neighbour_similarity_test(smooth, side, n_perm=30, seed=3)       # seeded, not global


def test_permutation_quotient_distances_act_on_the_last_axis():
    z1, z2 = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    want = torch.stack([torch.stack([inv.quotient_distance_sn(z1[a, b], z2[a, b]) for b in range(3)]) for a in range(2)])
    torch.testing.assert_close(inv.quotient_distance_sn(z1, z2), want)
    torch.testing.assert_close(inv.quotient_distance_sn_bruteforce(z1, z2), want)
    assert inv.quotient_distance_sn(z1, z2).shape == (2, 3)


# ------------------------------------------------------------------------ energy correlations

def test_energy_corr_is_the_pooled_rank_correlation_with_its_interval():
    """r = mean over samples of the mean product of standardised ranks; the CI is r +- z * sd / sqrt(N)
    with N the number of samples (axis 0), not of units."""
    from tvae_core.stats import energy_corr, standardized_ranks

    g = torch.Generator().manual_seed(0)
    a = torch.randn(40, 7, generator=g)
    b = a + torch.randn(40, 7, generator=g)
    m = (standardized_ranks(a) * standardized_ranks(b)).mean(1)                     # (40,)
    e = energy_corr(a, b)
    se = (m.std() / 40 ** 0.5).item()
    assert e.r == pytest.approx(m.mean().item()) and e.n == 40
    assert e.lo == pytest.approx(e.r - 1.96 * se) and e.hi == pytest.approx(e.r + 1.96 * se)
    assert energy_corr(standardized_ranks(a), standardized_ranks(b), ranked=True) == e
    with pytest.raises(ValueError, match=re.escape("a and b must have the same shape, got (40, 7) and (40, 6)")):
        energy_corr(a, b[:, :6])


def test_capsule_energy_correlations_use_squares_and_pair_the_right_units():
    from tvae_core.stats import cross_capsule_energy_corr, ring_energy_profile, temporal_energy_corr

    g = torch.Generator().manual_seed(1)
    c0 = torch.randn(300, 4, generator=g)
    mirror = torch.cat([c0, -c0], 1)                       # capsule 1 = -capsule 0: equal energies
    assert cross_capsule_energy_corr(mirror, 4).r == pytest.approx(1.0)     # a cube would give -1
    with pytest.raises(ValueError, match="cross_capsule_energy_corr needs at least 2 capsules"):
        cross_capsule_energy_corr(c0, 4)
    # ring profile: D // 2 + 1 distances by default, max_dist + 1 when given; distance 0 is 1
    prof = ring_energy_profile(torch.randn(200, 2 * 6, generator=g), 6)
    assert len(prof) == 4 and prof[0].r == pytest.approx(1.0)
    assert len(ring_energy_profile(torch.randn(200, 10, generator=g), 5, max_dist=1)) == 2
    # temporal: a sequence whose energy moves one unit per frame (shifting) is found at lag 1, shift 1,
    # and the defaults are lag 1, shift 0
    base = torch.randn(300, 1, 5, generator=g)
    seq = torch.cat([roll(base[:, 0], l, 5)[:, None] for l in range(5)], 1)         # (300, S=5, D=5): a cycle
    assert temporal_energy_corr(seq, 5, 1, 1).r == pytest.approx(1.0)
    assert temporal_energy_corr(seq, 5) == temporal_energy_corr(seq, 5, 1, 0)
    assert temporal_energy_corr(seq, 5).r < 0.5


# ------------------------------------------------------------------------------ prior samplers

def test_prior_samples_return_their_gaussians():
    from tvae_core.studentt import sample_pot, sample_tpot, student_t, tpot

    s = sample_pot(50, 3, 4, seed=0)
    assert s.z.shape == (50, 3) and s.u.shape == (50, 3, 4)
    torch.testing.assert_close(s.t, student_t(s.z, s.u))
    topo = tp.CapsuleTopography(2, 3, 3)
    p = sample_tpot(20, topo, mu=0.5, seed=1)
    assert p.z.shape == p.u.shape == p.t.shape == (20, 6)
    torch.testing.assert_close(p.t, tpot(p.z, p.u, topo, 0.5))
    W = topo.dense()                                    # a dense matrix: n from its rows
    q = sample_tpot(20, W, seed=1)
    assert q.t.shape == (20, 6)
    assert sample_tpot(3, lambda v: v, shape=(6,), seed=0).t.shape == (3, 6)     # a callable with a shape
    with pytest.raises(ValueError, match="shape is required when W is a plain callable without an `n` attribute"):
        sample_tpot(3, lambda v: v, seed=0)


# ------------------------------------------------------- permutation nulls, computed directly

def _perms(n_perm: int, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.argsort(torch.rand(n_perm, n, generator=g), dim=1)                 # (n_perm, n)


def test_agreement_null_is_the_right_and_lower_neighbour_agreement_of_random_placements():
    side, n_perm, seed = 5, 300, 7
    pref = torch.randint(0, 3, (side * side,), generator=torch.Generator().manual_seed(0))
    grids = pref[_perms(n_perm, side * side, seed)].reshape(n_perm, side, side)
    right = (grids == grids.roll(-1, 2)).float().mean((1, 2))
    down = (grids == grids.roll(-1, 1)).float().mean((1, 2))
    null = (right + down) / 2                                                          # (n_perm,)
    g0 = pref.reshape(side, side)
    obs = ((g0 == g0.roll(-1, 1)).float().mean() + (g0 == g0.roll(-1, 0)).float().mean()).item() / 2
    r = met.agreement_permutation_test(pref, side, n_perm, seed)
    assert r.observed == pytest.approx(obs)
    assert r.null_mean == pytest.approx(null.mean().item()) and r.null_std == pytest.approx(null.std().item())
    assert r.p_value == pytest.approx((1 + (null >= obs).sum().item()) / (1 + n_perm))
    assert met.agreement_permutation_test(pref, side) == met.agreement_permutation_test(pref, side, 2000, 0)


def test_similarity_null_is_the_neighbour_cosine_of_random_placements():
    side, n_perm, seed = 4, 200, 3
    feats = torch.randn(side * side, 5, generator=torch.Generator().manual_seed(1))
    f = feats / feats.norm(dim=1, keepdim=True)
    G = f @ f.T
    idx = torch.arange(side * side).reshape(side, side)
    right, down = idx.roll(-1, 1).flatten(), idx.roll(-1, 0).flatten()
    a = _perms(n_perm, side * side, seed)
    null = (G[a, a[:, right]].mean(1) + G[a, a[:, down]].mean(1)) / 2
    obs = ((G[idx.flatten(), right].mean() + G[idx.flatten(), down].mean()) / 2).item()
    r = met.neighbour_similarity_test(feats, side, n_perm, seed)
    assert r.observed == pytest.approx(obs) and r.null_mean == pytest.approx(null.mean().item())
    assert r.p_value == pytest.approx((1 + (null >= obs).sum().item()) / (1 + n_perm))
    assert met.neighbour_similarity_test(feats, side) == met.neighbour_similarity_test(feats, side, 2000, 0)


def test_defaults_called_equal_the_documented_values():
    """Called with their defaults, the functions give what the documented values give."""
    p = inv.RandomInvariantProjection(C, D)
    q = inv.RandomInvariantProjection(C, D, 256, "max", 0)
    assert torch.equal(p.weight, q.weight) and torch.equal(p.bias, q.bias)
    # unit_preferences: 5 images of class 0 then 6 of class 1 by activation: the top 10 tie 5/5 (the
    # smaller label, 0, wins), the top 11 would give 1
    t = torch.arange(20.0, 0.0, -1.0)[:, None]                                         # (20, 1): image 0 largest
    labels = torch.tensor([0] * 5 + [1] * 6 + [2] * 9)
    assert met.unit_preferences(t, labels).tolist() == [0]
    assert met.unit_preferences(t, labels, k=11).tolist() == [1]


def test_knn_scores_compare_in_float64_and_average_f1_over_classes():
    """Two reference points 2 apart at 1e8 are distinct in float64 but one point in float32: the
    query 1.5 above the first has the second as its nearest neighbour only in float64."""
    train = torch.tensor([[1e8], [1e8 + 2.0]], dtype=torch.float64)
    test = torch.tensor([[1e8 + 1.5]], dtype=torch.float64)
    assert inv.knn_scores(train, torch.tensor([0, 1]), test, torch.tensor([1]), ks=(1,))[1] == 1.0
    assert inv.knn_scores(train, torch.tensor([0.0, 1.0]), test, torch.tensor([1.0]), ks=(1,), task="regression")[1] == 0.0
    # three classes, one test point of class 2 predicted as 1: macro F1 = (1 + 2/3 + 0) / 3
    x = torch.tensor([[0.0], [10.0], [20.0]])
    y = torch.tensor([0, 1, 2])
    xt, yt = torch.tensor([[0.0], [10.0], [11.0], [12.0]]), torch.tensor([0, 1, 1, 2])
    assert inv.knn_scores(x, y, xt, yt, ks=(1,))[1] == pytest.approx((1 + 0.8 + 0) / 3)
