"""Chapter 9 -- what the papers' code does differently from their text, measured.  Trains nothing."""
from __future__ import annotations

from tvae_experiments.chapters.base import ChapterSpec, declare

SPEC = ChapterSpec(
    "09_paper_vs_code", "Paper vs code: measured differences", "Keller & Welling 2021 and its code",
    claims=(*declare("Eq 9: the shifting roll and its sign", ["eq9_sign", "authors_kernel_sign", "observed_roll_direction"],
                     kind="known-answer"),
            *declare("Eq 13-14: E_eq and CapCorr conventions", ["capcorr_conventions", "eeq_normalisation"],
                     kind="known-answer"),
            *declare("Eq 8: the TPoT offset mu", ["tpot_offset"], kind="known-answer"),
            *declare("Eq 7-9: windows in time and within capsules",
                     ["window_K_row_sums", "band_code_terms", "band_code_brute_force", "band_code_is_authors",
                      "time_windows"], kind="known-answer"),
            *declare("Eq 12: the loss scale (per sequence or per frame)", ["loss_scale_gradient_ratio",
                                                                           "paper_profile_loss"], kind="known-answer")))
