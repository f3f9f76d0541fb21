"""The authors' constructions rebuilt in tvae_experiments.paper_code, against the book's, and the
paper profile's use of the code's loss scale (chapter 9, "Paper vs code")."""
import pytest
import torch

from tvae_core import CapsuleTopography, capsule_roll, roll, tpot
from tvae_experiments import config_for
from tvae_experiments.paper_code import (
    AUTHORS_EPS,
    authors_observed_roll,
    authors_temporal_W,
    authors_tpot,
)


def test_observed_roll_directions_are_mirror_images():
    D, C = 7, 3
    t0 = torch.randn(50, C * D, generator=torch.Generator().manual_seed(0))
    k = torch.randint(0, D, (50,), generator=torch.Generator().manual_seed(1))
    t_omega = roll(t0, k, D)
    assert torch.equal(capsule_roll(t0, t_omega, D), k)                    # Eq 20: t_0 -> t_Omega
    assert torch.equal(authors_observed_roll(t0, t_omega, D), (-k) % D)   # the code: t_Omega -> t_0


def test_authors_tpot_is_tpot_with_mu_minus_beta():
    topo = CapsuleTopography(2, 6, 3)
    z, u = torch.randn(4, 12, dtype=torch.float64), torch.randn(4, 12, dtype=torch.float64)
    torch.testing.assert_close(authors_tpot(z, u, topo, 30.0), tpot(z, u, topo, mu=-30.0, eps=AUTHORS_EPS))


def test_authors_kernel_term_counts():
    for T in (3, 4, 10, 18):
        W = authors_temporal_W(18, 18, T, 3, "shifting")
        assert torch.equal(W.sum(1), torch.full((18 * 18,), float(3 * T - 2)))
    with pytest.raises(ValueError, match="odd width"):
        authors_temporal_W(6, 6, 4, 2, "shifting")


def test_paper_profile_trains_with_the_codes_loss_scale():
    for chapter in ("04_capsules", "05_tables", "08_capsule_invariants"):
        for profile, loss in (("paper", "frame"), ("cpu", "sequence"), ("smoke", "sequence")):
            caps = config_for(chapter, profile)
            caps = getattr(caps, "capsules", caps)
            assert caps.mnist.train(0).loss == caps.dsprites.train(0).loss == loss, (chapter, profile)
