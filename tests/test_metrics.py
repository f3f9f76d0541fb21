"""Topographic-organisation metrics on constructed maps with known answers."""
import torch

from tvae_core.metrics import (agreement_permutation_test, max_activating, neighbour_agreement,
                               neighbour_similarity_test, unit_effects, unit_preferences)
from tvae_core.models import ModelConfig, build_model


def test_max_activating_and_preferences():
    t = torch.tensor([[0.0, 5.0], [3.0, 1.0], [2.0, 4.0]])  # 3 images, 2 units
    assert max_activating(t, 2).tolist() == [[1, 2], [0, 2]]
    labels = torch.tensor([7, 3, 3])
    assert unit_preferences(t, labels, 2, n_classes=10).tolist() == [3, 3]
    assert unit_preferences(t, labels, 1, n_classes=10).tolist() == [3, 7]


def test_agreement_known_maps():
    side = 6
    assert neighbour_agreement(torch.zeros(36, dtype=torch.long), side) == 1.0
    checker = (torch.arange(side)[:, None] + torch.arange(side)[None, :]) % 2
    assert neighbour_agreement(checker.flatten(), side) == 0.0
    halves = (torch.arange(side)[:, None] >= side // 2).long().expand(side, side).flatten()
    # vertical pairs: 12 of 36 cross the two borders; horizontal pairs all agree -> (2/3 + 1) / 2
    assert abs(neighbour_agreement(halves, side) - 5 / 6) < 1e-6
    test = agreement_permutation_test(halves, side, 500, seed=0)
    assert test.p_value < 0.01 and 0.4 < test.null_mean < 0.6
    rand = torch.randint(0, 2, (36,), generator=torch.Generator().manual_seed(0))
    assert agreement_permutation_test(rand, side, 500).p_value > 0.01


def test_similarity_smooth_vs_random_features():
    side = 8
    ang = 2 * torch.pi * torch.arange(side) / side
    r, c = torch.meshgrid(ang, ang, indexing="ij")
    smooth = torch.stack([r.cos(), r.sin(), c.cos(), c.sin()], -1).reshape(side * side, 4) + 3.0  # periodic: a torus
    s = neighbour_similarity_test(smooth - smooth.mean(0), side, 500)
    assert s.p_value < 0.01 and s.excess > 0.3
    noise = torch.randn(side * side, 50, generator=torch.Generator().manual_seed(1))
    n = neighbour_similarity_test(noise, side, 500)
    assert abs(n.excess) < 0.05 and n.p_value > 0.01


def test_unit_effects_shape_and_locality():
    m = build_model(ModelConfig(kind="vae", enc_hidden=(16,), dec_hidden=(16,), side=3, weight_norm=False))
    e = unit_effects(m, torch.rand(10, 784))
    assert e.shape == (9, 784) and e.abs().sum() > 0
