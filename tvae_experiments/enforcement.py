"""Which claims each profile enforces: data beside the profile configs (:mod:`.profiles`).

Every claim a chapter checks is **enforced** -- a failed check fails the chapter -- unless this
table lists it for the run's profile, with the reason it is only reported there. The reason goes
into the chapter's metrics file and the report, next to the claim.

``NOT_ENFORCED[chapter][profile][pattern] = reason``: ``profile`` is one of
:data:`~tvae_experiments.profiles.PROFILES` or :data:`EVERY_PROFILE` (``"*"``); ``pattern`` is
an :func:`fnmatch.fnmatchcase` glob on the claim names the chapter passes to
:meth:`~tvae_experiments.claims.ClaimReport.check` (``"capcorr_orientation*"``). A name that no
pattern matches is enforced, so a new claim is enforced on every profile until it is listed here.
Chapters 1 and 2 check properties of sampled priors and enforce everything on every profile.
"""
from __future__ import annotations

from fnmatch import fnmatchcase

__all__ = ["EVERY_PROFILE", "NOT_ENFORCED", "not_enforced_reason"]

EVERY_PROFILE = "*"
"""Profile key of :data:`NOT_ENFORCED` for claims reported on every profile."""

_CPU_ORIENTATION = ("the cpu recipe does not learn dSprites orientation capsules: CapCorr_orientation "
                    "measured 0.00 after its 3,000 steps and 0.14 after 18,000 (chapter 4's note); the paper "
                    "trains ~630,000 steps: enforced on paper")


def _cpu_most(figure: str, weaker: str, measured: str = "") -> str:
    """Why cpu enforces ``weaker`` (most properties) instead of ``figure``'s every-property claim."""
    return (f"cpu relaxes {figure} from every property to most of them ({weaker}, enforced): 412 NCI molecules "
            "(103 of them test queries) instead of QM9's ~130,000 (~13,000) and a VAE trained 1,500 steps instead "
            f"of 1,000 epochs leave single properties within noise{measured}; enforced on paper")


_CPU_FULL_REFERENCE = ("cpu relaxes Fig 6 to a reference set of 500 rotated training digits "
                       "(knn_projection_beats_equivariant, enforced): with all 4,000 as references the two latents "
                       "score close, since most of z's energy is in its invariant component and thousands of "
                       "references at random angles give every query a neighbour in its own pose (note under "
                       "Fig 6); enforced on paper")


_RAW_EEQ = ("not informative: raw E_eq is dominated by the constant offset -mu/sqrt(W u^2) that trained and "
            "untrained codes share, and the untrained code is closer to constant. Measured on the cpu models (seed 0): "
            "trained vs untrained TVAE L=S/3 277.8 vs 89.9 (MNIST), 226.4 vs 60.6 (dSprites); L=S/2 53.4 vs 19.2 "
            "and 9.9 vs 9.5; untrained L=0 143.0 / 59.3 against ~13,270 / ~6,930 for i.i.d. codes. The centred "
            "form (capsule means removed) is the enforced check")


def _each(reason: str, *patterns: str) -> dict[str, str]:
    """``{pattern: reason}`` for patterns that share one reason."""
    return dict.fromkeys(patterns, reason)


NOT_ENFORCED: dict[str, dict[str, dict[str, str]]] = {
    "03_tvae_torus": {
        "smoke": _each("smoke trains a small TVAE for seconds: too short to organise the torus or to leave the "
                       "collapsed mean-image solution; enforced on cpu and paper",
                       "fig3_class_agreement", "fig3_vae_no_agreement", "effects_*", "tvae_not_collapsed"),
    },
    "04_capsules": {
        "smoke": {
            "orientation_square_symmetry": "a property of the 64 x 64 dSprites frames of cpu and paper (it explains "
                                           "their CapCorr_orientation cap); smoke renders 32 x 32 sprites",
            **_each("smoke trains each model for seconds: no capsules form, so traversal, CapCorr and control "
                    "checks are reported; enforced from the cpu profile on (orientation: paper)",
                    "fig1_combined_traversal", "*_traversal_ratio", "*_traversal_right_pose",
                    "*_controls_fail_traversal", "*_not_collapsed", "capcorr_*", "untrained_S/2_looks_equivariant",
                    "*_eeq_centred_trained_below_untrained"),
            "*_eeq_trained_below_untrained": _RAW_EEQ,
        },
        "cpu": {
            "*_eeq_trained_below_untrained": _RAW_EEQ,
            "capcorr_orientation*": _CPU_ORIENTATION,
            "dsprites_orientation_traversal_right_pose": _CPU_ORIENTATION,
            "mnist_rotation_traversal_right_pose": "the cpu recipe does not learn MNIST rotation as a roll after 3,000 "
                                                   "steps (traversal BCE 281.4 vs 281.1 against the opposite pose; "
                                                   "CapCorr_rotation 0.37): enforced on paper",
            "dsprites_scale_traversal_right_pose": "scale capsules form only after ~9,000 steps (chapter 4's note: "
                                                   "CapCorr_scale 0.00 at 3,000, 0.72 at 6,000); traversal BCE 142.5 "
                                                   "vs 142.8 against the opposite pose: enforced on paper",
            **_each("the right pose is decoded (0.10 / 0.13 of the opposite pose's BCE) but less sharply than a "
                    "direct encoding after 3,000 steps: traversal/direct 1.26 (x) and 1.37 (y) against 1.25; "
                    "their average, 1.23, passes the averaged claim: enforced on paper",
                    "dsprites_x_traversal_ratio", "dsprites_y_traversal_ratio"),
        },
        "paper": {"*_eeq_trained_below_untrained": _RAW_EEQ},
    },
    "05_tables": {
        "smoke": _each("smoke trains each model for seconds (chapter 4's smoke recipe): the orderings need learned "
                       "capsules; enforced on cpu (four-factor CapCorr and likelihood: paper)",
                       "*_eeq_tvae_half_lowest", "*_eeq_vae_highest", "capcorr_*", "loglik_shifting_tvae_highest",
                       "*_eeq_centred_trained_below_untrained", "fig5_*", "*_appendix_d_*", "table3_*",
                       "fig18_*", "fig19_*")
                 | {"*_eeq_trained_below_untrained": _RAW_EEQ},
        "paper": {"*_eeq_trained_below_untrained": _RAW_EEQ},
        "cpu": {
            "*_eeq_trained_below_untrained": _RAW_EEQ,
            "capcorr_tvae_high": "the four-factor mean includes orientation, which the cpu recipe does not learn "
                                 "(chapter 4's note: CapCorr_orientation 0.00 after 3,000 steps); cpu enforces "
                                 "capcorr_tvae_high_xy instead; enforced on paper",
            "loglik_shifting_tvae_highest": "at cpu scale the models differ by less than the noise of a "
                                            "100-sequence importance-sampling estimate: which model is highest "
                                            "changes between runs (TVAE L=S/2 -268.6 vs VAE -268.9 nats in one run, "
                                            "the VAE highest at -265.9 in another); enforced on paper",
            **_each("Table 3's likelihood orderings follow Table 1's rule (loglik_shifting_tvae_highest): at cpu "
                    "scale a 100-sequence importance-sampling estimate is noisier than some of the paper's gaps "
                    "(4.1 nats TVAE WN vs PGD, 3.5 VAE none vs WN); enforced on paper",
                    "table3_wn_loglik_above_pgd", "table3_vae_loglik_best_without_norm"),
            "table3_tvae_needs_normalisation": (
                "not reproduced on the cpu recipe: the TVAE L=5/36 S without normalisation decodes held-out frames "
                "by Roll as well as with WN or PGD (seed 0: traversal BCE 464.8 vs 449.5 WN / 462.3 PGD, VAEs "
                "717-851; centred E_eq 11,973 vs 11,946 / 12,045). The cpu recipe differs from the paper's where it "
                "matters: Adam instead of SGD, and the decoder's input standardised (decoder_norm, itself a "
                "normalisation); enforced on paper, whose recipe is the paper's"),
        },
    },
    "06_invariant_graphs": {
        "smoke": _each("smoke trains the graph VAE for seconds: the PCA, interpolation and kNN comparisons need a "
                       "trained model; enforced on cpu and paper (the every-property forms: paper)",
                       "pca_r2_*", "interpolation_hamming", "knn_sorted_beats_*"),
        "cpu": {
            "pca_r2_sorted_above_equivariant": _cpu_most("Fig 2", "pca_r2_sorted_above_equivariant_most"),
            "knn_sorted_beats_equivariant": _cpu_most("Fig 5", "knn_sorted_beats_equivariant_most"),
            "knn_sorted_beats_pooling": _cpu_most("Fig 5", "knn_sorted_beats_pooling_most",
                                                  " (measured at seed 0: sorted below the best pooling on 4 of 5)"),
        },
    },
    "07_invariant_rotation": {
        "smoke": _each("smoke trains the G-CNN and the CNN for seconds: accuracy and the kNN / PCA comparisons need "
                       "training (only the equivariance checks hold untrained); enforced on cpu and paper",
                       "accuracy", "knn_projection_beats_equivariant", "knn_pooled_beats_equivariant",
                       "knn_projection_full_reference", "pca_class_vs_pose_part", "cnn_aligned_beats_rotated"),
        "cpu": {
            "knn_projection_full_reference": _CPU_FULL_REFERENCE,
        },
        EVERY_PROFILE: {
            "pca_class_vs_full_z": "most of z's energy is in its invariant component, so z's first two principal "
                                   "directions are invariant ones and the paper's contrast does not show on the "
                                   "full latent (note under Fig 7); pca_class_vs_pose_part is the enforced form",
        },
    },
    "08_capsule_invariants": {
        "smoke": _each("smoke trains chapter 4's models for seconds: no capsules form, so there is no learned "
                       "content for the invariant views to keep; enforced on cpu and paper",
                       "sequences_collapse", "retrieval_across_poses", "class_across_poses",
                       "canonical_keeps_content", "dsprites_retrieval_across_poses", "retrieval_beats_controls",
                       "class_beats_controls"),
        "cpu": {
            **_each("on codes that share no input frame (each frame encoded alone) the cpu model's roll structure is "
                    "gone: single-frame CapCorr x/y/colour 0.04 / 0.14 / -0.03 against 0.37 / 0.89 / 0.61 with the "
                    "temporal window; 1-NN retrieval of the best invariant view 0.373 vs raw t 0.372, untrained "
                    "0.351, VAE 0.378; class 0.249 vs 0.249, 0.19, 0.22. The capsules live in the window, not in "
                    "what one frame encodes: enforced on paper",
                    "retrieval_across_poses", "class_across_poses", "retrieval_beats_controls",
                    "class_beats_controls"),
            "dsprites_retrieval_across_poses": "the cpu recipe learns x/y capsules only (chapter 4's note: "
                                               "CapCorr_orientation 0.00 after 3,000 steps), so sprite codes keep "
                                               "an orientation pose that no Roll removes",
        },
        "paper": {
            "dsprites_retrieval_across_poses": "not yet measured with the paper profile's models (the first with "
                                               "orientation capsules): reported until a paper run shows it holds",
        },
    },
    "10_capsule_extensions": {
        "smoke": _each("smoke trains chapter 10's MNIST models (C.1-C.4) for 60 steps (chapter 4's smoke "
                       "recipe): too few to learn a roll; enforced on paper, and on cpu where the cpu recipe reaches the "
                       "bar (the cpu profile's reasons name the rest); the toy sections' claims and C.4's online known answer are enforced on every "
                       "profile", "partial_mnist_*", "lattice_mnist_*", "causal_mnist_*_traversal_predicts_pose",
                       "causal_mnist_*_online_decodes_pose", "causal_mnist_*_full_window_predicts_pose", "ramps_*"),
        "cpu": _each("not reached on the cpu recipe at MNIST scale, and not by C.1 alone: by the same measure (Eq 20's "
                     "ObservedRoll to the canonical frame, read on the capsule's circle) chapter 4's own TVAE with "
                     "D = S = 18 units rolls correctly on 0.40 of the rotation and 0.30 of the scale test sequences "
                     "(colour 0.69), also below the majority; C.1's 9-unit capsules: rotation 0.13, scale 0.08, colour "
                     "0.76 (enforced). Seed 0, 3,000 steps; enforced on paper",
                     "partial_mnist_rotation_*", "partial_mnist_scale_*")
               | _each("not reached on the cpu recipe at MNIST scale, and not by C.3 alone: chapter 4's own TVAE with "
                       "1-D capsules has CapCorr 0.33 (rotation) and 0.74 (colour) on these rotation and colour test "
                       "sequences, below the 0.9 bar too; the 2-D capsule: rotation -0.03 / -0.12 along its axes "
                       "(traversal 599.3 nats = 599.1 against the opposite pose: no roll), colour 0.50 / 0.40 (both "
                       "axes, so both transformations take axis 0). Seed 0, 3,000 steps; the colour traversal claim "
                       "is enforced (340.8 vs 848.6 opposite pose); enforced on paper",
                       "lattice_mnist_axes_disentangle", "lattice_mnist_rotation_*", "lattice_mnist_color_capcorr_*")
               | _each("the cpu recipe does not learn MNIST rotation as a roll, with either window: chapter 4's own "
                       "forward-window TVAE decodes the held-out rotation frames no closer than the opposite pose "
                       "(285.3 vs 285.1 nats on these test sequences), the causal model likewise (traversal 407.1 vs "
                       "406.6, online 267.7 vs 268.0; the 2L-frame causal window from t_11 281.5 vs 280.8). Seed 0, "
                       "3,000 steps; enforced on paper",
                       "causal_mnist_rotation_*")
               | _each("the price of causality at cpu scale: t_0 of the causal window saw frame 0 only (the forward "
                       "window's saw frames 0-11), and Roll_l(t_0) decodes the held-out frames 12-17 at 1.52 (colour) "
                       "and 1.67 (scale) x their direct BCE, above chapter 4's 1.25 (forward window on the same "
                       "sequences: 1.08, 1.13); scale is also no closer than the opposite pose (486.0 vs 472.3). "
                       "The untrained control's traversal fails by far (1,632 nats) and the online codes decode colour "
                       "and scale in their pose (enforced). Seed 0, 3,000 steps; enforced on paper",
                       "causal_mnist_color_traversal_predicts_pose", "causal_mnist_scale_traversal_predicts_pose")
               | _each("scale is the one transformation where a causal code that saw the forward t_0's twelve frames "
                       "still falls short: the 2L-frame causal window's t_11 rolled to frames 12-17 decodes them at "
                       "1.22 x their direct BCE (bar 1.25: met) but no closer than the opposite pose (354.7 vs 359.3 "
                       "nats), where chapter 4's forward window reaches 320.1 vs 362.4; colour passes (enforced), "
                       "rotation is learned by neither window. Seed 0, 3,000 steps; enforced on paper",
                       "causal_mnist_scale_full_window_predicts_pose")
               | _each("C.2 does not learn at cpu scale, on MNIST as on the toy: on the padded scale ramps the "
                       "non-cyclic capsules' ObservedRoll follows the level with correlation 0.30 (exact in 0% of "
                       "the frames; untrained 0.00), the cyclic model on the same ramps 0.62 (2.8%), so the "
                       "non-cyclic construction is also the worse one here; scale is the factor the cpu recipe "
                       "learns least (chapter 4's own cyclic TVAE: CapCorr_scale 0.55 on these digits). Seed 0, "
                       "3,000 steps; enforced on paper", "ramps_*"),
    },
}
"""Claims only reported, per chapter and profile, with the reason (see the module docstring)."""


def not_enforced_reason(chapter: str, name: str, profile: str) -> str | None:
    """Why claim ``name`` of ``chapter`` is not enforced on ``profile``; None if it is enforced.

    The profile's own patterns are tried first, then :data:`EVERY_PROFILE`'s, each in order."""
    table = NOT_ENFORCED.get(chapter, {})
    for key in (profile, EVERY_PROFILE):
        for pattern, reason in table.get(key, {}).items():
            if fnmatchcase(name, pattern):
                return reason
    return None
