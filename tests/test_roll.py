"""Roll algebra on capsules (Eq 18), partial (Eq 19), Fourier (C.1) and non-cyclic (C.2) rolls."""
import math

import pytest
import torch

from tvae_core import fourier_roll, noncyclic_roll, partial_roll, roll

C, D = 3, 6


@pytest.fixture
def x():
    return torch.randn(4, 5, C * D, generator=torch.Generator().manual_seed(0))


def test_eq18_literal():
    u = torch.arange(1, 2 * 4 + 1).float()  # two capsules [1..4], [5..8]
    assert roll(u, 1, 4).tolist() == [4, 1, 2, 3, 8, 5, 6, 7]


def test_roll_by_D_is_identity(x):
    assert torch.equal(roll(x, D, D), x)
    assert torch.equal(roll(x, -3 * D, D), x)


@pytest.mark.parametrize("a,b", [(1, 2), (2, -5), (4, 4)])
def test_shifts_compose(x, a, b):
    assert torch.equal(roll(roll(x, a, D), b, D), roll(x, a + b, D))


def test_units_never_leave_their_capsule(x):
    caps = x.reshape(*x.shape[:-1], C, D)
    rolled = roll(x, 2, D).reshape(*x.shape[:-1], C, D)
    assert torch.equal(caps.sort(-1).values, rolled.sort(-1).values)


def test_positive_shift_moves_unit_d_to_d_plus_shift():
    e = torch.zeros(C * D)
    e[D + 1] = 1.0  # capsule 1, unit 1
    assert roll(e, 2, D).argmax().item() == D + 3
    assert roll(e, -2, D).argmax().item() == D + D - 1


def test_tensor_shift_rolls_each_row(x):
    shifts = torch.arange(5)
    out = roll(x, shifts, D)  # (4, 5, C*D): row l rolled by l
    for l in range(5):
        assert torch.equal(out[:, l], roll(x[:, l], l, D))


def test_float_shift_rejected(x):
    with pytest.raises(TypeError, match="fourier_roll"):
        roll(x, torch.tensor(0.5), D)


def test_capsule_dim_must_divide():
    with pytest.raises(ValueError, match="capsule_dim=4 does not divide"):
        roll(torch.randn(2, 10), 1, 4)


def test_partial_roll_alpha_one_is_roll(x):
    torch.testing.assert_close(partial_roll(x, 1.0, D), roll(x, 1, D))


def test_partial_roll_is_convex_mixture(x):
    torch.testing.assert_close(partial_roll(x, 0.25, D), 0.25 * roll(x, 1, D) + 0.75 * x)
    with pytest.raises(ValueError, match="0 < alpha <= 1"):
        partial_roll(x, 0.0, D)


@pytest.mark.parametrize("dim", [5, 6])
def test_fourier_roll_integer_equals_roll(dim):
    x = torch.randn(7, 2 * dim)
    for s in range(-dim, dim + 1):
        torch.testing.assert_close(fourier_roll(x, s, dim), roll(x, s, dim), atol=1e-5, rtol=1e-5)


def test_fourier_roll_halves_compose_and_preserve_energy():
    x = torch.randn(7, 2 * 5)  # odd D: no Nyquist term, the phase shift is exactly unitary
    half = fourier_roll(fourier_roll(x, 0.5, 5), 0.5, 5)
    torch.testing.assert_close(half, roll(x, 1, 5), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fourier_roll(x, 0.3, 5).norm(dim=-1), x.norm(dim=-1), atol=1e-5, rtol=1e-5)


def test_noncyclic_roll_fills_boundary():
    u = torch.arange(1, 9).float()
    assert noncyclic_roll(u, 1, 4).tolist() == [0, 1, 2, 3, 0, 5, 6, 7]
    assert noncyclic_roll(u, -2, 4).tolist() == [3, 4, 0, 0, 7, 8, 0, 0]
    assert noncyclic_roll(u, 4, 4).abs().sum() == 0


@pytest.mark.parametrize("alpha", [1 / 2, 1 / 3, 1 / 4])
@pytest.mark.parametrize("dim", [5, 6, 9, 18])
def test_fourier_partial_rolls_compose_to_the_identity_except_the_even_nyquist_term(alpha, dim):
    """C.1: D / alpha Fourier rolls of alpha each shift by D units, the identity.  Exact for odd D; for even
    D each fractional roll keeps cos(pi alpha) of the Nyquist term (see fourier_roll), so after n rolls
    x + (cos(pi alpha)^n - 1) * nyq(x), nyq(x) = x's projection on the alternating pattern (+1, -1, ...)."""
    g = torch.Generator().manual_seed(dim)
    x = torch.randn(3, 2 * dim, generator=g, dtype=torch.float64)
    n = round(dim / alpha)
    y = x
    for _ in range(n):
        y = fourier_roll(y, alpha, dim)
    expected = x
    if dim % 2 == 0:
        sign = (-1.0) ** torch.arange(dim, dtype=torch.float64)                # (D,) alternating pattern
        xc = x.reshape(3, 2, dim)
        nyq = (xc @ sign / dim)[..., None] * sign                              # (3, 2, D) projection on it
        expected = (xc + (math.cos(math.pi * alpha) ** n - 1) * nyq).reshape(x.shape)
        assert (y - x).abs().max() > 1e-3  # the Nyquist term is really lost for even D
    torch.testing.assert_close(y, expected, atol=1e-12, rtol=1e-12)
