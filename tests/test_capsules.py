"""Capsule experiment helpers with known answers: the held-out rule, ``TVAE.encode`` on a posterior
with known moments, ``evaluate_capsules`` on a hand-built equivariant model, and ``capsule_models``."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tvae_core.metrics import capsule_traversal, held_out_frames
from tvae_core.models import TVAE, ELBOParts, ModelConfig
from tvae_experiments.capsules import capsule_models, evaluate_capsules, score_models
from tvae_experiments.profiles import CapsuleDataConfig


def test_held_out_frames_is_l_at_least_2L():
    assert held_out_frames(18, 6).nonzero().flatten().tolist() == list(range(12, 18))
    assert held_out_frames(15, 2.5).nonzero().flatten().tolist() == list(range(5, 15))
    for L in (0, 7.5, 9):  # no window, or a window covering the whole sequence: every frame after the first
        assert held_out_frames(18 if L != 7.5 else 15, L).nonzero().flatten().tolist() == list(range(1, 18 if L != 7.5 else 15))


def test_encode_uses_the_posterior_second_moment_of_u():
    """``t = (z_mean - mu) / sqrt(W E[u^2] + eps)`` with ``E[u^2] = mean^2 + std^2`` (not ``mean^2``)."""
    cfg = ModelConfig(kind="tvae", in_dim=5, enc_hidden=(4,), dec_hidden=(4,), topography="capsules", n_caps=2,
                      capsule_dim=4, K=3, mu_init=0.7)
    m = TVAE(cfg)
    zm, um = torch.randn(3, 8), torch.randn(3, 8)
    zs, us = torch.randn(3, 8) * 0.3, torch.randn(3, 8) * 0.3
    m.enc_z.forward = lambda x: (zm, zs)
    m.enc_u.forward = lambda x: (um, us)
    W = m.topo.dense()  # (8, 8)
    expected = (zm - 0.7) / torch.sqrt((um ** 2 + torch.exp(2 * us)) @ W.T + 1e-8)
    got = m.encode(torch.zeros(3, 5))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    wrong = (zm - 0.7) / torch.sqrt((um ** 2) @ W.T + 1e-8)  # the posterior variance dropped
    assert (got - wrong).abs().max() > 1e-2


class RollingModel(nn.Module):
    """A hand-built 'model' on one capsule of ``D`` units: the code of a frame is the frame itself
    (a one-hot bump) and the decoder maps a code back to sharp logits.  Sequences that move the
    bump by one unit per frame are then exactly equivariant: ``t_l = Roll_l(t_0)``."""

    def __init__(self, D: int, L: float, sign: int = 1):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.capsule_dim, self.L, self.sign = D, L, sign
        self.cfg = SimpleNamespace(capsule_dim=D, L=L)

    def encode(self, x):
        return x if self.sign == 1 else x.flip(-1).roll(1, -1)  # sign -1: the bump moves the other way

    def decode(self, t):
        t = t if self.sign == 1 else t.flip(-1).roll(1, -1)
        return 12.0 * (2 * t - 1)

    def forward(self, x):
        z = torch.zeros(len(x))
        return ELBOParts(z, z, z)


def bump_sequences(N: int, D: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, D, (N,), generator=g)
    pos = (start[:, None] + torch.arange(D)) % D  # (N, S=D): the bump's unit = grid step
    x = torch.nn.functional.one_hot(pos, D).float()  # (N, S, P=D)
    return SimpleNamespace(x=x, transforms=("move",), transform=torch.zeros(N, dtype=torch.long), step=pos,
                           canonical=pos == 0)


def test_evaluate_capsules_on_an_exactly_equivariant_code():
    D = 8
    test = bump_sequences(40, D)
    sc = evaluate_capsules(RollingModel(D, L=2), test)
    assert sc.capcorr["move"] == pytest.approx(1.0)
    assert sc.e_eq == pytest.approx(0.0, abs=1e-6)
    assert sc.traversal_bce == pytest.approx(sc.direct_bce, rel=1e-5) and sc.traversal_bce < 0.01
    assert sc.wrong_pose_bce > 100 * sc.traversal_bce  # the opposite pose is a different image
    tr = capsule_traversal(RollingModel(D, L=2), test.x)
    assert tr.held_out.nonzero().flatten().tolist() == list(range(4, D))  # read from the model's L


def test_a_code_that_rolls_the_wrong_way_is_caught():
    D = 8
    test = bump_sequences(40, D)
    sc = evaluate_capsules(RollingModel(D, L=2, sign=-1), test)
    assert sc.traversal_bce > 10 * sc.direct_bce  # Roll_l(t_0) decodes the wrong frames
    assert sc.capcorr["move"] < 0.0


def test_capsule_models_trains_variants_and_builds_untrained_controls(tmp_path, monkeypatch):
    monkeypatch.setenv("TVAE_CACHE_DIR", str(tmp_path))
    dcfg = CapsuleDataConfig(n_caps=2, enc_hidden=(16,), dec_hidden=(16,), steps=3, n_train=16, n_test=4, batch_size=4)
    train = SimpleNamespace(x=torch.rand(16, dcfg.S, dcfg.in_dim))
    variants = {"tvae_S/3": ("tvae", 1 / 3), "vae": ("vae", 0)}
    ms = capsule_models(dcfg, variants, train, "rand", seed=0, device="cpu", untrained={"untrained_S/3": "tvae_S/3"},
                        progress=False)
    assert list(ms) == ["tvae_S/3", "vae", "untrained_S/3"]
    assert [m.trained for m in ms.values()] == [True, True, False]
    assert ms["tvae_S/3"].label == "TVAE L=6 (1/3 S)" and ms["untrained_S/3"].label == "untrained TVAE L=6 (1/3 S)"
    assert ms["tvae_S/3"].model.L == 6 and ms["untrained_S/3"].model.L == 6 and ms["vae"].model.L == 0
    trained, control = ms["tvae_S/3"].model.state_dict(), ms["untrained_S/3"].model.state_dict()
    assert any(not torch.equal(trained[k], control[k]) for k in trained)  # training moved the weights
    again = capsule_models(dcfg, variants, train, "rand", seed=0, device="cpu", progress=False)
    assert all(m.from_cache for m in again.values())
    with pytest.raises(ValueError, match="untrained"):
        capsule_models(dcfg, variants, train, "rand", 0, "cpu", untrained={"u": "bubble"}, progress=False)
    test = SimpleNamespace(**{**vars(bump_sequences(4, dcfg.S)), "x": torch.rand(4, dcfg.S, dcfg.in_dim)})
    assert set(score_models(ms, test)) == set(ms)
