"""Chapter 5 -- Tables 1-3, Fig 5 and appendix D's Figs 18-19 at the profile's scale."""
from __future__ import annotations

from tvae_experiments.chapters.base import ChapterSpec, ModelSpec, claim
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


DATASET = {"mnist": "MNIST", "dsprites": "dSprites"}
"""A dataset's key -> its name in the appendix-D statements."""
PAPER_VAE = {"mnist": "VAE 13,273.9 (Table 1)", "dsprites": "VAE 6,929.0 (Table 2)"}
"""The paper's E_eq of the VAE row, which i.i.d. codes match."""

_TRAINED = {"not_enforced": NOT_ENFORCED, "paper": "not in the paper (the control its tables lack)"}


def _per_dataset(ds: str):
    item = TABLE_OF[ds]
    return (*claim(f"{ds}_eeq_iid_matches_paper_vae", item,
                   f"{ds}: E_eq of codes without roll structure (i.i.d.) is the paper's VAE row: same scale",
                   "abs(ours - paper) / paper <= cfg.iid_scale_tol", kind="known-answer",
                   labels={"ours": "E_eq(i.i.d.)", "paper": "paper's VAE"}, not_enforced=NOT_ENFORCED,
                   paper=PAPER_VAE[ds]),
            *claim(f"{ds}_eeq_tvae_half_lowest", item, f"{ds}: E_eq ordering (lowest)", "lowest == half",
                   kind="known-answer", labels={"lowest": "lowest E_eq", "half": "TVAE L=S/2's"},
                   not_enforced=NOT_ENFORCED, paper="TVAE L=S/2 lowest"),
            *claim(f"{ds}_eeq_trained_below_untrained", item,
                   f"{ds}: training lowers E_eq below the untrained model of the same architecture", "ratio < 1",
                   labels={"ratio": "highest e_eq(trained) / e_eq(untrained) over TVAEs with L > 0"}, **_TRAINED),
            *claim(f"{ds}_eeq_centred_trained_below_untrained", item,
                   f"{ds}: training lowers centred E_eq below the untrained model of the same architecture",
                   "ratio < 1",
                   labels={"ratio": "highest e_eq_centred(trained) / e_eq_centred(untrained) over TVAEs with L > 0"},
                   **_TRAINED),
            *claim(f"{ds}_eeq_vae_highest", item, f"{ds}: E_eq ordering (highest)", "highest == vae",
                   labels={"highest": "highest E_eq", "vae": "the VAE's"}, not_enforced=NOT_ENFORCED,
                   paper="VAE highest"),
            *claim(f"{ds}_appendix_d_vae_reconstructs_but_does_not_roll", APPENDIX_D,
                   f"{DATASET[ds]} (appendix D): the VAE's direct reconstructions are accurate, its rolled capsules "
                   "are not", "ratio >= cfg.capsules.control_margin", "direct <= cfg.capsules.recon_factor * best",
                   labels={"ratio": "VAE rolled / direct BCE", "direct": "VAE direct BCE", "best": "the best model's"},
                   not_enforced=NOT_ENFORCED,
                   paper="VAE: middle row accurate, bottom row nothing like the input (appendix D)"))


def _figure(k: int, transform: str):
    """Fig 18's (``k`` = 0) or Fig 19's traversal claim: chapter 4's Fig 1 claim beside the untrained control."""
    return claim(f"fig{18 + k}_{transform.replace('+', '_')}_traversal", FIGS18_19,
                 f"MNIST {transform} (Fig {18 + k}): held-out frames decoded by rolling the capsules of the TVAE "
                 "L=13/36 S, beside its untrained control",
                 "ratio <= cfg.capsules.traversal_factor", "trained < cfg.capsules.right_pose_factor * opposite",
                 "untrained / trained >= cfg.capsules.control_margin",
                 labels={"ratio": "held-out traversal BCE / direct BCE", "trained": "trained traversal BCE",
                         "opposite": "opposite-pose BCE", "untrained": "untrained"},
                 not_enforced=NOT_ENFORCED, paper=f"Fig {18 + k} (visual: traversals continue the transformation)")


_CAPCORR = {"not_enforced": NOT_ENFORCED, "paper": "1.0 (Table 2)"}

SPEC = ChapterSpec(
    "05_tables", "Tables 1-3, Fig 5, appendix D", "Keller & Welling 2021",
    claims=(*claim("table3_normalised_tvae_organises", TABLE3,
                   "MNIST (Table 3): with PGD or with WN the TVAE L=5/36 S decodes held-out frames by Roll clearly "
                   "better than the VAE with any normalisation",
                   "vae / pgd >= cfg.capsules.control_margin", "vae / wn >= cfg.capsules.control_margin",
                   labels={"vae": "lowest VAE traversal BCE", "pgd": "TVAE PGD's", "wn": "TVAE WN's"},
                   not_enforced=NOT_ENFORCED,
                   paper="E_eq TVAE PGD 3196.7, WN 3137.9 vs VAE 13262.0-13273.9 (Table 3)"),
            *claim("table3_wn_and_pgd_organise_equally", TABLE3,
                   "MNIST (A.8): weight normalisation works equally well as PGD (held-out traversal BCE of the "
                   "TVAE L=5/36 S)", "abs(wn / pgd - 1) <= cfg.norm_tol",
                   labels={"wn": "traversal BCE(WN)", "pgd": "traversal BCE(PGD)"}, not_enforced=NOT_ENFORCED,
                   paper="E_eq 3137.9 vs 3196.7: 1.9% apart (Table 3)"),
            *claim("table3_tvae_needs_normalisation", TABLE3,
                   "MNIST (Sec 5, A.8): some form of normalisation is necessary for topographic organisation",
                   "none / min(pgd, wn) >= cfg.capsules.control_margin",
                   labels={"none": "traversal BCE(TVAE, none)", "pgd": "PGD", "wn": "WN"}, not_enforced=NOT_ENFORCED,
                   paper="'necessary' (A.8); the unnormalised TVAE is not in Table 3"),
            *claim("table3_wn_loglik_above_pgd", TABLE3,
                   "MNIST (A.8): weight normalisation obtains higher log-likelihoods than PGD",
                   "tvae_wn - tvae_pgd > 0", "vae_wn - vae_pgd > 0",
                   labels={"tvae_wn": "log p WN (TVAE)", "tvae_pgd": "log p PGD (TVAE)", "vae_wn": "log p WN (VAE)",
                           "vae_pgd": "log p PGD (VAE)"}, not_enforced=NOT_ENFORCED,
                   paper="TVAE -184.9 vs -189.0; VAE -192.5 vs -209.1 (Table 3)"),
            *claim("table3_vae_loglik_best_without_norm", TABLE3,
                   "MNIST (A.1, Table 3): the VAE's likelihood is highest without normalisation",
                   "none - max(wn, pgd) > 0", labels={"none": "log p(VAE, none)", "wn": "WN", "pgd": "PGD"},
                   not_enforced=NOT_ENFORCED, paper="-189.0 vs -192.5 (WN), -209.1 (PGD) (Table 3)"),
            *(c for k, transform in enumerate(COMBINED_KINDS.values()) for c in _figure(k, transform)),
            *_per_dataset("mnist"), *_per_dataset("dsprites"),
            *claim("capcorr_tvae_high_xy", TABLE2, "dSprites: TVAE with L >= S/3 has high CapCorr on position",
                   "capcorr >= cfg.capsules.capcorr_min",
                   labels={"capcorr": "mean CapCorr over x, y (lowest TVAE with L >= S/3)"}, **_CAPCORR),
            *claim("capcorr_tvae_high", TABLE2, "dSprites: TVAE with L >= S/3 has high CapCorr on all factors",
                   "capcorr >= cfg.capsules.capcorr_min",
                   labels={"capcorr": "mean CapCorr over 4 factors (lowest TVAE with L >= S/3)"}, **_CAPCORR),
            *claim("capcorr_baselines_low", TABLE2, "dSprites: BubbleVAE, VAE and TVAE L=0 have low CapCorr",
                   "capcorr < cfg.capcorr_low_max",
                   labels={"capcorr": "mean CapCorr (highest of Bubble, VAE, L=0)"}, not_enforced=NOT_ENFORCED,
                   paper="0.12-0.24 (Table 2)"),
            *claim("capcorr_learned_margin_xy", TABLE2,
                   "dSprites: the TVAE L=S/3's position capsules are learned, not built in (trained - untrained)",
                   "trained - untrained >= cfg.capsules.capcorr_margin", kind="control",
                   labels={"trained": "CapCorr x,y of TVAE L=S/3: trained"}, not_enforced=NOT_ENFORCED,
                   paper="not in the paper (Table 2 has no untrained rows)"),
            *claim("fig5_capcorr_rises_with_L", FIG5, "dSprites: mean CapCorr rises with L up to S/3 (Fig 5)",
                   "rise > 0", labels={"rise": "smallest rise of mean CapCorr between consecutive L <= S/3"},
                   not_enforced=NOT_ENFORCED, paper="0.24, 0.59, 1.0 (Table 5)"),
            *claim("loglik_shifting_tvae_highest", TABLE1,
                   "MNIST: TVAEs with shifting coherence have the highest likelihood", "highest == tvae",
                   labels={"highest": "highest log p (IS, {cfg.is_samples} samples)",
                           "tvae": "a shifting TVAE's"}, not_enforced=NOT_ENFORCED,
                   paper="TVAE L=5/36 S: -184.7 (Table 1)"),
            *claim("metrics_finite", "sanity", "sanity", "finite", kind="sanity",
                   labels={"finite": "every E_eq and log p finite"})),
    models=models, config=tables_config)
