"""Train and evaluate the capsule models of Sec 6.3 -- shared by chapters 4, 5 and 7.

``train_variant`` names every model by data set, variant, ``L`` and seed, so a model trained
in one chapter is loaded from the weight cache in the next.  ``evaluate_capsules`` returns
every number the chapters check: the traversal of Fig 4 (held-out BCE of decoded rolls vs
direct reconstruction, and vs the frame at the opposite pose), E_eq (Eq 13), CapCorr per
transformation (Eq 17, A.11 Omega) and the test ELBO.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .metrics import capcorr_sequences, capsule_traversal, equivariance_error
from .models import build_model
from .profiles import CapsuleDataConfig
from .train import FitResult, evaluate, fit

__all__ = ["train_variant", "untrained_variant", "CapsuleScores", "evaluate_capsules", "variant_label"]


def variant_label(variant: str, L: float, S: int) -> str:
    """Readable name, e.g. ``TVAE L=6 (S/3)``."""
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


def untrained_variant(dcfg: CapsuleDataConfig, variant: str, L: float, seed: int, device: torch.device):
    """The same architecture at its initialisation: the control every capsule claim needs."""
    torch.manual_seed(seed)
    return build_model(dcfg.model(variant, L)).to(device).eval()


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


@torch.no_grad()
def evaluate_capsules(model, test, capsule_dim: int, L: float, seed: int = 0) -> CapsuleScores:
    """All capsule metrics of ``model`` on ``test`` (a :class:`~tvae_core.sequences.SequenceData`)."""
    dev = next(model.parameters()).device
    x = test.x.to(dev)  # (N, S, P)
    tr = capsule_traversal(model, x, capsule_dim, L)
    S = x.shape[1]
    opposite = (torch.arange(S) + S // 2) % S
    wrong = torch.nn.functional.binary_cross_entropy(tr.decoded.clamp(1e-6, 1 - 1e-6), test.x[:, opposite],
                                                     reduction="none").sum(-1)  # (N, S)
    held = tr.held_out
    t = model.encode(x).cpu()  # (N, S, n)
    cc = {}
    for k, name in enumerate(test.transforms):
        sel = test.transform == k
        if int(sel.sum()) >= 3:
            cc[name] = capcorr_sequences(t[sel], test.step[sel], test.canonical[sel], capsule_dim)
    return CapsuleScores(
        traversal_bce=tr.roll_bce[:, held].mean().item(), direct_bce=tr.direct_bce[:, held].mean().item(),
        wrong_pose_bce=wrong[:, held].mean().item(), e_eq=equivariance_error(t, capsule_dim).mean().item(),
        capcorr=cc, elbo=evaluate(model, x, batch_size=64, seed=seed)["elbo"])
