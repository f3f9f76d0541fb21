"""C_N group-equivariant CNN, image rotation, rotated MNIST and the classifier trainer."""
from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from tvae_experiments.gcnn import (GCNN, GCNNConfig, GroupConv, LiftingConv, equivariance_errors, group_max_pool,
                            rotate_feature, rotate_filter)
from tvae_core.invariance import RandomInvariantProjection
from tvae_core.roll import roll
from tvae_experiments.data.rotation import rotate_images, rotated_mnist
from tvae_experiments.train import TrainConfig, TrainingDiverged, accuracy, fit

TOL = 1e-5


def rot(x, q=1):
    return torch.rot90(x, q, dims=(-2, -1))


def maxdiff(a, b):
    return float((a - b).detach().abs().max())


# ------------------------------------------------------------------------------------ rotation
@pytest.mark.parametrize("q", [1, 2, 3])
def test_rotate_images_multiples_of_90_are_rot90(q):
    x = torch.rand(3, 1, 10, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(q))
    assert maxdiff(rotate_images(x, 90.0 * q), rot(x, q)) < 1e-10
    flat = x.reshape(3, 100)
    assert maxdiff(rotate_images(flat, torch.full((3,), 90.0 * q)), rot(x, q).reshape(3, 100)) < 1e-10


def test_rotate_images_turns_counter_clockwise():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 7] = 1.0                                   # right of the centre
    y = rotate_images(x, 90.0)
    assert y[0, 0, 1, 4] == pytest.approx(1.0, abs=1e-5)  # now above the centre
    assert y.sum() == pytest.approx(1.0, abs=1e-5)


def test_rotate_images_per_image_angles_and_errors():
    x = torch.rand(2, 1, 8, 8)
    y = rotate_images(x, torch.tensor([0.0, 180.0]))
    assert maxdiff(y[0], x[0]) < 1e-6 and maxdiff(y[1], rot(x[1], 2)) < 1e-6
    with pytest.raises(ValueError, match="angles_deg"):
        rotate_images(x, torch.zeros(3))
    with pytest.raises(ValueError, match="square"):
        rotate_images(torch.rand(2, 1, 8, 6), 10.0)
    with pytest.raises(ValueError, match="flattened square"):
        rotate_images(torch.rand(2, 10), 10.0)


def test_rotated_mnist_c4_is_rot90_of_the_aligned_digits_and_seeded():
    from tvae_experiments.data.mnist import mnist

    data = mnist(None, seed=0, n_train=40, n_test=20, verbose=False)
    r = rotated_mnist(data, seed=3, angles="c4")
    assert set(r.test_angle.tolist()) <= {0.0, 90.0, 180.0, 270.0}
    q = (r.train_angle / 90).long()
    expect = torch.stack([rot(img.reshape(28, 28), int(k)) for img, k in zip(data.train_x, q)]).reshape(40, 784)
    assert maxdiff(r.train_x, expect) < 1e-5
    u1, u2 = rotated_mnist(data, seed=3), rotated_mnist(data, seed=3)
    assert torch.equal(u1.train_x, u2.train_x) and torch.equal(u1.test_angle, u2.test_angle)
    assert not torch.equal(u1.train_angle, rotated_mnist(data, seed=4).train_angle)
    assert 0 <= float(u1.train_angle.min()) and float(u1.train_angle.max()) < 360
    with pytest.raises(ValueError, match="angles='c3'.*'uniform', 'c4'"):
        rotated_mnist(data, angles="c3")


# ------------------------------------------------------------------------------------ layers
def test_rotate_filter_is_a_group_action():
    w = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    assert maxdiff(rotate_filter(w, 1, 4), rot(w)) == 0
    assert maxdiff(rotate_filter(w, 2, 8), rot(w)) == 0          # 2 x 45 degrees = rot90 exactly
    assert maxdiff(rotate_filter(rotate_filter(w, 1, 4), 3, 4), w) == 0
    # the interpolated 45-degree turn moves mass: it is not the identity and not rot90
    r45 = rotate_filter(w, 1, 8)
    assert maxdiff(r45, w) > 0.1 and maxdiff(r45, rot(w)) > 0.1


@pytest.mark.parametrize("N,q", [(4, 1), (4, 2), (4, 3), (8, 1), (2, 2)])
def test_lifting_conv_equivariance(N, q):
    torch.manual_seed(0)
    layer = LiftingConv(2, 3, 5, N).double()
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, 2, 12, 12, dtype=torch.float64)
    out, out_r = layer(x), layer(rot(x, q))                       # (B, 3, N, 12, 12)
    assert out.shape == (2, 3, N, 12, 12)
    assert maxdiff(out_r, rotate_feature(out, q, N)) < TOL
    # the check has power: rotating planes without the shift of the group axis is wrong
    assert maxdiff(out_r, rot(out, q)) > 0.1


@pytest.mark.parametrize("N,q", [(4, 1), (4, 3), (8, 1), (8, 2)])
def test_group_conv_equivariance(N, q):
    torch.manual_seed(1)
    layer = GroupConv(3, 2, 3, N).double()
    x = torch.randn(2, 3, N, 10, 10, dtype=torch.float64)         # (B, C, N, H, W)
    out, out_r = layer(x), layer(rotate_feature(x, q, N))
    assert out.shape == (2, 2, N, 10, 10)
    assert maxdiff(out_r, rotate_feature(out, q, N)) < TOL
    assert maxdiff(out_r, rot(out, q)) > 0.1


def test_group_conv_without_the_cyclic_shift_is_not_equivariant():
    """The roll of the filter's group axis matters: drop it and the check fails."""
    torch.manual_seed(2)
    layer = GroupConv(2, 2, 3, 4).double()
    x = torch.randn(1, 2, 4, 8, 8, dtype=torch.float64)
    O, C, N, k, _ = layer.weight.shape
    wrong = torch.stack([rotate_filter(layer.weight, n, N) for n in range(N)], 1).reshape(O * N, C * N, k, k)
    conv = lambda t: torch.nn.functional.conv2d(t.reshape(1, C * N, 8, 8), wrong, padding=1).reshape(1, O, N, 8, 8)
    assert maxdiff(conv(rotate_feature(x, 1, N)), rotate_feature(conv(x), 1, N)) > 0.1


def test_gradcheck_tiny_layers():
    torch.manual_seed(3)
    lift, gconv = LiftingConv(1, 2, 3, 4).double(), GroupConv(2, 1, 3, 4).double()
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    w1 = lift.weight.detach().clone().requires_grad_()
    w2 = gconv.weight.detach().clone().requires_grad_()
    b2 = torch.randn(1, dtype=torch.float64, requires_grad=True)

    def f(x, w1, w2, b2):
        h = functional_call(lift, {"weight": w1, "bias": lift.bias.detach()}, (x,))
        return functional_call(gconv, {"weight": w2, "bias": b2}, (torch.tanh(h),))

    assert torch.autograd.gradcheck(f, (x, w1, w2, b2), eps=1e-6, atol=1e-5)


def test_gradcheck_c8_interpolated_filters():
    lift = LiftingConv(1, 1, 3, 8).double()
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    w = lift.weight.detach().clone().requires_grad_()
    f = lambda x, w: functional_call(lift, {"weight": w, "bias": lift.bias.detach()}, (x,))
    assert torch.autograd.gradcheck(f, (x, w), eps=1e-6, atol=1e-5)


# ------------------------------------------------------------------------------------ network
def _trained_like(cfg: GCNNConfig) -> GCNN:
    """A float64 GCNN whose batch-norm running statistics are non-trivial, in eval mode."""
    torch.manual_seed(4)
    model = GCNN(cfg).double()
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(8, 1, cfg.image_size, cfg.image_size, dtype=torch.float64))
    return model.eval()


SMALL = dict(channels=(3, 3, 4, 4, 5), image_size=12, hidden=8)


@pytest.mark.parametrize("N", [4, 8])
def test_gcnn_latent_shifts_and_output_is_invariant(N):
    model = _trained_like(GCNNConfig(N=N, **SMALL))
    x = torch.rand(5, 1, 12, 12, dtype=torch.float64)
    z = model.latent(x)                                           # (B, C, N)
    assert z.shape == (5, 5, N)
    for q in (1, 2, 3):
        zr = model.latent(rot(x, q))
        assert maxdiff(zr, torch.roll(z, q * N // 4, dims=2)) < TOL
        assert maxdiff(model(rot(x, q)), model(x)) < TOL
        assert maxdiff(model.invariant(rot(x, q)), group_max_pool(z)) < TOL
    errs = equivariance_errors(model, x)
    assert max(errs.values()) < TOL
    # the latent is not trivially invariant: the shift is needed
    assert maxdiff(model.latent(rot(x)), z) > 1e-3


def test_plain_cnn_fails_the_equivariance_check():
    model = _trained_like(GCNNConfig(N=1, **SMALL))
    errs = equivariance_errors(model, torch.rand(5, 1, 12, 12, dtype=torch.float64))
    assert errs["features"] > 0.1 and errs["latent"] > 1e-3


def test_c8_is_only_approximately_equivariant_to_45_degrees():
    """With a smooth filter and a smooth image, a 45-degree turn of the input is close to a
    45-degree turn of the planes plus a shift by one -- but only approximately (interpolation)."""
    k, S = 7, 33
    lift = LiftingConv(1, 1, k, 8).double()
    g = torch.arange(float(k)) - k // 2
    fy, fx = torch.meshgrid(g, g, indexing="ij")
    with torch.no_grad():
        lift.weight[0, 0] = (fx + 0.5 * fy) * torch.exp(-(fx ** 2 + fy ** 2) / 4)   # oriented, smooth
    yy, xx = torch.meshgrid(torch.arange(float(S)), torch.arange(float(S)), indexing="ij")
    blob = torch.exp(-((xx - 20) ** 2 / 18 + (yy - 12) ** 2 / 8))[None, None].double()  # off-centre
    out, out45 = lift(blob), lift(rotate_images(blob, 45.0))                            # (1, 1, 8, S, S)
    turned = rotate_images(out.reshape(1, -1, S, S), 45.0).reshape(out.shape)
    scale = float(out.detach().abs().max())
    err_shift = maxdiff(out45, torch.roll(turned, 1, dims=2)) / scale
    err_none = maxdiff(out45, turned) / scale
    assert err_shift < 0.2 < 0.5 < err_none     # measured: 0.086 vs 0.71
    assert err_shift > 1e-3                     # ... but not exact


def test_random_invariant_projection_of_the_latent_is_rotation_invariant():
    model = _trained_like(GCNNConfig(N=4, **SMALL))
    x = torch.rand(6, 1, 12, 12, dtype=torch.float64)
    z = model.latent(x)                                           # (B, C, N): C capsules of D = N units
    C, N = z.shape[1:]
    # the flattened latent has the capsule layout of tvae_core.roll: C*D with d fastest
    assert torch.equal(roll(z.flatten(1), 1, N), torch.roll(z, 1, dims=2).flatten(1))
    proj = RandomInvariantProjection(C, N, out_channels=32, seed=0).double()
    p = proj(z.flatten(1))
    assert p.shape == (6, 32)
    for q in (1, 2, 3):
        assert maxdiff(proj(model.latent(rot(x, q)).flatten(1)), p) < TOL
    # and it is not constant: different digits project differently
    assert float(p.detach().std(0).max()) > 1e-3


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match=r"N=3 is not allowed; choose one of: 1, 2, 4, 8"):
        LiftingConv(1, 2, 3, 3)
    with pytest.raises(ValueError, match="N=6"):
        GCNNConfig(N=6)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        GroupConv(1, 2, 4, 4)
    with pytest.raises(ValueError, match="image_size=30 must be divisible by 2\\*\\*2"):
        GCNNConfig(image_size=30)
    with pytest.raises(ValueError, match="channels"):
        GCNNConfig(channels=())
    with pytest.raises(ValueError, match="expects N=4"):
        GroupConv(1, 1, 3, 4)(torch.zeros(1, 1, 8, 5, 5))
    with pytest.raises(ValueError, match="not in C_2"):
        rotate_feature(torch.zeros(1, 1, 2, 4, 4), 1, 2)
    with pytest.raises(ValueError, match=r"x must be \(B, 784\)"):
        GCNN()(torch.zeros(2, 100))
    with pytest.raises(ValueError, match="augment='flip'"):
        TrainConfig(augment="flip")


# ------------------------------------------------------------------------------------ training
def _toy(n=64, side=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.rand(n, 1, side, side, generator=g) * 0.2
    x[y == 1, :, 2:6, 2:6] += 1.0                                  # class 1: a bright centred square
    return x, y


def test_fit_classifier_learns_is_seeded_and_caches(tmp_path):
    x, y = _toy()
    cfg = GCNNConfig(N=4, channels=(2, 2), image_size=8, hidden=0, n_classes=2)
    tc = TrainConfig(epochs=4, batch_size=16, optimizer="adam", lr=1e-2, augment="rotation", seed=1)
    kw = dict(data_id="toy", device="cpu", cache_dir=tmp_path, name="toy", progress=False)
    a = fit(cfg, (x, y), tc, **kw)
    assert not a.from_cache and a.path.exists() and len(a.history) == 4
    assert set(a.history[-1]) == {"epoch", "step", "cross_entropy", "acc"}
    assert accuracy(a.model, x, y) > 0.9
    b = fit(cfg, (x, y), tc, use_cache=False, **kw)
    assert all(torch.equal(p, q) for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    c = fit(cfg, (x, y), tc, **kw)
    assert c.from_cache and all(torch.equal(p, q) for p, q in zip(a.model.state_dict().values(),
                                                                  c.model.state_dict().values()))
    a.path.write_bytes(b"garbage")                                 # corrupt cache: retrained, not used
    assert not fit(cfg, (x, y), tc, **kw).from_cache


def test_fit_classifier_nan_guard(tmp_path):
    x, y = _toy()
    x[3] = float("nan")
    cfg = GCNNConfig(N=2, channels=(2,), image_size=8, hidden=0, n_classes=2)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 0 \(epoch 0\); cross_entropy=nan, acc="):
        fit(cfg, (x, y), TrainConfig(epochs=1, batch_size=64), device="cpu", use_cache=False, progress=False)
    with pytest.raises(ValueError, match="batch_size=128 is larger"):
        fit(cfg, (x, y), TrainConfig(epochs=1), device="cpu", use_cache=False, progress=False)
    with pytest.raises(ValueError, match="equally long"):
        fit(cfg, (x, y[:-1]), TrainConfig(epochs=1, batch_size=8), device="cpu", use_cache=False, progress=False)
