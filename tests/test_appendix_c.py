"""Appendix C's proposed extensions: causal coherence (C.4, Eq 22), non-cyclic capsules (C.2),
partial rolls in the topography and in ObservedRoll (C.1, Eq 19-20), two-dimensional capsules
(C.3, Eq 21).  Known answers, fast op == dense W, the defaults untouched, validation errors, and a
tiny TVAE forward pass with each new AppendixModelConfig option."""
import itertools
import math
import re

import pytest
import torch

from tvae_core import (CapsuleTopography, TemporalTopography, TemporalTopography2D, capcorr, capsule_roll,
                       crop_capsules, fourier_roll, linear_roll, pad_capsules, pad_sequence_ends, partial_capsule_roll,
                       partial_roll, roll, roll2d, temporal_W, tpot)


def _rand(*shape, seed=0, dtype=torch.float64):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _fast_equals_dense(topo, S, B=2, seed=0):
    v = _rand(B, S, topo.n_in, seed=seed)
    expected = (v.reshape(B, -1) @ topo.dense(S).double().T).reshape(B, S, topo.n)
    torch.testing.assert_close(topo(v), expected, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ C.4 causal coherence, Eq 22

def test_causal_window_offsets_are_eq22s():
    assert list(TemporalTopography(2, 5, 1, 2, window="causal").offsets) == [-2, -1, 0]  # L+1 frames
    assert list(TemporalTopography(2, 5, 1, 0, window="causal").offsets) == [0]


@pytest.mark.parametrize("C,D,K,L,S", [(2, 5, 3, 1, 5), (1, 7, 1, 2, 6), (2, 6, 2, 3, 7), (1, 4, 3, 4, 4)])
@pytest.mark.parametrize("mode,tb", list(itertools.product(["shifting", "stationary"], ["circular", "zero"])))
def test_causal_fast_equals_dense(C, D, K, L, S, mode, tb):
    topo = TemporalTopography(C, D, K, L, mode, tb, "causal")
    if tb == "circular" and L + 1 > S:
        with pytest.raises(ValueError, match="counted twice"):
            topo.dense(S)
        return
    _fast_equals_dense(topo, S)


def test_causal_is_eq22_term_by_term():
    """(W v)_{l,c,i} = sum_{delta=-L..0} sum_k v_{l+delta, c, i+delta+k}, no frame after l."""
    C, D, K, L, S = 2, 5, 3, 2, 6
    v = _rand(1, S, C * D, seed=3)[0]
    want = torch.zeros_like(v)
    for l, c, i in itertools.product(range(S), range(C), range(D)):
        for delta in range(-L, 1):
            if l + delta >= 0:
                for k in (-1, 0, 1):
                    want[l, c * D + i] += v[l + delta, c * D + (i + delta + k) % D]
    torch.testing.assert_close(TemporalTopography(C, D, K, L, "shifting", "zero", "causal")(v[None])[0], want)


@pytest.mark.parametrize("L", [1, 2])
def test_causal_T_ignores_the_future_and_sees_the_past(L):
    """T_l = (Z_l - mu) / sqrt(sum_{delta<=0} ...): perturbing any U_{l'} with l' > l leaves T_l unchanged,
    perturbing U_{l-1} changes it, U_{l-L-1} is outside its window."""
    C, D, S = 2, 6, 7
    topo = TemporalTopography(C, D, 3, L, "shifting", "zero", "causal")
    z, u = torch.randn(3, S, C * D, dtype=torch.float64), torch.randn(3, S, C * D, dtype=torch.float64)
    T = tpot(z, u, topo, mu=0.5)
    for f in range(S):  # perturb frame f of U
        u2 = u.clone()
        u2[:, f] += 1.0 + torch.rand(3, C * D, dtype=torch.float64)
        T2 = tpot(z, u2, topo, mu=0.5)
        assert torch.equal(T2[:, :f], T[:, :f])  # every earlier frame: the future is not read
        assert not torch.isclose(T2[:, f], T[:, f]).any()  # frame f sees U_f (delta = 0)
        if f + 1 < S:
            assert not torch.equal(T2[:, f + 1], T[:, f + 1])  # T_{f+1} sees U_f (delta = -1)
        if f + L + 1 < S:
            assert torch.equal(T2[:, f + L + 1:], T[:, f + L + 1:])  # window of L+1 frames only
    # the first frame has no past: its row of W holds K terms (delta = 0 only); frame L holds K*(L+1)
    rows = topo.dense(S).sum(1).reshape(S, C * D)
    assert torch.equal(rows[0], torch.full((C * D,), 3.0)) and torch.equal(rows[L], torch.full((C * D,), 3.0 * (L + 1)))


def test_causal_with_circular_time_reads_the_end_of_the_sequence():
    """Documented: with cyclic sequences T_0's past is the end of the sequence (not causal in time)."""
    topo = TemporalTopography(1, 4, 1, 1, "shifting", "circular", "causal")
    W = topo.dense(4)
    assert W[0, 3 * 4 + 3] == 1  # T_{0,0} reads U_{-1 = 3, 0 - 1 = 3}


# ------------------------------------------------------------------ C.2 non-cyclic capsules

@pytest.mark.parametrize("C,D,K", [(1, 5, 1), (3, 6, 3), (2, 7, 4), (2, 5, 5)])
def test_noncyclic_capsule_topography(C, D, K):
    topo = CapsuleTopography(C, D, K, "zero")
    v = _rand(4, C * D)
    torch.testing.assert_close(topo(v), v @ topo.dense().double().T)
    W = topo.dense()
    lo, hi = K // 2, K - 1 - K // 2  # interior units: the window stays inside the capsule
    cyc = CapsuleTopography(C, D, K).dense()
    for c in range(C):
        for i in range(lo, D - hi):
            assert torch.equal(W[c * D + i], cyc[c * D + i])
    assert W[0].sum() == K - lo  # unit 0 loses the lo units to its left
    assert W[0, D - 1] == (1 if D - 1 <= hi else 0) and cyc[0, D - 1] == (1 if lo >= 1 or D - 1 <= hi else 0)  # no wrap


@pytest.mark.parametrize("C,D,K,L,S", [(2, 7, 3, 1, 5), (1, 9, 1, 2, 6), (2, 8, 2, 1.5, 6), (1, 6, 3, 3, 7)])
@pytest.mark.parametrize("mode,tb,window", [("shifting", "circular", "centered"), ("shifting", "zero", "forward"),
                                            ("stationary", "circular", "forward"), ("shifting", "zero", "causal"),
                                            ("shifting", "circular", "code")])
def test_noncyclic_fast_equals_dense(C, D, K, L, S, mode, tb, window):
    if window in ("centered", "causal") and not float(L).is_integer():
        pytest.skip("needs an integer L")
    for pad in (0, 1, 3):
        topo = TemporalTopography(C, D, K, L, mode, tb, window, capsule_boundary="zero", capsule_pad=pad)
        if tb == "circular" and len(topo.offsets) > S:
            return
        assert topo.n_in == C * (D + 2 * pad)
        _fast_equals_dense(topo, S, seed=pad)
    banded = TemporalTopography(C, D, 3, 1, "shifting", "zero", "centered", "code", capsule_boundary="zero")
    _fast_equals_dense(banded, S)


@pytest.mark.parametrize("mode,window,K,L", [("shifting", "centered", 3, 1), ("shifting", "forward", 1, 1.5),
                                            ("stationary", "centered", 5, 2), ("shifting", "causal", 3, 2),
                                            ("shifting", "centered", 2, 2)])
def test_noncyclic_equals_cyclic_eq9_on_interior_units(mode, window, K, L):
    """Units whose whole neighbourhood (unit_reach) stays inside the capsule get Eq 9's T exactly;
    the units at the ends lose terms (smaller denominators, larger |T|)."""
    C, D, S = 2, 12, 6
    cyc = TemporalTopography(C, D, K, L, mode, "circular", window)
    lin = TemporalTopography(C, D, K, L, mode, "circular", window, capsule_boundary="zero")
    left, right = lin.unit_reach
    assert 0 < left + right and D - right > left
    z, u = torch.randn(2, S, C * D, dtype=torch.float64), torch.randn(2, S, C * D, dtype=torch.float64)
    t_cyc = tpot(z, u, cyc, mu=0.3).reshape(2, S, C, D)
    t_lin = tpot(z, u, lin, mu=0.3).reshape(2, S, C, D)
    torch.testing.assert_close(t_lin[..., left:D - right], t_cyc[..., left:D - right], rtol=1e-12, atol=1e-12)
    ends = list(range(left)) + list(range(D - right, D))
    assert not torch.isclose(t_lin[..., ends], t_cyc[..., ends]).all(-1).any()  # every end unit changes somewhere
    v = u.pow(2)
    assert (lin(v) <= cyc(v) + 1e-12).all()  # the non-cyclic W drops terms, never adds them


def test_unit_reach_is_the_papers_L_for_the_centred_window():
    assert TemporalTopography(2, 9, 1, 2).unit_reach == (2, 2)  # C.2: pad L
    assert TemporalTopography(2, 9, 3, 2).unit_reach == (3, 3)  # plus K//2 for a window of K units
    assert TemporalTopography(2, 9, 1, 2, window="forward").unit_reach == (0, 3)
    assert TemporalTopography(2, 9, 1, 2, window="causal").unit_reach == (2, 0)
    assert TemporalTopography(2, 9, 3, 2, "stationary").unit_reach == (1, 1)


@pytest.mark.parametrize("K,L,window", [(1, 2, "centered"), (3, 1, "centered"), (1, 1.5, "forward")])
def test_padded_capsules_are_eq9_on_the_padded_U_without_wrapping(K, L, window):
    """C.2: U has L extra units at both ends of every capsule; T (of the unpadded size) is built as in
    Eq 9.  With pad >= unit_reach no window is cut and none wraps: the same numbers as the cyclic Eq 9
    on capsules of D + 2P units, cropped to the middle D."""
    C, D, S = 2, 5, 6
    P = max(TemporalTopography(C, D, K, L, window=window).unit_reach)
    topo = TemporalTopography(C, D, K, L, "shifting", "circular", window, capsule_boundary="zero", capsule_pad=P)
    big = TemporalTopography(C, D + 2 * P, K, L, "shifting", "circular", window)
    v = _rand(3, S, C * (D + 2 * P), seed=7)
    torch.testing.assert_close(topo(v), crop_capsules(big(v), P, D), rtol=1e-12, atol=1e-12)
    assert topo.dense(S).shape == (S * C * D, S * C * (D + 2 * P))
    # every T unit sees the full 3-term-per-offset window: rows of W sum to K * frames
    assert torch.equal(topo.dense(S).sum(1), torch.full((S * C * D,), float(K * len(topo.offsets))))
    z = torch.randn(3, S, C * D, dtype=torch.float64)
    u = pad_capsules(torch.randn(3, S, C * D, dtype=torch.float64), P, D, fill=torch.randn(3, S, C * 2 * P))
    assert tpot(z, u, topo).shape == z.shape


def test_pad_capsules_crop_and_sequence_ends():
    x = torch.arange(1.0, 7.0)  # two capsules [1, 2, 3], [4, 5, 6]
    assert pad_capsules(x, 1, 3).tolist() == [0, 1, 2, 3, 0, 0, 4, 5, 6, 0]
    fill = torch.tensor([-1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0, -8.0])  # capsule 0: left -1 -2, right -3 -4
    assert pad_capsules(x, 2, 3, fill=fill).tolist() == [-1, -2, 1, 2, 3, -3, -4, -5, -6, 4, 5, 6, -7, -8]
    assert torch.equal(crop_capsules(pad_capsules(x, 2, 3, fill=fill), 2, 3), x)
    assert pad_capsules(x, 0, 3).equal(x)
    seq = torch.arange(3.0)[None, :, None].expand(2, 3, 4)  # (B, S, P)
    out = pad_sequence_ends(seq, 2)
    assert out.shape == (2, 7, 4) and out[0, :, 0].tolist() == [0, 0, 0, 1, 2, 2, 2]
    assert pad_sequence_ends(torch.arange(3.0), 1, dim=0).tolist() == [0, 0, 1, 2, 2]
    with pytest.raises(ValueError, match=re.escape("fill has last axis of size 3, but pad=2 needs C*2*pad = 8")):
        pad_capsules(x, 2, 3, fill=torch.zeros(3))
    with pytest.raises(ValueError, match="pad must be >= 0, got -1"):
        pad_sequence_ends(seq, -1)


# ------------------------------------------------------------------ C.1 partial rolls, Eq 19-20

def test_linear_roll_is_eq19_repeated_with_binomial_weights():
    D, a = 7, 0.3
    x = torch.randn(4, 2 * D, dtype=torch.float64)
    y = x
    for _ in range(3):
        y = partial_roll(y, a, D)
    torch.testing.assert_close(linear_roll(x, 3, a, D), y)
    closed = sum(math.comb(3, j) * a ** j * (1 - a) ** (3 - j) * roll(x, j, D) for j in range(4))
    torch.testing.assert_close(linear_roll(x, 3, a, D), closed)
    mirrored = sum(math.comb(2, j) * a ** j * (1 - a) ** (2 - j) * roll(x, -j, D) for j in range(3))
    torch.testing.assert_close(linear_roll(x, -2, a, D), mirrored)
    assert torch.equal(linear_roll(x, 0, a, D), x)
    for s in (-3, 2, 9):
        assert torch.equal(linear_roll(x, s, 1.0, D), roll(x, s, D))
    with pytest.raises(ValueError, match="alpha=0 is not allowed; linear_roll needs 0 < alpha <= 1"):
        linear_roll(x, 1, 0, D)


def test_fourier_roll_takes_one_shift_per_row():
    x = torch.randn(5, 3, 2 * 7, dtype=torch.float64)
    shifts = torch.tensor([0.0, 0.5, -1.25])
    out = fourier_roll(x, shifts, 7)
    for j, s in enumerate(shifts.tolist()):
        torch.testing.assert_close(out[:, j], fourier_roll(x[:, j], s, 7))


@pytest.mark.parametrize("window,L,tb", [("centered", 2, "circular"), ("forward", 1.5, "zero"), ("causal", 2, "zero"),
                                         ("code", 2, "circular")])
def test_alpha_one_is_the_shifting_mode(window, L, tb):
    """alpha = 1: Eq 19 is Roll_1 and the Fourier shift by delta is Roll_delta; W is Eq 9's W."""
    C, D, K, S = 2, 6, 3, 5
    base = TemporalTopography(C, D, K, L, "shifting", tb, window)
    lin = TemporalTopography(C, D, K, L, "shifting", tb, window, roll="linear", alpha=1.0)
    fou = TemporalTopography(C, D, K, L, "shifting", tb, window, roll="fourier", alpha=1.0)
    assert torch.equal(lin.dense(S), base.dense(S))  # the same matrix, entry for entry
    torch.testing.assert_close(fou.dense(S), base.dense(S), rtol=0, atol=1e-6)
    v = _rand(3, S, C * D, seed=1)
    torch.testing.assert_close(lin(v), base(v), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fou(v), base(v), rtol=1e-12, atol=1e-12)
    lin0 = TemporalTopography(C, D, K, L, "shifting", tb, window, capsule_boundary="zero", roll="linear")
    assert torch.equal(lin0.dense(S), TemporalTopography(C, D, K, L, "shifting", tb, window,
                                                        capsule_boundary="zero").dense(S))


@pytest.mark.parametrize("C,D,K,L,S", [(2, 5, 3, 1, 5), (1, 8, 1, 2, 6), (2, 6, 2, 1.5, 6), (1, 7, 3, 3, 7)])
@pytest.mark.parametrize("kind,alpha,cb,tb,window", [("linear", 0.5, "circular", "circular", "centered"),
                                                     ("linear", 0.3, "zero", "zero", "forward"),
                                                     ("fourier", 0.5, "circular", "circular", "forward"),
                                                     ("fourier", 0.25, "circular", "zero", "causal"),
                                                     ("linear", 0.7, "zero", "circular", "causal")])
def test_partial_roll_fast_equals_dense(C, D, K, L, S, kind, alpha, cb, tb, window):
    if window in ("centered", "causal") and not float(L).is_integer():
        pytest.skip("needs an integer L")
    topo = TemporalTopography(C, D, K, L, "shifting", tb, window, roll=kind, alpha=alpha, capsule_boundary=cb)
    if tb == "circular" and len(topo.offsets) > S:
        return
    _fast_equals_dense(topo, S)
    if cb == "circular":  # each roll's weights sum to 1: rows of W sum to K * frames
        frames = torch.tensor([sum(0 <= l + d < S for d in topo.offsets) if tb == "zero" else len(topo.offsets)
                               for l in range(S)], dtype=torch.float32)
        torch.testing.assert_close(topo.dense(S).sum(1), (K * frames).repeat_interleave(C * D), rtol=0, atol=1e-5)


def test_linear_partial_window_known_answer():
    """alpha = 1/2, L = 1, K = 1: the window at frame l+1 sits half a unit on, at l-1 half a unit back:
    (W v)_{l,i} = v_{l,i} + (v_{l+1,i} + v_{l+1,i+1})/2 + (v_{l-1,i} + v_{l-1,i-1})/2."""
    D, S = 5, 5
    v = _rand(S, D, seed=2)
    want = torch.stack([torch.stack([v[l, i] + (v[(l + 1) % S, i] + v[(l + 1) % S, (i + 1) % D]) / 2
                                     + (v[l - 1, i] + v[l - 1, (i - 1) % D]) / 2 for i in range(D)]) for l in range(S)])
    torch.testing.assert_close(TemporalTopography(1, D, 1, 1, roll="linear", alpha=0.5)(v[None])[0], want)


def test_fourier_partial_window_can_go_negative_linear_cannot():
    """Why ModelConfig refuses roll='fourier': the phase-shifted U^2 of a single active unit rings
    below zero, so sqrt(W U^2) can be undefined; Eq 19's convex weights keep W non-negative."""
    v = torch.zeros(1, 5, 6, dtype=torch.float64)
    v[0, 2, 3] = 1.0  # one unit of one frame
    assert TemporalTopography(1, 6, 1, 1, roll="fourier", alpha=0.5)(v).min() < -0.1
    assert TemporalTopography(1, 6, 1, 1, roll="linear", alpha=0.5).dense(5).min() >= 0


def test_temporal_W_passes_the_appendix_options():
    W = temporal_W(1, 5, 1, 1, 4, roll="linear", alpha=0.5, capsule_boundary="zero", capsule_pad=1)
    assert W.shape == (4 * 5, 4 * 7)


def test_partial_capsule_roll_at_alpha_one_is_eq16():
    g = torch.Generator().manual_seed(0)
    for D in (6, 7):
        a, b = torch.randn(60, 3 * D, generator=g), torch.randn(60, 3 * D, generator=g)
        for kind in ("fourier", "linear"):
            assert torch.equal(partial_capsule_roll(a, b, D, 1.0, kind), capsule_roll(a, b, D).float())
        t = torch.randn(40, 3 * D, generator=g)
        r = torch.randint(0, D, (40,), generator=g)
        assert torch.equal(partial_capsule_roll(t, roll(t, r, D), D, 1.0), r.float())


@pytest.mark.parametrize("shift", [0.5, 3.25, 4.75, 8.0])
def test_partial_capsule_roll_recovers_a_planted_fractional_shift(shift):
    D = 9  # odd D: the Fourier roll is an exact phase shift (no Nyquist term)
    t = torch.randn(30, 4 * D, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = partial_capsule_roll(t, fourier_roll(t, shift, D), D, 0.25)
    assert torch.equal(out, torch.full((30,), shift, dtype=torch.float64))
    # a grid of half units finds the nearest grid point, the integer grid (Eq 16) cannot see 0.5
    coarse = partial_capsule_roll(t, fourier_roll(t, shift, D), D, 0.5)
    assert (coarse - shift).abs().max() <= 0.25
    # even D: half shifts still exact
    t8 = torch.randn(30, 4 * 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert torch.equal(partial_capsule_roll(t8, fourier_roll(t8, 2.5, 8), 8, 0.5), torch.full((30,), 2.5, dtype=torch.float64))


def test_partial_capsule_roll_linear_is_eq20_term_by_term():
    """Eq 20 with Eq 19: argmax_j t_b . Roll_alpha^j(t_a) per capsule, mode over capsules."""
    D, C, a = 6, 3, 0.5
    g = torch.Generator().manual_seed(3)
    ta, tb = torch.randn(25, C * D, generator=g, dtype=torch.float64), torch.randn(25, C * D, generator=g, dtype=torch.float64)
    G = int(D / a)
    scores = torch.stack([(linear_roll(ta, j, a, D) * tb).reshape(25, C, D).sum(-1) for j in range(G)], 1)  # (N, G, C)
    votes = torch.nn.functional.one_hot(scores.argmax(1), G).sum(1).argmax(-1)
    assert torch.equal(partial_capsule_roll(ta, tb, D, a, "linear"), votes.double() * a)


def test_capcorr_with_partial_rolls():
    D = 9
    t = torch.randn(50, 2 * D, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    shift = torch.randint(0, 4 * D, (50,), generator=torch.Generator().manual_seed(5)) * 0.25
    omega = fourier_roll(t, shift, D)
    assert capcorr(t, omega, shift, D, alpha=0.25) == pytest.approx(1.0)
    assert capcorr(t, roll(t, 3, D), torch.full((50,), 3.0), D) == capcorr(t, roll(t, 3, D), torch.full((50,), 3.0), D, alpha=None)
    with pytest.raises(ValueError, match="roll='integer' is not allowed; choose one of: 'fourier', 'linear'"):
        partial_capsule_roll(t, t, D, 0.5, "integer")
    with pytest.raises(ValueError, match="alpha=0 is not allowed"):
        partial_capsule_roll(t, t, D, 0)
    with pytest.raises(ValueError, match="t_b's last axis has size 9"):
        partial_capsule_roll(t, t[:, :9], D, 0.5)


# ------------------------------------------------------------------ C.3 two-dimensional capsules, Eq 21

def test_roll2d_is_torch_roll_along_one_lattice_axis():
    C, s = 2, 4
    x = torch.randn(3, 5, C * s * s)
    grid = x.reshape(3, 5, C, s, s)
    for axis, dim in ((0, -2), (1, -1)):
        for sh in (-3, 1, 2, 5):
            assert torch.equal(roll2d(x, sh, s, axis), grid.roll(sh, dims=dim).reshape(x.shape))
        assert torch.equal(roll2d(roll2d(x, 1, s, axis), 2, s, axis), roll2d(x, 3, s, axis))  # composes
        assert torch.equal(roll2d(x, s, s, axis), x)  # side rolls: identity
    assert torch.equal(roll2d(x, 2, s, 1), roll(x, 2, s))  # axis 1 is the 1-D roll on rows of side units
    r0 = roll2d(x, 1, s, 0).reshape(3, 5, C, s, s)
    assert torch.equal(r0.sort(-2).values, grid.sort(-2).values)  # axis 0: every column keeps its units
    # one shift and one axis per row
    shifts, axes = torch.tensor([0, 1, 2, 3, 1]), torch.tensor([0, 1, 1, 0, 0])
    out = roll2d(x, shifts, s, axes)
    for j in range(5):
        assert torch.equal(out[:, j], roll2d(x[:, j], int(shifts[j]), s, int(axes[j])))
    with pytest.raises(ValueError, match="axis=2 is not allowed; choose one of: 0, 1"):
        roll2d(x, 1, s, 2)
    with pytest.raises(ValueError, match="axis must hold only the lattice axes"):
        roll2d(x, 1, s, torch.tensor([0, 2, 1, 0, 0]))
    with pytest.raises(ValueError, match="capsule_dim=9 does not divide the size 32"):
        roll2d(x, 1, 3, 0)


def _along_1d(v, C, s, axis, **kw):
    """The 1-D shifting topography run along one axis of the lattices (C*s capsules of s units)."""
    g = v.reshape(*v.shape[:-1], C, s, s)
    if axis == 0:
        g = g.transpose(-1, -2)
    out = TemporalTopography(C * s, s, **kw)(g.reshape(v.shape)).reshape(g.shape)
    return (out.transpose(-1, -2) if axis == 0 else out).reshape(v.shape)


@pytest.mark.parametrize("kw", [dict(K=3, L=1), dict(K=1, L=2, window="causal", time_boundary="zero"),
                                dict(K=2, L=1.5, window="forward", capsule_boundary="zero"),
                                dict(K=3, L=1, roll="linear", alpha=0.5), dict(K=3, L=1, mode="stationary")])
def test_2d_topography_is_the_1d_one_along_the_axis_and_fast_equals_dense(kw):
    C, s, S = 2, 4, 5
    topo = TemporalTopography2D(C, s, **kw)
    v = _rand(3, S, C * s * s, seed=5)
    for axis in (0, 1):
        torch.testing.assert_close(topo(v, axis), _along_1d(v, C, s, axis, **kw))
        torch.testing.assert_close(topo(v, axis), (v.reshape(3, -1) @ topo.dense(S, axis).double().T).reshape(v.shape))
    # K_cross = K: a K x K box in the lattice (the other axis summed too)
    box = TemporalTopography2D(C, s, K_cross=3, **kw)
    for axis in (0, 1):
        torch.testing.assert_close(box(v, axis), (v.reshape(3, -1) @ box.dense(S, axis).double().T).reshape(v.shape))


def test_2d_dense_sums_along_its_axis_only():
    """W^0 links (r, q) to (r', q) only, W^1 to (r, q') only (Eq 21: 'not at all along the others')."""
    C, s, S = 1, 5, 3
    topo = TemporalTopography2D(C, s, K=3, L=1)
    W0, W1 = topo.dense(S, 0), topo.dense(S, 1)
    rows, cols = W0.nonzero().T
    assert torch.equal(rows % s, cols % s)  # same column q
    rows, cols = W1.nonzero().T
    assert torch.equal((rows % (s * s)) // s, (cols % (s * s)) // s)  # same row r


def test_eq21_group_sparse_denominator():
    C, s, S = 2, 3, 4
    topo = TemporalTopography2D(C, s, K=3, L=1)
    z, u = torch.randn(2, S, C * s * s, dtype=torch.float64), torch.randn(2, S, C * s * s, dtype=torch.float64)
    v = u.pow(2).reshape(2, -1)
    den = sum((v @ topo.dense(S, a).double().T).sqrt() for a in (0, 1)).reshape(z.shape)
    torch.testing.assert_close(tpot(z, u, topo, mu=0.2), (z - 0.2) / den)


def test_2d_axis_per_sequence():
    C, s, S = 2, 3, 4
    topo = TemporalTopography2D(C, s, K=3, L=1)
    v = _rand(4, S, C * s * s, seed=6)
    axes = torch.tensor([0, 1, 1, 0])
    out = topo(v, axes)
    for b in range(4):
        torch.testing.assert_close(out[b], topo(v[b:b + 1], int(axes[b]))[0])
    with pytest.raises(ValueError, match="axis must hold only the lattice axes"):
        topo(v, torch.tensor([0, 1, 2, 0]))


@pytest.mark.parametrize("axis", [0, 1])
def test_2d_denominator_rolls_along_its_axis(axis):
    """As Eq 13 asks of a sequence transformed along axis d: with a window covering the cyclic sequence
    (S = side = 2L+1) the denominator of frame l is the frame-0 one rolled by l along d (roll2d)."""
    C, s = 2, 5
    topo = TemporalTopography2D(C, s, K=3, L=2)
    v = topo(_rand(2, s, C * s * s, seed=8), axis)
    torch.testing.assert_close(v, roll2d(v[:, :1].expand(-1, s, -1), torch.arange(s), s, axis))


# ------------------------------------------------------------------ validation

CASES = [
    (lambda: TemporalTopography(2, 5, 1, 1.5, window="causal"), "L=1.5 is not allowed with window='causal' (L+1 frames)"),
    (lambda: TemporalTopography(2, 3, 1, 4, window="causal").dense(4),
     "L=4 with window='causal' spans 5 frames but the sequence has S=4: with circular time frames would be counted "
     "twice; use L <= 3 (or time_boundary='zero')"),
    (lambda: TemporalTopography(2, 5, capsule_boundary="reflect"),
     "capsule_boundary='reflect' is not allowed; choose one of: 'circular', 'zero'"),
    (lambda: CapsuleTopography(2, 5, capsule_boundary="open"), "capsule_boundary='open' is not allowed"),
    (lambda: TemporalTopography(2, 5, capsule_pad=2), "capsule_pad=2 needs capsule_boundary='zero'"),
    (lambda: TemporalTopography(2, 5, capsule_boundary="zero", capsule_pad=-1), "capsule_pad must be >= 0, got -1"),
    (lambda: TemporalTopography(2, 5, roll="cubic"), "roll='cubic' is not allowed; choose one of: 'integer', 'linear', 'fourier'"),
    (lambda: TemporalTopography(2, 5, roll="linear", alpha=0), "alpha=0 is not allowed; alpha must satisfy 0 < alpha <= 1"),
    (lambda: TemporalTopography(2, 5, roll="linear", alpha=1.5), "alpha=1.5 is not allowed"),
    (lambda: TemporalTopography(2, 5, alpha=0.5), "alpha=0.5 needs roll='linear' or roll='fourier'"),
    (lambda: TemporalTopography(2, 5, mode="stationary", roll="linear", alpha=0.5), "roll='linear' needs mode='shifting'"),
    (lambda: TemporalTopography(2, 5, 3, roll="linear", alpha=0.5, band="code"), "roll='linear' needs band='full'"),
    (lambda: TemporalTopography(2, 5, roll="fourier", alpha=0.5, capsule_boundary="zero"),
     "roll='fourier' is a periodic phase shift: it needs capsule_boundary='circular'"),
    (lambda: TemporalTopography(2, 5, roll="linear", alpha=0.5).window_dense(),
     "window_dense is Eq 7's form with whole-unit rolls on circular capsules; use dense(S) for roll='linear'"),
    (lambda: TemporalTopography(2, 5, capsule_boundary="zero", capsule_pad=1)(torch.rand(2, 3, 10)),
     "v has last axis of size 10, but this topography has n=14 units"),
    (lambda: TemporalTopography2D(2, 3, K=4), "K must be <= 3, got 4"),
    (lambda: TemporalTopography2D(2, 3, K_cross=4), "K_cross must be <= 3, got 4"),
    (lambda: TemporalTopography2D(2, 3, window="sideways"), "window='sideways' is not allowed"),
    (lambda: TemporalTopography2D(2, 3)(torch.rand(2, 3, 18), 2), "axis=2 is not allowed; choose one of: 0, 1"),
    (lambda: TemporalTopography2D(2, 3).dense(3, axis=-1), "axis=-1 is not allowed"),
    (lambda: TemporalTopography2D(2, 3)(torch.rand(2, 3, 12)), "v has last axis of size 12, but this topography has n=18"),
]


@pytest.mark.parametrize("call,text", CASES, ids=[c[1][:40] for c in CASES])
def test_bad_appendix_c_options_name_the_parameter(call, text):
    with pytest.raises(ValueError, match=re.escape(text)):
        call()


# ------------------------------------------------------------------ ModelConfig and the TVAE

_TINY = dict(in_dim=12, enc_hidden=(8,), dec_hidden=(8,), n_caps=2, K=1, L=1, mu_init=2.0)


def test_appendix_config_is_the_model_config():
    """One model config: the appendix C fields are ModelConfig's, at their defaults the paper's model (the pinned
    cpu-profile keys of tests/test_cache_keys.py); a non-default option gives a different key."""
    from dataclasses import asdict

    from tvae_core.models import AppendixModelConfig, ModelConfig
    from tvae_experiments import config_for
    from tvae_experiments.train import cache_key

    d = config_for("04_capsules", "cpu").mnist
    c = config_for("03_tvae_torus", "cpu")
    from test_cache_keys import PINNED  # the cpu profile's pinned keys (tests/test_cache_keys.py)

    assert AppendixModelConfig is ModelConfig
    for cfg, tc, key in [(d.model("tvae", d.L_of(1 / 3)), d.train(0), PINNED["04 mnist tvae L=S/3"]),
                         (c.model("tvae"), c.train(0), PINNED["03 tvae"])]:
        assert cache_key(cfg, tc, "DATA") == key
        assert cache_key(ModelConfig(**{**asdict(cfg), "capsule_boundary": "zero"}), tc, "DATA") != key
    assert ModelConfig(topography="temporal", roll="linear", alpha=0.5, **_TINY).to_dict()["alpha"] == 0.5


@pytest.mark.parametrize("opts", [
    dict(topography="temporal", capsule_dim=4, window="causal", time_boundary="zero"),
    dict(topography="temporal", capsule_dim=4, capsule_boundary="zero"),
    dict(topography="temporal", capsule_dim=4, capsule_boundary="zero", capsule_pad=1),
    dict(topography="temporal", capsule_dim=4, roll="linear", alpha=0.5),
    dict(topography="temporal2d", capsule_dim=4, K=1),
    dict(topography="temporal2d", capsule_dim=9, K=3, window="causal", time_boundary="zero"),
    dict(topography="capsules", capsule_dim=4, capsule_boundary="zero", K=3),
])
def test_tiny_tvae_forward_with_each_appendix_option(opts):
    from tvae_core.models import AppendixModelConfig, build_model

    cfg = AppendixModelConfig(**{**_TINY, **opts})
    torch.manual_seed(0)
    model = build_model(cfg)
    S = 4
    x = torch.rand(3, S, 12) if cfg.topography != "capsules" else torch.rand(3, 12)
    parts = model(x)
    assert parts.elbo.shape == (3,) and torch.isfinite(parts.elbo).all()
    assert model.encode(x).shape == (*x.shape[:-1], cfg.n_latent)
    assert model.enc_u.net[-1].weight.shape[0] == 2 * cfg.n_u
    assert cfg.n_u == cfg.n_latent + 2 * cfg.n_caps * opts.get("capsule_pad", 0)
    assert model.log_weights(x, 2).shape == (2, 3)


def test_model_config_rejects_bad_appendix_options():
    from tvae_core.models import AppendixModelConfig as ModelConfig

    with pytest.raises(ValueError, match="roll='spline' is not allowed; choose one of: 'integer', 'linear'"):
        ModelConfig(roll="spline")
    with pytest.raises(ValueError, match="roll='fourier' is not allowed; choose one of: 'integer', 'linear'"):
        ModelConfig(roll="fourier", alpha=0.5)  # a Fourier-shifted U^2 can be negative: sqrt(W U^2) undefined
    with pytest.raises(ValueError, match="capsule_pad=1 needs topography='temporal'"):
        ModelConfig(topography="capsules", capsule_pad=1)
    with pytest.raises(ValueError, match="capsule_dim=6 is not allowed with topography='temporal2d'"):
        ModelConfig(topography="temporal2d", capsule_dim=6)
    with pytest.raises(ValueError, match="time_boundary='open' is not allowed"):
        ModelConfig(time_boundary="open")
    with pytest.raises(ValueError, match="capsule_boundary='x' is not allowed"):
        ModelConfig(capsule_boundary="x")
    with pytest.raises(ValueError, match="alpha=0.5 needs roll='linear'"):  # caught when the config is made
        ModelConfig(topography="temporal", n_caps=2, capsule_dim=4, K=1, L=1, alpha=0.5)
    with pytest.raises(ValueError, match="L=1.5 is not allowed with window='causal'"):
        ModelConfig(topography="temporal", n_caps=2, capsule_dim=4, K=1, L=1.5, window="causal")
