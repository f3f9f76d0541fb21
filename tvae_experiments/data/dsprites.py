"""dSprites for the capsule experiments (TVAE paper, A.10): the paper's 50,625-image subset.

Source, in this order:

1. the official ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` in ``data_dir`` (or in
   ``data_dir/dsprites/``; ``data_dir`` may also be the file itself).  Only ``imgs`` and
   ``latents_classes`` are read (``latents_values`` follows from the classes; the pickled
   ``metadata`` is never unpickled).  ``imgs`` is streamed out of the zip in chunks, so the
   3 GB of the full array are never in memory at once;
2. otherwise a **procedural renderer of the same factor grid** (:func:`render_dsprites`), whose
   output is cached as bit-packed rows in ``<repo>/_cache/dsprites/`` (or
   ``$TVAE_CACHE_DIR/dsprites/``), written atomically; an unreadable cache is re-rendered.

The subset (A.10; the official code's slices ``scale[1:]``, ``orientation[0:30:2]``,
``x[0:30:2]``, ``y[0:30:2]``): all 3 shapes, the 5 largest of the 6 scales, every other one of
the first 30 orientations and of the first 30 x- and y-positions: 3*5*15*15*15 = 50,625 images.
Subset factor indices are ``[shape, scale (0..4), orientation (0..14), x (0..14), y (0..14)]``
and images are stored in that C order (``y`` fastest), like the original file.

Renderer geometry (the official generator is not public, so these are our choices; they match
the documented factor grid exactly and the original's look approximately):

* canvas 64x64, continuous pixel coordinates with pixel ``(r, c)`` covering ``[c, c+1) x [r, r+1)``;
  a pixel is on when its centre is inside the shape (binary, no anti-aliasing, like dSprites);
* sprite centre ``(8 + 48 x, 8 + 48 y)`` px: positions 0..1 span the middle 3/4 of the canvas,
  1.55 px per step of the 32-value grid (the original moves "the smallest steps such that all
  images differ", i.e. just over a pixel); ``y`` grows downwards (image rows);
* size at scale ``s``: square of side ``16 s`` px (a quarter of the canvas at ``s = 1``);
  ellipse with axes ``16 s`` x ``8 s`` px (long axis horizontal at orientation 0); heart
  ``(X^2 + Y^2 - 1)^3 <= X^2 Y^3`` (lobes up, point down at orientation 0) scaled to a width of
  ``16 s`` px.  Every shape rotates about its area centroid, so the centroid of the ink is
  ``(8 + 48 x, 8 + 48 y)`` whatever the orientation (up to pixelation);
* orientation ``theta`` (radians, grid ``linspace(0, 2 pi, 40)`` as in the original, so index 10
  is 92.3 deg, not 90) rotates counter-clockwise on screen;
* at the extreme positions a rotated large sprite can be clipped by up to ~3 px at the border.
"""
from __future__ import annotations

import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from tvae_core.checks import check_int
from tvae_experiments.files import atomic_file, repo_root

__all__ = ["render_dsprites", "dsprites_subset", "subset_grid_values", "SHAPES", "OFFICIAL_NPZ",
           "N_SUBSET", "SUBSET_SIZES", "default_cache_dir"]

OFFICIAL_NPZ = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
SHAPES = ("square", "ellipse", "heart")
SUBSET_SIZES = (3, 5, 15, 15, 15)          # shape, scale, orientation, x, y
N_SUBSET = int(np.prod(SUBSET_SIZES))       # 50,625
RENDER_VERSION = 1                          # bump when the renderer's geometry changes (cache key)

# the original dSprites grids (latents_values): scale linspace(0.5, 1, 6), orientation
# linspace(0, 2 pi, 40), positions linspace(0, 1, 32)
FULL_SCALES = np.linspace(0.5, 1.0, 6)
FULL_ORIENTATIONS = np.linspace(0.0, 2 * math.pi, 40)
FULL_POSITIONS = np.linspace(0.0, 1.0, 32)
# subset class indices into the full grids (A.10)
SUBSET_CLASSES = (np.arange(3), np.arange(1, 6), np.arange(0, 30, 2), np.arange(0, 30, 2), np.arange(0, 30, 2))

_SIDE = 16.0                      # square side at scale 1 (px of the 64 canvas)
_MARGIN, _SPAN = 8.0, 48.0        # centre = _MARGIN + _SPAN * pos
_HEART_HALF_WIDTH = 1.1390        # max |X| of the heart curve
_HEART_CENTROID_Y = 0.29349       # area centroid of the heart (Y up), numerically


def subset_grid_values() -> tuple[np.ndarray, ...]:
    """Factor values of the subset grid in original dSprites units:
    ``(shape ids (3,), scale (5,), orientation radians (15,), x (15,), y (15,))``."""
    return (np.arange(3, dtype=float), FULL_SCALES[SUBSET_CLASSES[1]], FULL_ORIENTATIONS[SUBSET_CLASSES[2]],
            FULL_POSITIONS[SUBSET_CLASSES[3]], FULL_POSITIONS[SUBSET_CLASSES[4]])


def render_dsprites(shape: Tensor, scale: Tensor, orientation: Tensor, x: Tensor, y: Tensor,
                    size: int = 64, chunk: int = 2048) -> Tensor:
    """Render sprites procedurally (geometry: module docstring), vectorised over the batch.

    Args:
        shape: ``(M,)`` ints, 0 square, 1 ellipse, 2 heart.
        scale: ``(M,)`` in original units (0.5..1; other positive values work).
        orientation: ``(M,)`` radians, counter-clockwise.
        x, y: ``(M,)`` positions in ``[0, 1]`` (``y`` downwards).
        size: output side; the geometry is defined on the 64 canvas and sampled at ``size``
            pixel centres (64: the original resolution).
    Returns:
        ``(M, size, size)`` bool.
    """
    check_int("size", size, minimum=1)
    vals = [torch.as_tensor(v).reshape(-1) for v in (shape, scale, orientation, x, y)]
    M = len(vals[0])
    if any(len(v) != M for v in vals):
        raise ValueError(f"shape, scale, orientation, x, y must all have the same length; got "
                         f"{[len(v) for v in vals]}")
    sh = vals[0].long()
    if M and (sh.min() < 0 or sh.max() > 2):
        raise ValueError(f"shape must hold 0 (square), 1 (ellipse) or 2 (heart); got values in "
                         f"[{int(sh.min())}, {int(sh.max())}]")
    sc, th, px, py = (v.double() for v in vals[1:])  # float64 parameters, float32 pixel maths
    if M and bool((sc <= 0).any()):
        raise ValueError("scale must be > 0")
    out = torch.zeros(M, size, size, dtype=torch.bool)
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) * (64.0 / size)  # pixel centres, 64-canvas units
    c, s = torch.cos(th), torch.sin(th)
    c = torch.where(c.abs() < 1e-12, torch.zeros_like(c), c)  # exact right angles: no rounding at edges
    s = torch.where(s.abs() < 1e-12, torch.zeros_like(s), s)
    c, s = c.float(), s.float()
    cx, cy, half = (_MARGIN + _SPAN * px).float(), (_MARGIN + _SPAN * py).float(), (sc * _SIDE / 2).float()
    for k in range(3):
        idx = (sh == k).nonzero().flatten()
        for start in range(0, len(idx), chunk):
            i = idx[start:start + chunk]
            dx = centres[None, None, :] - cx[i][:, None, None]      # (m, 1, W)
            dy_up = cy[i][:, None, None] - centres[None, :, None]   # (m, H, 1), y up
            ci, si, r = c[i][:, None, None], s[i][:, None, None], half[i][:, None, None]
            # inverse rotation into the sprite frame, in units of half the square side
            u = (ci * dx + si * dy_up) / r
            v = (ci * dy_up - si * dx) / r
            if k == 0:
                inside = torch.maximum(u.abs(), v.abs()) <= 1.0
            elif k == 1:
                inside = u * u + 4.0 * v * v <= 1.0
            else:
                X = u * _HEART_HALF_WIDTH
                Y = v * _HEART_HALF_WIDTH + _HEART_CENTROID_Y
                q = X * X + Y * Y - 1.0
                inside = q * q * q <= X * X * Y * Y * Y
            out[i] = inside
    return out


# ----------------------------------------------------------------------------- subset sources

def default_cache_dir() -> Path:
    """``$TVAE_CACHE_DIR/dsprites`` if set, else ``<repo>/_cache/dsprites``."""
    env = os.environ.get("TVAE_CACHE_DIR")
    return Path(env) / "dsprites" if env else repo_root() / "_cache" / "dsprites"


def _find_official(data_dir) -> Path | None:
    if data_dir is None:
        return None
    p = Path(data_dir)
    if p.is_file() and p.suffix == ".npz":
        return p
    for cand in (p / OFFICIAL_NPZ, p / "dsprites" / OFFICIAL_NPZ):
        if cand.is_file():
            return cand
    return None


def _read_npz_rows(path: Path, key: str, rows: np.ndarray, chunk_rows: int = 16384) -> np.ndarray:
    """Rows ``rows`` (sorted, unique) of array ``key`` in an ``.npz``, streamed chunk by chunk."""
    with zipfile.ZipFile(path) as zf, zf.open(key + ".npy") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        if fortran or dtype.hasobject:
            raise ValueError(f"{path}:{key} is not a plain C-ordered array")
        row_shape = tuple(shape[1:])
        row_bytes = int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize
        out = np.empty((len(rows),) + row_shape, dtype=dtype)
        done = 0
        for start in range(0, shape[0], chunk_rows):
            stop = min(start + chunk_rows, shape[0])
            lo, hi = np.searchsorted(rows, [start, stop])
            buf = fh.read((stop - start) * row_bytes)
            if len(buf) != (stop - start) * row_bytes:
                raise ValueError(f"{path}:{key} is truncated")
            if hi > lo:
                block = np.frombuffer(buf, dtype=dtype).reshape((stop - start,) + row_shape)
                out[done:done + hi - lo] = block[rows[lo:hi] - start]
                done += hi - lo
            if done == len(rows):
                break
    return out


def _load_official(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The A.10 subset of the official file: ``(images (K, 64, 64) uint8 0/1, factors (K, 5))``,
    sorted by subset index.  ``K = 50,625`` for the real file; fewer for partial files."""
    with np.load(path, allow_pickle=False) as f:
        classes = np.asarray(f["latents_classes"])  # (737280, 6): color, shape, scale, orientation, x, y
    if classes.ndim != 2 or classes.shape[1] != 6:
        raise ValueError(f"{path}: latents_classes must be (N, 6) [color, shape, scale, orientation, x, y], "
                         f"got {classes.shape}")
    _, shp, scl, ori, xx, yy = classes.T
    keep = ((shp >= 0) & (shp < 3) & (scl >= 1) & (scl <= 5) & (ori < 30) & (ori % 2 == 0)
            & (xx < 30) & (xx % 2 == 0) & (yy < 30) & (yy % 2 == 0))
    rows = np.nonzero(keep)[0]
    factors = np.stack([shp[rows], scl[rows] - 1, ori[rows] // 2, xx[rows] // 2, yy[rows] // 2], 1).astype(np.int64)
    lin = np.ravel_multi_index(factors.T, SUBSET_SIZES)
    if len(np.unique(lin)) != len(lin):
        raise ValueError(f"{path}: latents_classes list some factor combination twice")
    imgs = _read_npz_rows(path, "imgs", rows)  # rows ascending
    order = np.argsort(lin, kind="stable")
    return (imgs[order] != 0).astype(np.uint8), factors[order]


def _full_grid_factors() -> np.ndarray:
    return np.stack(np.unravel_index(np.arange(N_SUBSET), SUBSET_SIZES), 1).astype(np.int64)  # (50625, 5)


def render_subset(size: int = 64) -> Tensor:
    """Render the whole A.10 subset procedurally: ``(50625, size, size)`` bool in subset order."""
    f = torch.from_numpy(_full_grid_factors())
    vals = [torch.from_numpy(v) for v in subset_grid_values()]
    return render_dsprites(f[:, 0], vals[1][f[:, 1]], vals[2][f[:, 2]], vals[3][f[:, 3]], vals[4][f[:, 4]], size=size)


def _cache_path(cache_dir) -> Path:
    return Path(cache_dir or default_cache_dir()) / f"dsprites_subset_procedural_v{RENDER_VERSION}.npz"


def _read_cache(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as f:
        packed, crc, version = f["packed"], int(f["crc32"]), int(f["version"])
    if version != RENDER_VERSION or packed.shape != (N_SUBSET, 64 * 64 // 8) or packed.dtype != np.uint8:
        raise ValueError(f"unexpected content (version {version}, shape {packed.shape})")
    if zlib.crc32(packed.tobytes()) != crc:
        raise ValueError("checksum mismatch")
    return packed


def _write_cache(path: Path, packed: np.ndarray) -> None:
    with atomic_file(path, "wb") as fh:
        np.savez_compressed(fh, packed=packed, crc32=np.int64(zlib.crc32(packed.tobytes())),
                            version=np.int64(RENDER_VERSION))


_MEMO: dict = {}
_NOTES: dict = {}  # how the procedural subset was obtained (printed once)


def _subset_packed(data_dir=None, cache_dir=None, verbose: bool = True) -> tuple[np.ndarray, np.ndarray, str]:
    """``(packed (K, 512) uint8 = np.packbits of the 64x64 images, factors (K, 5) int64, source)``.

    Memoised per source in the process (packed: 26 MB for the whole subset).  ``source`` is
    stable across runs (it may key caches); how the images were obtained is only printed."""
    official = _find_official(data_dir)
    if official is not None:
        st = official.stat()
        key = ("official", str(official.resolve()), st.st_size, st.st_mtime_ns)
        if key not in _MEMO:
            imgs, factors = _load_official(official)
            _MEMO[key] = (np.packbits(imgs.reshape(len(imgs), -1).astype(bool), axis=1), factors,
                          f"official dSprites file {official} ({len(imgs):,} subset images)")
    else:
        path = _cache_path(cache_dir)
        key = ("procedural", str(path))
        if key not in _MEMO:
            why = f"data_dir={data_dir!r} has no {OFFICIAL_NPZ}" if data_dir is not None else "data_dir=None"
            packed, note = None, "loaded"
            if path.exists():
                try:
                    packed = _read_cache(path)
                except Exception as e:  # corrupt or stale: render again
                    note = f"re-rendered: the cache was unreadable ({type(e).__name__}: {e})"
            else:
                note = "rendered now"
            if packed is None:
                imgs = render_subset(64).reshape(N_SUBSET, -1).numpy()
                packed = np.packbits(imgs, axis=1)
                _write_cache(path, packed)
            # the source names what the images are, never where they are cached: it keys model caches,
            # which must not change when the repository or $TVAE_CACHE_DIR moves
            _MEMO[key] = (packed, _full_grid_factors(), f"procedural dSprites renderer v{RENDER_VERSION}")
            _NOTES[key] = f"{why}; {note}, cached at {path}"
    packed, factors, source = _MEMO[key]
    if verbose:
        note = _NOTES.pop(key, "in memory") if official is None else None
        print(f"dSprites source: {source}" + (f"; {note}" if note else ""))
    return packed, factors, source


def unpack_images(packed: np.ndarray, side: int = 64) -> Tensor:
    """``np.packbits`` rows back to ``(K, side, side)`` bool."""
    return torch.from_numpy(np.unpackbits(packed, axis=1, count=side * side).astype(bool)).reshape(-1, side, side)


def dsprites_subset(data_dir=None, verbose: bool = True, cache_dir=None) -> tuple[Tensor, Tensor]:
    """The A.10 subset: ``(images (K, 64, 64) bool, factors (K, 5) long)``.

    ``factors`` are subset grid indices ``[shape (0 square, 1 ellipse, 2 heart), scale (0..4 =
    0.6..1.0), orientation (0..14), x (0..14), y (0..14)]`` (values: :func:`subset_grid_values`),
    rows in C order of the grid.  ``K = 50,625`` unless ``data_dir`` holds a partial official
    file, in which case the subset images present are returned.  Prints one line naming the
    source (official file, or the procedural renderer and its cache)."""
    packed, factors, _ = _subset_packed(data_dir, cache_dir, verbose)
    return unpack_images(packed), torch.from_numpy(factors)
