r"""Rotated MNIST: rotating images (and small filters) about their centre, vectorised.

Paper: "Interpreting Equivariant Representations", Sec 5.2 and appendix D -- an ``SO(2)``
invariant classifier trained on MNIST *augmented by rotation*, whose latents are analysed on
rotated test digits (Fig 6-7), and a plain CNN trained with rotation augmentation whose latents
of rotated vs aligned test digits are compared (Fig 8).

Convention (the one of ``torch.rot90(x, 1, dims=(-2, -1))`` and of :mod:`tvae_experiments.data.sequences`):
a positive angle turns the image **counter-clockwise** as displayed (row index pointing down).
In pixel coordinates ``(x, y)`` = (column, row), centred on the image, output pixel ``p`` takes
the input value at ``R_{-\theta} p``, with

.. math:: R_{-\theta} = \begin{pmatrix} \cos\theta & -\sin\theta \\ \sin\theta & \cos\theta \end{pmatrix}

(``y`` points down, so this *is* the inverse of the visual counter-clockwise turn), sampled
bilinearly with zeros outside.  Multiples of 90 degrees reproduce ``torch.rot90`` exactly (up to
floating-point rounding of ``cos 90``), which the tests check.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from tvae_core.checks import check_choice, check_int
from tvae_experiments.data.mnist import ImageData

__all__ = ["rotate_images", "random_angles", "random_rotation", "RotatedMNIST", "rotated_mnist"]


def rotate_images(x: Tensor, angles_deg: Tensor | float) -> Tensor:
    """Rotate square images counter-clockwise about their centre (bilinear, zero fill).

    Args:
        x: ``(B, H*W)`` flattened square images, ``(B, C, H, W)`` or ``(..., H, W)``
           (any leading axes; the last two are rotated).
        angles_deg: one angle for all, or ``(B,)`` one per leading index of ``x``
           (``B`` = ``x.shape[0]``).
    Returns:
        a tensor of the shape and dtype of ``x``.
    """
    x = torch.as_tensor(x)
    flat = x.ndim == 2
    if flat:
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1]:
            raise ValueError(f"x of shape {tuple(x.shape)}: a 2-D x must hold flattened square images (B, H*W)")
        img = x.reshape(x.shape[0], 1, side, side)
    elif x.ndim >= 3:
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"x of shape {tuple(x.shape)}: images must be square (H == W)")
        img = x.reshape(-1, 1, *x.shape[-2:]) if x.ndim == 3 else x.reshape(x.shape[0], -1, *x.shape[-2:])
    else:
        raise ValueError(f"x must be (B, H*W), (B, H, W) or (B, C, H, W) images, got shape {tuple(x.shape)}")
    B = img.shape[0]
    a = torch.as_tensor(angles_deg, dtype=torch.float64).reshape(-1)
    if a.numel() == 1:
        a = a.expand(B)
    elif a.numel() != B:
        raise ValueError(f"angles_deg has {a.numel()} angles for {B} images; give one angle or one per image")
    rad = torch.deg2rad(a)
    c, s = torch.cos(rad), torch.sin(rad)
    z = torch.zeros_like(c)
    theta = torch.stack([torch.stack([c, -s, z], -1), torch.stack([s, c, z], -1)], -2)  # (B, 2, 3)
    grid = F.affine_grid(theta.to(img.dtype if img.is_floating_point() else torch.float32).to(img.device),
                         list(img.shape), align_corners=False)                        # (B, H, W, 2)
    out = F.grid_sample(img.float() if not img.is_floating_point() else img, grid, mode="bilinear",
                        padding_mode="zeros", align_corners=False)                     # (B, C, H, W)
    return out.reshape(x.shape).to(x.dtype)


def random_angles(n: int, generator: torch.Generator, max_angle: float = 360.0) -> Tensor:
    """``(n,)`` angles uniform in ``[0, max_angle)`` degrees, drawn from ``generator``."""
    check_int("n", n, minimum=0)
    if not 0 < max_angle <= 360:
        raise ValueError(f"max_angle must be in (0, 360] degrees, got {max_angle}")
    return torch.rand(n, generator=generator, dtype=torch.float64) * max_angle


def random_rotation(x: Tensor, generator: torch.Generator) -> Tensor:
    """Augmentation: every image of the batch ``x`` turned by its own uniform random angle."""
    return rotate_images(x, random_angles(len(x), generator))


@dataclass(frozen=True)
class RotatedMNIST:
    """MNIST digits each turned by one fixed random angle (train and test), with the angles.

    ``*_x: (N, 784)`` in ``[0, 1]``, ``*_y: (N,)`` labels, ``*_angle: (N,)`` degrees in
    ``[0, 360)``; ``aligned`` is the un-rotated :class:`~tvae_experiments.data.mnist.ImageData`."""

    train_x: Tensor
    train_y: Tensor
    train_angle: Tensor
    test_x: Tensor
    test_y: Tensor
    test_angle: Tensor
    aligned: ImageData
    angles: str

    def fingerprint(self) -> str:
        return f"rotated({self.angles})|{self.aligned.fingerprint()}|{float(self.train_angle.sum()):.3f}"


def rotated_mnist(data: ImageData, seed: int = 0, angles: str = "uniform") -> RotatedMNIST:
    """Rotate every train and test digit of ``data`` once (seeded).

    ``angles="uniform"``: uniform in ``[0, 360)`` (the paper's ``SO(2)`` setting, Sec 5.2);
    ``"c4"``: one of 0, 90, 180, 270 degrees (the exact symmetries of a C4 network)."""
    check_choice("angles", angles, ("uniform", "c4"))
    g = torch.Generator().manual_seed(int(seed) + 7919)

    def draw(n: int) -> Tensor:
        if angles == "uniform":
            return random_angles(n, g)
        return 90.0 * torch.randint(0, 4, (n,), generator=g).double()

    a_tr, a_te = draw(len(data.train_x)), draw(len(data.test_x))
    return RotatedMNIST(rotate_images(data.train_x, a_tr).clamp_(0, 1), data.train_y, a_tr,
                        rotate_images(data.test_x, a_te).clamp_(0, 1), data.test_y, a_te, data, angles)
