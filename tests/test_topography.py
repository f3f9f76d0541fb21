"""Neighbourhood matrices W: structure, and fast op == dense W for many (C, D, K, L, S)."""
import itertools

import pytest
import torch

from tvae_core import CapsuleTopography, TemporalTopography, TorusTopography, box_sum, capsule_W, roll, temporal_W, torus_W, window_W


def test_capsule_W_structure():
    W = capsule_W(3, 6, 3)
    assert torch.equal(W, W.T)  # odd K: symmetric
    assert torch.equal(W.sum(1), torch.full((18,), 3.0))  # row sum = neighbourhood size
    assert torch.equal(W.sum(0), torch.full((18,), 3.0))
    assert W[:6, 6:].abs().sum() == 0 and W[6:12, 12:].abs().sum() == 0  # capsules are disjoint
    assert W[0, 5] == 1 and W[5, 0] == 1 and W[0, 2] == 0  # circular inside a capsule


def test_torus_W_structure():
    W = torus_W(6, 5)
    assert torch.equal(W, W.T)
    assert torch.equal(W.sum(1), torch.full((36,), 25.0))
    assert W[0, 6 * 5 + 5] == 1  # (0,0) sees (-1,-1) through the wrap
    assert W[0, 3] == 0  # distance 3 along a row is outside the 5x5 window


@pytest.mark.parametrize("mode", ["shifting", "stationary"])
def test_temporal_W_structure(mode):
    C, D, K, L, S = 2, 5, 3, 1, 5
    W = temporal_W(C, D, K, L, S, mode)
    assert torch.equal(W.sum(1), torch.full((S * C * D,), float(K * (2 * L + 1))))
    if mode == "stationary":
        assert torch.equal(W, W.T)  # the Bubbles neighbourhood is symmetric in space-time
    n = C * D
    # T_{1,i} shares U_{0, i-1} (shifting) or U_{0, i} (stationary) with K=3 window around it
    i = 2
    assert W[1 * n + i, 0 * n + i + (-1 if mode == "shifting" else 0)] == 1
    assert W[1 * n + i, 0 * n + i + (-3 if mode == "shifting" else 2)] == 0


def test_window_W_shape_and_central_block():
    W = window_W(2, 5, 3, 2, "shifting")
    assert W.shape == (10, 50)
    torch.testing.assert_close(W[:, 20:30], capsule_W(2, 5, 3))  # delta = 0 block


@pytest.mark.parametrize("C,D,K,L,S", [(1, 4, 1, 1, 4), (2, 5, 3, 2, 7), (3, 6, 2, 3, 6), (2, 6, 5, 0, 3),
                                       (2, 7, 3, 4, 7), (1, 3, 3, 5, 4)])
@pytest.mark.parametrize("mode,tb,window", list(itertools.product(["shifting", "stationary"], ["circular", "zero"],
                                                                   ["centered", "forward"])))
def test_temporal_fast_equals_dense(C, D, K, L, S, mode, tb, window):
    topo = TemporalTopography(C, D, K, L, mode, tb, window)
    v = torch.rand(3, S, C * D, generator=torch.Generator().manual_seed(C * D + L))
    if tb == "circular" and len(topo.offsets) > S:  # a frame would be counted twice: refused
        with pytest.raises(ValueError, match="counted twice"):
            topo(v)
        with pytest.raises(ValueError, match="counted twice"):
            topo.dense(S)
        return
    expected = (v.reshape(3, -1) @ topo.dense(S).T).reshape(v.shape)
    torch.testing.assert_close(topo(v), expected)


@pytest.mark.parametrize("C,D,K", [(1, 5, 1), (3, 6, 3), (2, 7, 4), (4, 9, 9)])
def test_capsule_fast_equals_dense(C, D, K):
    topo = CapsuleTopography(C, D, K)
    v = torch.rand(5, 2, C * D)
    torch.testing.assert_close(topo(v), v @ topo.dense().T)


@pytest.mark.parametrize("side,K", [(4, 1), (6, 3), (7, 5), (5, 2)])
def test_torus_fast_equals_dense(side, K):
    topo = TorusTopography(side, K)
    v = torch.rand(6, side * side)
    torch.testing.assert_close(topo(v), v @ topo.dense().T)


def test_shifting_denominator_is_equivariant_for_full_window():
    """With S = D and a window covering the cyclic sequence, v_l = Roll_l(v_0) for any u."""
    S = D = 7
    v = TemporalTopography(3, D, 1, 3, "shifting")(torch.rand(2, S, 3 * D))
    torch.testing.assert_close(v, roll(v[:, :1].expand(-1, S, -1), torch.arange(S), D))


def test_forward_window_full_sequence_is_equivariant():
    """The experiments' form: 2L = S input frames, t_0 from frames 0..2L-1 (Sec 6.3)."""
    S = D = 6
    topo = TemporalTopography(2, D, 1, S // 2, "shifting", window="forward")
    assert list(topo.offsets) == list(range(S))
    v = topo(torch.rand(3, S, 2 * D))
    torch.testing.assert_close(v, roll(v[:, :1].expand(-1, S, -1), torch.arange(S), D))
    assert list(TemporalTopography(2, D, 1, 0, window="forward").offsets) == [0]


def test_stationary_denominator_is_not_equivariant():
    S = D = 7
    v = TemporalTopography(3, D, 1, 3, "stationary")(torch.rand(2, S, 3 * D))
    assert not torch.allclose(v, roll(v[:, :1].expand(-1, S, -1), torch.arange(S), D))


def test_box_sum_zero_boundary():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert box_sum(x, 0, 3, "zero").tolist() == [3.0, 6.0, 9.0, 7.0]
    assert box_sum(x, 0, 3, "circular").tolist() == [7.0, 6.0, 9.0, 8.0]


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="mode='diagonal' is not allowed; choose one of: 'shifting', 'stationary'"):
        TemporalTopography(2, 5, mode="diagonal")
    with pytest.raises(ValueError, match="K must be <= 5"):
        CapsuleTopography(2, 5, K=6)
    with pytest.raises(ValueError, match="time_boundary"):
        TemporalTopography(2, 5, time_boundary="reflect")
    with pytest.raises(ValueError, match="n=10 units"):
        CapsuleTopography(2, 5)(torch.rand(3, 12))


def test_half_integer_L_gives_odd_forward_window():
    topo = TemporalTopography(2, 5, 1, 2.5, "shifting", window="forward")
    assert list(topo.offsets) == [0, 1, 2, 3, 4]
    v = torch.rand(2, 5, 10)
    torch.testing.assert_close(topo(v).reshape(2, -1), v.reshape(2, -1) @ topo.dense(5).T)
    with pytest.raises(ValueError, match="2L an integer"):
        TemporalTopography(2, 5, 1, 2.2)
    with pytest.raises(ValueError, match="window='centered'"):
        TemporalTopography(2, 5, 1, 2.5, window="centered")


# ----------------------------------------------------------- the authors' code: window and band

def _code_band_brute_force(v, D, K3_offsets, S):
    """``(W v)_{l,c,i}`` summed term by term over the code's band: ``delta`` in ``K3_offsets`` and
    ``k in (-1, 0, 1)``, except ``k = -1`` at the first offset and ``k = +1`` at the last."""
    n = v.shape[-1]
    out = torch.zeros_like(v)
    terms = [(delta, k) for j, delta in enumerate(K3_offsets) for k in (-1, 0, 1)
             if not (j == 0 and k == -1) and not (j == len(K3_offsets) - 1 and k == 1)]
    for l in range(S):
        for c in range(n // D):
            for i in range(D):
                for delta, k in terms:
                    out[:, l, c * D + i] += v[:, (l + delta) % S, c * D + (i + delta + k) % D]
    return out, len(terms)


@pytest.mark.parametrize("C,D,L,S,window", [(2, 5, 1, 5, "centered"), (1, 7, 2, 6, "centered"), (2, 6, 3, 6, "forward"),
                                            (1, 6, 1.5, 6, "code"), (2, 6, 3, 6, "code"), (1, 9, 2, 7, "forward")])
def test_code_band_equals_brute_force_sum_of_its_3T_minus_2_terms(C, D, L, S, window):
    topo = TemporalTopography(C, D, 3, L, "shifting", window=window, band="code")
    T = len(topo.offsets)  # 2L+1 for the centred window of Eq 7, 2L for the forward and code windows
    v = torch.rand(2, S, C * D, generator=torch.Generator().manual_seed(S + D), dtype=torch.float64)
    expected, n_terms = _code_band_brute_force(v, D, list(topo.offsets), S)
    assert n_terms == 3 * T - 2 and (window != "centered" or n_terms == 3 * (2 * L + 1) - 2)
    torch.testing.assert_close(topo(v), expected)
    assert torch.equal(topo.dense(S).sum(1), torch.full((S * C * D,), float(3 * T - 2)))
    full = TemporalTopography(C, D, 3, L, "shifting", window=window)
    assert torch.equal(full.dense(S).sum(1), torch.full((S * C * D,), float(3 * T)))
    assert len(topo.dropped_terms()) == 2 and full.dropped_terms() == []


@pytest.mark.parametrize("C,D,K,L,S", [(2, 5, 3, 1, 5), (1, 7, 5, 2, 6), (2, 6, 2, 1.5, 6), (1, 8, 3, 4, 8)])
@pytest.mark.parametrize("mode,tb,window", list(itertools.product(["shifting", "stationary"], ["circular", "zero"],
                                                                   ["centered", "forward", "code"])))
def test_code_band_fast_equals_dense(C, D, K, L, S, mode, tb, window):
    if window == "centered" and not float(L).is_integer():
        pytest.skip("the centred window needs an integer L")
    topo = TemporalTopography(C, D, K, L, mode, tb, window, band="code")
    v = torch.rand(3, S, C * D, generator=torch.Generator().manual_seed(C * D + K))
    if tb == "circular" and len(topo.offsets) > S:  # a frame would be counted twice: refused
        with pytest.raises(ValueError, match="counted twice"):
            topo(v)
        return
    torch.testing.assert_close(topo(v), (v.reshape(3, -1) @ topo.dense(S).T).reshape(v.shape))
    if mode == "stationary":  # the code's stationary kernels are full boxes: band changes nothing
        assert torch.equal(topo.dense(S), TemporalTopography(C, D, K, L, mode, tb, window).dense(S))


def test_code_window_offsets():
    assert list(TemporalTopography(1, 18, 3, 9, window="code").offsets) == list(range(-8, 10))  # 2L = 18
    assert list(TemporalTopography(1, 15, 1, 5, window="code").offsets) == list(range(-4, 6))   # 2L = 10
    assert list(TemporalTopography(1, 18, 3, 2.5, window="code").offsets) == [-2, -1, 0, 1, 2]  # 2L = 5
    assert list(TemporalTopography(1, 18, 3, 0, window="code").offsets) == [0]
    with pytest.raises(ValueError, match="band='corners' is not allowed"):
        TemporalTopography(1, 5, band="corners")
    with pytest.raises(ValueError, match="full band"):
        TemporalTopography(1, 5, 3, 1, band="code").window_dense()


@pytest.mark.parametrize("S,D,T", [(6, 6, 6), (6, 6, 4), (7, 7, 3), (15, 15, 10), (18, 18, 18), (18, 18, 5)])
def test_window_and_band_code_equal_the_authors_kernel(S, D, T):
    """The authors' ConvTranspose3d grouping (rebuilt in tvae_experiments.paper_code) is
    ``window="code"`` with ``band="code"`` (shifting, K = 3) or a full box (stationary): same sign
    of the shift (``U_{l+delta}`` at unit ``i + delta``), same window, same cut corners."""
    from tvae_experiments.paper_code import authors_temporal_W

    L = T / 2 if T % 2 else T // 2
    shifting = TemporalTopography(1, D, 3, L, "shifting", window="code", band="code").dense(S)
    assert torch.equal(authors_temporal_W(S, D, T, 3, "shifting"), shifting)
    assert not torch.equal(TemporalTopography(1, D, 3, L, "shifting", window="code").dense(S), shifting)
    stationary = TemporalTopography(1, D, 3, L, "stationary", window="code").dense(S)
    assert torch.equal(authors_temporal_W(S, D, T, 3, "stationary"), stationary)


def test_model_config_band_is_in_the_key_and_reaches_the_topography():
    from dataclasses import asdict

    from tvae_core.models import ModelConfig

    base = dict(in_dim=16, enc_hidden=(8,), dec_hidden=(8,), topography="temporal", n_caps=2, capsule_dim=6, K=3, L=1)
    plain, code = ModelConfig(**base), ModelConfig(**base, band="code")
    assert plain.to_dict() == asdict(plain) and plain.to_dict()["band"] == "full"
    assert code.to_dict()["band"] == "code" and code.build_topography().band == "code"
    with pytest.raises(ValueError, match="band='x' is not allowed"):
        ModelConfig(**base, band="x")


def test_a_window_longer_than_the_sequence_is_an_error_naming_L_and_S():
    """L = 5 (forward: 10 frames) on S = 4 frames would sum frames two or three times."""
    v = torch.rand(2, 4, 6)
    with pytest.raises(ValueError, match=r"L=5 .* spans 10 frames but the sequence has S=4.*L <= 2"):
        TemporalTopography(2, 3, 1, 5, window="forward")(v)
    with pytest.raises(ValueError, match="S=4"):
        TemporalTopography(2, 3, 1, 2, window="centered").dense(4)  # 5 frames > 4
    TemporalTopography(2, 3, 1, 2, window="forward")(v)  # 2L = S: every frame once
    TemporalTopography(2, 3, 1, 5, window="forward", time_boundary="zero")(v)  # no wrap: nothing counted twice
    # one frame held still (single-frame codes): allowed, and the same as that frame repeated 10 times
    one = torch.rand(2, 1, 6)
    topo = TemporalTopography(2, 3, 3, 5, window="forward")
    torch.testing.assert_close(topo(one), topo(one.expand(-1, 10, -1))[:, :1])


@pytest.mark.parametrize("mode", ["shifting", "stationary"])
def test_window_W_is_the_temporal_op_at_one_frame(mode):
    """Eq 7: (W [v_{l+L}; ...; v_{l-L}])_i equals the fast temporal op at frame l -- so the roll
    direction inside window_W is the package's (a reversed sign breaks this)."""
    C, D, K, L, S = 2, 6, 3, 2, 9
    topo = TemporalTopography(C, D, K, L, mode, window="centered")
    v = torch.rand(S, C * D, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    W = window_W(C, D, K, L, mode).double()
    fast = topo(v[None])[0]  # (S, n)
    for l in range(S):
        stacked = torch.cat([v[(l + delta) % S] for delta in range(L, -L - 1, -1)])
        torch.testing.assert_close(W @ stacked, fast[l])
