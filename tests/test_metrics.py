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


# ---- equivariant capsules: E_eq, ObservedRoll, CapCorr (A.11), traversal ------------------
import pytest  # noqa: E402

from tvae_core import roll  # noqa: E402
from tvae_core.metrics import (capcorr, capcorr_sequences, capsule_roll, capsule_traversal,  # noqa: E402
                               equivariance_error, omega_and_rolls)

D = 6


def _rolled_sequences(n, S, C=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    t0 = torch.randn(n, C * D, generator=g)
    return roll(t0[:, None].expand(-1, S, -1), torch.arange(S), D)  # (n, S, C*D): t_l = Roll_l(t_0)


def test_equivariance_error_zero_for_rolled_code_and_positive_otherwise():
    seq = _rolled_sequences(20, 6) * torch.rand(20, 6, 1)  # any positive per-frame scale
    assert equivariance_error(seq, D).abs().max() < 1e-4
    static = _rolled_sequences(20, 6)[:, :1].expand(-1, 6, -1)  # invariant code: not equivariant
    assert (equivariance_error(static, D) > 1.0).all()
    # the hand-written double sum of Eq 13 for one sequence
    t = torch.randn(1, 4, 2 * D)
    th = t / t.norm(dim=-1, keepdim=True)
    direct = sum((roll(th[0, a], b - a, D) - th[0, b]).abs().sum() for a in range(4) for b in range(a + 1, 4))
    assert abs(equivariance_error(t, D, norm="vector").item() - direct.item()) < 1e-4
    tc = t.reshape(1, 4, 2, D)
    th = (tc / tc.norm(dim=-1, keepdim=True)).reshape(1, 4, 2 * D)  # each capsule normalised (the published tables)
    direct = sum((roll(th[0, a], b - a, D) - th[0, b]).abs().sum() for a in range(4) for b in range(a + 1, 4))
    assert abs(equivariance_error(t, D).item() - direct.item()) < 1e-4


def test_capsule_roll_recovers_planted_shift_in_every_capsule():
    g = torch.Generator().manual_seed(3)
    t = torch.randn(40, 4 * D, generator=g)
    r = torch.randint(0, D, (40,), generator=g)
    assert torch.equal(capsule_roll(t, roll(t, r, D), D), r)
    noisy = roll(t, r, D) + 0.05 * torch.randn(40, 4 * D, generator=g)
    assert (capsule_roll(t, noisy, D) == r).float().mean() > 0.95


def test_capsule_roll_mode_over_capsules():
    t = torch.randn(1, 3 * D)
    target = roll(t, 2, D)
    target[0, 2 * D:] = roll(t[:, 2 * D:], 4, D)  # one capsule disagrees: the mode wins
    assert capsule_roll(t, target, D).item() == 2


def test_capcorr_one_for_equivariant_zero_for_random():
    S = D
    seq = _rolled_sequences(300, S)
    y0 = torch.randint(0, S, (300,), generator=torch.Generator().manual_seed(1))  # random start step
    omega = (S - y0) % S  # frame at the canonical value 0
    t_omega = seq[torch.arange(300), omega]
    shift = (0 - y0) % S  # (y_Omega - y_0) mod P: steps from frame 0 to Omega in the transformation's direction
    assert abs(capcorr(seq[:, 0], t_omega, shift, D) - 1.0) < 1e-6
    assert abs(capcorr(torch.randn(300, 3 * D), torch.randn(300, 3 * D), shift, D)) < 0.15


def test_one_direction_convention_roll_observedroll_capcorr():
    """Eq 18 / Eq 20 as printed: a code built with roll(t_0, k) is ObservedRoll k and CapCorr 1;
    the mirror-image code (rolled by -k) is caught: CapCorr about -1, not +1 (|Pearson| would hide it)."""
    g = torch.Generator().manual_seed(5)
    t0 = torch.randn(400, 3 * D, generator=g)
    k = torch.randint(1, D, (400,), generator=g)
    assert torch.equal(capsule_roll(t0, roll(t0, k, D), D), k)
    assert capcorr(t0, roll(t0, k, D), k, D) == pytest.approx(1.0)
    assert capcorr(t0, roll(t0, -k, D), k, D) < -0.9
    seq = _rolled_sequences(60, D)  # t_l = Roll_l(t_0): +1 unit per frame
    step = (torch.arange(60)[:, None] + torch.arange(D)) % D  # factor steps +1 per frame, canonical at 0
    assert capcorr_sequences(seq, step, step == 0, D) == pytest.approx(1.0)
    # a code rolling the other way: observed (D - Omega) mod D against Omega, negative (-1/7 here: the
    # shift 0 wraps), never the +1 an absolute value or a flipped convention would report
    assert capcorr_sequences(seq.flip(1).roll(1, 1), step, step == 0, D) < 0


def test_capsule_roll_rejects_mismatched_sizes():
    with pytest.raises(ValueError, match="t_b's last axis"):
        capsule_roll(torch.randn(4, 3 * D), torch.randn(4, 2 * D), D)


def test_eeq_per_capsule_is_the_published_scale():
    """i.i.d. Gaussian codes (no roll structure) on the per-capsule scale reproduce the paper's VAE
    rows (Table 1: 13,273.9 at S = C = D = 18; Table 2: 6,929 at 15); whole-vector Eq 13 is ~sqrt(C)x smaller."""
    g = torch.Generator().manual_seed(0)
    for S, paper in ((18, 13273.9), (15, 6929.0)):
        t = torch.randn(200, S, S * S, generator=g)
        cap, vec = equivariance_error(t, S).mean().item(), equivariance_error(t, S, norm="vector").mean().item()
        assert cap == pytest.approx(paper, rel=0.01)
        assert 3.5 < cap / vec < 4.8  # sqrt(18) = 4.24, sqrt(15) = 3.87
    with pytest.raises(ValueError, match="norm"):
        equivariance_error(t, S, norm="unit")


def test_eeq_per_capsule_ignores_per_capsule_scales_whole_vector_does_not():
    seq = _rolled_sequences(10, D, C=3)  # (10, D, 3*D) rolled codes
    scales = torch.rand(10, D, 3, 1) * 4 + 0.1  # a different positive scale per frame and capsule
    scaled = (seq.reshape(10, D, 3, D) * scales).reshape(10, D, 3 * D)
    assert equivariance_error(scaled, D).abs().max() < 1e-4
    assert (equivariance_error(scaled, D, norm="vector") > 0.1).all()


def test_capcorr_omega_choice_for_periodic_scale_follows_A11():
    """dSprites scale: 5 values looped 3 times in S=15 frames; 3 canonical frames per sequence.
    A.11 picks the Omega whose observed roll is closest to the factor shift (y_Omega - y_0) mod 5."""
    S, n = 15, 5
    D15 = 15
    y0 = torch.arange(5).repeat(4)  # (20,) start step of each sequence
    step = (y0[:, None] + torch.arange(S)) % n  # (20, S)
    canonical = step == 0
    g = torch.Generator().manual_seed(0)
    t0 = torch.randn(20, 2 * D15, generator=g)
    t = roll(t0[:, None].expand(-1, S, -1), torch.arange(S), D15)  # equivariant, 1 unit per frame
    omega, rolls, shift = omega_and_rolls(t, step, canonical, D15)
    assert canonical[torch.arange(20), omega].all()
    assert torch.equal(rolls, shift) and torch.equal(shift, (-y0) % n)  # the closest candidate matches exactly
    assert torch.equal(omega, (-y0) % n)  # ... the first canonical frame, (y_Omega - y_0) mod 5 steps on
    assert abs(capcorr_sequences(t, step, canonical, D15) - 1.0) < 1e-6
    assert abs(capcorr_sequences(t, step, canonical, D15, period=5) - 1.0) < 1e-6  # explicit period: same
    # choosing another canonical frame for half of the sequences breaks the correspondence
    last = S - 1 - canonical.flip(1).float().argmax(1)
    mixed = torch.where(torch.arange(20) % 2 == 0, omega, last)
    assert capcorr(t[:, 0], t[torch.arange(20), mixed], shift, D15) < 0.9


def test_traversal_of_an_exactly_equivariant_toy_model():
    """A 'model' whose code is Roll_l(t_0) and whose decoder is fixed: traversal == direct."""
    S, P = D, 2 * D

    class Toy:
        def encode(self, x):  # x: (N, S, P) -> t_l = Roll_l(x_0)
            return roll(x[:, :1].expand(-1, S, -1), torch.arange(S), D)

        def decode(self, t):
            return 4 * (t - 0.5)

    x = Toy().encode(torch.rand(5, 1, P).expand(-1, S, -1))
    tr = capsule_traversal(Toy(), x, D, L=2)
    assert tr.held_out.tolist() == [False] * 4 + [True] * 2
    torch.testing.assert_close(tr.roll_bce, tr.direct_bce)
    assert abs(tr.ratio - 1.0) < 1e-6


def test_capcorr_modulo_known_values_and_agreement_with_a_period_m_code():
    from tvae_core.metrics import capcorr_modulo

    shift = torch.arange(15)
    assert abs(capcorr_modulo(shift, 15) - 1.0) < 1e-12
    k = shift.double()
    expected = float(torch.corrcoef(torch.stack([k % 5, k]))[0, 1])
    assert abs(capcorr_modulo(shift, 5) - expected) < 1e-12 and 0.3 < expected < 0.35
    # a code with period 5 inside each capsule: Eq 16's argmax finds the shift only modulo 5,
    # so the measured CapCorr equals capcorr_modulo(shift, 5)
    g = torch.Generator().manual_seed(0)
    base = torch.randn(2, 5, generator=g).repeat(1, 3)  # (C=2, D=15), Roll_5-invariant
    t0 = base.reshape(1, 30).repeat(15, 1)
    t_omega = torch.stack([roll(base.reshape(30), int(s), 15) for s in shift])
    assert abs(capcorr(t0, t_omega, shift, 15) - capcorr_modulo(shift, 5)) < 1e-9
    # per-sequence moduli (mixed shapes)
    mixed = capcorr_modulo(torch.cat([shift, shift]), torch.tensor([15] * 15 + [5] * 15))
    assert expected < mixed < 1.0


def test_capcorr_per_transform_splits_by_transformation_and_subset():
    from tvae_experiments.capsules import capcorr_per_transform
    from tvae_experiments.data.sequences import SequenceData

    g = torch.Generator().manual_seed(0)
    N, S, C = 120, 6, 2
    start = torch.randint(0, S, (N,), generator=g)
    step = (start[:, None] + torch.arange(S)) % S  # (N, S) grid steps from the canonical value
    base = torch.randn(N, C * S, generator=g)
    kind = torch.arange(N) % 2
    # transformation 0: the code rolls with the factor (CapCorr 1); transformation 1: random codes
    t = torch.stack([roll(base, step[:, l], S) for l in range(S)], 1)  # (N, S, C*S)
    t[kind == 1] = torch.randn(int((kind == 1).sum()), S, C * S, generator=g)
    seq = SequenceData(x=torch.zeros(N, S, 1), frame_shape=(1, 1, 1), transform=kind, transforms=("a", "b"),
                       factor=step.float(), step=step, canonical=step == 0, label=torch.arange(N) % 4, source="t")
    cc = capcorr_per_transform(t, seq, S)
    assert abs(cc["a"] - 1.0) < 1e-9 and abs(cc["b"]) < 0.6
    sub = capcorr_per_transform(t, seq, S, seq.label == 0)  # label 0: a quarter of the "a" sequences only
    assert set(sub) == {"a"} and abs(sub["a"] - 1.0) < 1e-9
    assert capcorr_per_transform(t, seq, S, torch.zeros(N, dtype=torch.bool)) == {}


def test_max_activating_and_unit_preferences_known_answers():
    """Unit j is largest on image j (and second largest on image j+1): the default k = 1 returns j,
    k = 2 returns (j, j+1); the majority label of a unit's top-k images is that image's label."""
    from tvae_core.metrics import max_activating, unit_preferences

    n = 5
    t = torch.zeros(n + 1, n)
    for j in range(n):
        t[j, j], t[j + 1, j] = 2.0, 1.0
    assert max_activating(t).tolist() == [[j] for j in range(n)]
    assert max_activating(t, 2).tolist() == [[j, j + 1] for j in range(n)]
    labels = torch.tensor([3, 1, 4, 1, 5, 9])
    assert unit_preferences(t, labels, k=1).tolist() == [3, 1, 4, 1, 5]
    # k = 2: each unit sees two labels once each, a tie that goes to the smaller label
    assert unit_preferences(t, labels, k=2).tolist() == [1, 1, 1, 1, 5]
    assert unit_preferences(t, labels, k=1, n_classes=12).tolist() == [3, 1, 4, 1, 5]
