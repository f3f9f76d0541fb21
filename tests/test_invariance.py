"""Invariant projections: isometry against brute force, cross-section properties, invariance."""
import itertools

import pytest
import torch

from tvae_core import roll
from tvae_core.invariance import (RandomInvariantProjection, canonicalize, capsule_norms, fourier_modulus, knn_scores,
                                  quotient_distance_cyclic, quotient_distance_cyclic_bruteforce, quotient_distance_sn,
                                  quotient_distance_sn_bruteforce, sort_projection)


@pytest.fixture
def g() -> torch.Generator:
    """A fresh generator per test, seeded: every test draws the same numbers alone and in any order
    (one module-level generator made each test's draws depend on the tests run before it)."""
    return torch.Generator().manual_seed(0)


@pytest.mark.parametrize("n", [2, 3, 5, 7])
def test_sort_is_isometric_to_the_quotient_metric(n, g):
    z1, z2 = torch.randn(50, n, generator=g), torch.randn(50, n, generator=g)
    torch.testing.assert_close(quotient_distance_sn(z1, z2), quotient_distance_sn_bruteforce(z1, z2))


def test_sort_is_a_cross_section_of_orbits(g):
    z = torch.randn(6, generator=g)
    images = {tuple(sort_projection(z[list(p)]).tolist()) for p in itertools.permutations(range(6))}
    assert len(images) == 1  # constant on the orbit
    s = sort_projection(z)
    assert sorted(z.tolist()) == s.tolist()  # the image is an element of the orbit
    z2 = z + 0.1  # a different orbit maps elsewhere (injective on orbits)
    assert not torch.equal(sort_projection(z2), s)


def test_sorted_vectors_form_a_convex_cone(g):
    a, b = sort_projection(torch.randn(100, 7, generator=g)), sort_projection(torch.randn(100, 7, generator=g))
    w = torch.rand(100, 1, generator=g)
    mix = w * a + (1 - w) * b
    assert torch.equal(sort_projection(mix), mix)
    assert torch.equal(sort_projection(3.0 * a), 3.0 * a)


def test_cyclic_quotient_distance_exact(g):
    t1, t2 = torch.randn(40, 3 * 6, generator=g), torch.randn(40, 3 * 6, generator=g)
    torch.testing.assert_close(quotient_distance_cyclic(t1, t2, 6), quotient_distance_cyclic_bruteforce(t1, t2, 6),
                               atol=1e-4, rtol=1e-4)
    assert quotient_distance_cyclic(t1, roll(t1, 4, 6), 6).max() < 1e-3


@pytest.mark.parametrize("fn", [lambda t: canonicalize(t, 6), lambda t: canonicalize(t, 6, "mean"),
                                lambda t: fourier_modulus(t, 6), lambda t: capsule_norms(t, 6),
                                RandomInvariantProjection(3, 6, 32, seed=1),
                                RandomInvariantProjection(3, 6, 32, pool="mean", seed=2)])
def test_invariance_to_every_roll(fn, g):
    t = torch.randn(20, 3 * 6, generator=g)
    base = fn(t)
    for r in range(6):
        torch.testing.assert_close(fn(roll(t, r, 6)), base, atol=1e-5, rtol=1e-5)


def test_invariants_are_not_trivial(g):
    t1, t2 = torch.randn(2, 3 * 6, generator=g)
    proj = RandomInvariantProjection(3, 6, 32)
    assert (proj(t1) - proj(t2)).abs().max() > 1e-3
    assert (canonicalize(t1[None], 6) - canonicalize(t2[None], 6)).abs().max() > 1e-3


def test_canonicalize_is_a_cross_section_but_not_isometric(g):
    t = torch.randn(200, 2 * 6, generator=g)
    c = canonicalize(t, 6)
    assert torch.allclose(quotient_distance_cyclic(c, t, 6), torch.zeros(200), atol=1e-3)  # same orbit
    u = torch.randn(200, 2 * 6, generator=g)
    d_canon = (canonicalize(t, 6) - canonicalize(u, 6)).norm(dim=-1)
    d_true = quotient_distance_cyclic(t, u, 6)
    assert (d_canon >= d_true - 1e-4).all() and (d_canon > d_true + 1e-3).any()


def test_knn_scores_known_answers():
    x = torch.cat([torch.zeros(20, 2), torch.ones(20, 2) * 10])
    y = torch.tensor([0] * 20 + [1] * 20)
    assert knn_scores(x, y, x + 0.1, y, ks=(1, 5))[5] == 1.0
    reg = knn_scores(x, y.float(), x, y.float(), ks=(1,), task="regression")
    assert reg[1] == 0.0


def test_cyclic_quotient_distance_and_random_projection_reject_wrong_sizes():
    from tvae_core.invariance import RandomInvariantProjection, quotient_distance_cyclic

    with pytest.raises(ValueError, match="t2's last axis"):
        quotient_distance_cyclic(torch.randn(3, 12), torch.randn(3, 8), 4)
    with pytest.raises(ValueError, match="n_caps \\* capsule_dim = 3 \\* 2 = 6"):
        RandomInvariantProjection(3, 2)(torch.randn(4, 9))


def test_knn_scores_equal_scikit_learn_per_k_and_reuse_one_search():
    """One neighbour search at max(k) gives scikit-learn's per-k answers (continuous features: no
    distance ties), for classification (macro F1) and regression (MAE); a shared search too."""
    import numpy as np
    from sklearn.metrics import f1_score, mean_absolute_error
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

    from tvae_core.invariance import knn_neighbours

    g = torch.Generator().manual_seed(0)
    xtr, xte = torch.randn(300, 4, generator=g), torch.randn(120, 4, generator=g)
    ytr, yte = torch.randint(0, 4, (300,), generator=g), torch.randint(0, 4, (120,), generator=g)
    rtr, rte = xtr[:, 0] + 0.1 * torch.randn(300, generator=g), xte[:, 0]
    ks = (1, 2, 4, 7, 20)
    cls, reg = knn_scores(xtr, ytr, xte, yte, ks=ks), knn_scores(xtr, rtr, xte, rte, ks=ks, task="regression")
    for k in ks:
        p = KNeighborsClassifier(n_neighbors=k).fit(xtr.double().numpy(), ytr.numpy()).predict(xte.double().numpy())
        assert cls[k] == pytest.approx(f1_score(yte.numpy(), p, average="macro"), abs=1e-12), k
        p = KNeighborsRegressor(n_neighbors=k).fit(xtr.double().numpy(), rtr.numpy()).predict(xte.double().numpy())
        assert reg[k] == pytest.approx(mean_absolute_error(rte.numpy(), p), abs=1e-6), k
    idx = knn_neighbours(xtr, xte, 20)
    assert idx.shape == (120, 20) and knn_scores(xtr, rtr, xte, rte, ks=ks, task="regression", neighbours=idx) == reg
    with pytest.raises(ValueError, match="neighbours"):
        knn_scores(xtr, ytr, xte, yte, ks=(30,), neighbours=idx)
    with pytest.raises(ValueError, match="k=301"):
        knn_neighbours(xtr, xte, 301)
    assert isinstance(np.asarray(idx)[0, 0], np.integer)
