"""Student-t / PoT / TPoT construction (Eq 2-7) against scipy, and input validation."""
import numpy as np
import pytest
import torch
from scipy import stats

from tvae_core import CapsuleTopography, sample_pot, sample_tpot, student_t, tpot


@pytest.mark.parametrize("nu", [1, 3, 10])
def test_student_t_matches_scipy(nu):
    t = sample_pot(20_000, 1, nu, seed=nu).t.flatten().numpy()
    assert stats.kstest(t, stats.t(df=nu).cdf).pvalue > 0.01


def test_ks_detects_wrong_dof():
    """The KS check has power: nu=1 samples are rejected as nu=10 (a test that can fail)."""
    t = sample_pot(20_000, 1, 1, seed=0).t.flatten().numpy()
    assert stats.kstest(t, stats.t(df=10).cdf).pvalue < 1e-6


def test_tpot_private_neighbourhoods_is_scaled_student_t():
    """Eq 6 with K shared U's and mu=0 gives t_K / sqrt(K) (the 1/nu is absorbed)."""
    K = 5
    t = sample_tpot(20_000, CapsuleTopography(1, 8, K), seed=1).t[:, 0].numpy()
    assert stats.kstest(t * np.sqrt(K), stats.t(df=K).cdf).pvalue > 0.01


def test_tpot_dense_equals_fast_op():
    topo = CapsuleTopography(4, 6, 3)
    z, u = torch.randn(50, topo.n), torch.randn(50, topo.n)
    torch.testing.assert_close(tpot(z, u, topo.dense(), mu=0.7), tpot(z, u, topo, mu=0.7))


def test_tpot_identity_W_is_gaussian_ratio():
    z, u = torch.randn(10, 5), torch.randn(10, 5)
    torch.testing.assert_close(tpot(z, u, torch.eye(5), mu=1.0), (z - 1.0) / u.abs())


def test_student_t_equals_tpot_with_block_W():
    """PoT (Eq 3) is TPoT (Eq 5) with disjoint blocks of nu U's, up to the 1/nu scale."""
    n, nu = 4, 3
    z, u = torch.randn(100, n), torch.randn(100, n, nu)
    W = torch.kron(torch.eye(n), torch.ones(1, nu))  # (n, n*nu)
    torch.testing.assert_close(student_t(z, u), tpot(z, u.reshape(100, n * nu), W) * nu ** 0.5)


def test_bad_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match="u's last axis"):
        tpot(torch.randn(3, 4), torch.randn(3, 5), torch.ones(4, 4))
    with pytest.raises(ValueError, match="z's last axis"):
        tpot(torch.randn(3, 3), torch.randn(3, 4), torch.ones(4, 4))
    with pytest.raises(ValueError, match="u must have shape"):
        student_t(torch.randn(3, 4), torch.randn(3, 5, 2))
    with pytest.raises(ValueError, match="last axis of size"):
        tpot(torch.randn(3, 5), torch.randn(3, 5), CapsuleTopography(2, 3, 1))
    with pytest.raises(ValueError, match="nu must be >= 1"):
        sample_pot(10, 2, 0)


def test_sampling_is_seeded():
    a, b = sample_pot(10, 3, 2, seed=5), sample_pot(10, 3, 2, seed=5)
    assert torch.equal(a.t, b.t)
    assert not torch.equal(a.t, sample_pot(10, 3, 2, seed=6).t)


def test_constraint_violation_view():
    """T is large exactly when its U's are small (Sec 4.2): |T| decreases with mean U^2."""
    s = sample_pot(20_000, 1, 3, seed=2)
    rho = stats.spearmanr(s.t.abs().flatten(), s.u.pow(2).mean(-1).flatten()).statistic
    assert rho < -0.4
