"""Chapter 3 -- a TVAE organised on a torus (Fig 3), beside a VAE of the same size."""
from __future__ import annotations

from tvae_experiments.chapters.base import ChapterSpec, ModelSpec, claim
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

_AGREE = {"agreement": "agreement", "null": "random pairs'"}
_CONTROLS = {"vae": "VAE excess", "untrained": "untrained excess"}

SPEC = ChapterSpec(
    "03_tvae_torus", "The Topographic VAE on a 2-D torus (Fig 3)", "Keller & Welling 2021",
    claims=(*claim("fig3_class_agreement", FIG3, "TVAE: torus neighbours prefer the same digit class (Fig 3 view)",
                   "p < cfg.alpha", "agreement > null + cfg.agreement_margin", labels={"p": "p", **_AGREE},
                   paper="arranged by class (Fig 3, visual)", not_enforced=_SMOKE),
            *claim("fig3_vae_no_agreement", FIG3, "VAE (index layout): no class organisation",
                   "agreement < null + cfg.agreement_margin", kind="control", labels=_AGREE, not_enforced=_SMOKE),
            *claim("fig3_untrained_also_agrees", FIG3,
                   "control: an UNTRAINED TVAE also passes the Fig 3 test (shared denominators)", "p < cfg.alpha",
                   kind="control", labels={"p": "p"}),
            *claim("effects_tvae_topographic", FIG3,
                   "TVAE: torus neighbours draw similar things (learned topography)",
                   "p < cfg.alpha", "excess > cfg.excess_min", labels={"p": "p", "excess": "excess"},
                   paper="topographic organisation (Sec 6.2)", not_enforced=_SMOKE),
            *claim("effects_controls_flat", FIG3, "VAE and untrained TVAE: neighbours draw unrelated things",
                   "max(vae, untrained) < cfg.control_excess_max", kind="control", labels=_CONTROLS,
                   not_enforced=_SMOKE),
            *claim("effects_tvae_beats_controls", FIG3, "the organisation is learned, not built in",
                   "tvae > max(vae, untrained) + cfg.excess_min",
                   labels={"tvae": "TVAE excess", **_CONTROLS}, not_enforced=_SMOKE),
            *(c for name in ("TVAE", "VAE")
              for c in claim(f"is_ge_elbo_{name.lower()}", "Eq 12: the ELBO and its importance-sampled bound",
                             f"{name}: the IS estimate is at least the ELBO (sanity)", "log_p >= elbo - cfg.is_slack",
                             kind="known-answer", labels={"log_p": "IS log p(x)", "elbo": "ELBO"})),
            *claim("tvae_not_collapsed", FIG3, "the TVAE encodes information (not the collapsed mean image)",
                   "kl > cfg.min_kl", kind="sanity", labels={"kl": "KL_z + KL_u (nats)"}, not_enforced=_SMOKE)),
    models=models)
