"""Transforming sequences with factor labels (TVAE paper, Sec 6.3, A.9, A.10, A.11).

Each sequence starts from a random example in a random pose and applies ONE transformation
step by step, cyclically (after the last grid value comes the first), for ``S`` frames.  Every
sequence carries the name of its transformation and, per frame, the value and grid step of the
transformed factor and whether it is at the canonical value (``Omega`` of CapCorr, A.11).

Conventions shared by both data sets
-------------------------------------
* ``step[i, l]`` counts grid steps from the factor's **canonical value**, in the direction of the
  transformation, modulo the factor's period; so ``canonical == (step == 0)`` and
  ``|step_Omega - step_0| = step_0`` is the number of steps between frame 0 and the canonical
  frame that Eq 17 correlates with the observed capsule roll.  For every factor except MNIST
  scale the canonical value is the first grid value, so ``step`` is simply the grid index.
* Each sequence draws its transformation so that the transformations are balanced
  (a random permutation of ``0, 1, .., T-1, 0, 1, ..``): each sequence's transformation is
  uniformly random, as in A.9, and every transformation occurs when ``n >= T``.
* The factors not being transformed keep one random grid value for the whole sequence
  (the official code's "random pose"); the transformed one starts at a random step.
* Everything is drawn from one ``torch.Generator`` seeded by ``seed``: same seed, same tensors.

MNIST (A.9)
-----------
Frames are RGB ``3x28x28`` (the paper's decoder outputs 2352 = 3*28*28).  As in the official
code, a grey digit ``g`` becomes the red image ``(g, 0, 0)`` (hue 0) before hue rotation, so a
frame is ``g' * c(h)`` where ``g'`` is the digit rotated and scaled about the image centre
(``torchvision.transforms.v2.functional.affine``, bilinear, 28x28 kept) and ``c(h)`` the colour
``adjust_hue`` gives pure red at hue shift ``h`` (exactly ``adjust_hue`` of the red image, since
hue rotation of ``(g, 0, 0)`` only depends on ``g`` through its value channel).  Grids for
``S = 18`` (``S`` may differ: angles in ``360/S`` degree steps):

* rotation: ``0, 20, .., 340`` degrees (counter-clockwise); canonical 0;
* color: hue shift ``0, 20, .., 340`` degrees; canonical 0 (red);
* scale: ``linspace(0.60, 1.26, S)``: 0.60, 0.6388, .., 1.2212, 1.26, then back to 0.60.  This
  is the official code's list (``0.60 0.64 .. 1.22 1.26``, the same values rounded to 2
  decimals); its step is 3.88%, the paper's "3.66% increments" is (1.26-0.60)/18.  Canonical:
  the value nearest 100%, 0.9882 (grid index 10); ``step`` counts from there;
* ``"color+rotation"`` (Fig 1, ``combined=True``): hue and angle advance together, each from its
  own random start, at scale exactly 1 (the official ``AddDualTransformationDims``);
  ``factor``/``step``/``canonical`` describe the rotation.
* ``"color+perspective"`` (Fig 19): hue and a *perspective angle* ``a`` advance together; frame
  ``a`` is the digit's plane turned in-plane by ``a`` and then about its vertical axis by ``a``,
  seen by a pinhole camera (:func:`perspective_frames`): a cyclic path (period 360 degrees) through
  tilted, foreshortened and, at ``a = 180``, upside-down views.  ``latents[..., 0]`` holds ``a``.

dSprites (A.10)
---------------
Frames ``1x64x64`` from the 50,625-image subset (:mod:`tvae_experiments.data.dsprites`: the official file
when present, else the procedural renderer).  ``S`` must be 15: x, y and orientation step through
their 15 subset values; scale loops over its 5 values 3 times (3 canonical frames per sequence).
``factor`` is in original dSprites units (x, y in [0, 1], orientation in radians, scale 0.6..1);
canonical: index 0 (x = y = 0, orientation 0, scale 0.6).  ``image_size`` 32 (or 16, 8) area-
averages 64x64 frames, keeping grey values in [0, 1].

Toy bumps (:func:`bump_sequences`)
-----------------------------------
Frames ``1xSxS``: a binary disc on a torus moving one pixel per frame in x or y; grid ``0 .. S-1``,
canonical 0.  A problem with a known equivariant answer that a small TVAE learns in seconds on a
CPU, for tests that training learns capsules (``tests/test_learned_capsules.py``).
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from tvae_core.checks import check_choice, check_int
from tvae_experiments.data.dsprites import (N_SUBSET, SUBSET_SIZES, _subset_packed, dsprites_subset, render_dsprites,
                       subset_grid_values, unpack_images)

__all__ = ["SequenceData", "mnist_sequences", "dsprites_sequences", "bump_sequences", "dsprites_subset",
           "render_dsprites", "perspective_frames", "MNIST_TRANSFORMS", "DSPRITES_TRANSFORMS", "BUMP_TRANSFORMS", "mnist_grids", "hue_colors",
           "overlap_by_offset"]

MNIST_TRANSFORMS = ("rotation", "color", "scale", "color+rotation", "color+perspective")
DSPRITES_TRANSFORMS = ("x", "y", "orientation", "scale")
BUMP_TRANSFORMS = ("x", "y")
MNIST_LATENTS = ("rotation", "color", "scale")                       # degrees, hue degrees, fraction
DSPRITES_LATENTS = ("shape", "scale", "orientation", "x", "y")       # id, 0.6..1, radians, [0,1], [0,1]
BUMP_LATENTS = ("x", "y")                                            # pixel column, pixel row


@dataclass(frozen=True)
class SequenceData:
    """Sequences of transformed images with per-frame labels of the transformed factor.

    ``N`` sequences of ``S`` frames; frames flattened to ``P = C*H*W`` pixels.
    """

    x: Tensor                             # (N, S, P) float32 in [0, 1]
    frame_shape: tuple[int, int, int]     # (C, H, W)
    transform: Tensor                     # (N,) long index into `transforms`
    transforms: tuple[str, ...]           # transformation names
    factor: Tensor                        # (N, S) float: transformed factor's value per frame
    step: Tensor                          # (N, S) long: grid steps from the canonical value (module doc)
    canonical: Tensor                     # (N, S) bool: frame at the canonical value (Omega, A.11)
    label: Tensor                         # (N,) digit class or sprite shape (0 square, 1 ellipse, 2 heart)
    source: str                           # one line: where the base images came from (+ a fingerprint)
    latents: Tensor | None = None         # (N, S, F) float: every factor's value per frame
    latent_names: tuple[str, ...] = field(default=())  # names of the F latents

    def __len__(self) -> int:
        return len(self.x)

    def split(self, n_test: int) -> tuple["SequenceData", "SequenceData"]:
        """Deterministic split: the first ``N - n_test`` sequences, then the last ``n_test``."""
        n = len(self.x)
        check_int("n_test", n_test, minimum=1, maximum=n - 1)
        k = n - n_test
        return self._take(slice(0, k), f"{self.source} [first {k}]"), self._take(slice(k, n), f"{self.source} [last {n_test}]")

    def head(self, n: int) -> "SequenceData":
        """The first ``n`` sequences (all of them when there are fewer)."""
        n = check_int("n", n, minimum=1)
        return self if n >= len(self.x) else self._take(slice(0, n), f"{self.source} [first {n}]")

    def _take(self, sl, source: str) -> "SequenceData":
        return replace(self, x=self.x[sl], transform=self.transform[sl], factor=self.factor[sl], step=self.step[sl],
                       canonical=self.canonical[sl], label=self.label[sl], source=source,
                       latents=None if self.latents is None else self.latents[sl])

    def as_uint8(self) -> "SequenceData":
        """The same sequences with ``x`` stored as ``uint8`` (``round(255 x)``): 4x less memory.

        For large training sets (the ``paper`` profile's 60,000 MNIST sequences are 10 GB in
        float32); :func:`~tvae_experiments.train.fit` scales each batch back to ``[0, 1]``.  The
        quantisation error is at most ``1/510`` per pixel (MNIST pixels are 8-bit to begin with)."""
        if self.x.dtype == torch.uint8:
            return self
        return replace(self, x=to_uint8(self.x), source=f"{self.source}{UINT8_TAG}")

    def as_float(self) -> "SequenceData":
        """``x`` as float32 in ``[0, 1]`` (``uint8`` divided by 255; float data unchanged)."""
        if self.x.dtype != torch.uint8:
            return self
        return replace(self, x=self.x.float().div_(255))

    def frames(self, i: int) -> Tensor:
        """Sequence ``i`` as ``(S, C, H, W)`` images, for plotting."""
        return self.x[i].reshape(self.x.shape[1], *self.frame_shape)


UINT8_TAG = " [uint8]"
"""Appended to ``source`` (and so to cache keys) of sequences stored as ``uint8``."""

_CHUNK = 2048
"""Sequences converted at a time when building ``uint8`` sequences (bounds the float temporaries)."""


def to_uint8(x: Tensor) -> Tensor:
    """``round(255 x)`` as ``uint8``, one chunk of ``_CHUNK`` rows at a time (no full-size float temporary)."""
    out = torch.empty(x.shape, dtype=torch.uint8)
    for i in range(0, len(x), _CHUNK):
        out[i:i + _CHUNK] = x[i:i + _CHUNK].mul(255).round_()
    return out


def _check_transforms(transforms, allowed) -> tuple[str, ...]:
    if isinstance(transforms, str):
        transforms = (transforms,)
    transforms = tuple(transforms)
    if not transforms:
        raise ValueError(f"transforms must name at least one of: {', '.join(map(repr, allowed))}")
    for t in transforms:
        check_choice("transforms", t, allowed)
    if len(set(transforms)) != len(transforms):
        raise ValueError(f"transforms={transforms!r} names a transformation twice")
    return transforms


def _balanced(n: int, T: int, g: torch.Generator) -> Tensor:
    return torch.randperm(n, generator=g) % T  # (n,) each transformation ~n/T times, in random order


# ------------------------------------------------------------------------------------------ MNIST

def mnist_grids(S: int = 18) -> dict[str, Tensor]:
    """The MNIST factor grids (A.9): rotation and hue in degrees (``360/S`` steps), scale
    ``linspace(0.60, 1.26, S)``; plus ``scale_canonical``, the index of the scale nearest 1."""
    check_int("S", S, minimum=2, maximum=360)
    deg = torch.arange(S, dtype=torch.float64) * (360.0 / S)
    scale = torch.linspace(0.60, 1.26, S, dtype=torch.float64)
    return {"rotation": deg, "color": deg.clone(), "scale": scale,
            "scale_canonical": torch.tensor(int((scale - 1.0).abs().argmin()))}


def hue_colors(hues_deg: Tensor) -> Tensor:
    """``(K,)`` hue shifts in degrees -> ``(K, 3)`` RGB of pure red after
    ``torchvision.transforms.v2.functional.adjust_hue`` by that shift."""
    from torchvision.transforms.v2 import functional as F

    out = []
    for h in hues_deg.tolist():
        red = torch.tensor([1.0, 0.0, 0.0]).reshape(1, 3, 1, 1)
        factor = ((h + 180.0) % 360.0 - 180.0) / 360.0  # adjust_hue wants [-0.5, 0.5]
        out.append(F.adjust_hue(red, factor).reshape(3))
    return torch.stack(out).clamp(0, 1)


def perspective_homography(angle_deg: float, size: int = 28, distance: float | None = None) -> Tensor:
    r"""The ``3x3`` homography ``H`` of :func:`perspective_frames`, mapping a point ``(X, Y, 1)`` of the
    digit's plane (pixel units, origin at the image centre, ``Y`` down) to the camera image.

    The plane is turned by ``R = R_y(a) R_z(a)`` (first in-plane by ``a``, clockwise on screen since
    ``Y`` points down, then about the vertical axis by ``a``, ``R_y`` with the sign of the authors'
    ``ImageTransformer``), moved to depth ``d`` and projected with focal length ``f = d``:
    :math:`H = \operatorname{diag}(f, f, 1)\,[\mathbf r_1\; \mathbf r_2\; (0, 0, d)^\top]`, so
    ``H(X, Y, 1) = (f P_x, f P_y, P_z)`` with ``P = R (X, Y, 0) + (0, 0, d)``.  At ``a = 0`` it is the
    identity; at ``a = 180`` the plane is back at depth ``d`` seen from behind: mirrored top to bottom,
    ``(X, Y) -> (X, -Y)``, no foreshortening.  ``distance`` ``d > 0`` defaults to the image diagonal (the
    authors' code uses ``f = d / (2 sin a)``, which changes with ``a``; this is its value at 30 degrees).
    At ``a = 90`` or ``270`` degrees the plane is edge-on and ``H`` is singular: refused.
    """
    a = math.radians(angle_deg)
    d = math.hypot(size, size) if distance is None else float(distance)
    if not d > 0:
        raise ValueError(f"distance={distance!r} must be > 0 (the camera's distance from the digit's plane)")
    if abs(math.cos(a)) < 1e-6:
        raise ValueError(f"angle_deg={angle_deg!r}: the plane is edge-on at 90 and 270 degrees (H is singular); "
                         f"use a grid that avoids them (S not a multiple of 4)")
    rz = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]],
                      dtype=torch.float64)
    ry = torch.tensor([[math.cos(a), 0.0, -math.sin(a)], [0.0, 1.0, 0.0], [math.sin(a), 0.0, math.cos(a)]],
                      dtype=torch.float64)
    r = ry @ rz
    plane = torch.stack([r[:, 0], r[:, 1], torch.tensor([0.0, 0.0, d], dtype=torch.float64)], 1)  # [r1 r2 t]
    return torch.diag(torch.tensor([d, d, 1.0], dtype=torch.float64)) @ plane


def perspective_frames(images: Tensor, angle_deg: float, distance: float | None = None) -> Tensor:
    """``images: (N, C, H, H)`` seen at perspective angle ``angle_deg`` (:func:`perspective_homography`),
    bilinear, zero outside the digit's plane: ``(N, C, H, H)``.

    Each output pixel's ray is intersected with the turned plane (``H^{-1}``); rays that meet it
    behind the camera, or outside the image, read 0 (at the default distance no ray meets the
    digit behind the camera; the mask matters for short distances).  Views near edge-on (80 and 100
    degrees for ``S = 18``) image the digit as a thin line; exactly edge-on ones are refused."""
    from torch.nn import functional as F

    n, c, h, w = images.shape
    if h != w:
        raise ValueError(f"images must be square (N, C, H, H), got shape {tuple(images.shape)}")
    H = perspective_homography(angle_deg, h, distance)
    centre = (h - 1) / 2
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64) - centre, torch.arange(w, dtype=torch.float64) - centre,
                          indexing="ij")
    q = torch.linalg.solve(H, torch.stack([u.reshape(-1), v.reshape(-1), torch.ones(h * w, dtype=torch.float64)]))
    front = q[2] > 1e-12                                  # q = (X, Y, 1) / P_z: P_z > 0 in front of the camera
    xy = q[:2] / torch.where(front, q[2], torch.ones_like(q[2]))
    grid = (xy / (h / 2)).T.reshape(1, h, w, 2)           # align_corners=False: pixel centre X -> X / (H/2)
    grid = torch.where(front.reshape(1, h, w, 1), grid, torch.full_like(grid, 2.0))  # 2: outside -> zero
    out = F.grid_sample(images.float(), grid.float().expand(n, h, w, 2), mode="bilinear", padding_mode="zeros",
                        align_corners=False)
    return out


def mnist_sequences(images: Tensor, labels: Tensor, n: int, S: int = 18,
                    transforms=("rotation", "color", "scale"), seed: int = 0, combined: bool = False,
                    uint8: bool = False) -> SequenceData:
    """MNIST transformation sequences (A.9; Fig 1 with ``combined=True``).

    Args:
        images: ``(M, 784)`` digits in ``[0, 1]`` (e.g. ``tvae_experiments.data.mnist.mnist(...).train_x``).
        labels: ``(M,)`` digit classes.
        n: number of sequences.  Base digits are drawn without replacement while ``n <= M``
            (with ``n > M`` every digit is used ``n // M`` or ``n // M + 1`` times).
        S: frames per sequence = grid size (18 in the paper: 20-degree steps).
        transforms: any of ``"rotation"``, ``"color"``, ``"scale"``, ``"color+rotation"``,
            ``"color+perspective"`` (Fig 19).
        seed: seeds everything.
        combined: shortcut for ``transforms=("color+rotation",)`` (Fig 1's data).
        uint8: store ``x`` as ``uint8`` (equal to :meth:`SequenceData.as_uint8` of the float result),
            built a chunk at a time: the ``paper`` profile's 60,000 sequences peak at ~6 GB, where
            the float path needs more than 24 GB.
    Returns:
        :class:`SequenceData` with ``x: (n, S, 2352)``, ``frame_shape = (3, 28, 28)``,
        ``factor`` in degrees (rotation, hue) or scale fraction, ``latents: (n, S, 3)`` =
        (angle, hue, scale) of every frame.
    """
    n = check_int("n", n, minimum=1)
    S = check_int("S", S, minimum=2, maximum=360)
    seed = check_int("seed", seed)
    transforms = _mnist_transforms(transforms, combined, S)
    images, labels = _mnist_digits(images, labels)
    M = len(images)
    g = torch.Generator().manual_seed(seed)
    pick, kind, idx, names = _mnist_draws(n, M, S, transforms, g)
    grids = mnist_grids(S)
    is_comb = torch.tensor([t in ("color+rotation", "color+perspective") for t in names])
    persp = torch.tensor([t == "color+perspective" for t in names], dtype=torch.long)  # angle = perspective angle
    s_code = torch.where(is_comb[:, None], torch.full_like(idx[..., 2], S), idx[..., 2])  # S: exactly 1.0
    scale_values = torch.cat([grids["scale"], torch.ones(1, dtype=torch.float64)])
    gray = _mnist_gray(images.float().reshape(M, 1, 28, 28), pick, idx[..., 0], s_code, persp, grids["rotation"],
                       scale_values)
    x = _mnist_colour(gray, hue_colors(grids["color"]).float(), idx[..., 1], uint8)
    latents, factor, step = _mnist_labels(idx, s_code, names, grids, scale_values)
    checksum = zlib.crc32(images[pick].float().mul(255).round().to(torch.uint8).numpy().tobytes())
    source = (f"MNIST sequences (A.9): {n} x {S} frames of {M} digits (crc32 {checksum:08x}), "
              f"transforms {'/'.join(transforms)}, seed {seed}") + (UINT8_TAG if uint8 else "")
    return SequenceData(x=x, frame_shape=(3, 28, 28), transform=kind, transforms=transforms,
                        factor=factor.float(), step=step.long(), canonical=step == 0,
                        label=labels[pick].long(), source=source, latents=latents, latent_names=MNIST_LATENTS)


def _mnist_transforms(transforms, combined: bool, S: int) -> tuple[str, ...]:
    """The checked transformation names of :func:`mnist_sequences` (``combined=True``: ``("color+rotation",)``)."""
    if combined:
        if tuple([transforms] if isinstance(transforms, str) else transforms) not in (
                ("rotation", "color", "scale"), ("color+rotation",)):
            raise ValueError(f"combined=True builds only 'color+rotation' sequences; leave transforms at its "
                             f"default or pass transforms=('color+rotation',), got transforms={transforms!r}")
        transforms = ("color+rotation",)
    transforms = _check_transforms(transforms, MNIST_TRANSFORMS)
    if "color+perspective" in transforms and S % 4 == 0:
        raise ValueError(f"S={S} with 'color+perspective': a multiple of 4 puts a frame at 90 degrees, where the "
                         f"digit's plane is edge-on (perspective_frames refuses it); use S = 18 (the paper's) or "
                         f"another S not divisible by 4")
    return transforms


def _mnist_digits(images, labels) -> tuple[Tensor, Tensor]:
    """``images`` as a checked ``(M, 784)`` tensor and ``labels`` as ``(M,)``."""
    images = torch.as_tensor(images)
    if images.ndim != 2 or images.shape[1] != 784:
        raise ValueError(f"images must be (M, 784) MNIST digits in [0, 1], got shape {tuple(images.shape)}")
    labels = torch.as_tensor(labels).reshape(-1)
    if len(labels) != len(images):
        raise ValueError(f"labels has {len(labels)} entries for {len(images)} images")
    return images, labels


def _mnist_draws(n: int, M: int, S: int, transforms: tuple[str, ...],
                 g: torch.Generator) -> tuple[Tensor, Tensor, Tensor, list[str]]:
    """Every random draw of :func:`mnist_sequences`, from ``g`` in this order: the base digits ``pick: (n,)``,
    the transformations ``kind: (n,)`` and the starts; returns those, the grid indices ``idx: (n, S, 3)``
    (angle, hue, scale) of every frame and each sequence's transformation name."""
    reps = -(-n // M)
    pick = torch.cat([torch.randperm(M, generator=g) for _ in range(reps)])[:n]  # (n,)
    kind = _balanced(n, len(transforms), g)                                      # (n,)
    start = torch.randint(0, S, (n, 3), generator=g)                             # angle, hue, scale grid index
    names = [transforms[k] for k in kind.tolist()]
    adv = torch.tensor([[t in ("rotation", "color+rotation", "color+perspective"), t.startswith("color"), t == "scale"]
                        for t in names], dtype=torch.long).reshape(n, 3)         # which factor advances
    l = torch.arange(S)
    idx = (start[:, None, :] + adv[:, None, :] * l[None, :, None]) % S          # (n, S, 3) grid indices
    return pick, kind, idx, names


def _mnist_gray(base: Tensor, pick: Tensor, angle_idx: Tensor, s_code: Tensor, persp: Tensor, angles: Tensor,
                scale_values: Tensor) -> Tensor:
    """The grey frames ``(n, S, 1, 28, 28)``: digit ``base[pick[i]]`` (``base: (M, 1, 28, 28)``) turned by
    ``angles[angle_idx]`` and scaled by ``scale_values[s_code]`` (or seen in perspective where ``persp``),
    one affine (or perspective) call per (angle, scale) pair present, batched over frames."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    n, S = angle_idx.shape
    seq_of = torch.arange(n)[:, None].expand(n, S).reshape(-1)
    key = ((persp[:, None] * S + angle_idx) * (S + 1) + s_code).reshape(-1)
    order = torch.argsort(key, stable=True)
    uniq, counts = torch.unique_consecutive(key[order], return_counts=True)
    gray = torch.empty(n * S, 1, 28, 28)
    for k, pos in zip(uniq.tolist(), torch.split(order, counts.tolist())):
        angle, sc = float(angles[(k // (S + 1)) % S]), float(scale_values[k % (S + 1)])
        if k // (S + 1) >= S:  # a perspective frame (scale exactly 1)
            gray[pos] = perspective_frames(base[pick[seq_of[pos]]], angle)
            continue
        # v2 ``affine`` turns clockwise for positive angles (``rotate``: counter-clockwise): negate
        gray[pos] = F.affine(base[pick[seq_of[pos]]], angle=-angle, translate=[0.0, 0.0], scale=sc,
                             shear=[0.0, 0.0], interpolation=InterpolationMode.BILINEAR)
    return gray.clamp_(0, 1).reshape(n, S, 1, 28, 28)


def _mnist_colour(gray: Tensor, colors: Tensor, hue_idx: Tensor, uint8: bool) -> Tensor:
    """Hue rotation of the red digit ``(g, 0, 0)``: ``gray: (n, S, 1, 28, 28)`` times ``colors[hue_idx]``
    (``colors: (S, 3)``, ``hue_idx: (n, S)``) -> ``(n, S, 2352)``; ``uint8``: rounded a chunk at a time."""
    n, S = hue_idx.shape
    if uint8:  # the same products, rounded one chunk of sequences at a time
        x = torch.empty(n, S, 3 * 28 * 28, dtype=torch.uint8)
        for i in range(0, n, _CHUNK):
            sl = slice(i, i + _CHUNK)
            x[sl] = (gray[sl] * colors[hue_idx[sl]][..., None, None]).reshape(-1, S, 3 * 28 * 28).mul_(255).round_()
        return x
    return (gray * colors[hue_idx][..., None, None]).reshape(n, S, 3 * 28 * 28)


def _mnist_labels(idx: Tensor, s_code: Tensor, names: list[str], grids: dict[str, Tensor],
                  scale_values: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``latents: (n, S, 3)`` (angle, hue, scale of every frame), and the transformed factor's value
    ``factor: (n, S)`` and grid steps from its canonical value ``step: (n, S)``."""
    n, S = s_code.shape
    angle = grids["rotation"][idx[..., 0]]
    hue = grids["color"][idx[..., 1]]
    scale = scale_values[s_code]
    latents = torch.stack([angle, hue, scale], -1).float()                       # (n, S, 3)
    which = torch.tensor([{"rotation": 0, "color": 1, "scale": 2, "color+rotation": 0, "color+perspective": 0}[t]
                          for t in names])
    ar = torch.arange(n)
    factor = latents[ar, :, which]                                               # (n, S)
    step = idx[ar, :, which]
    kc = int(grids["scale_canonical"])
    is_scale = (which == 2)[:, None]
    step = torch.where(is_scale, (step - kc) % S, step)
    return latents, factor, step


# --------------------------------------------------------------------------------------- dSprites

def dsprites_sequences(n: int, S: int = 15, transforms=("x", "y", "orientation", "scale"), data_dir=None,
                       seed: int = 0, image_size: int = 64, verbose: bool = True, cache_dir=None,
                       uint8: bool = False) -> SequenceData:
    """dSprites transformation sequences (A.10).

    Args:
        n: number of sequences; each starts at a uniformly random image of the 50,625 subset.
        S: must be 15 (the subset's 15 x/y/orientation values; scale loops its 5 values 3 times).
        transforms: any of ``"x"``, ``"y"``, ``"orientation"``, ``"scale"``.
        data_dir: folder with the official ``.npz`` (else the procedural renderer is used).
        seed: seeds everything.
        image_size: 64 (original), or 32 / 16 / 8: frames area-averaged (grey values in [0, 1]).
        verbose: print one line naming the source.
        cache_dir: where the procedural subset is cached (default :func:`tvae_experiments.data.dsprites.default_cache_dir`).
        uint8: store ``x`` as ``uint8`` (equal to :meth:`SequenceData.as_uint8` of the float result) without
            a full-size float copy: the ``paper`` profile's 55,625 sequences at 64 x 64 are 3.4 GB instead of 13.7 GB.
    Returns:
        :class:`SequenceData` with ``x: (n, 15, image_size**2)``, ``frame_shape = (1, s, s)``,
        ``label`` = shape, ``latents: (n, 15, 5)`` = (shape, scale, orientation, x, y) values.
    """
    n = check_int("n", n, minimum=1)
    check_choice("S", S, (15,))
    seed = check_int("seed", seed)
    check_choice("image_size", image_size, (64, 32, 16, 8))
    transforms = _check_transforms(transforms, DSPRITES_TRANSFORMS)
    packed, factors, src = _subset_packed(data_dir, cache_dir, verbose)
    if len(packed) != N_SUBSET:
        raise ValueError(f"the dSprites subset is incomplete: {len(packed):,} of {N_SUBSET:,} images in {src}; "
                         "sequences need the whole grid (use the full official file, or data_dir=None)")
    g = torch.Generator().manual_seed(seed)
    kind = _balanced(n, len(transforms), g)                                      # (n,)
    f0 = torch.from_numpy(factors)[torch.randint(0, N_SUBSET, (n,), generator=g)]  # (n, 5) start image
    col = torch.tensor([{"x": 3, "y": 4, "orientation": 2, "scale": 1}[transforms[k]] for k in kind.tolist()])
    period = torch.tensor(SUBSET_SIZES)[col]                                    # 15 or 5 (scale)
    ar = torch.arange(n)
    step = (f0[ar, col][:, None] + torch.arange(S)[None, :]) % period[:, None]  # (n, S)
    f = f0[:, None, :].repeat(1, S, 1)                                          # (n, S, 5)
    f[ar[:, None], torch.arange(S)[None, :], col[:, None]] = step
    lin = torch.from_numpy(np.ravel_multi_index(f.reshape(-1, 5).T.numpy(), SUBSET_SIZES))
    frames = torch.empty(n * S, image_size, image_size, dtype=torch.uint8 if uint8 else torch.float32)
    for i in range(0, n * S, _CHUNK * S):                                        # (n*S, s, s), a chunk at a time
        block = unpack_images(packed[lin[i:i + _CHUNK * S].numpy()]).float()    # (k, 64, 64) in {0, 1}
        if image_size != 64:
            block = torch.nn.functional.avg_pool2d(block[:, None], 64 // image_size)[:, 0]
        frames[i:i + _CHUNK * S] = block.mul_(255).round_() if uint8 else block
    values = [torch.from_numpy(v).float() for v in subset_grid_values()]
    latents = torch.stack([values[j][f[..., j]] for j in range(5)], -1)          # (n, S, 5)
    source = (f"dSprites sequences (A.10): {n} x {S} frames at {image_size}x{image_size}, "
              f"transforms {'/'.join(transforms)}, seed {seed}; {src}") + (UINT8_TAG if uint8 else "")
    return SequenceData(x=frames.reshape(n, S, image_size * image_size), frame_shape=(1, image_size, image_size),
                        transform=kind, transforms=transforms, factor=latents[ar[:, None], torch.arange(S), col[:, None]],
                        step=step.long(), canonical=step == 0, label=f0[:, 0].long(), source=source,
                        latents=latents, latent_names=DSPRITES_LATENTS)


# ------------------------------------------------------------------------------------ toy bumps

def bump_sequences(n: int, S: int = 6, radius: float = 1.0, transforms=("x", "y"), seed: int = 0, *,
                   size: int | None = None, cyclic: bool = True) -> SequenceData:
    r"""Toy sequences with a known answer: a binary disc on an ``S x S`` torus that moves one pixel per frame.

    Frame ``l`` is the ``1 x S x S`` image that is 1 on the pixels within circular (wrap-around)
    Euclidean distance ``radius`` of the centre (column ``x_l``, row ``y_l``) and 0 elsewhere:
    ``radius = 0`` one pixel, ``1`` a plus of 5 pixels, ``1.5`` a 3x3 square.  An ``"x"`` sequence
    moves the disc one column to the right per frame (``x_l = (x_0 + l) mod S``) at a fixed row, a
    ``"y"`` sequence one row down (``y_l = (y_0 + l) mod S``).  The ``S`` frames cover the whole
    period, so every sequence has exactly one canonical frame.  Both factors have the ``S`` grid
    values ``0 .. S-1`` with canonical value 0, so ``step`` is the moving coordinate itself and
    ``canonical == (step == 0)``; ``factor`` is that coordinate as a float, ``latents: (n, S, 2)``
    is ``(x, y)`` of every frame, ``label`` is 0.

    A TVAE with capsules of ``D = S`` units can represent these sequences exactly (e.g. a capsule
    pattern that depends on ``(x - y) mod S``, rolled by ``(x + y) mod S``), so a small model learns
    them in seconds: the fixture of the tests that training learns capsules
    (``tests/test_learned_capsules.py``).  Drawing follows the module conventions: balanced
    transformations, uniform random start, everything from one ``torch.Generator(seed)``.

    **Non-cyclic motion** (``cyclic=False``, appendix C.2; chapter 10): the plus moves ``S`` frames
    over part of a larger ``size x size`` grid (``size >= S + 2 ceil(radius)``) and never reaches
    the grid's edge along its motion: the moving coordinate starts at a uniform
    ``x_0 in [m, size - S - m]``, ``m = ceil(radius)``, so the sequence does not wrap around (its
    last frame is not one step before its first).  ``step`` then counts from the first reachable
    position ``m`` (``step = x_l - m``), so only sequences that start there have a canonical frame
    (CapCorr's ``Omega`` needs one; measure the roll against the frame offset instead).  The
    defaults (``size = S``, ``cyclic=True``) are the sequences above, draw for draw.
    """
    n = check_int("n", n, minimum=1)
    S = check_int("S", S, minimum=2, maximum=256)
    seed = check_int("seed", seed)
    size, m = _bump_grid(S, radius, size, cyclic)
    transforms = _check_transforms(transforms, BUMP_TRANSFORMS)
    g = torch.Generator().manual_seed(seed)
    kind, col, pos = _bump_draws(n, S, size, m, cyclic, transforms, g)
    x = _disc_frames(pos, size, radius)
    step = pos[torch.arange(n), :, col] - (0 if cyclic else m)                  # (n, S)
    grid_text = f"{S}x{S} torus" if cyclic else (f"{size}x{size} torus, non-cyclic motion (the moving coordinate "
                                                 f"stays in {m}..{size - 1 - m})")
    source = (f"bump sequences: {n} x {S} frames of a {grid_text}, radius {float(radius):g}, "
              f"transforms {'/'.join(transforms)}, seed {seed}")
    return SequenceData(x=x, frame_shape=(1, size, size), transform=kind, transforms=transforms,
                        factor=step.float(), step=step.long(), canonical=step == 0,
                        label=torch.zeros(n, dtype=torch.long), source=source, latents=pos.float(),
                        latent_names=BUMP_LATENTS)


def _bump_grid(S: int, radius, size: int | None, cyclic: bool) -> tuple[int, int]:
    """The checked grid side ``size`` of :func:`bump_sequences` and the margin ``m = ceil(radius)`` that keeps a
    non-cyclic disc off the edge along its motion."""
    size = S if size is None else check_int("size", size, minimum=S, maximum=256)
    if not isinstance(cyclic, bool):
        raise ValueError(f"cyclic must be True or False, got {cyclic!r}")
    if cyclic and size != S:
        raise ValueError(f"size={size} needs cyclic=False: a cyclic sequence covers one whole period, so its grid "
                         f"has size = S = {S} positions")
    if isinstance(radius, bool) or not isinstance(radius, (int, float)) or not 0 <= radius < size / 2:
        raise ValueError(f"radius must be a number with 0 <= radius < size/2 = {size / 2:g} (0: one pixel), "
                         f"got {radius!r}")
    m = math.ceil(float(radius) - 1e-9)  # margin that keeps the disc off the edge along the motion
    if not cyclic and size < S + 2 * m:
        raise ValueError(f"size={size} is too small for a non-cyclic motion of S={S} frames with radius {radius:g}: "
                         f"need size >= S + 2*ceil(radius) = {S + 2 * m}")
    return size, m


def _bump_draws(n: int, S: int, size: int, m: int, cyclic: bool, transforms: tuple[str, ...],
                g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Every random draw of :func:`bump_sequences`, from ``g`` in this order: the transformations ``kind: (n,)``,
    the starts and (non-cyclic) the moving coordinate's start; returns ``kind``, the moving coordinate
    ``col: (n,)`` (0 x, 1 y) and the disc centres ``pos: (n, S, 2)`` (x, y) of every frame."""
    kind = _balanced(n, len(transforms), g)                                      # (n,)
    start = torch.randint(0, size, (n, 2), generator=g)                          # (n, 2): x_0, y_0
    col = torch.tensor([BUMP_TRANSFORMS.index(transforms[k]) for k in kind.tolist()], dtype=torch.long)
    ar = torch.arange(n)
    if not cyclic:  # the moving coordinate: a start from which S frames stay off the edge
        start[ar, col] = m + torch.randint(0, size - S - 2 * m + 1, (n,), generator=g)
    adv = torch.zeros(n, 2, dtype=torch.long)
    adv[ar, col] = 1                                                             # which coordinate moves
    pos = (start[:, None, :] + adv[:, None, :] * torch.arange(S)[None, :, None]) % size  # (n, S, 2): x, y
    return kind, col, pos


def _disc_frames(pos: Tensor, size: int, radius: float) -> Tensor:
    """Centres ``pos: (n, S, 2)`` (x, y) -> ``(n, S, size*size)`` float frames, 1 within circular (wrap-around)
    distance ``radius`` of the centre, 0 elsewhere."""
    n, S, _ = pos.shape
    grid = torch.arange(size)

    def dist2(c: Tensor) -> Tensor:  # (n, S, 1) centre -> (n, S, size) squared circular distance along one axis
        d = torch.remainder(grid[None, None, :] - c, size)
        return torch.minimum(d, size - d).pow(2)

    d2 = dist2(pos[..., 1:2])[..., :, None] + dist2(pos[..., 0:1])[..., None, :]  # (n, S, rows, cols)
    return (d2 <= radius ** 2 + 1e-9).float().reshape(n, S, size * size)


def overlap_by_offset(x: Tensor, threshold: float = 0.5) -> Tensor:
    r"""How alike frame ``0`` and frame ``d`` of each sequence are: mean intersection-over-union of
    the binarised frames (``x > threshold``), for every offset ``d = 0 .. S-1``.

    ``x: (N, S, P)`` -> ``(S,)``; entry 0 is 1.  For dSprites orientation sequences this shows the
    shapes' symmetries: a square 5 steps (92.3 degrees) on is almost the same image, so an
    encoder can tell those frames apart only by a few rasterisation pixels (chapter 4)."""
    if x.ndim != 3:
        raise ValueError(f"x must have shape (N, S, P), got {tuple(x.shape)}")
    b = x > threshold  # (N, S, P)
    inter = (b[:, :1] & b).sum(-1).double()  # (N, S)
    union = (b[:, :1] | b).sum(-1).double().clamp_min(1)
    return (inter / union).mean(0)
