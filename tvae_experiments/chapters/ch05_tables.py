"""Chapter 5 -- Tables 1-3, Fig 5 and appendix D's Figs 18-19 at the profile's scale."""
from __future__ import annotations

from tvae_experiments.chapters.base import ChapterSpec, ModelSpec, declare
from tvae_experiments.chapters.models_capsules import capsule_model, capsule_rows
from tvae_experiments.chapters.reasons import RAW_EEQ, smoke_untrained
from tvae_experiments.profiles import tables_config

COMBINED_KINDS = {"combined": "color+rotation", "perspective": "color+perspective"}
"""Figs 18-19's training sets (a DataSpec kind) -> their transformation."""


def models(profile: str, seed: int, n_seeds: int | None = None, rows: str = "profile", **_) -> list[ModelSpec]:
    cfg = tables_config(profile, n_seeds, rows)
    caps = cfg.capsules
    out = capsule_rows(caps, {"mnist": cfg.mnist_rows + cfg.norm_rows, "dsprites": cfg.dsprites_rows},
                       [seed + s for s in cfg.seeds])
    return out + [figure_model(cfg, transform, seed) for transform in COMBINED_KINDS.values()]


def figure_model(cfg, transform: str, seed: int) -> ModelSpec:
    """Fig 18's (``"color+rotation"``) or Fig 19's (``"color+perspective"``) TVAE L = ``combined_frac`` S of
    the :class:`~tvae_experiments.profiles.TablesConfig` ``cfg``, trained with the first seed of ``seed``'s run."""
    kind = {t: k for k, t in COMBINED_KINDS.items()}[transform]
    return capsule_model(cfg.capsules, "mnist", ("tvae", cfg.combined_frac), seed + cfg.seeds[0], data=kind,
                         transform=transform)


TABLE1 = "Table 1: MNIST (E_eq, log-likelihood)"
TABLE2 = "Table 2: dSprites (E_eq, CapCorr)"
TABLE3 = "Table 3: weight normalisation vs projected gradient descent (A.8)"
FIG5 = "Fig 5: CapCorr against L"
FIGS18_19 = "Figs 18-19: colour with rotation, colour with perspective"
APPENDIX_D = "Appendix D: the VAE reconstructs but does not roll"
TABLE_OF = {"mnist": TABLE1, "dsprites": TABLE2}

_NOISY_IS = ("at cpu scale a 100-sequence importance-sampling estimate is noisier than the gaps between these models "
             "(the log p column of the table above; the paper's own gaps are a few nats); enforced on paper")
NOT_ENFORCED = {
    "smoke": {**dict.fromkeys(("*_eeq_tvae_half_lowest", "*_eeq_vae_highest", "capcorr_*", "loglik_shifting_tvae_highest",
                               "*_eeq_centred_trained_below_untrained", "fig5_*", "*_appendix_d_*", "table3_*",
                               "fig18_*", "fig19_*"),
                              smoke_untrained("the orderings need learned capsules",
                                              "enforced on cpu (four-factor CapCorr and likelihood: paper)")),
              "*_eeq_trained_below_untrained": RAW_EEQ},
    "cpu": {"*_eeq_trained_below_untrained": RAW_EEQ,
            "capcorr_tvae_high": "the four-factor mean includes orientation, which the cpu recipe does not learn "
                                 "(chapter 4's CapCorr_orientation); cpu enforces capcorr_tvae_high_xy instead; "
                                 "enforced on paper",
            "loglik_shifting_tvae_highest": _NOISY_IS,
            "table3_wn_loglik_above_pgd": _NOISY_IS,
            "table3_vae_loglik_best_without_norm": _NOISY_IS,
            "table3_tvae_needs_normalisation": (
                "not reproduced on the cpu recipe: the TVAE without normalisation decodes held-out frames by Roll "
                "about as well as with WN or PGD (the traversal column of Table 3 above). The cpu recipe differs "
                "from the paper's where it matters: Adam instead of SGD, and the decoder's input standardised "
                "(decoder_norm, itself a normalisation); enforced on paper, whose recipe is the paper's")},
    "paper": {"*_eeq_trained_below_untrained": RAW_EEQ},
}


def _per_dataset(ds: str):
    item = TABLE_OF[ds]
    return (*declare(item, [f"{ds}_eeq_iid_matches_paper_vae", f"{ds}_eeq_tvae_half_lowest"], kind="known-answer",
                     not_enforced=NOT_ENFORCED),
            *declare(item, [f"{ds}_eeq_trained_below_untrained", f"{ds}_eeq_centred_trained_below_untrained",
                            f"{ds}_eeq_vae_highest"], not_enforced=NOT_ENFORCED),
            *declare(APPENDIX_D, [f"{ds}_appendix_d_vae_reconstructs_but_does_not_roll"], not_enforced=NOT_ENFORCED))


SPEC = ChapterSpec(
    "05_tables", "Tables 1-3, Fig 5, appendix D", "Keller & Welling 2021",
    claims=(*declare(TABLE3, ["table3_normalised_tvae_organises", "table3_wn_and_pgd_organise_equally",
                              "table3_tvae_needs_normalisation", "table3_wn_loglik_above_pgd",
                              "table3_vae_loglik_best_without_norm"], not_enforced=NOT_ENFORCED),
            *declare(FIGS18_19, [f"fig{18 + k}_{t.replace('+', '_')}_traversal"
                                 for k, t in enumerate(COMBINED_KINDS.values())], not_enforced=NOT_ENFORCED),
            *_per_dataset("mnist"), *_per_dataset("dsprites"),
            *declare(TABLE2, ["capcorr_tvae_high_xy", "capcorr_tvae_high", "capcorr_baselines_low"],
                     not_enforced=NOT_ENFORCED),
            *declare(TABLE2, ["capcorr_learned_margin_xy"], kind="control", not_enforced=NOT_ENFORCED),
            *declare(FIG5, ["fig5_capcorr_rises_with_L"], not_enforced=NOT_ENFORCED),
            *declare(TABLE1, ["loglik_shifting_tvae_highest"], not_enforced=NOT_ENFORCED),
            *declare("sanity", ["metrics_finite"], kind="sanity")),
    models=models)
