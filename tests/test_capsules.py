"""Capsule experiment helpers with known answers: the held-out rule, ``TVAE.encode`` on a posterior
with known moments, ``evaluate_capsules`` on a hand-built equivariant model, and ``capsule_models``."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tvae_core.metrics import capsule_traversal, equivariance_error, held_out_frames
from tvae_core.models import TVAE, VAE, ELBOParts, ModelConfig
from tvae_core.roll import roll
from tvae_experiments.capsules import (
    DECODE_RULES,
    appendix_d_picks,
    capsule_models,
    centre_capsules,
    evaluate_capsules,
    sample_codes,
    score_models,
    traversal_scores,
    traversal_sheet,
)
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
    assert sc.e_eq_vector == pytest.approx(0.0, abs=1e-6) and sc.e_eq_centred == pytest.approx(0.0, abs=1e-5)
    assert set(sc.by_decode) == set(DECODE_RULES) and sc.decode == "sample"
    assert sc.by_decode["mean"].traversal_bce == pytest.approx(sc.traversal_bce)  # a deterministic model: rules agree
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


def test_centred_e_eq_of_an_offset_plus_a_rolled_bump_is_that_of_the_bump():
    """``t_l = a_l + b_l`` with ``a_l`` constant inside every capsule (the mu offset) and ``b_l`` a
    zero-mean bump: centring removes ``a`` exactly, so centred E_eq is the bump's, whatever ``a``."""
    g = torch.Generator().manual_seed(3)
    N, C, D = 6, 3, 8
    bump = torch.zeros(N, 1, C, D)
    bump[..., 0], bump[..., 1] = 2.0, 1.0
    bump = bump - bump.mean(-1, keepdim=True)  # zero capsule mean
    b = roll(bump.reshape(N, 1, C * D).expand(N, D, C * D), torch.arange(D), D)  # (N, S=D, n): exactly rolled
    noisy = b + 0.3 * torch.randn(N, D, C * D, generator=g)
    noisy = centre_capsules(noisy, D)  # a zero-mean bump that does not roll exactly
    offset = (-30.0 + torch.randn(N, D, C, 1, generator=g)).expand(N, D, C, D).reshape(N, D, C * D)
    for bump_codes in (b, noisy):
        t = bump_codes + offset
        torch.testing.assert_close(centre_capsules(t, D), bump_codes, atol=1e-5, rtol=0)
        torch.testing.assert_close(equivariance_error(centre_capsules(t, D), D),
                                   equivariance_error(bump_codes, D), atol=1e-3, rtol=1e-5)
    assert equivariance_error(b, D).max() < 1e-4 < equivariance_error(noisy, D).min()
    # the offset alone hides the missing roll: raw E_eq of (offset + noisy bump) is far below the bump's
    assert equivariance_error(noisy + offset, D).mean() < 0.2 * equivariance_error(noisy, D).mean()
    torch.testing.assert_close(centre_capsules(roll(noisy, 3, D), D), roll(centre_capsules(noisy, D), 3, D))


def two_way_sequences(N: int, D: int, seed: int = 0):
    """Half the sequences move the bump forward (+1 unit per frame, what RollingModel's code does),
    half backward (-1 per frame): a transformation the code does *not* roll with."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, D, (N,), generator=g)
    kind = torch.arange(N) % 2  # 0: forward, 1: backward
    direction = 1 - 2 * kind
    pos = (start[:, None] + direction[:, None] * torch.arange(D)) % D  # (N, S=D)
    x = torch.nn.functional.one_hot(pos, D).float()
    return SimpleNamespace(x=x, transforms=("forward", "backward"), transform=kind, step=pos, canonical=pos == 0)


def test_traversal_per_transformation_exposes_what_the_average_hides():
    D = 8
    test = two_way_sequences(20, D)
    model = RollingModel(D, L=2)  # held-out frames l = 4..7
    sc = evaluate_capsules(model, test)
    fw, bw = sc.per_transform["forward"], sc.per_transform["backward"]
    assert fw.traversal_bce < 1e-3 and fw.ratio == pytest.approx(1.0, abs=1e-3)
    # backward: Roll_l(t_0) has the bump at start + l, the frame at start - l: equal only at l = 4 (= -4 mod 8);
    # at l = 5, 6, 7 two pixels are wrong with |logit| = 12, each costing softplus(12) nats
    wrong_frame = 2 * float(torch.nn.functional.softplus(torch.tensor(12.0)))
    assert bw.traversal_bce == pytest.approx(3 / 4 * wrong_frame, rel=1e-3)
    assert bw.direct_bce < 1e-3 and bw.ratio > 1e3
    assert sc.traversal_bce == pytest.approx((fw.traversal_bce + bw.traversal_bce) / 2, rel=1e-6)  # the average
    assert sc.by_decode["mean"].per_transform["backward"].traversal_bce == pytest.approx(bw.traversal_bce)


def tiny(kind: str) -> TVAE | VAE:
    torch.manual_seed(0)
    cfg = ModelConfig(kind=kind, in_dim=12, enc_hidden=(16,), dec_hidden=(16,), n_caps=2, capsule_dim=6, K=1,
                      topography="temporal" if kind == "tvae" else "capsules", L=1.5, mu_init=3.0)
    return (TVAE if kind == "tvae" else VAE)(cfg).eval()


def zero_posterior_std(model):
    """Make every posterior Gaussian a point mass at its mean (log std = -inf)."""
    for enc in (model.enc_z, getattr(model, "enc_u", None)):
        if enc is not None:
            net = enc.net
            enc.forward = lambda x, net=net: (net(x).chunk(2, -1)[0], torch.full_like(net(x).chunk(2, -1)[0], -float("inf")))
    return model


@pytest.mark.parametrize("kind", ["tvae", "vae"])
def test_sampled_decode_rule_is_the_mean_rule_when_the_posterior_std_is_zero(kind):
    S = 6
    test = SimpleNamespace(x=torch.rand(5, S, 12), transforms=("a",), transform=torch.zeros(5, dtype=torch.long))
    model = tiny(kind)
    mean = traversal_scores(model, test, "mean")
    noisy = traversal_scores(model, test, "sample", n_samples=3, seed=1)
    assert noisy == traversal_scores(model, test, "sample", n_samples=3, seed=1)  # seeded
    assert abs(noisy.direct_bce - mean.direct_bce) > 1e-4  # posterior noise changes the decoded images
    zero_posterior_std(model)
    torch.testing.assert_close(sample_codes(model, test.x), model.encode(test.x), atol=1e-5, rtol=1e-5)
    mean = traversal_scores(model, test, "mean")
    for n in (1, 3):
        s = traversal_scores(model, test, "sample", n_samples=n, seed=2)
        for field in ("traversal_bce", "direct_bce", "wrong_pose_bce"):
            assert getattr(s, field) == pytest.approx(getattr(mean, field), rel=1e-5), field
    # the mean rule is capsule_traversal's (tvae_core.metrics) on the held-out frames
    tr = capsule_traversal(model, test.x)
    assert mean.traversal_bce == pytest.approx(tr.roll_bce[:, tr.held_out].mean().item(), rel=1e-5)
    assert mean.direct_bce == pytest.approx(tr.direct_bce[:, tr.held_out].mean().item(), rel=1e-5)
    # held_out_L: another model's held-out frames (two windows compared on the same frames)
    for L in (0.5, 1, 2):
        other = traversal_scores(model, test, "mean", held_out_L=L)
        assert other.traversal_bce == pytest.approx(tr.roll_bce[:, held_out_frames(S, L)].mean().item(), rel=1e-5)
    # origin: t_origin rolled by l - origin (a causal code that has seen frames 0..origin); at l = origin it is
    # the direct reconstruction, and frame S-1 is decoded from Roll_{S-1-origin}(t_origin)
    from tvae_core import roll

    t = model.encode(test.x)
    for o in (1, S - 1):
        tro = capsule_traversal(model, test.x, origin=o)
        torch.testing.assert_close(tro.roll_bce[:, o], tr.direct_bce[:, o])
        expect = torch.sigmoid(model.decode(roll(t[:, o], S - 1 - o, model.capsule_dim)))
        torch.testing.assert_close(tro.decoded[:, -1], expect)
        assert not torch.allclose(tro.roll_bce, tr.roll_bce)
        assert traversal_scores(model, test, "mean", origin=o).traversal_bce == pytest.approx(
            tro.roll_bce[:, tr.held_out].mean().item(), rel=1e-5)
    with pytest.raises(ValueError, match="origin"):
        capsule_traversal(model, test.x, origin=S)
    with pytest.raises(ValueError, match="decode"):
        traversal_scores(model, test, "median")


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
    l0 = capsule_models(dcfg, {}, train, "rand", 0, "cpu", untrained={"untrained_L0": ("tvae_l0", 0)}, progress=False)
    assert list(l0) == ["untrained_L0"] and not l0["untrained_L0"].trained and l0["untrained_L0"].model.L == 0
    assert not any(tmp_path.glob("*tvae_l0*"))  # an untrained control is never trained nor cached
    test = SimpleNamespace(**{**vars(bump_sequences(4, dcfg.S)), "x": torch.rand(4, dcfg.S, dcfg.in_dim)})
    assert set(score_models(ms, test)) == set(ms)


def test_table3_norm_rows_name_and_build_the_normalisation_and_share_table1s_models(tmp_path, monkeypatch):
    """Table 3 (A.8): ``norm`` picks WN / PGD / none; ``"paper"`` is A.5's rule, and a row whose norm is
    the paper's for its variant is Table 1's model (same name, same config: one cache entry)."""
    from tvae_experiments.capsules import variant_name
    from tvae_experiments.profiles import TABLE3_MNIST_ROWS

    monkeypatch.setenv("TVAE_CACHE_DIR", str(tmp_path))
    dcfg = CapsuleDataConfig(n_caps=2, enc_hidden=(16,), dec_hidden=(16,), steps=2, n_train=8, batch_size=4)
    assert [dcfg.norm_of(v) for v in ("tvae", "bubble", "tvae_l0", "vae")] == ["wn", "wn", "wn", "none"]
    with pytest.raises(ValueError, match="norm"):
        dcfg.norm_of("tvae", "batch")
    L = dcfg.L_of(5 / 36)
    assert dcfg.model("tvae", L, "wn") == dcfg.model("tvae", L) and dcfg.model("vae", 0, "none") == dcfg.model("vae")
    assert variant_name(dcfg, "tvae", L, 0, "wn") == variant_name(dcfg, "tvae", L, 0) == "caps-mnist-tvae-L2.5-s0"
    assert variant_name(dcfg, "vae", 0, 0, "pgd") == "caps-mnist-vae-L0-pgd-s0"
    assert variant_name(dcfg, "tvae", L, 0, "none") == "caps-mnist-tvae-L2.5-none-s0"
    built = {(v, n): dcfg.model(v, dcfg.L_of(f), n) for v, f, n in TABLE3_MNIST_ROWS}
    assert {k: (c.weight_norm, c.pgd) for k, c in built.items()} == {
        ("tvae", "pgd"): (False, True), ("tvae", "wn"): (True, False), ("tvae", "none"): (False, False),
        ("vae", "pgd"): (False, True), ("vae", "wn"): (True, False), ("vae", "none"): (False, False)}
    train = SimpleNamespace(x=torch.rand(8, dcfg.S, dcfg.in_dim))
    ms = capsule_models(dcfg, {"pgd": ("vae", 0, "pgd"), "vae": ("vae", 0)}, train, "rand", 0, "cpu",
                        untrained={"u": "pgd"}, progress=False)
    assert [m.label for m in ms.values()] == ["VAE PGD", "VAE", "untrained VAE PGD"]
    assert sorted(p.name.split("-s0")[0] for p in tmp_path.glob("*.pt")) == ["caps-mnist-vae-L0", "caps-mnist-vae-L0-pgd"]


def test_appendix_d_picks_show_every_transformation_and_shape_evenly():
    # 4 transformations x 3 shapes, 10 sequences each: 12 picks = each (transformation, shape) once
    transform = torch.arange(4).repeat_interleave(30)
    label = torch.arange(3).repeat_interleave(10).repeat(4)
    test = SimpleNamespace(x=torch.zeros(120, 2, 1), transform=transform, label=label)
    picks = appendix_d_picks(test, 12, seed=0, by_label=True)
    assert len(set(picks)) == 12
    assert sorted((int(transform[i]), int(label[i])) for i in picks) == [(t, s) for t in range(4) for s in range(3)]
    # by transformation only (MNIST: the label is the digit): 3 x 4 each; another seed, other sequences
    mnist = SimpleNamespace(x=torch.zeros(90, 2, 1), transform=torch.arange(3).repeat(30), label=torch.arange(90) % 10)
    picks = appendix_d_picks(mnist, 12, seed=1)
    assert sorted(torch.bincount(mnist.transform[picks], minlength=3).tolist()) == [4, 4, 4]
    assert appendix_d_picks(mnist, 12, seed=1) == picks and appendix_d_picks(mnist, 12, seed=2) != picks
    with pytest.raises(ValueError, match="n"):
        appendix_d_picks(mnist, 91)


def test_traversal_sheet_rows_and_ratio_on_an_exactly_rolling_code():
    D = 8
    test = bump_sequences(20, D)
    sheet = traversal_sheet(RollingModel(D, L=2), test, [3, 5, 7])
    assert sheet.data.shape == sheet.direct.shape == sheet.rolled.shape == (3, D, D)
    assert torch.equal(sheet.data, test.x[[3, 5, 7]])
    assert torch.allclose(sheet.rolled, sheet.direct, atol=1e-5)  # an equivariant code: rolled = direct
    assert sheet.ratio() == pytest.approx(1.0, rel=1e-4)
    wrong = traversal_sheet(RollingModel(D, L=2, sign=-1), test, [3, 5, 7])
    assert torch.allclose(wrong.rolled[:, 0], wrong.direct[:, 0])  # frame 0: Roll_0(t_0) = t_0 for any model
    assert wrong.ratio() > 100  # rolled the wrong way: the held-out frames are other images


def test_untrained_variant_builds_the_normalisation_asked_for():
    """The control of a Table 3 row has that row's normalisation (PGD: ProjectedLinear layers), at its seed."""
    from tvae_core.models import ProjectedLinear
    from tvae_experiments.capsules import untrained_variant
    from tvae_experiments.profiles import config_for

    dcfg = config_for("04_capsules", "smoke").mnist
    pgd, plain = untrained_variant(dcfg, "vae", 0, 0, "cpu", "pgd"), untrained_variant(dcfg, "vae", 0, 0, "cpu")
    assert any(isinstance(m, ProjectedLinear) for m in pgd.modules())
    assert not any(isinstance(m, ProjectedLinear) for m in plain.modules()) and not plain.training
    again = untrained_variant(dcfg, "vae", 0, 0, "cpu")
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), again.state_dict().values()))
