"""Energy-correlation estimators on constructed cases with known answers."""
import torch

from tvae_core import CapsuleTopography, TemporalTopography, cross_capsule_energy_corr, energy_corr, ring_energy_profile, sample_tpot, temporal_energy_corr, torus_energy_map, TorusTopography


def test_energy_corr_known_answers():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5000, 10, generator=g)
    assert abs(energy_corr(a, a).r - 1) < 1e-9
    ind = energy_corr(a, torch.randn(5000, 10, generator=g))
    assert ind.lo < 0 < ind.hi and abs(ind.r) < 0.01
    assert energy_corr(a, -a).r < -0.999  # ranks of a vs -a are reversed


def test_ring_profile_vanishes_beyond_window():
    t = sample_tpot(8000, CapsuleTopography(4, 12, 3), seed=0).t
    prof = ring_energy_profile(t, 12)
    assert prof[1].lo > 0 and prof[2].lo > 0  # share U's (window 3: distance 1 and 2)
    assert prof[1].r > prof[2].r
    assert all(abs(p.r) < 0.01 for p in prof[3:])  # no shared U: independent


def test_cross_capsule_and_temporal_patterns():
    t = sample_tpot(6000, CapsuleTopography(4, 8, 3), seed=1).t
    assert abs(cross_capsule_energy_corr(t, 8).r) < 0.01
    shift = sample_tpot(6000, TemporalTopography(2, 8, 1, 2, "shifting"), shape=(8, 16), seed=2).t
    stat = sample_tpot(6000, TemporalTopography(2, 8, 1, 2, "stationary"), shape=(8, 16), seed=2).t
    assert temporal_energy_corr(shift, 8, 1, 1).lo > 0 and abs(temporal_energy_corr(shift, 8, 1, 0).r) < 0.01
    assert temporal_energy_corr(stat, 8, 1, 0).lo > 0 and abs(temporal_energy_corr(stat, 8, 1, 1).r) < 0.01


def test_torus_map_matches_direct_pairs():
    t = sample_tpot(3000, TorusTopography(6, 3), seed=3).t
    m = torus_energy_map(t, 6)
    grid = t.reshape(-1, 6, 6)
    direct = energy_corr(grid.pow(2), grid.roll((-1, -2), dims=(1, 2)).pow(2)).r
    assert abs(m[1, 2].item() - direct) < 1e-9 and abs(m[0, 0].item() - 1) < 1e-9


def test_lag_shift_map_matches_direct_estimator():
    from tvae_core import lag_shift_energy_map
    t = sample_tpot(2000, TemporalTopography(2, 8, 3, 2, "shifting"), shape=(8, 16), seed=4).t
    m = lag_shift_energy_map(t, 8)
    for a, b in [(1, 1), (1, 0), (2, -1), (0, 3)]:
        assert abs(m[a, b].item() - temporal_energy_corr(t, 8, a, b).r) < 1e-9
    assert m[1, 1] > 0.01 and abs(m[1, -1].item()) < 0.02  # the shifting diagonal, not the other one
