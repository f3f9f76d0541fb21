"""Chapter 3 -- a TVAE organised on a torus (Fig 3), beside a VAE of the same size."""
from __future__ import annotations

from tvae_experiments.chapters.base import ChapterSpec, ModelSpec, declare
from tvae_experiments.profiles import config_for

KINDS = ("tvae", "vae")
"""The chapter's two trained models."""


def model(kind: str, profile: str, seed: int) -> ModelSpec:
    """The TVAE or VAE of the chapter on ``profile``'s MNIST images."""
    cfg = config_for("03_tvae_torus", profile)
    return ModelSpec(f"ch3-{kind}-{profile}", cfg.model(kind), cfg.train(seed), "mnist", cfg, "images")


def models(profile: str, seed: int, **_) -> list[ModelSpec]:
    return [model(kind, profile, seed) for kind in KINDS]


FIG3 = "Fig 3: a TVAE organised on a torus"
_SMOKE = {"smoke": {"*": "smoke trains a small TVAE for seconds: too short to organise the torus or to leave the "
                         "collapsed mean-image solution; enforced on cpu and paper"}}

SPEC = ChapterSpec(
    "03_tvae_torus", "The Topographic VAE on a 2-D torus (Fig 3)", "Keller & Welling 2021",
    claims=(*declare(FIG3, ["fig3_class_agreement", "effects_tvae_topographic", "effects_tvae_beats_controls"],
                     not_enforced=_SMOKE),
            *declare(FIG3, ["fig3_vae_no_agreement", "effects_controls_flat"], kind="control", not_enforced=_SMOKE),
            *declare(FIG3, ["fig3_untrained_also_agrees"], kind="control"),
            *declare("Eq 12: the ELBO and its importance-sampled bound", ["is_ge_elbo_tvae", "is_ge_elbo_vae"],
                     kind="known-answer"),
            *declare(FIG3, ["tvae_not_collapsed"], kind="sanity", not_enforced=_SMOKE)),
    models=models)
