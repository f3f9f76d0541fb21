"""Transforming sequences (A.9, A.10): the dSprites renderer, the official-file loader, the cache,
and the MNIST / dSprites sequences with their factor labels (A.11's canonical frames)."""
import math

import numpy as np
import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from tvae_experiments.data import dsprites as D
from tvae_experiments.data.mnist import mnist
from tvae_experiments.data.sequences import (SequenceData, dsprites_sequences, dsprites_subset, hue_colors, mnist_grids,
                                 mnist_sequences, render_dsprites)

S = 18


def _render(shape, scale=1.0, orientation=0.0, x=0.5, y=0.5, size=64):
    t = lambda v: torch.tensor([v], dtype=torch.float64)
    return render_dsprites(torch.tensor([shape]), t(scale), t(orientation), t(x), t(y), size=size)[0]


def _centroid(img):  # (row, col) in pixel-index coordinates
    img = img.float()
    r, c = torch.meshgrid(torch.arange(img.shape[0]), torch.arange(img.shape[1]), indexing="ij")
    return (img * r).sum().item() / img.sum().item(), (img * c).sum().item() / img.sum().item()


# ------------------------------------------------------------------------------------ renderer

@pytest.mark.parametrize("shape", [0, 1, 2])
def test_area_grows_with_scale(shape):
    scales = torch.linspace(0.5, 1.0, 6, dtype=torch.float64)
    imgs = render_dsprites(torch.full((6,), shape), scales, torch.full((6,), 0.3, dtype=torch.float64),
                           torch.full((6,), 0.5, dtype=torch.float64), torch.full((6,), 0.5, dtype=torch.float64))
    assert imgs.dtype == torch.bool and imgs.shape == (6, 64, 64)
    area = imgs.sum((1, 2)).float()
    assert (area[1:] > area[:-1]).all()
    # area ~ scale^2 (within pixelation)
    ratio = area / scales.float() ** 2
    assert ratio.max() / ratio.min() < 1.2


def test_square_geometry_is_documented_size():
    sq = _render(0, scale=1.0, x=0.5, y=0.5)
    assert sq.sum().item() == 16 * 16  # side 16 px at scale 1
    assert sq.any(0).sum().item() == 16 and sq.any(1).sum().item() == 16


@pytest.mark.parametrize("shape", [0, 1, 2])
def test_centroid_follows_x_and_y(shape):
    for orientation in (0.0, 1.0, 4.0):
        prev_c = -1.0
        for x in (0.2, 0.35, 0.5, 0.65, 0.8):
            r, c = _centroid(_render(shape, 0.8, orientation, x, 0.4))
            assert abs(c - (8 + 48 * x - 0.5)) < 0.35 and abs(r - (8 + 48 * 0.4 - 0.5)) < 0.35
            assert c > prev_c
            prev_c = c
        r_lo, _ = _centroid(_render(shape, 0.8, orientation, 0.5, 0.2))
        r_hi, _ = _centroid(_render(shape, 0.8, orientation, 0.5, 0.8))
        assert r_hi - r_lo == pytest.approx(48 * 0.6, abs=0.6)  # y grows downwards


def test_rotation_symmetries():
    for x, y, s in ((0.5, 0.5, 1.0), (0.13, 0.71, 0.7), (0.33, 0.29, 0.6)):
        square0 = _render(0, s, 0.0, x, y)
        assert torch.equal(_render(0, s, math.pi / 2, x, y), square0)  # 90 deg: same square
        assert torch.equal(_render(0, s, math.pi, x, y), square0)
        assert (_render(0, s, math.pi / 4, x, y) != square0).sum() > 20  # 45 deg: not the same
        assert torch.equal(_render(1, s, math.pi, x, y), _render(1, s, 0.0, x, y))  # ellipse: 180 deg
        heart0, heart180 = _render(2, s, 0.0, x, y), _render(2, s, math.pi, x, y)
        assert (heart0 != heart180).sum() > 0.15 * heart0.sum()  # a heart is not 180-deg symmetric
    # the dSprites orientation grid is linspace(0, 2pi, 40): index 10 is 92.3 deg, close to but not 90
    grid10 = float(np.linspace(0, 2 * np.pi, 40)[10])
    diff = (_render(0, 1.0, grid10, 0.3, 0.6) != _render(0, 1.0, 0.0, 0.3, 0.6)).sum().item()
    assert 0 < diff < 0.15 * 256


def test_orientation_is_counter_clockwise_and_heart_points_down():
    heart = _render(2, 1.0, 0.0, 0.5, 0.5)
    rows = heart.any(1).nonzero().flatten()
    bottom = heart[rows.max()].nonzero().flatten().float().mean().item()
    assert abs(bottom - 31.5) < 1.0  # the point is at the bottom, on the centre column
    heart90 = _render(2, 1.0, math.pi / 2, 0.5, 0.5)  # counter-clockwise: the point turns to the right
    cols = heart90.any(0).nonzero().flatten()
    right = heart90[:, cols.max()].nonzero().flatten().float().mean().item()
    assert abs(right - 31.5) < 1.0
    ell = _render(1, 1.0, math.pi / 2)
    assert ell.any(1).sum() > 1.8 * ell.any(0).sum()  # long axis vertical after 90 deg


def test_render_size_and_errors():
    small = _render(0, 1.0, size=32)
    assert small.shape == (32, 32) and small.sum().item() == 8 * 8
    with pytest.raises(ValueError, match="same length"):
        render_dsprites(torch.tensor([0, 1]), torch.ones(1), torch.zeros(1), torch.zeros(1), torch.zeros(1))
    with pytest.raises(ValueError, match="shape must hold 0"):
        render_dsprites(torch.tensor([3]), torch.ones(1), torch.zeros(1), torch.zeros(1), torch.zeros(1))


# ------------------------------------------------------------------------ official-file loader

def _fake_official(path, compressed=True, seed=0):
    """A tiny file with the official keys: a reduced grid of latent classes, rows shuffled, each
    image encoding its row number in the bits of its first image row."""
    grid = np.stack(np.meshgrid([0], [0, 2], [0, 1, 5], [0, 1, 2, 29, 30], [0, 2, 31], [28, 29, 30],
                                indexing="ij"), -1).reshape(-1, 6)
    grid = grid[np.random.default_rng(seed).permutation(len(grid))]
    n = len(grid)
    imgs = np.zeros((n, 64, 64), np.uint8)
    bits = (np.arange(n)[:, None] >> np.arange(16)) & 1
    imgs[:, 0, :16] = bits
    imgs[:, 10:12, 10:12] = 1
    values = np.stack([np.ones(n), grid[:, 1] + 1.0, 0.5 + 0.1 * grid[:, 2], grid[:, 3] * 2 * np.pi / 39,
                       grid[:, 4] / 31, grid[:, 5] / 31], 1)
    (np.savez_compressed if compressed else np.savez)(path, imgs=imgs, latents_classes=grid, latents_values=values)
    return grid


@pytest.mark.parametrize("compressed", [True, False])
def test_official_loader_selects_the_subset(tmp_path, capsys, compressed):
    path = tmp_path / D.OFFICIAL_NPZ
    grid = _fake_official(path, compressed)
    imgs, factors = dsprites_subset(tmp_path)
    assert "official dSprites file" in capsys.readouterr().out
    _, shp, scl, ori, xx, yy = grid.T
    keep = (scl >= 1) & (ori % 2 == 0) & (ori < 30) & (xx % 2 == 0) & (xx < 30) & (yy % 2 == 0) & (yy < 30)
    # shape {0,2} x scale {1,5} x orientation {0,2} x x {0,2} x y {28}: 16 subset images
    assert keep.sum() == 16 and len(imgs) == 16 and imgs.shape[1:] == (64, 64)
    rows = (imgs[:, 0, :16].long() * (2 ** torch.arange(16))).sum(1).numpy()  # decode the row number
    assert set(rows) == set(np.nonzero(keep)[0])
    expect = np.stack([shp[rows], scl[rows] - 1, ori[rows] // 2, xx[rows] // 2, yy[rows] // 2], 1)
    assert np.array_equal(factors.numpy(), expect)
    lin = np.ravel_multi_index(factors.numpy().T, D.SUBSET_SIZES)
    assert (np.diff(lin) > 0).all()  # in subset (C) order
    assert set(factors[:, 1].tolist()) == {0, 4} and set(factors[:, 4].tolist()) == {14}
    # data_dir may also be the file itself
    D._MEMO.clear()
    imgs2, _ = dsprites_subset(path, verbose=False)
    assert torch.equal(imgs, imgs2)
    with pytest.raises(ValueError, match="incomplete: 16 of 50,625"):
        dsprites_sequences(4, data_dir=tmp_path, verbose=False)
    D._MEMO.clear()


def test_streamed_rows_match_full_read(tmp_path):
    path = tmp_path / "a.npz"
    a = np.random.default_rng(1).integers(0, 255, (101, 5, 3), dtype=np.uint8)
    np.savez_compressed(path, imgs=a)
    rows = np.array([0, 6, 7, 50, 99, 100])
    assert np.array_equal(D._read_npz_rows(path, "imgs", rows, chunk_rows=7), a[rows])


# ------------------------------------------------------------------------------------- cache

def test_cache_written_atomically_reloaded_and_corrupt_cache_rerendered(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_render(size=64):  # the real one takes seconds; the cache logic is what is tested here
        calls.append(size)
        img = torch.zeros(D.N_SUBSET, 64, 64, dtype=torch.bool)
        img[torch.arange(D.N_SUBSET), 0, torch.arange(D.N_SUBSET) % 64] = True
        return img

    monkeypatch.setattr(D, "render_subset", fake_render)
    D._MEMO.clear()
    a, fa = dsprites_subset(cache_dir=tmp_path)
    assert len(calls) == 1 and "rendered now" in capsys.readouterr().out
    path = D._cache_path(tmp_path)
    assert path.exists() and [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left
    assert a.shape == (D.N_SUBSET, 64, 64) and torch.equal(fa, torch.from_numpy(D._full_grid_factors()))
    D._MEMO.clear()
    b, _ = dsprites_subset(cache_dir=tmp_path)
    assert len(calls) == 1 and "loaded" in capsys.readouterr().out and torch.equal(a, b)
    for corrupt in (b"not a zip file", path.read_bytes()[:1000]):
        path.write_bytes(corrupt)
        D._MEMO.clear()
        c, _ = dsprites_subset(cache_dir=tmp_path)
        assert "re-rendered" in capsys.readouterr().out and torch.equal(a, c)
    assert len(calls) == 3
    D._MEMO.clear()
    dsprites_subset(cache_dir=tmp_path, verbose=False)  # the re-rendered file is valid again
    assert len(calls) == 3
    # a cache whose content does not match its checksum is also re-rendered
    with np.load(path) as f:
        packed = f["packed"].copy()
    packed[0, 0] ^= 1
    np.savez_compressed(path, packed=packed, crc32=np.int64(0), version=np.int64(D.RENDER_VERSION))
    D._MEMO.clear()
    dsprites_subset(cache_dir=tmp_path, verbose=False)
    assert len(calls) == 4
    # the source keys model caches: it names the renderer, not where its cache lies
    sources = {str(d): D._subset_packed(cache_dir=tmp_path / d, verbose=False)[2] for d in ("a", "b")}
    assert sources["a"] == sources["b"] and str(tmp_path) not in sources["a"]
    assert D.default_cache_dir().parent.name == "_cache" and D.default_cache_dir().parent.parent == D.repo_root() \
        or "TVAE_CACHE_DIR" in __import__("os").environ
    D._MEMO.clear()


# ------------------------------------------------------------------------------ MNIST sequences

@pytest.fixture(scope="module")
def digits():
    d = mnist(None, verbose=False)
    return d.train_x[:600], d.train_y[:600]


@pytest.fixture(scope="module")
def mseq(digits):
    return mnist_sequences(*digits, 120, seed=0)


def _value(seq, n):  # per-pixel max over RGB: the grey digit (hue rotation keeps the HSV value)
    return seq.x.reshape(n, seq.x.shape[1], *seq.frame_shape).amax(2)


def test_mnist_shapes_and_labels(digits, mseq):
    assert isinstance(mseq, SequenceData) and len(mseq) == 120
    assert mseq.x.shape == (120, S, 3 * 28 * 28) and mseq.x.dtype == torch.float32
    assert mseq.frame_shape == (3, 28, 28) and mseq.frames(5).shape == (S, 3, 28, 28)
    assert 0 <= mseq.x.min() and mseq.x.max() <= 1 and mseq.x.max() > 0.9
    assert mseq.transforms == ("rotation", "color", "scale")
    assert torch.bincount(mseq.transform).tolist() == [40, 40, 40]  # balanced, random order
    assert mseq.factor.shape == mseq.step.shape == mseq.canonical.shape == (120, S)
    assert mseq.latents.shape == (120, S, 3) and mseq.latent_names == ("rotation", "color", "scale")
    assert "MNIST" in mseq.source and "\n" not in mseq.source
    # n == M: every digit used once, so the labels are a permutation of the input labels
    x, y = digits
    full = mnist_sequences(x[:50], y[:50], 50, transforms=("color",), seed=1)
    assert sorted(full.label.tolist()) == sorted(y[:50].tolist())


def test_mnist_rotation_is_cyclic(mseq):
    rot = mseq.transform == 0
    V = _value(mseq, 120)[rot]  # (n, S, 28, 28)
    step = 360.0 / S
    bil = InterpolationMode.BILINEAR

    def rel(a, b):
        return (a - b).abs().sum((-1, -2)) / b.sum((-1, -2))

    nxt = TF.rotate(V[:, -1:], step, interpolation=bil)[:, 0]  # frame S-1 turned one more step
    back = TF.rotate(V[:, -1:], -step, interpolation=bil)[:, 0]
    good, bad = rel(nxt, V[:, 0]), rel(back, V[:, 0])
    assert good.mean() < 0.2 and (good < bad).all()
    # and in general frame l turned by 20 deg (counter-clockwise) matches frame l+1
    turned = TF.rotate(V[:, :-1].reshape(-1, 1, 28, 28), step, interpolation=bil).reshape(V[:, 1:].shape)
    assert rel(turned, V[:, 1:]).mean() < 0.2


def test_mnist_color_keeps_the_digit_and_changes_rgb(mseq):
    col = mseq.transform == 1
    X = mseq.x.reshape(120, S, 3, 28, 28)[col]
    V = X.amax(2)
    assert torch.allclose(V, V[:, :1].expand_as(V), atol=1e-6)  # same grey digit in every frame
    third = (X[:, :S // 3] - X[:, S // 3:2 * S // 3]).abs().sum((2, 3, 4)) / V[:, :S // 3].sum((2, 3))
    assert (third > 1.0).all()  # 120 deg apart: different colours
    # the colouring is exactly torchvision's adjust_hue of the red digit (g, 0, 0)
    for i, l in ((0, 0), (0, 7), (3, 13)):
        g = V[i, l]
        red = torch.stack([g, torch.zeros_like(g), torch.zeros_like(g)])[None]
        h = float(mseq.latents[col][i, l, 1])
        ref = TF.adjust_hue(red, ((h + 180) % 360 - 180) / 360)[0]
        assert torch.allclose(X[i, l], ref, atol=2e-5)
    # hue 0 is red
    c = hue_colors(torch.tensor([0.0, 120.0, 240.0]))
    assert torch.allclose(c, torch.eye(3), atol=1e-5)


def test_mnist_scale_ramp_then_wrap(mseq):
    sc = mseq.transform == 2
    ink = _value(mseq, 120)[sc].sum((-1, -2))  # (n, S)
    scale = mseq.latents[sc][..., 2]
    nxt_ink, nxt_scale = ink.roll(-1, 1), scale.roll(-1, 1)
    up = nxt_scale > scale
    assert up.sum(1).eq(S - 1).all()  # one wrap per cycle
    assert (nxt_ink[up] > ink[up]).all()  # more ink along the ramp
    assert (nxt_ink[~up] < 0.4 * ink[~up]).all()  # 126% -> 60%: (0.6/1.26)^2 = 0.23 of the ink
    grid = mnist_grids(S)["scale"]
    assert grid[0] == pytest.approx(0.60) and grid[-1] == pytest.approx(1.26)
    assert torch.allclose(grid.diff(), torch.full((S - 1,), 0.66 / 17, dtype=torch.float64))


def test_mnist_only_one_factor_changes_and_labels_are_consistent(mseq):
    grids = mnist_grids(S)
    kc = int(grids["scale_canonical"])
    assert grids["scale"][kc] == pytest.approx(0.9882, abs=1e-4)
    for i in range(120):
        k = int(mseq.transform[i])
        lat = mseq.latents[i]
        for j in range(3):
            if j == k:
                assert len(set(lat[:, j].tolist())) == S  # every grid value once
            else:
                assert (lat[:, j] == lat[0, j]).all()
        assert torch.equal(mseq.factor[i], lat[:, k])
        step = mseq.step[i]
        assert torch.equal((step - step[0]) % S, torch.arange(S))  # one grid step per frame, cyclic
        grid = grids[mseq.transforms[k]].float()
        expect = grid[(step + kc) % S] if mseq.transforms[k] == "scale" else grid[step]
        assert torch.allclose(mseq.factor[i], expect)
        assert mseq.canonical[i].sum() == 1 and torch.equal(mseq.canonical[i], step == 0)
        canon = mseq.factor[i][mseq.canonical[i]].item()
        assert canon == pytest.approx({"rotation": 0.0, "color": 0.0, "scale": 0.9882}[mseq.transforms[k]], abs=1e-4)
    # start poses are random: the first frame's step takes many values
    assert len(set(mseq.step[:, 0].tolist())) > S // 2


def test_mnist_combined_color_and_rotation(digits):
    c = mnist_sequences(*digits, 12, seed=2, combined=True)
    assert c.transforms == ("color+rotation",) and (c.transform == 0).all()
    lat = c.latents
    assert torch.allclose((lat[:, 1:, :2] - lat[:, :-1, :2]) % 360, torch.full_like(lat[:, 1:, :2], 20.0))
    assert (lat[..., 2] == 1.0).all() and torch.equal(c.factor, lat[..., 0])
    assert c.canonical.sum(1).eq(1).all()
    same = mnist_sequences(*digits, 12, seed=2, transforms=("color+rotation",))
    assert torch.equal(c.x, same.x)


def test_perspective_known_views_and_foreshortening(digits):
    """Fig 19's path: a = 0 is the identity, a = 180 the upside-down digit (R_y(180) R_z(180) maps
    (X, Y) to (X, -Y) at the same depth), a = 360 the identity again; between them the view changes
    and the homography is the plane seen through a pinhole (checked on a known point)."""
    from tvae_experiments.data.sequences import perspective_frames, perspective_homography

    x = digits[0][:6].reshape(6, 1, 28, 28)
    torch.testing.assert_close(perspective_frames(x, 0.0), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(perspective_frames(x, 180.0), x.flip(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(perspective_frames(x, 360.0), x, atol=1e-5, rtol=0)
    assert (perspective_frames(x, 180.0) - x.flip(3)).abs().max() > 0.5  # a vertical flip, not a horizontal one
    for a in (20.0, 60.0, 100.0):
        assert (perspective_frames(x, a) - x).abs().mean() > 0.05
    # the point (X, Y) = (10, 0) at a = 40: P = R_y R_z (10, 0, 0) + (0, 0, d), image f P_xy / P_z
    a, d = math.radians(40.0), math.hypot(28, 28)
    P = np.array([10 * math.cos(a) * math.cos(a), 10 * math.sin(a), d + 10 * math.sin(a) * math.cos(a)])
    h = perspective_homography(40.0) @ torch.tensor([10.0, 0.0, 1.0], dtype=torch.float64)
    np.testing.assert_allclose((h[:2] / h[2]).numpy(), d * P[:2] / P[2], rtol=1e-12)


def test_perspective_refuses_edge_on_views_and_bad_distances(digits):
    from tvae_experiments.data.sequences import perspective_frames, perspective_homography

    with pytest.raises(ValueError, match="edge-on"):
        perspective_homography(90.0)
    with pytest.raises(ValueError, match="distance"):
        perspective_homography(30.0, distance=-5.0)
    with pytest.raises(ValueError, match="S=12"):
        mnist_sequences(*digits, 2, S=12, transforms=("color+perspective",))
    # a camera close to the plane: rays meeting the plane behind it are masked (read 0), never garbage
    x = torch.ones(1, 1, 28, 28)
    near = perspective_frames(x, 60.0, distance=10.0)
    assert torch.isfinite(near).all() and near.min() >= 0 and near.max() <= 1 + 1e-6
    assert (near == 0).any() and (near > 0.5).any()


def test_mnist_color_and_perspective_sequences(digits):
    c = mnist_sequences(*digits, 6, seed=3, transforms=("color+perspective",))
    assert c.transforms == ("color+perspective",) and c.x.shape == (6, S, 2352)
    lat = c.latents
    assert torch.allclose((lat[:, 1:, :2] - lat[:, :-1, :2]) % 360, torch.full_like(lat[:, 1:, :2], 20.0))
    assert torch.equal(c.factor, lat[..., 0]) and c.canonical.sum(1).eq(1).all()
    from tvae_experiments.data.sequences import perspective_frames

    # a frame rebuilt by hand: the canonical frame (angle 0) is the plain digit times a pure hue (max
    # channel 1), and frame l is that digit seen at frame l's angle, times frame l's hue
    i = 2
    digit = c.x[i, int(c.step[i].argmin())].reshape(3, 28, 28).amax(0)
    for l in range(S):
        seen = perspective_frames(digit.reshape(1, 1, 28, 28), float(lat[i, l, 0]))[0, 0]
        torch.testing.assert_close(c.x[i, l].reshape(3, 28, 28).amax(0), seen, atol=1e-4, rtol=0)


def test_mnist_other_sequence_lengths(digits):
    s = mnist_sequences(*digits, 9, S=12, seed=0)
    assert s.x.shape == (9, 12, 2352) and s.canonical.sum(1).eq(1).all()
    assert set(s.latents[s.transform == 0][..., 0].flatten().tolist()) <= {30.0 * k for k in range(12)}


def test_seeds_determine_everything(digits):
    a = mnist_sequences(*digits, 30, seed=5)
    b = mnist_sequences(*digits, 30, seed=5)
    c = mnist_sequences(*digits, 30, seed=6)
    for f in ("x", "transform", "factor", "step", "canonical", "label", "latents"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f
    assert a.source == b.source
    assert not torch.equal(a.x, c.x)


def test_split_and_errors(digits, mseq):
    tr, te = mseq.split(20)
    assert len(tr) == 100 and len(te) == 20
    assert torch.equal(te.x, mseq.x[100:]) and torch.equal(tr.step, mseq.step[:100])
    assert torch.equal(te.latents, mseq.latents[100:]) and te.transforms == mseq.transforms
    with pytest.raises(ValueError, match="n_test must be <= 119"):
        mseq.split(120)
    with pytest.raises(ValueError, match="transforms='shear' is not allowed; choose one of: 'rotation'"):
        mnist_sequences(*digits, 4, transforms=("rotation", "shear"))
    with pytest.raises(ValueError, match="twice"):
        mnist_sequences(*digits, 4, transforms=("color", "color"))
    with pytest.raises(ValueError, match="S must be >= 2"):
        mnist_sequences(*digits, 4, S=1)
    with pytest.raises(ValueError, match=r"images must be \(M, 784\)"):
        mnist_sequences(digits[0].reshape(-1, 28, 28), digits[1], 4)
    with pytest.raises(ValueError, match="combined=True"):
        mnist_sequences(*digits, 4, transforms=("scale",), combined=True)
    with pytest.raises(ValueError, match="S=18 is not allowed; choose one of: 15"):
        dsprites_sequences(4, S=18)
    with pytest.raises(ValueError, match="transforms='shape' is not allowed"):
        dsprites_sequences(4, transforms=("x", "shape"))
    with pytest.raises(ValueError, match="image_size=48 is not allowed"):
        dsprites_sequences(4, image_size=48)


# --------------------------------------------------------------------------- dSprites sequences

@pytest.fixture(scope="module")
def dseq():
    D._MEMO.clear()
    return dsprites_sequences(200, seed=0, verbose=False)  # default cache: rendered once, then read


def test_dsprites_shapes_and_labels(dseq):
    assert dseq.x.shape == (200, 15, 4096) and dseq.frame_shape == (1, 64, 64)
    assert dseq.transforms == ("x", "y", "orientation", "scale")
    assert torch.bincount(dseq.transform).tolist() == [50] * 4
    assert set(dseq.x.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(dseq.label, dseq.latents[:, 0, 0].long()) and set(dseq.label.tolist()) == {0, 1, 2}
    assert dseq.latent_names == ("shape", "scale", "orientation", "x", "y")


def test_dsprites_only_one_factor_changes_and_canonical_frames(dseq):
    col = {"x": 3, "y": 4, "orientation": 2, "scale": 1}
    values = D.subset_grid_values()
    for i in range(200):
        name = dseq.transforms[int(dseq.transform[i])]
        j = col[name]
        lat = dseq.latents[i]
        for k in range(5):
            if k != j:
                assert (lat[:, k] == lat[0, k]).all()
        period = 5 if name == "scale" else 15
        step = dseq.step[i]
        assert torch.equal((step - step[0]) % period, torch.arange(15) % period)
        assert torch.allclose(dseq.factor[i], torch.from_numpy(values[j]).float()[step])
        assert torch.equal(dseq.factor[i], lat[:, j])
        assert dseq.canonical[i].sum() == (3 if name == "scale" else 1)
        assert torch.equal(dseq.canonical[i], step == 0)
        assert (dseq.x[i, 1:] != dseq.x[i, :-1]).any(1).all()  # every frame differs from the last


def test_dsprites_frames_follow_their_factor(dseq):
    X = dseq.x.reshape(200, 15, 64, 64)
    cols = torch.arange(64).float()
    mass = X.sum((-1, -2))
    cx = (X.sum(-2) * cols).sum(-1) / mass
    cy = (X.sum(-1) * cols).sum(-1) / mass
    for k, c in ((0, cx), (1, cy)):
        sel = dseq.transform == k
        d = c[sel].roll(-1, 1) - c[sel]  # centroid moves +1.55 px per step, jumps back at the wrap
        wrap = dseq.step[sel] == 14
        assert (d[~wrap] > 0.8).all() and (d[wrap] < -15).all()
    sel = dseq.transform == 3  # scale: ink grows along the 5 values, drops at each of the 3 wraps
    d = mass[sel].roll(-1, 1) - mass[sel]
    wrap = dseq.step[sel] == 4
    assert (d[~wrap] > 0).all() and (d[wrap] < 0).all()
    sel = dseq.transform == 2  # orientation: the area stays (nearly) the same
    m = mass[sel]
    assert ((m.amax(1) - m.amin(1)) / m.mean(1) < 0.2).all()
    # frames are the renderer's output for their latents (procedural source)
    if "procedural" in dseq.source:
        lat = dseq.latents[:7].reshape(-1, 5).double()
        re = render_dsprites(lat[:, 0].long(), lat[:, 1], lat[:, 2], lat[:, 3], lat[:, 4])
        assert torch.equal(re.float().reshape(7, 15, 4096), dseq.x[:7])


def test_dsprites_downsampled_and_deterministic(dseq):
    small = dsprites_sequences(200, seed=0, image_size=32, verbose=False)
    assert small.x.shape == (200, 15, 1024) and small.frame_shape == (1, 32, 32)
    pooled = torch.nn.functional.avg_pool2d(dseq.x.reshape(-1, 1, 64, 64), 2).reshape(200, 15, 1024)
    assert torch.equal(small.x, pooled) and torch.equal(small.step, dseq.step)
    assert set(small.x.unique().tolist()) > {0.0, 1.0}  # grey edge values are kept
    again = dsprites_sequences(200, seed=0, verbose=False)
    other = dsprites_sequences(200, seed=1, verbose=False)
    assert torch.equal(again.x, dseq.x) and torch.equal(again.factor, dseq.factor)
    assert not torch.equal(other.x, dseq.x)
    tr, te = dseq.split(50)
    assert len(tr) == 150 and torch.equal(te.canonical, dseq.canonical[150:])


# ------------------------------------------------------------------- contract with CapCorr (A.11)

def test_exactly_equivariant_code_scores_capcorr_one(mseq, dseq):
    """``step``/``canonical`` are what ``metrics.capcorr_sequences`` needs: a code that rolls one
    unit per frame (t_l = Roll_l(t_0)) scores CapCorr 1 on every transformation, including MNIST
    scale (canonical in mid-grid) and dSprites scale (three canonical frames)."""
    from tvae_core.metrics import capcorr_sequences
    from tvae_core.roll import roll

    for seq in (mseq, dseq):
        n, L = seq.step.shape
        t0 = torch.randn(n, 3 * L, generator=torch.Generator().manual_seed(0))
        t = roll(t0[:, None].expand(-1, L, -1), torch.arange(L), L)
        for k, name in enumerate(seq.transforms):
            sel = seq.transform == k
            assert capcorr_sequences(t[sel], seq.step[sel], seq.canonical[sel], L) == pytest.approx(1.0), name


def test_overlap_by_offset_shows_the_square_symmetry():
    from tvae_experiments.data.sequences import overlap_by_offset

    d = dsprites_sequences(300, transforms=("orientation",), seed=5, verbose=False)
    iou = {s: overlap_by_offset(d.x[d.label == s]) for s in range(3)}  # square, ellipse, heart
    for v in iou.values():
        assert v.shape == (15,) and v[0] == 1.0 and (v[1:] < 1.0).all()
    # a square 5 steps (92.3 deg) or 10 steps on is nearly the same image; a heart is not
    assert iou[0][5] > 0.9 and iou[0][10] > 0.9 and iou[0][2] < 0.8
    assert iou[2][5] < 0.85
    with pytest.raises(ValueError, match=r"\(N, S, P\)"):
        overlap_by_offset(d.x[0])


@pytest.mark.parametrize("image_size", [64, 32])
def test_uint8_sequences_equal_the_rounded_float_ones_built_in_chunks(digits, monkeypatch, image_size):
    """The paper profile builds its training sets as uint8, a chunk at a time (no full-size float copy):
    the result must equal as_uint8() of the float sequences, chunk boundaries included."""
    from tvae_experiments.data import sequences as seq_mod

    monkeypatch.setattr(seq_mod, "_CHUNK", 3)  # several chunks and a partial last one
    m = mnist_sequences(*digits, 10, S=6, seed=4)
    m8 = mnist_sequences(*digits, 10, S=6, seed=4, uint8=True)
    assert m8.x.dtype == torch.uint8 and torch.equal(m8.x, m.as_uint8().x) and m8.source == m.as_uint8().source
    assert torch.equal(m8.factor, m.factor) and torch.equal(m8.label, m.label)
    d = dsprites_sequences(10, seed=4, image_size=image_size, verbose=False)
    d8 = dsprites_sequences(10, seed=4, image_size=image_size, verbose=False, uint8=True)
    assert d8.x.dtype == torch.uint8 and torch.equal(d8.x, d.as_uint8().x) and d8.source == d.as_uint8().source
    back = d8.as_float()
    assert back.x.dtype == torch.float32 and (back.x - d.x).abs().max() <= 0.5 / 255 + 1e-7
    assert d.as_float() is d
