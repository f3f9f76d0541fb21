"""Train, load and score the capsule models of Sec 6.3 -- one place for chapters 4, 5 and 8.

A *variant* is one row of the paper's tables: ``(kind, L/S)`` with kind ``"tvae"`` (shifting
coherence, Eq 9), ``"bubble"`` (stationary, Eq 8), ``"tvae_l0"`` (no temporal coherence) or
``"vae"``.  :func:`capsule_models` trains (or loads from the weight cache) a set of variants and
builds their untrained controls; :func:`score_models` runs :func:`evaluate_capsules` on each.
Every model is cached under a name of data set, variant, ``L`` and seed, so a model trained in
one chapter is loaded in the next.  A model carries its own ``capsule_dim`` and ``L``
(:class:`~tvae_core.models.TVAE`), so evaluation never needs them passed again.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from tvae_core.metrics import capcorr_sequences, capsule_traversal, equivariance_error
from tvae_core.models import build_model
from tvae_experiments.device import resolve_device
from tvae_experiments.profiles import CapsuleDataConfig
from tvae_experiments.train import FitResult, evaluate, fit

__all__ = ["train_variant", "untrained_variant", "CapsuleModel", "capsule_models", "score_models", "CapsuleScores",
           "evaluate_capsules", "variant_label", "PAPER_TABLE1", "PAPER_TABLE2", "PAPER_FIG5", "frac_key",
           "CapsuleData", "capsule_data", "capcorr_per_transform"]


def variant_label(variant: str, L: float, S: int) -> str:
    """Readable name, e.g. ``TVAE L=6 (1/3 S)``."""
    from fractions import Fraction

    frac = Fraction(int(2 * L), 2 * S) if L else 0
    base = {"tvae": "TVAE", "bubble": "BubbleVAE", "tvae_l0": "TVAE", "vae": "VAE"}[variant]
    return base if variant == "vae" else f"{base} L={L:g}" + (f" ({frac.numerator}/{frac.denominator} S)" if L else "")


def train_variant(dcfg: CapsuleDataConfig, variant: str, L: float, train_x: torch.Tensor, data_id: str, seed: int,
                  device: str = "auto", progress: bool = True) -> FitResult:
    """Train (or load) one capsule model; ``train_x: (N, S, P)``."""
    name = f"caps-{dcfg.dataset}-{variant}-L{L:g}-s{seed}"
    return fit(dcfg.model(variant, L), train_x, dcfg.train(seed), data_id=data_id, device=device, name=name,
               progress=progress)


def untrained_variant(dcfg: CapsuleDataConfig, variant: str, L: float, seed: int, device: torch.device | str = "auto"):
    """The same architecture at its initialisation: the control every capsule claim needs."""
    torch.manual_seed(seed)
    return build_model(dcfg.model(variant, L)).to(resolve_device(device, verbose=False)).eval()


@dataclass
class CapsuleModel:
    """One trained (or untrained) variant, ready to score."""

    variant: str          # "tvae" | "bubble" | "tvae_l0" | "vae"
    frac: float           # L / S as in the paper's tables (L itself: ``model.L``)
    trained: bool         # False: the control at its initialisation
    label: str            # e.g. "TVAE L=6 (1/3 S)", "untrained TVAE L=9 (1/2 S)"
    model: nn.Module
    seconds: float = 0.0  # training time of the cached weights (0 for untrained)
    from_cache: bool = False


def capsule_models(dcfg: CapsuleDataConfig, variants: Mapping[str, tuple[str, float]], train, data_id: str,
                   seed: int, device: str = "auto", *, untrained: Mapping[str, str] | None = None,
                   progress: bool = True) -> dict[str, CapsuleModel]:
    """Train/load every variant and build the untrained controls.

    Args:
        variants: key -> ``(variant, L/S)``, e.g. ``{"tvae_S/3": ("tvae", 1/3), "vae": ("vae", 0)}``.
        train: the training :class:`~tvae_experiments.data.sequences.SequenceData`.
        untrained: control key -> key of ``variants``, e.g. ``{"untrained_S/2": "tvae_S/2"}``: the
            same architecture at its initialisation, the control every capsule claim needs.
    """
    out: dict[str, CapsuleModel] = {}
    for key, (variant, frac) in variants.items():
        L = dcfg.L_of(frac)
        r = train_variant(dcfg, variant, L, train.x, data_id, seed, device, progress)
        out[key] = CapsuleModel(variant, frac, True, variant_label(variant, L, dcfg.S), r.model, r.seconds,
                                r.from_cache)
    for key, of in (untrained or {}).items():
        if of not in variants:
            raise ValueError(f"untrained[{key!r}]={of!r} is not one of the variants {sorted(variants)}")
        variant, frac = variants[of]
        L = dcfg.L_of(frac)
        out[key] = CapsuleModel(variant, frac, False, "untrained " + variant_label(variant, L, dcfg.S),
                                               untrained_variant(dcfg, variant, L, seed, device))
    return out


def score_models(models: Mapping[str, CapsuleModel], test, seed: int = 0) -> dict[str, "CapsuleScores"]:
    """:func:`evaluate_capsules` of every model on ``test``."""
    return {k: evaluate_capsules(m.model, test, seed) for k, m in models.items()}


@dataclass(frozen=True)
class CapsuleScores:
    traversal_bce: float     # held-out frames: decode(Roll_l(t_0)) vs x_l, nats per image
    direct_bce: float        # the same frames reconstructed from their own code
    wrong_pose_bce: float    # decode(Roll_l(t_0)) vs the frame half a cycle away
    e_eq: float              # Eq 13, mean over test sequences
    capcorr: dict            # transformation name -> CapCorr (Eq 17, A.11)
    elbo: float              # test ELBO per sequence

    @property
    def traversal_ratio(self) -> float:
        return self.traversal_bce / self.direct_bce


def capcorr_per_transform(t: torch.Tensor, test, capsule_dim: int, where: torch.Tensor | None = None) -> dict:
    """CapCorr (Eq 17, A.11 Omega) per transformation of ``test``: ``t: (N, S, n)`` codes of its
    sequences; ``where: (N,)`` bool restricts to some sequences (e.g. one dSprites shape).
    Transformations with fewer than 3 sequences are left out."""
    cc = {}
    for k, name in enumerate(test.transforms):
        sel = test.transform == k if where is None else (test.transform == k) & where
        if int(sel.sum()) >= 3:
            cc[name] = capcorr_sequences(t[sel], test.step[sel], test.canonical[sel], capsule_dim)
    return cc


@torch.no_grad()
def evaluate_capsules(model, test, seed: int = 0) -> CapsuleScores:
    """All capsule metrics of ``model`` on ``test`` (a :class:`~tvae_experiments.data.sequences.SequenceData`);
    ``capsule_dim`` and ``L`` are the model's own."""
    dev = next(model.parameters()).device
    x = test.x.to(dev)  # (N, S, P)
    tr = capsule_traversal(model, x)
    S = x.shape[1]
    opposite = (torch.arange(S) + S // 2) % S
    wrong = torch.nn.functional.binary_cross_entropy(tr.decoded.clamp(1e-6, 1 - 1e-6), test.x[:, opposite],
                                                     reduction="none").sum(-1)  # (N, S)
    held = tr.held_out
    t = model.encode(x).cpu()  # (N, S, n)
    cc = capcorr_per_transform(t, test, model.capsule_dim)
    return CapsuleScores(
        traversal_bce=tr.roll_bce[:, held].mean().item(), direct_bce=tr.direct_bce[:, held].mean().item(),
        wrong_pose_bce=wrong[:, held].mean().item(), e_eq=equivariance_error(t, model.capsule_dim).mean().item(),
        capcorr=cc, elbo=evaluate(model, x, batch_size=64, seed=seed)["elbo"])


# The paper's numbers (Tables 1, 2, 4, 5; mean +- std over 3 initialisations), keyed by
# (variant, L/S as a string); printed next to this run's values.
PAPER_TABLE1 = {  # MNIST: log p(x) per image (IS, 10 samples) and E_eq
    ("tvae", "1/2"): {"log_p": "-188.5 ± 1.0", "e_eq": "386.7 ± 1.0"},
    ("tvae", "5/36"): {"log_p": "-184.7 ± 0.7", "e_eq": "3149.6 ± 20.7"},
    ("tvae_l0", "0"): {"log_p": "-217.3 ± 1.3", "e_eq": "3047.8 ± 59.2"},
    ("bubble", "5/36"): {"log_p": "-190.0 ± 0.3", "e_eq": "2522.5 ± 21.3"},
    ("vae", "0"): {"log_p": "-189.0 ± 0.8", "e_eq": "13273.9 ± 0.5"},
}
PAPER_TABLE2 = {  # dSprites: CapCorr per factor and E_eq (Table 5 has every L)
    ("tvae", "1/2"): {"x": "1.0 ± 0", "y": "1.0 ± 0", "orientation": "1.0 ± 0", "scale": "1.0 ± 0", "e_eq": "131 ± 0"},
    ("tvae", "2/5"): {"x": "1.0 ± 0", "y": "1.0 ± 0", "orientation": "1.0 ± 0", "scale": "1.0 ± 0", "e_eq": "679 ± 4"},
    ("tvae", "1/3"): {"x": "1.0 ± 0", "y": "1.0 ± 0", "orientation": "1.0 ± 0", "scale": "1.0 ± 0", "e_eq": "964 ± 9"},
    ("tvae", "4/15"): {"x": "0.96 ± 0.01", "y": "0.97 ± 0.01", "orientation": "0.90 ± 0.01", "scale": "0.97 ± 0.00",
                       "e_eq": "1298 ± 5"},
    ("tvae", "1/6"): {"x": "0.68 ± 0.02", "y": "0.69 ± 0.02", "orientation": "0.57 ± 0.01", "scale": "0.42 ± 0.01",
                      "e_eq": "2313 ± 33"},
    ("tvae_l0", "0"): {"x": "0.17 ± 0.03", "y": "0.17 ± 0.04", "orientation": "0.11 ± 0.02", "scale": "0.52 ± 0.01",
                       "e_eq": "1075 ± 20"},
    ("bubble", "1/6"): {"x": "0.07 ± 0.02", "y": "0.08 ± 0.01", "orientation": "0.05 ± 0.01", "scale": "0.26 ± 0.00",
                        "e_eq": "1397 ± 29"},
    ("vae", "0"): {"x": "0.24 ± 0.01", "y": "0.25 ± 0.01", "orientation": "0.09 ± 0.01", "scale": "0.47 ± 0.00",
                   "e_eq": "6929 ± 1"},
}
PAPER_FIG5 = {  # mean CapCorr over the four dSprites factors vs L/S (from Table 5)
    "tvae": {0.0: 0.24, 1 / 6: 0.59, 4 / 15: 0.95, 1 / 3: 1.0, 2 / 5: 1.0, 1 / 2: 1.0},
    "bubble": {1 / 6: 0.115, 4 / 15: 0.205, 1 / 3: 0.2175, 2 / 5: 0.235, 1 / 2: 0.2425},
}


def frac_key(frac: float) -> str:
    """``5/36``-style key of ``L/S`` for the paper tables."""
    from fractions import Fraction

    f = Fraction(frac).limit_denominator(36)
    return "0" if f == 0 else f"{f.numerator}/{f.denominator}"


@dataclass(frozen=True)
class CapsuleData:
    """The train/test sequences of both data sets, as chapters 4, 5 and 8 use them."""

    mnist_train: object
    mnist_test: object
    dsprites_train: object
    dsprites_test: object

    seed: int = 0

    def data_id(self, train) -> str:
        """Cache-key identity of a training set: source, size, data seed, and the combined
        transformation when there is one (Fig 1)."""
        combined = "|color+rotation" if tuple(train.transforms) == ("color+rotation",) else ""
        return f"{train.source}|n={len(train.x)}|seed={self.seed}{combined}"


def capsule_data(cm: CapsuleDataConfig, cd: CapsuleDataConfig, data_dir=None, seed: int = 0) -> CapsuleData:
    """MNIST sequences (train from the training digits, test from the test digits) and a
    train/test split of dSprites sequences, all seeded by ``seed``."""
    from tvae_experiments.data.mnist import mnist
    from tvae_experiments.data.sequences import dsprites_sequences, mnist_sequences

    digits = mnist(data_dir, seed=seed)
    mtrain = mnist_sequences(digits.train_x, digits.train_y, cm.n_train, S=cm.S, seed=seed)
    mtest = mnist_sequences(digits.test_x, digits.test_y, cm.n_test, S=cm.S, seed=seed + 1)
    dall = dsprites_sequences(cd.n_train + cd.n_test, S=cd.S, data_dir=data_dir, seed=seed, image_size=cd.image_size)
    dtrain, dtest = dall.split(cd.n_test)
    # Large training sets (paper profile) are kept as uint8: 60,000 MNIST sequences take 2.5 GB
    # instead of 10 GB; `fit` rescales each batch.  The cpu/smoke sets (<= 2,000) stay float32.
    mtrain = mtrain.as_uint8() if cm.n_train > UINT8_ABOVE else mtrain
    dtrain = dtrain.as_uint8() if cd.n_train > UINT8_ABOVE else dtrain
    return CapsuleData(mtrain, mtest, dtrain, dtest, seed)


UINT8_ABOVE = 10_000
"""Training sets with more sequences than this are stored as ``uint8`` (see :func:`capsule_data`)."""
