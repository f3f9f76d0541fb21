"""Chapter 10's measurements of appendix C's extensions (``tvae_experiments.capsule_extensions``), on
planted codes with known answers; the non-cyclic toy sequences; the chapter's model configs.  No
training here (the chapter trains, and each of its claims fails on a broken variant, checked by hand)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tvae_core.metrics import capsule_roll
from tvae_core.roll import fourier_roll, roll, roll2d
from tvae_experiments.capsule_extensions import (axis_of, lattice_capcorr, lattice_lines, offset_rolls, online_codes,
                                                 online_error, partial_rolls, pearson, roll_slope, with_config)
from tvae_experiments.capsules import untrained_toy
from tvae_experiments.data.sequences import bump_sequences
from tvae_experiments.profiles import EXTENSION_MODELS, CapsuleExtensionsConfig, ToyCapsulesConfig, config_for

CFG = CapsuleExtensionsConfig()


def _planted(N: int, S: int, seed: int = 0):
    """Sequences of two transformations with one canonical frame each: step_l = (s_0 + l) mod S."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, S, (N,), generator=g)
    step = (start[:, None] + torch.arange(S)[None, :]) % S
    return SimpleNamespace(transform=torch.arange(N) % 2, transforms=("x", "y"), step=step, canonical=step == 0)


def test_lattice_lines_turns_a_roll_along_an_axis_into_a_1d_roll():
    side, C = 5, 3
    t = torch.randn(4, C * side * side)
    for axis in (0, 1):
        for k in range(side):
            assert torch.equal(lattice_lines(roll2d(t, k, side, axis), side, axis), roll(lattice_lines(t, side, axis), k, side))
    assert torch.equal(lattice_lines(t, side, 1), t)  # axis 1: rows are already contiguous
    assert torch.equal(lattice_lines(lattice_lines(t, side, 0), side, 0), t)  # a transpose: its own inverse
    with pytest.raises(ValueError, match="axis"):
        lattice_lines(t, side, 2)


def test_lattice_capcorr_knows_the_axis_each_transformation_rolls_along():
    """Known answer: x rolls along axis 1 and y along axis 0 (as a bump at lattice cell (y, x) would)."""
    side, C, N = 6, 2, 400
    test = _planted(N, side)
    axis = torch.where(test.transform == 0, 1, 0)  # x -> axis 1, y -> axis 0
    t0 = torch.randn(N, C * side * side)
    shifts = test.step - test.step[:, :1]  # t_l = Roll^axis_{y_l - y_0}(t_0)
    t = roll2d(t0[:, None, :].expand(N, side, -1), shifts, side, axis[:, None])
    cc = lattice_capcorr(t, test, side)
    assert cc["x"][1] == pytest.approx(1.0) and cc["y"][0] == pytest.approx(1.0)
    # along the other axis each line is replaced by another line of t_0: the mode of ObservedRolls between
    # different lines follows the shift only weakly (0.18 and 0.34 on these random codes)
    assert abs(cc["x"][0]) < 0.5 and abs(cc["y"][1]) < 0.5
    assert axis_of(cc) == {"x": 1, "y": 0}


def test_partial_rolls_recover_a_planted_half_unit_roll_per_frame():
    """Known answer: codes Fourier-rolled by alpha * (frames from 0 to Omega) on odd D (recovered exactly)."""
    D, C, S, alpha = 3, 4, 6, 0.5
    test = _planted(40, S, seed=1)
    t0 = torch.randn(40, C * D, dtype=torch.float64)
    omega = test.canonical.float().argmax(1)
    t = t0[:, None, :].repeat(1, S, 1)
    shift = (test.step[torch.arange(40), omega] - test.step[:, 0]) % S
    t[torch.arange(40), omega] = torch.stack([fourier_roll(t0[i], alpha * float(shift[i]), D) for i in range(40)])
    observed, frames = partial_rolls(t, test, D, alpha, "fourier")
    assert torch.equal(frames, shift.double())
    assert torch.allclose(observed, alpha * frames)
    assert roll_slope(observed, frames) == pytest.approx(alpha)
    assert pearson(observed, frames) == pytest.approx(1.0)


def test_roll_slope_and_pearson_known_answers():
    s = torch.tensor([0.0, 1, 2, 3, 4, 5])
    assert roll_slope(0.5 * s, s) == pytest.approx(0.5)
    assert roll_slope(torch.zeros(6), s) == 0.0
    assert pearson(2 * s + 1, s) == pytest.approx(1.0) and pearson(-s, s) == pytest.approx(-1.0)
    assert pearson(torch.ones(6), s) == 0.0  # a constant: 0, as CapCorr


def test_offset_rolls_of_a_code_rolling_one_unit_per_frame():
    D, C, S, pad = 10, 3, 8, 1
    t0 = torch.randn(5, C * D)
    t = torch.stack([roll(t0, max(0, l - pad), D) for l in range(S)], 1)  # frame pad..: rolled by l - pad
    observed, offsets = offset_rolls(t, D, pad, S - 2 * pad)
    assert torch.equal(observed, offsets) and offsets.shape == (5, S - 2 * pad)
    assert torch.equal(capsule_roll(t[:, pad], t[:, pad + 3], D), torch.full((5,), 3))
    with pytest.raises(ValueError, match="frames"):
        offset_rolls(t, D, pad, S)


def test_online_codes_of_the_causal_window_are_the_full_sequence_codes():
    """Eq 22 with a zero time boundary: t_l from frames 0..l is t_l, for any weights (here untrained);
    the forward window's is not (it reads frames l..l+2L-1)."""
    x = bump_sequences(6, CFG.toy.S, seed=2).x
    causal = untrained_toy(CFG.model("causal"), 0)
    with torch.no_grad():
        err = online_error(online_codes(causal, x), causal.encode(x))
        fwd = with_config(causal, window="forward", time_boundary="zero")
        ferr = online_error(online_codes(fwd, x), fwd.encode(x))
    assert err.shape == (CFG.toy.S,) and float(err.max()) <= CFG.online_tol
    assert float(ferr[0]) > 1e-2 and float(ferr[-1]) <= CFG.online_tol  # the last frame has no future to lose


def test_mnist_causal_model_encodes_online_and_its_scores_do_not_depend_on_the_batch():
    """C.4 at MNIST scale: chapter 10's MNIST causal model (smoke size, untrained) on uint8 colour sequences
    of chapter 4's shape: online codes equal the full codes (the forward window's weights do not), and the
    online pose scores are the same whatever the batch of sequences they are computed in."""
    from tvae_experiments.capsule_extensions import _online_errors, _online_pose

    cfg = config_for("10_capsule_extensions", "smoke")
    cm = cfg.capsules.mnist
    model = untrained_toy(cfg.mnist_causal_model(), 0)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (5, cm.S, model.cfg.in_dim), generator=g, dtype=torch.uint8)
    err, ferr = _online_errors(model, with_config(model, window="forward"), x)
    assert err.shape == (cm.S,) and float(err.max()) <= cfg.online_tol
    assert float(ferr.max()) > 1e-2
    test = SimpleNamespace(x=x, transform=torch.tensor([0, 1, 0, 1, 1]), transforms=("a", "b"))
    one, many = _online_pose(model, test, batch_size=2), _online_pose(model, test, batch_size=64)
    for k in ("a", "b"):
        assert one[k].traversal_bce == pytest.approx(many[k].traversal_bce, rel=1e-5)
        assert one[k].wrong_pose_bce == pytest.approx(many[k].wrong_pose_bce, rel=1e-5)


def test_scale_ramps_climb_one_level_per_frame_and_never_cross_the_wrap():
    """C.2's MNIST ramps, cut from A.9's cyclic scale sequences: consecutive levels (60% .. 126% in S levels),
    every frame one of the source sequence's own frames, levels starting anywhere in 0 .. S - frames."""
    from tvae_experiments.capsule_extensions import scale_ramps
    from tvae_experiments.data.sequences import mnist_grids, mnist_sequences

    S, frames = 8, 5
    g = torch.Generator().manual_seed(0)
    src = mnist_sequences(torch.rand(12, 784, generator=g), torch.arange(12) % 10, 40, S=S, seed=1, transforms=("scale",))
    r = scale_ramps(src, frames, seed=2)
    assert r.x.shape == (40, frames, src.x.shape[-1]) and r.step.shape == (40, frames)
    assert torch.equal(r.step - r.step[:, :1], torch.arange(frames).expand(40, frames))  # one level per frame
    assert int(r.step.min()) >= 0 and int(r.step.max()) <= S - 1 and set(r.step[:, 0].tolist()) == set(range(S - frames + 1))
    torch.testing.assert_close(r.factor, mnist_grids(S)["scale"].float()[r.step])  # the level's scale, no wrap
    assert (r.factor[:, 1:] > r.factor[:, :-1]).all()
    for i in range(40):  # each ramp frame is a frame of its source sequence with that scale
        j = int((src.factor[i] - r.factor[i, 0]).abs().argmin())
        assert torch.equal(r.x[i, 0], src.x[i, j])
    assert torch.equal(r.canonical, r.step == 0)
    with pytest.raises(ValueError, match="frames"):
        scale_ramps(src, S, seed=0)
    with pytest.raises(ValueError, match="scale"):
        scale_ramps(mnist_sequences(torch.rand(12, 784, generator=g), torch.arange(12) % 10, 4, S=S, seed=1,
                                    transforms=("rotation",)), frames)


def test_with_config_keeps_the_weights_and_changes_only_the_construction():
    causal = untrained_toy(CFG.model("causal"), 0)
    fwd = with_config(causal, window="forward", time_boundary="circular")
    assert fwd.cfg.window == "forward" and not fwd.training
    assert all(torch.equal(a, b) for a, b in zip(causal.state_dict().values(), fwd.state_dict().values()))
    assert fwd.cfg.to_dict() == ToyCapsulesConfig().model().to_dict()  # it is chapter 4's toy architecture


def test_the_chapter_models_are_the_toy_model_with_one_appendix_option():
    toy = CFG.toy.model().to_dict()
    assert CFG.model("forward").to_dict() == toy  # chapter 4's toy model, same cache key
    for section in EXTENSION_MODELS:
        m = CFG.model(section)
        diff = {k for k, v in m.to_dict().items() if toy.get(k) != v}
        assert diff <= {"window", "L", "time_boundary", "topography", "capsule_dim", "n_caps", "K", "roll", "alpha",
                        "in_dim", "capsule_boundary", "capsule_pad"}, (section, diff)
        untrained_toy(m, 0)  # every one builds
    assert CFG.model("causal").window == "causal" and CFG.model("lattice").capsule_dim == CFG.toy.S ** 2
    p = CFG.model("partial")
    assert (p.roll, p.alpha, p.capsule_dim * 2) == ("linear", 0.5, CFG.toy.S)
    nc = CFG.model("noncyclic")
    assert nc.capsule_pad >= nc.build_topography().unit_reach[1]  # C.2: no window leaves its padded capsule
    with pytest.raises(ValueError, match="section"):
        CFG.model("sideways")
    # toy scale, the same on every profile (700 steps are too few: causal CapCorr_x 0.70 at seed 0); only C.1's
    # MNIST section follows chapter 4's per-profile MNIST data and recipe
    for p in ("smoke", "cpu", "paper"):
        ch10 = config_for("10_capsule_extensions", p)
        assert ch10.toy == CFG.toy and ch10.model("partial") == CFG.model("partial")
        assert ch10.capsules.mnist == config_for("04_capsules", p).mnist


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_the_mnist_partial_roll_model_is_chapter_4s_tvae_with_half_size_capsules(profile):
    """C.1 at MNIST scale: D = S/2 units rolled alpha = D/S per frame (one turn per period), twice the
    capsules (same C*D units), everything else chapter 4's TVAE L = S/3; the control rolls whole units."""
    cfg = config_for("10_capsule_extensions", profile)
    cm = cfg.capsules.mnist
    ch4 = cm.model("tvae", cm.L_of(1 / 3)).to_dict()
    lin, whole = cfg.mnist_model(), cfg.mnist_model("integer")
    assert (lin.capsule_dim, lin.n_caps * lin.capsule_dim, lin.roll, lin.alpha) == (cm.S // 2, cm.n_caps * cm.S,
                                                                                   "linear", 0.5)
    assert lin.alpha * cm.S == lin.capsule_dim
    assert {k for k, v in lin.to_dict().items() if ch4.get(k) != v} == {"capsule_dim", "n_caps", "roll", "alpha"}
    assert {k for k, v in whole.to_dict().items() if ch4.get(k) != v} == {"capsule_dim", "n_caps"}
    with pytest.raises(ValueError, match="roll"):
        cfg.mnist_model("fourier")
    # C.3 at MNIST scale: one S x S lattice per capsule (a period is one turn along either axis)
    lat = cfg.mnist_lattice_model()
    assert (lat.topography, lat.capsule_dim) == ("temporal2d", cm.S ** 2)
    assert lat.n_caps == max(1, cm.n_caps * cm.S // cm.S ** 2)
    assert {k for k, v in lat.to_dict().items() if ch4.get(k) != v} <= {"topography", "capsule_dim", "n_caps"}
    assert lat.build_topography().side == cm.S
    # C.4 at MNIST scale: chapter 4's TVAE with Eq 22's window (t_l reads frames l-L .. l, nothing wraps)
    causal = cfg.mnist_causal_model()
    assert {k: v for k, v in causal.to_dict().items() if ch4.get(k) != v} == {"window": "causal", "time_boundary": "zero"}
    assert causal.L == cm.L_of(1 / 3)
    wide = cfg.mnist_causal_model(wide=True)  # as many frames as the forward window: L' + 1 = 2L
    assert {k: v for k, v in wide.to_dict().items() if ch4.get(k) != v} == {"window": "causal", "time_boundary": "zero",
                                                                             "L": 2 * causal.L - 1}
    # C.2 at MNIST scale: Eq 7's centred window on padded ramps; non-cyclic = zero boundaries + padded capsules
    for kind, extra in (("cyclic", set()), ("noncyclic", {"time_boundary", "capsule_boundary", "capsule_pad"})):
        ramp = cfg.mnist_ramp_model(kind)
        assert {k for k, v in ramp.to_dict().items() if ch4.get(k) != v} == {"window", "L"} | extra
        assert (ramp.window, ramp.L, ramp.capsule_dim) == ("centered", cfg.ramp_L, cm.S)
    nc = cfg.mnist_ramp_model("noncyclic")
    assert nc.capsule_pad >= nc.build_topography().unit_reach[1]  # no window leaves its padded capsule
    with pytest.raises(ValueError, match="kind"):
        cfg.mnist_ramp_model("helical")


def test_chapter_10_plans_its_seven_mnist_models_on_their_data():
    from tvae_experiments import plan

    jobs = plan.training_plan("smoke", chapters=["10_capsule_extensions"])
    assert sorted(j.name for j in jobs) == ["caps-mnist-causal-s0", "caps-mnist-causal-wide-s0", "caps-mnist-lattice-s0",
                                            "caps-mnist-partial-integer-s0", "caps-mnist-partial-linear-s0",
                                            "caps-mnist-ramps-cyclic-s0", "caps-mnist-ramps-noncyclic-s0",
                                            "caps-mnist-tvae-L6-s0"]  # and chapter 4's TVAE, its reference
    kinds = {j.name: (j.data.kind, j.part) for j in jobs}
    assert kinds["caps-mnist-lattice-s0"] == ("rotation+color", "rotation+color")
    assert kinds["caps-mnist-partial-linear-s0"] == kinds["caps-mnist-causal-s0"] == ("capsules", "mnist")
    assert kinds["caps-mnist-ramps-noncyclic-s0"] == ("scale-ramps", "scale-ramps")
    ramps = next(j for j in jobs if "ramps-cyclic" in j.name)
    assert "C.2 ramps of 9 frames" in ramps.data_id and ramps.data_id.endswith("|pad=3")
    lattice = next(j for j in jobs if "lattice" in j.name)
    assert "rotation/color" in lattice.data_id  # its own rotation-and-colour sequences


def test_bump_sequences_defaults_are_unchanged_and_non_cyclic_motion_stays_off_the_edge():
    a = bump_sequences(20, 6, seed=5)
    b = bump_sequences(20, 6, seed=5, size=6, cyclic=True)
    assert torch.equal(a.x, b.x) and a.source == b.source and "non-cyclic" not in a.source
    d = bump_sequences(40, 6, 1.0, seed=3, size=10, cyclic=False)
    assert d.x.shape == (40, 6, 100) and d.frame_shape == (1, 10, 10) and "non-cyclic" in d.source
    moving = d.latents[torch.arange(40), :, d.transform]  # (N, S) the moving coordinate
    assert torch.equal(moving[:, 1:] - moving[:, :-1], torch.ones(40, 5))  # one pixel per frame, no wrap
    assert int(moving.min()) >= 1 and int(moving.max()) <= 8  # the plus (radius 1) never touches the edge
    assert torch.equal(d.step, moving.long() - 1) and torch.equal(d.canonical, d.step == 0)
    img = d.x.reshape(40, 6, 10, 10)
    assert torch.equal(img.sum((-1, -2)), torch.full((40, 6), 5.0))  # a 5-pixel plus in every frame
    with pytest.raises(ValueError, match="cyclic=False"):
        bump_sequences(4, 6, size=10)
    with pytest.raises(ValueError, match="too small"):
        bump_sequences(4, 6, size=7, cyclic=False)


class _CodesAsFrames(torch.nn.Module):
    """A 'model' whose code of a frame is the frame itself (planted codes go in as x); decodes to 0 logits."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # a parameter: the scoring helpers read its device

    def encode(self, x):
        return x

    def decode(self, t):
        return torch.zeros_like(t)


def test_roll_scores_read_frames_after_the_first_and_give_a_constant_code_no_correlation():
    """C.2's measure (_roll_scores): corr and exact over the original frames after frame 0 (the reference)."""
    from tvae_experiments.capsule_extensions import _roll_scores

    N, S, pad, D, C = 200, 6, 1, 10, 2
    g = torch.Generator().manual_seed(0)
    test = SimpleNamespace(transform=torch.arange(N) % 2, transforms=("x", "y"), x=torch.zeros(N, S, C * D))
    t0 = torch.randn(N, C * D, generator=g)
    shifts = {"exact": torch.arange(-pad, S + pad).clamp(0, S - 1).expand(N, -1),  # one unit per original frame
              "random": torch.cat([torch.zeros(N, pad + 1, dtype=torch.long),
                                   torch.randint(0, D, (N, S - 1 + pad), generator=g)], 1),  # frames 1.. at random
              "constant": torch.zeros(N, S + 2 * pad, dtype=torch.long)}
    scores = {}
    for name, sh in shifts.items():
        codes = torch.stack([roll(t0, sh[:, l], D) for l in range(S + 2 * pad)], 1)  # (N, S + 2 pad, C * D)
        scores[name] = _roll_scores(_CodesAsFrames(), codes, test, D, pad, S)
    corr, exact, direct = scores["exact"]
    assert corr == {"x": pytest.approx(1.0), "y": pytest.approx(1.0)} and exact == {"x": 1.0, "y": 1.0}
    assert direct == pytest.approx(C * D * torch.log(torch.tensor(2.0)).item())  # 0 logits on 0 pixels: log 2 each
    corr, exact, _ = scores["random"]
    assert all(abs(c) < 0.15 for c in corr.values()) and all(e < 0.2 for e in exact.values())
    # with frame 0's (0, 0) pair the same random codes would correlate: what the measure leaves out
    obs, off = offset_rolls(torch.stack([roll(t0, shifts["random"][:, l], D) for l in range(S + 2 * pad)], 1), D, pad, S)
    assert pearson(obs, off) > max(corr.values()) + 0.1 and pearson(obs, off) > 0.15  # with frame 0: fails the 0.15 bound
    corr, exact, _ = scores["constant"]
    assert corr == {"x": 0.0, "y": 0.0} and exact == {"x": 0.0, "y": 0.0}
