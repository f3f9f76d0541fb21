r"""A compact ``C_N`` group-equivariant CNN (G-CNN, Cohen & Welling 2016) for rotated MNIST.

Paper: "Interpreting Equivariant Representations", Sec 5.2 and appendix D.  The paper's model
is an ``SO(2)``-steerable CNN built with escnn (6 steerable convolutions with 16, 16, 32, 32, 64,
64 fields, batch-norm, pooling after each pair, spatial pooling, an invariant 1x1 layer and a
fully connected classifier; cross-entropy, lr 0.01, batch 128, 100 epochs).  escnn cannot be
installed next to numpy 2, so this module implements the same idea for the discrete rotation
group ``C_N = {r^0, .., r^{N-1}}``, ``r`` = rotation by ``360/N`` degrees.

Feature maps are functions on ``C_N x Z^2``: tensors ``(B, C, N, H, W)``.  The group acts on
an image ``f`` by ``(r f)(y) = f(R^{-1} y)`` and on a feature map by rotating every plane and
cyclically shifting the group axis: ``(r F)[c, n] = R F[c, n-1]``.

* **Lifting convolution** (image -> ``C_N x Z^2``), filter ``w[o, c]`` rotated ``N`` times:

  .. math:: F[o, n](x) = \sum_{c, y} f_c(y)\, (R^n w_{o,c})(y - x)

* **Group convolution** (``C_N x Z^2 -> C_N x Z^2``), filter ``psi[o, c, m]`` rotated *and* its
  group axis cyclically shifted:

  .. math:: F'[o, n](x) = \sum_{c, m, y} F[c, m](y)\, \big(R^n \psi_{o, c, (m-n) \bmod N}\big)(y - x)

Both satisfy ``layer(r f) = r layer(f)``: rotating the input rotates every plane and shifts the
group axis by one.  Pointwise ReLU, batch-norm with statistics shared over the group axis,
``2x2`` max-pooling on even sizes and spatial means commute with the action, so the spatially
pooled **latent** ``z: (B, C, N)`` transforms by a cyclic shift of its last axis -- ``C``
capsules of ``D = N`` units for :class:`tvae_core.invariance.RandomInvariantProjection` -- and
**group pooling** ``max_n z[:, :, n]: (B, C)`` is invariant, as is the classifier on top.

Exactness.  For ``N in {1, 2, 4}`` every filter rotation is a ``torch.rot90``, a permutation of
taps, so the network is *exactly* equivariant to rotations by multiples of 90 degrees (of square
images whose side is divisible by ``2**pools``; tested to 1e-5 in float64).  For ``N = 8`` the
odd rotations (45 degrees) are bilinear interpolations of the ``k x k`` filter
(:func:`tvae_experiments.data.rotation.rotate_images`), so equivariance to 45 degree turns is only
approximate; equivariance to 90 degree turns (a shift by 2) stays exact because the
interpolated filters are themselves rotated by ``rot90``.  ``N = 1`` is a plain CNN (the
chapter's augmentation baseline, Fig 8).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tvae_core.checks import check_choice, check_int
from tvae_experiments.data.rotation import rotate_images

__all__ = ["GROUP_ORDERS", "rotate_filter", "LiftingConv", "GroupConv", "group_max_pool", "GCNNConfig", "GCNN",
           "rotate_feature", "equivariance_errors"]

GROUP_ORDERS = (1, 2, 4, 8)


def rotate_filter(w: Tensor, n: int, N: int) -> Tensor:
    """``R^n w``: rotate the last two axes of ``w: (..., k, k)`` by ``n * 360 / N`` degrees
    counter-clockwise (``rot90`` for multiples of 90, then bilinear for the 45 degree rest)."""
    check_choice("N", N, GROUP_ORDERS)
    quarters, rest = divmod(4 * (n % N), N)           # angle = (quarters + rest/N) * 90 degrees
    if rest:
        k = w.shape[-1]
        w = rotate_images(w.reshape(1, -1, k, k), 90.0 * rest / N).reshape(w.shape)
    return torch.rot90(w, quarters, dims=(-2, -1))


def _check_conv_args(in_channels, out_channels, kernel_size, N) -> None:
    check_int("in_channels", in_channels, minimum=1)
    check_int("out_channels", out_channels, minimum=1)
    check_int("kernel_size", kernel_size, minimum=1)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd (a centred filter keeps rotations exact), got {kernel_size}")
    check_choice("N", N, GROUP_ORDERS)


class LiftingConv(nn.Module):
    """Image ``(B, C_in, H, W)`` -> feature map on ``C_N x Z^2``: ``(B, C_out, N, H, W)``.

    ``weight: (C_out, C_in, k, k)``; ``bias: (C_out,)`` shared over the group axis ("same"
    zero padding, stride 1)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, N: int, bias: bool = True) -> None:
        super().__init__()
        _check_conv_args(in_channels, out_channels, kernel_size, N)
        self.N, self.k = N, kernel_size
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size)
                                   * (2.0 / (in_channels * kernel_size ** 2)) ** 0.5)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def filters(self) -> Tensor:
        """The ``N`` rotated filter banks as one conv2d weight ``(C_out*N, C_in, k, k)``."""
        O, C, k, _ = self.weight.shape
        bank = torch.stack([rotate_filter(self.weight, n, self.N) for n in range(self.N)], 1)  # (O, N, C, k, k)
        return bank.reshape(O * self.N, C, k, k)

    def forward(self, x: Tensor) -> Tensor:
        B, _, H, W = x.shape                                             # (B, C_in, H, W)
        y = F.conv2d(x, self.filters(), padding=self.k // 2)             # (B, C_out*N, H, W)
        y = y.reshape(B, -1, self.N, H, W)                               # (B, C_out, N, H, W)
        return y if self.bias is None else y + self.bias[:, None, None, None]


class GroupConv(nn.Module):
    """``(B, C_in, N, H, W)`` -> ``(B, C_out, N, H, W)``, equivariant to ``C_N``.

    ``weight: (C_out, C_in, N, k, k)``; output plane ``n`` uses
    ``R^n roll(weight, n, group axis)`` (see the module docstring); one conv2d for all ``n``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, N: int, bias: bool = True) -> None:
        super().__init__()
        _check_conv_args(in_channels, out_channels, kernel_size, N)
        self.N, self.k = N, kernel_size
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, N, kernel_size, kernel_size)
                                   * (2.0 / (in_channels * N * kernel_size ** 2)) ** 0.5)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def filters(self) -> Tensor:
        """``(C_out*N, C_in*N, k, k)``: rows ``(o, n)``, columns ``(c, m)``,
        entry ``R^n psi[o, c, (m - n) mod N]``."""
        O, C, N, k, _ = self.weight.shape
        bank = torch.stack([rotate_filter(torch.roll(self.weight, n, dims=2), n, N) for n in range(N)], 1)
        return bank.reshape(O * N, C * N, k, k)                           # from (O, N, C, N, k, k)

    def forward(self, x: Tensor) -> Tensor:
        B, C, N, H, W = x.shape                                          # (B, C_in, N, H, W)
        if N != self.N:
            raise ValueError(f"input has a group axis of size {N}, this layer expects N={self.N}")
        y = F.conv2d(x.reshape(B, C * N, H, W), self.filters(), padding=self.k // 2)  # (B, C_out*N, H, W)
        y = y.reshape(B, -1, N, H, W)                                    # (B, C_out, N, H, W)
        return y if self.bias is None else y + self.bias[:, None, None, None]


def group_max_pool(z: Tensor) -> Tensor:
    """Invariant pooling over the group axis: ``(B, C, N, ...) -> (B, C, ...)`` (max over ``n``)."""
    return z.amax(2)


def _spatial_max_pool(x: Tensor) -> Tensor:
    B, C, N, H, W = x.shape
    return F.max_pool2d(x.reshape(B, C * N, H, W), 2).reshape(B, C, N, H // 2, W // 2)


def rotate_feature(F_: Tensor, quarters: int, N: int) -> Tensor:
    """The action of a ``quarters * 90`` degree turn on a feature map ``(B, C, N, H, W)``:
    rotate every plane and shift the group axis by ``quarters * N / 4`` (must be whole)."""
    shift = quarters * N / 4
    if shift != int(shift):
        raise ValueError(f"a turn by {quarters} x 90 degrees is not in C_{N}; use quarters with quarters*N/4 whole")
    return torch.roll(torch.rot90(F_, quarters, dims=(-2, -1)), int(shift), dims=2)


@dataclass(frozen=True)
class GCNNConfig:
    """Architecture of :class:`GCNN` (appendix D's layout at a chosen width).

    Defaults: a C4 network with half the paper's fields per layer (paper: 16, 16, 32, 32, 64, 64)."""

    N: int = 4                                        # group order: 1 (plain CNN), 2, 4 (exact), 8 (approx.)
    channels: tuple[int, ...] = (8, 8, 16, 16, 32, 32)  # fields per layer; 2x2 max-pool after every 2nd but the last
    kernel_size: int = 3                              # odd
    in_channels: int = 1
    image_size: int = 28                              # must be divisible by 2**(number of pools)
    hidden: int = 64                                  # classifier hidden units (0: linear classifier)
    n_classes: int = 10

    def __post_init__(self) -> None:
        check_choice("N", self.N, GROUP_ORDERS)
        if not self.channels or any(not isinstance(c, int) or c < 1 for c in self.channels):
            raise ValueError(f"channels must be a non-empty tuple of positive ints, got {self.channels!r}")
        check_int("kernel_size", self.kernel_size, minimum=1)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        check_int("hidden", self.hidden, minimum=0)
        check_int("n_classes", self.n_classes, minimum=2)
        if self.image_size % 2 ** self.n_pools:
            raise ValueError(f"image_size={self.image_size} must be divisible by 2**{self.n_pools} "
                             f"(one 2x2 pool after every 2nd layer of channels={self.channels}) for exact equivariance")

    @property
    def n_pools(self) -> int:
        return (len(self.channels) - 1) // 2

    def to_dict(self) -> dict:
        return {"arch": "GCNN", **asdict(self)}

    def build(self) -> "GCNN":
        return GCNN(self)


class GCNN(nn.Module):
    r"""Lifting conv, group convs (batch-norm over ``(B, N, H, W)`` per field, ReLU, 2x2
    max-pool after every 2nd layer), spatial mean, group max-pool, MLP classifier.

    ``latent(x): (B, C, N)`` -- equivariant (a 90 degree turn of ``x`` shifts the last axis
    by ``N/4``); ``invariant(x): (B, C)``; ``forward(x): (B, n_classes)`` logits (invariant).
    ``x`` is ``(B, H*W)`` flattened or ``(B, C_in, H, W)``."""

    def __init__(self, cfg: GCNNConfig = GCNNConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        chans = (cfg.in_channels, *cfg.channels)
        self.convs = nn.ModuleList(
            [LiftingConv(chans[0], chans[1], cfg.kernel_size, cfg.N, bias=False)]
            + [GroupConv(chans[i], chans[i + 1], cfg.kernel_size, cfg.N, bias=False) for i in range(1, len(cfg.channels))])
        self.norms = nn.ModuleList([nn.BatchNorm3d(c) for c in cfg.channels])  # stats per field over (B, N, H, W)
        C = cfg.channels[-1]
        self.head = (nn.Sequential(nn.Linear(C, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.n_classes))
                     if cfg.hidden else nn.Linear(C, cfg.n_classes))

    def _image(self, x: Tensor) -> Tensor:
        s, c = self.cfg.image_size, self.cfg.in_channels
        if x.ndim == 2 and x.shape[1] == c * s * s:
            return x.reshape(-1, c, s, s)
        if x.ndim == 4 and tuple(x.shape[1:]) == (c, s, s):
            return x
        raise ValueError(f"x must be (B, {c * s * s}) or (B, {c}, {s}, {s}) images, got shape {tuple(x.shape)}")

    def features(self, x: Tensor) -> Tensor:
        """The last feature map ``(B, C, N, H', W')``."""
        h = self._image(x)                                               # (B, C_in, H, W)
        last = len(self.convs) - 1
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            h = torch.relu(norm(conv(h)))                                # (B, C_i, N, H, W)
            if i % 2 == 1 and i != last:
                h = _spatial_max_pool(h)                                 # (B, C_i, N, H/2, W/2)
        return h

    def latent(self, x: Tensor) -> Tensor:
        """Equivariant latent ``(B, C, N)``: spatial mean of :meth:`features`."""
        return self.features(x).mean((-2, -1))

    def invariant(self, x: Tensor) -> Tensor:
        """Group-pooled invariant latent ``(B, C)``."""
        return group_max_pool(self.latent(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.invariant(x))                              # (B, n_classes)

    def training_loss(self, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """:func:`~tvae_experiments.train.fit`'s objective: cross-entropy of the labels ``y: (B,)``,
        logged with the batch accuracy."""
        logits = self(x)
        ce = F.cross_entropy(logits, y)
        return ce, {"cross_entropy": ce, "acc": (logits.argmax(1) == y).float().mean()}


@torch.no_grad()
def equivariance_errors(model: GCNN, x: Tensor, quarters: int = 1) -> dict[str, float]:
    """Relative errors ``max|a - b| / max|b|`` of the 90-degree symmetries on images ``x``:

    * ``features``: ``features(rot x)`` vs ``rotate_feature(features(x))``;
    * ``latent``: ``latent(rot x)`` vs ``latent(x)`` shifted by ``quarters*N/4`` on the group axis;
    * ``logits``: ``model(rot x)`` vs ``model(x)``.
    ``rot`` is an exact ``torch.rot90`` by ``quarters`` turns (counter-clockwise).  A plain CNN
    (``N = 1``) is compared as if it were a C4 network: its ``features`` and ``latent`` errors
    are then large (it has no group axis to shift; planes are only rotated)."""
    was = model.training
    model.eval()
    img = model._image(x)
    rx = torch.rot90(img, quarters, dims=(-2, -1))
    N = model.cfg.N
    f, rf = model.features(img), model.features(rx)
    if N == 1:
        target_f = torch.rot90(f, quarters, dims=(-2, -1))
        z, rz = model.latent(img), model.latent(rx)
        target_z = z
    else:
        target_f = rotate_feature(f, quarters, N)
        z, rz = f.mean((-2, -1)), rf.mean((-2, -1))
        target_z = torch.roll(z, int(quarters * N / 4), dims=2)
    y, ry = model(img), model(rx)
    model.train(was)

    def rel(a: Tensor, b: Tensor) -> float:
        return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))

    return {"features": rel(rf, target_f), "latent": rel(rz, target_z), "logits": rel(ry, y)}
