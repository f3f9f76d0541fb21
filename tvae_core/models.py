r"""Encoders, decoder, the Topographic VAE and the VAE baseline (TVAE paper Sec 5, A.1-A.4, A.8).

TVAE (Eq 10-12): two Gaussian encoders give ``q(z|x)`` and ``q(u|x)``; a topography ``W``
turns samples into ``t = (z - mu) / sqrt(W u^2)`` (Eq 6/11), and a Bernoulli decoder maps
``t`` to pixel logits.  The prior is ``z, u ~ N(0, I)``, so the ELBO is

.. math:: \mathbb E_q[\log p(x | g(t))] - KL[q(z|x) \| N(0,I)] - KL[q(u|x) \| N(0,I)]

summed over the frames of a sequence (Eq 12).  The VAE baseline has one encoder and
``t = z``.  Shapes: single images ``x: (B, P)`` with ``P`` pixels; sequences ``x: (B, S, P)``
with a :class:`~tvae_core.topography.TemporalTopography`.  ``n`` latent units.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from .checks import check_choice, check_int
from .studentt import sample_tpot, tpot
from .topography import (BANDS, CAPSULE_BOUNDARIES, CAPSULE_ROLLS, TIME_BOUNDARIES, CapsuleTopography,
                         TemporalTopography, TemporalTopography2D, TorusTopography)

__all__ = ["ModelConfig", "AppendixModelConfig", "MLP", "ProjectedLinear", "project_rows_", "project_weights_", "GaussianEncoder", "BernoulliDecoder", "ELBOParts", "loss_terms", "TVAE",
           "VAE", "build_model", "sample_prior", "log_likelihood_is", "MODEL_KINDS", "TOPOGRAPHIES",
           "APPENDIX_TOPOGRAPHIES", "MODEL_ROLLS"]

MODEL_KINDS = ("tvae", "vae")
TOPOGRAPHIES = ("torus", "capsules", "temporal", "temporal2d")
APPENDIX_TOPOGRAPHIES = TOPOGRAPHIES  # the name chapter 10's tests use
MODEL_ROLLS = tuple(r for r in CAPSULE_ROLLS if r != "fourier")  # a model's denominator must stay positive
_LOG2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a model's architecture (and so its cache key, :meth:`to_dict`).

    The papers' models use the fields up to ``band``; the fields after it are the appendix C extensions
    the paper proposes but does not train (C.1-C.4, chapter 10), at their defaults the paper's model."""

    kind: str = "tvae"                      # "tvae" | "vae"
    in_dim: int = 784                       # pixels P of one frame (28x28 MNIST)
    enc_hidden: tuple[int, ...] = (972, 648)  # hidden layers of each encoder (A.3: 972, 648, then 2n)
    dec_hidden: tuple[int, ...] = (648, 972)  # hidden layers of the decoder (A.3: 648, 972, then P)
    topography: str = "torus"               # "torus" (Sec 6.2) | "capsules" | "temporal" (Sec 6.3) |
                                            # "temporal2d" (C.3, Eq 21: capsule_dim = side^2 lattices)
    side: int = 18                          # torus: side x side units (A.3: 324 = 18 x 18)
    n_caps: int = 18                        # capsules: C
    capsule_dim: int = 18                   # capsules: D units each
    K: int = 5                              # neighbourhood (torus: K x K; capsules: K units)
    L: float = 0                            # temporal coherence: t_l sees 2L frames (2L integer; "temporal")
    mode: str = "shifting"                  # temporal coherence: "shifting" (TVAE) | "stationary" (Bubble)
    window: str = "forward"                 # temporal window: "forward" (t_l from frames l..l+2L-1) | "centered" |
                                            # "code" | "causal" (C.4, Eq 22)
    mu_init: float = 5.0                    # initial mu of Eq 6 (A.2: 5 for the torus, 30 for capsules)
    weight_norm: bool = True                # layer-wise weight normalisation, Eq 15 (A.8)
    pgd: bool = False                       # A.8's other method (Table 3): projected gradient descent, every
                                            # layer's rows w_i put back on ||w_i|| = 1 after each step
                                            # (ProjectedLinear); not with weight_norm
    decoder_norm: bool = False              # standardise t over its units before the decoder (not in
                                            # the paper; commutes with Roll, see BernoulliDecoder)
    band: str = "full"                      # shifting kernel: "full" (the text) | "code" (the authors' cut
                                            # band, see TemporalTopography)
    time_boundary: str = "circular"         # "circular" (cyclic sequences, A.9) | "zero" (e.g. with window="causal", C.4)
    capsule_boundary: str = "circular"      # "circular" | "zero" (C.2 non-cyclic capsules; also for "capsules")
    capsule_pad: int = 0                    # C.2 padded U: q(u|x) has capsule_dim + 2*capsule_pad units per capsule
    roll: str = "integer"                   # C.1: "integer" (Eq 9) | "linear" (Eq 19) partial roll (not "fourier":
                                            # a Fourier-shifted U^2 can be negative, and sqrt(W U^2) with it)
    alpha: float = 1.0                      # C.1: units the shifting window moves per frame (0 < alpha <= 1)

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, MODEL_KINDS)
        check_choice("topography", self.topography, TOPOGRAPHIES)
        check_choice("band", self.band, BANDS)
        check_int("in_dim", self.in_dim, minimum=1)
        if self.weight_norm and self.pgd:
            raise ValueError("weight_norm=True and pgd=True are two ways to constrain the same rows w_i (A.8); "
                             "choose one: weight_norm (Eq 15), pgd (projected gradient descent) or neither")
        check_choice("time_boundary", self.time_boundary, TIME_BOUNDARIES)
        check_choice("capsule_boundary", self.capsule_boundary, CAPSULE_BOUNDARIES)
        check_choice("roll", self.roll, MODEL_ROLLS)
        check_int("capsule_pad", self.capsule_pad, minimum=0)
        if self.capsule_pad and self.topography != "temporal":
            raise ValueError(f"capsule_pad={self.capsule_pad} needs topography='temporal' (C.2's padded U); "
                             f"got topography={self.topography!r}")
        if self.topography == "temporal2d" and math.isqrt(self.capsule_dim) ** 2 != self.capsule_dim:
            raise ValueError(f"capsule_dim={self.capsule_dim} is not allowed with topography='temporal2d': "
                             f"a 2-D capsule holds side x side units, so capsule_dim must be a perfect square")
        if self.topography != "torus":
            self.build_topography()  # the topography validates the rest now (alpha, K, L with the window, ...)

    @property
    def n_latent(self) -> int:
        return self.side ** 2 if self.topography == "torus" else self.n_caps * self.capsule_dim

    @property
    def n_u(self) -> int:
        """Units of ``u`` per frame: ``C*(D + 2*capsule_pad)`` for C.2's padded ``U``, else ``n_latent``."""
        return self.n_latent + 2 * self.capsule_pad * self.n_caps if self.topography == "temporal" else self.n_latent

    def build_topography(self):
        """The topography ``W`` of Eq 4-9 (Eq 19, 21, 22 with the appendix C fields)."""
        if self.topography == "torus":
            return TorusTopography(self.side, self.K)
        if self.topography == "capsules":
            return CapsuleTopography(self.n_caps, self.capsule_dim, self.K, self.capsule_boundary)
        common = dict(K=self.K, L=self.L, mode=self.mode, time_boundary=self.time_boundary, window=self.window,
                      capsule_boundary=self.capsule_boundary, roll=self.roll, alpha=self.alpha)
        if self.topography == "temporal2d":
            return TemporalTopography2D(n_caps=self.n_caps, side=math.isqrt(self.capsule_dim), **common)
        return TemporalTopography(n_caps=self.n_caps, capsule_dim=self.capsule_dim, band=self.band,
                                  capsule_pad=self.capsule_pad, **common)

    def to_dict(self) -> dict:
        """Every field, for cache keys."""
        return asdict(self)

    def build(self) -> "TVAE | VAE":
        """The model this config describes (:func:`build_model`)."""
        return build_model(self)


AppendixModelConfig = ModelConfig
"""The name chapter 10 and its tests use for a :class:`ModelConfig` with appendix C fields set."""


class ProjectedLinear(nn.Linear):
    r"""A linear layer whose rows are kept on the unit sphere by projection (A.8, Table 3's "PGD").

    The constraint is the one weight normalisation (Eq 15) builds in, ``w_i = g_i v_i / ||v_i||``
    with the scale ``g_i`` fixed at 1: here it is enforced the way the ICA literature does
    ([35] in the paper), by an ordinary gradient step on ``W`` followed by the projection
    :math:`w_i \leftarrow w_i / \|w_i\|_2` (:meth:`project_`).  ``weight: (out, in)``: row ``i``
    holds the weights into output unit ``i`` (the rows ``weight_norm(dim=0)`` normalises).  The
    layer is projected when built; :func:`~tvae_experiments.train.fit` calls :func:`project_weights_`
    after every optimiser step.  The bias is not constrained.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features)
        self.project_()

    @torch.no_grad()
    def project_(self) -> None:
        """``w_i <- w_i / ||w_i||`` for every row (in place)."""
        project_rows_(self.weight)


@torch.no_grad()
def project_rows_(weight: Tensor) -> Tensor:
    """``w_i <- w_i / ||w_i||_2`` over the last axis, in place: the rows of ``(out, in)`` or of a stack
    ``(K, out, in)`` of K models' layers (an ensemble)."""
    return weight.div_(weight.norm(dim=-1, keepdim=True).clamp_min(1e-12))


def project_weights_(model: nn.Module) -> int:
    """Project every :class:`ProjectedLinear` of ``model`` back onto unit-norm rows (the "P" of PGD);
    returns how many layers were projected (0 for a model without ``pgd``)."""
    layers = [m for m in model.modules() if isinstance(m, ProjectedLinear)]
    for m in layers:
        m.project_()
    return len(layers)


class MLP(nn.Sequential):
    """Fully connected layers with ReLU in between (none after the last), A.3.

    PyTorch's default init is ``U(-1/sqrt(m), 1/sqrt(m))`` for ``m`` inputs, as A.2 asks.
    With ``weight_norm`` every layer is reparameterised as ``w_i = g_i v_i / ||v_i||`` (Eq 15);
    with ``pgd`` every layer is a :class:`ProjectedLinear` (rows of unit norm, A.8).
    """

    def __init__(self, sizes: tuple[int, ...], weight_norm: bool = False, pgd: bool = False) -> None:
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            lin = ProjectedLinear(a, b) if pgd else nn.Linear(a, b)
            layers.append(_weight_norm(lin) if weight_norm else lin)
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        super().__init__(*layers)


class GaussianEncoder(nn.Module):
    """``x: (..., P) -> (mean, log_std)``, each ``(..., n)`` (Eq 10-11)."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], n: int, weight_norm: bool = False,
                 pgd: bool = False) -> None:
        super().__init__()
        self.net = MLP((in_dim, *hidden, 2 * n), weight_norm, pgd)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_std = self.net(x).chunk(2, dim=-1)
        return mean, log_std.clamp(-8.0, 4.0)



class BernoulliDecoder(nn.Module):
    """``t: (..., n) -> pixel logits (..., P)``; ``p(x|t) = Bernoulli(sigmoid(logits))``.

    ``standardize=True`` first maps ``t -> (t - mean_i t_i) / std_i t_i`` over the ``n`` units
    (a layer norm without learned scale).  It is still just a decoder ``g(t)``, and since
    mean and std over all units are invariant to any permutation of the units,
    ``g(Roll_l(t))`` sees exactly ``Roll_l`` of the standardised code: equivariance of ``t``
    is untouched.  What it changes is optimisation: with a large ``mu`` the code is a large
    constant plus small variations, and the standardisation hands the decoder the variations.
    """

    def __init__(self, n: int, hidden: tuple[int, ...], out_dim: int, weight_norm: bool = False,
                 standardize: bool = False, pgd: bool = False) -> None:
        super().__init__()
        self.standardize = standardize
        self.net = MLP((n, *hidden, out_dim), weight_norm, pgd)

    def prepare(self, t: Tensor) -> Tensor:
        """The decoder's input: ``t``, standardised over its units when ``standardize``."""
        return (t - t.mean(-1, keepdim=True)) / (t.std(-1, keepdim=True) + 1e-5) if self.standardize else t

    def forward(self, t: Tensor) -> Tensor:
        return self.net(self.prepare(t))



class ELBOParts(NamedTuple):
    """Per-example parts of Eq 12, each ``(B,)``: ``elbo = recon - kl_z - kl_u``."""

    recon: Tensor  # E_q log p(x | t), summed over pixels (and frames)
    kl_z: Tensor
    kl_u: Tensor

    @property
    def elbo(self) -> Tensor:
        return self.recon - self.kl_z - self.kl_u


def loss_terms(p: ELBOParts) -> tuple[Tensor, dict[str, Tensor]]:
    """Minus the batch-mean ELBO (the loss) and the logged batch means of its parts."""
    elbo = p.elbo.mean()
    return -elbo, {"elbo": elbo, "recon": p.recon.mean(), "kl_z": p.kl_z.mean(), "kl_u": p.kl_u.mean()}


def _kl_std_normal(mean: Tensor, log_std: Tensor) -> Tensor:
    return 0.5 * (mean.pow(2) + torch.exp(2 * log_std) - 1.0 - 2 * log_std)


def _log_normal(x: Tensor, mean: Tensor | float = 0.0, log_std: Tensor | float = 0.0) -> Tensor:
    log_std = torch.as_tensor(log_std, dtype=x.dtype, device=x.device)
    return -0.5 * (((x - mean) * torch.exp(-log_std)).pow(2) + _LOG2PI) - log_std


def _sum_event(x: Tensor, batch_dims: int) -> Tensor:
    return x.reshape(*x.shape[:batch_dims], -1).sum(-1)


def _bce(logits: Tensor, x: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")


class TVAE(nn.Module):
    """The Topographic VAE of Eq 10-12 with a learned ``mu`` (A.2) and weight norm (A.8)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n = cfg.n_latent
        self.topo = cfg.build_topography()
        self.enc_z = GaussianEncoder(cfg.in_dim, cfg.enc_hidden, n, cfg.weight_norm, cfg.pgd)
        self.enc_u = GaussianEncoder(cfg.in_dim, cfg.enc_hidden, cfg.n_u, cfg.weight_norm, cfg.pgd)
        self.dec = BernoulliDecoder(n, cfg.dec_hidden, cfg.in_dim, cfg.weight_norm, cfg.decoder_norm, cfg.pgd)
        self.mu = nn.Parameter(torch.full((n,), float(cfg.mu_init)))  # (n,)

    def to_t(self, z: Tensor, u: Tensor) -> Tensor:
        """Eq 6/11: ``t = (z - mu) / sqrt(W u^2)`` by :func:`~tvae_core.studentt.tpot` (the function
        chapters 1-2 teach), with ``1e-8`` inside the root; shapes ``(..., n)`` or ``(..., S, n)``."""
        return tpot(z, u, self.topo, self.mu, eps=1e-8)

    @property
    def capsule_dim(self) -> int:
        """``D``: units per capsule (the torus model: its side, for code that reads capsules)."""
        return self.cfg.side if self.cfg.topography == "torus" else self.cfg.capsule_dim

    @property
    def L(self) -> float:
        """Temporal half-window: ``t_l`` pools ``u`` over ``2L`` frames (0 without time)."""
        return self.cfg.L if self.cfg.topography in ("temporal", "temporal2d") else 0

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(z_mean, z_log_std, u_mean, u_log_std)``, each ``(..., n)``."""
        return (*self.enc_z(x), *self.enc_u(x))

    def encode(self, x: Tensor) -> Tensor:
        """Deterministic code ``(..., P) -> (..., n)``: ``z`` at its posterior mean and ``u^2`` at
        its posterior expectation ``E[u^2] = mean^2 + std^2`` (``u``'s mean alone can sit near 0,
        where ``t`` would blow up although no sample of ``u`` is ever that small)."""
        zm, _, um, us = self.posterior(x)
        return self.to_t(zm, torch.sqrt(um.pow(2) + torch.exp(2 * us)))  # sqrt(E[u^2]): W sees E[u^2]

    def decode(self, t: Tensor) -> Tensor:
        """Pixel logits ``(..., P)``."""
        return self.dec(t)

    def draw_noise(self, post: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        """The reparameterisation noise ``(eps_z, eps_u) ~ N(0, I)`` for a :meth:`posterior`, drawn from
        torch's global generator (``eps_z`` first)."""
        return torch.randn_like(post[0]), torch.randn_like(post[2])

    def sample_t(self, post: tuple[Tensor, ...], noise: tuple[Tensor, Tensor]) -> Tensor:
        """``t`` of Eq 11 from posterior samples ``z = m_z + s_z eps_z``, ``u = m_u + s_u eps_u``."""
        zm, zs, um, us = post
        return self.to_t(zm + torch.exp(zs) * noise[0], um + torch.exp(us) * noise[1])

    @staticmethod
    def elbo_parts(x: Tensor, post: tuple[Tensor, ...], logits: Tensor) -> ELBOParts:
        """Eq 12's parts from the data, the posterior and the decoder's logits (no parameters used)."""
        zm, zs, um, us = post
        recon = -_sum_event(_bce(logits, x), 1)
        return ELBOParts(recon, _sum_event(_kl_std_normal(zm, zs), 1), _sum_event(_kl_std_normal(um, us), 1))

    def forward(self, x: Tensor, noise: tuple[Tensor, Tensor] | None = None) -> ELBOParts:
        """One-sample ELBO parts (Eq 12) for ``x: (B, P)`` or ``(B, S, P)``; ``noise`` (default: drawn by
        :meth:`draw_noise`) is given by an ensemble, which draws each model's noise itself."""
        post = self.posterior(x)
        noise = self.draw_noise(post) if noise is None else noise
        return self.elbo_parts(x, post, self.decode(self.sample_t(post, noise)))

    def training_loss(self, x: Tensor, noise: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """:func:`~tvae_experiments.train.fit`'s objective: minus the batch-mean ELBO, and its parts."""
        return loss_terms(self(x, noise))

    def log_weights(self, x: Tensor, k: int) -> Tensor:
        """``log p(x, z, u) - log q(z, u | x)`` for ``k`` posterior samples: ``(k, B)``."""
        zm, zs, um, us = self.posterior(x)
        z = zm + torch.exp(zs) * torch.randn(k, *zm.shape, device=x.device)  # (k, B, ..., n)
        u = um + torch.exp(us) * torch.randn(k, *um.shape, device=x.device)
        log_px = -_sum_event(_bce(self.decode(self.to_t(z, u)), x), 2)
        if z.shape == u.shape:
            log_prior = _sum_event(_log_normal(z) + _log_normal(u), 2)
            log_q = _sum_event(_log_normal(z, zm, zs) + _log_normal(u, um, us), 2)
        else:  # C.2's padded u has more units than z
            log_prior = _sum_event(_log_normal(z), 2) + _sum_event(_log_normal(u), 2)
            log_q = _sum_event(_log_normal(z, zm, zs), 2) + _sum_event(_log_normal(u, um, us), 2)
        return log_px + log_prior - log_q



class VAE(nn.Module):
    """The Gaussian VAE baseline: one encoder, ``t = z`` (A.3, no weight norm by default)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n = cfg.n_latent
        self.enc_z = GaussianEncoder(cfg.in_dim, cfg.enc_hidden, n, cfg.weight_norm, cfg.pgd)
        self.dec = BernoulliDecoder(n, cfg.dec_hidden, cfg.in_dim, cfg.weight_norm, cfg.decoder_norm, cfg.pgd)

    @property
    def capsule_dim(self) -> int:
        """``D`` of the capsule layout the VAE's code is read in (its config's, for the metrics)."""
        return self.cfg.capsule_dim

    L = 0
    """No temporal coherence: each code sees its own frame only."""

    def encode(self, x: Tensor) -> Tensor:
        return self.enc_z(x)[0]

    def decode(self, t: Tensor) -> Tensor:
        return self.dec(t)

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(z_mean, z_log_std)``, each ``(..., n)``."""
        return self.enc_z(x)

    def draw_noise(self, post: tuple[Tensor, ...]) -> tuple[Tensor]:
        """The reparameterisation noise ``eps_z ~ N(0, I)`` (torch's global generator)."""
        return (torch.randn_like(post[0]),)

    def sample_t(self, post: tuple[Tensor, ...], noise: tuple[Tensor]) -> Tensor:
        """``t = z = m_z + s_z eps_z``."""
        return post[0] + torch.exp(post[1]) * noise[0]

    @staticmethod
    def elbo_parts(x: Tensor, post: tuple[Tensor, ...], logits: Tensor) -> ELBOParts:
        """The ELBO's parts from the data, the posterior and the decoder's logits (``kl_u = 0``)."""
        recon = -_sum_event(_bce(logits, x), 1)
        kl = _sum_event(_kl_std_normal(*post), 1)
        return ELBOParts(recon, kl, torch.zeros_like(kl))

    def forward(self, x: Tensor, noise: tuple[Tensor] | None = None) -> ELBOParts:
        post = self.posterior(x)
        noise = self.draw_noise(post) if noise is None else noise
        return self.elbo_parts(x, post, self.decode(self.sample_t(post, noise)))

    def training_loss(self, x: Tensor, noise: tuple[Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """:func:`~tvae_experiments.train.fit`'s objective: minus the batch-mean ELBO, and its parts."""
        return loss_terms(self(x, noise))

    def log_weights(self, x: Tensor, k: int) -> Tensor:
        zm, zs = self.enc_z(x)
        z = zm + torch.exp(zs) * torch.randn(k, *zm.shape, device=x.device)
        log_px = -_sum_event(_bce(self.decode(z), x), 2)
        return log_px + _sum_event(_log_normal(z), 2) - _sum_event(_log_normal(z, zm, zs), 2)



def build_model(cfg: ModelConfig) -> TVAE | VAE:
    """The model a :class:`ModelConfig` describes."""
    return TVAE(cfg) if cfg.kind == "tvae" else VAE(cfg)


@torch.no_grad()
def sample_prior(model: TVAE | VAE, num: int, seed: int | None = None) -> Tensor:
    """``num`` codes ``t`` from the model's prior, ``(num, n)`` on the model's device.

    TVAE: the TPoT prior of Eq 6 with the learned ``mu``, drawn by
    :func:`~tvae_core.studentt.sample_tpot` (the sampler chapters 1-2 use); single-frame
    topographies only (a temporal prior needs a sequence: use ``sample_tpot`` with ``shape=(S, n)``).
    VAE: ``t = z ~ N(0, I)``."""
    dev = next(model.parameters()).device
    if isinstance(model, TVAE):
        if isinstance(model.topo, (TemporalTopography, TemporalTopography2D)):
            raise ValueError("sample_prior draws single frames; for a temporal topography call "
                             "sample_tpot(num, model.topo, shape=(S, n), mu=model.mu) with a sequence length S")
        return sample_tpot(num, model.topo, mu=model.mu.detach().cpu(), seed=seed).t.to(dev)
    g = None if seed is None else torch.Generator().manual_seed(int(seed))
    return torch.randn(num, model.cfg.n_latent, generator=g).to(dev)


@torch.no_grad()
def log_likelihood_is(model: TVAE | VAE, x: Tensor, k: int = 10, batch_size: int = 256) -> Tensor:
    r"""Importance-sampled ``log p(x)`` with ``k`` samples from the posterior (Table 1: ``k=10``):

    .. math:: \log p(x) \approx \log \frac1k \sum_{j=1}^k \frac{p(x | z_j, u_j) p(z_j) p(u_j)}{q(z_j|x) q(u_j|x)}

    A lower bound in expectation that tightens as ``k`` grows (``k=1`` is the ELBO).
    ``x: (N, P)`` or ``(N, S, P)`` -> ``(N,)`` nats.
    """
    check_int("k", k, minimum=1)
    out = []
    for xb in x.split(batch_size):
        lw = model.log_weights(xb, k)  # (k, B)
        out.append(torch.logsumexp(lw, dim=0) - math.log(k))
    return torch.cat(out)
