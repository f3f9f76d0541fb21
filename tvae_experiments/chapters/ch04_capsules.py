"""Chapter 4 -- equivariant capsules from sequences (Sec 6.3, Fig 1, Fig 4, Table 2's TVAE L = S/3)."""
from __future__ import annotations

from tvae_experiments.chapters.base import ChapterSpec, ModelSpec, claim
from tvae_experiments.chapters.models_capsules import capsule_model
from tvae_experiments.chapters.reasons import CPU_ORIENTATION, RAW_EEQ, smoke_untrained
from tvae_experiments.profiles import config_for

VARIANTS = {"tvae_S/3": ("tvae", 1 / 3), "tvae_S/2": ("tvae", 1 / 2), "bubble": ("bubble", 1 / 3), "vae": ("vae", 0)}
"""The trained capsule models of each data set: key -> ``(variant, L/S)``."""

COMBINED = ("tvae", 1 / 3)
"""Fig 1's model: the TVAE L = S/3 on MNIST sequences changing colour and rotation together."""


def combined_model(caps, seed: int) -> ModelSpec:
    """Fig 1's model (:data:`COMBINED`) of the :class:`~tvae_experiments.profiles.CapsulesConfig` ``caps``."""
    return capsule_model(caps, "mnist", COMBINED, seed, data="combined")


def models(profile: str, seed: int, **_) -> list[ModelSpec]:
    caps = config_for("04_capsules", profile)
    out = [capsule_model(caps, ds, row, seed) for ds in ("mnist", "dsprites") for row in VARIANTS.values()]
    return out + [combined_model(caps, seed)]


TOY = "Toy problem: capsules that must roll (known answer)"
FIG1 = "Fig 1: combined transformations decoded by Roll"
FIG4 = "Fig 4: capsule traversals of held-out frames"
TABLE2 = "Table 2: CapCorr of the TVAE L=S/3"
EQ13 = "Eq 13: the equivariance error E_eq"
DATASETS = ("mnist", "dsprites")
TRANSFORMS = {"mnist": ("rotation", "color", "scale"), "dsprites": ("x", "y", "orientation", "scale")}
"""The transformations of each data set's sequences, as the per-transformation claims name them."""

_SMOKE = smoke_untrained("no capsules form, so traversal, CapCorr and control checks are reported",
                         "enforced from the cpu profile on (orientation: paper)")
NOT_ENFORCED = {
    "smoke": {"orientation_square_symmetry": "a property of the 64 x 64 dSprites frames of cpu and paper (it explains "
                                             "their CapCorr_orientation cap); smoke renders 32 x 32 sprites",
              **dict.fromkeys(("fig1_combined_traversal", "*_traversal_ratio", "*_traversal_right_pose",
                               "*_controls_fail_traversal", "*_not_collapsed", "capcorr_*",
                               "untrained_S/2_looks_equivariant", "*_eeq_centred_trained_below_untrained"), _SMOKE),
              "*_eeq_trained_below_untrained": RAW_EEQ},
    "cpu": {"*_eeq_trained_below_untrained": RAW_EEQ,
            "capcorr_orientation*": CPU_ORIENTATION,
            "dsprites_orientation_traversal_right_pose": CPU_ORIENTATION,
            "mnist_rotation_traversal_right_pose": "the cpu recipe does not learn MNIST rotation as a roll in 3,000 "
                                                   "steps: the rolled code decodes the held-out rotation frames no "
                                                   "closer than the opposite pose (this claim's value) and "
                                                   "CapCorr_rotation stays low (the CapCorr table above); enforced "
                                                   "on paper",
            "dsprites_scale_traversal_right_pose": "dSprites scale capsules form only with longer training than the "
                                                   "cpu recipe's: the traversal is no closer than the opposite pose "
                                                   "(this claim's value); enforced on paper",
            "dsprites_traversal_ratio": "the rolled code decodes x and y in the right pose (dsprites_x_traversal_right_pose "
                                        "and dsprites_y_traversal_right_pose, enforced) but less sharply than a direct "
                                        "encoding after the cpu recipe's training: the worst transformation's ratio "
                                        "(this claim's value) is above the bar; enforced on paper"},
    "paper": {"*_eeq_trained_below_untrained": RAW_EEQ},
}

_FIG4_PAPER = "decoded nearly perfectly, all transformations (Sec 6.3, Fig 4)"
_EEQ_PAPER = "lower E_eq = more equivariant (Sec 6.3)"
# Table 2's CapCorr claims: at least capcorr_min, and capcorr_margin above the untrained TVAE L=S/3
_CAPCORR = ("trained >= cfg.capcorr_min", "trained - untrained >= cfg.capcorr_margin")
_RIGHT_POSE = "traversal < cfg.right_pose_factor * opposite"


def _right_pose(ds: str):
    """The per-transformation right-pose claims of ``ds``; each transformation on its own, since an average over
    transformations hides one that is not learned (Sec 6.3: "the model is able to successfully learn all
    transformations simultaneously")."""
    return claim("{ds}_{t}_traversal_right_pose", FIG4,
                 "{ds} {t} sequences: the rolled code decodes the right pose, not a pose average", _RIGHT_POSE,
                 labels={"traversal": "traversal BCE", "opposite": "BCE against the opposite pose"},
                 paper="Fig 4 (visual)", not_enforced=NOT_ENFORCED, each={"ds": (ds,), "t": TRANSFORMS[ds]})


SPEC = ChapterSpec(
    "04_capsules", "Equivariant capsules from sequences", "Keller & Welling 2021",
    claims=(*claim("toy_{f}_traversal_predicts_pose", TOY,
                   "toy, {f}: the rolled t_0 decodes the held-out frames in the right pose", _RIGHT_POSE,
                   kind="known-answer", labels={"traversal": "held-out BCE", "opposite": "the opposite pose's BCE"},
                   paper="Fig 4: traversals reproduce the sequence", each={"f": ("x", "y")}),
            *claim("toy_{f}_capcorr", TOY,
                   "toy, {f}: capsules roll with the transformation, beyond the untrained model's",
                   "trained >= cfg.capcorr_min", "trained >= untrained + cfg.capcorr_margin", kind="known-answer",
                   labels={"trained": "trained CapCorr", "untrained": "untrained CapCorr"},
                   paper="Table 2: TVAE L=S/3 CapCorr 1.0 on x and y", each={"f": ("x", "y")}),
            *claim("toy_centred_eeq_below_untrained", TOY, "toy: training lowers the centred equivariance error",
                   "trained < untrained", kind="known-answer",
                   labels={"trained": "centred E_eq", "untrained": "the untrained model's"}),
            *claim("toy_{f}_untrained_fails_traversal", TOY, "toy, {f}: the untrained TVAE (same architecture) cannot",
                   "untrained >= cfg.control_margin * trained", kind="control",
                   labels={"untrained": "untrained held-out BCE", "trained": "the trained model's"},
                   each={"f": ("x", "y")}),
            *claim("fig1_combined_traversal", FIG1, "Fig 1: colour+rotation held-out frames decoded by Roll",
                   "ratio <= cfg.traversal_factor", _RIGHT_POSE,
                   labels={"ratio": "traversal BCE / direct BCE", "traversal": "traversal BCE",
                           "opposite": "opposite-pose BCE"},
                   paper="Fig 1 (visual)", not_enforced=NOT_ENFORCED),
            # the worst transformation's ratio: an average over transformations hides one that is not learned
            *claim("{ds}_traversal_ratio", FIG4,
                   "{ds}: TVAE L=S/3 decodes the held-out frames of every transformation by Roll nearly as well as "
                   "by encoding them", "ratio <= cfg.traversal_factor",
                   labels={"ratio": "highest held-out traversal BCE / direct BCE over the transformations"},
                   paper=_FIG4_PAPER, not_enforced=NOT_ENFORCED, each={"ds": DATASETS}),
            *(c for ds in DATASETS for c in _right_pose(ds)),
            *claim("{ds}_controls_fail_traversal", FIG4,
                   "{ds}: BubbleVAE, VAE and untrained TVAE cannot decode held-out frames by Roll",
                   "control >= cfg.control_margin * tvae", kind="control",
                   labels={"control": "lowest control traversal BCE", "tvae": "the TVAE's"},
                   not_enforced=NOT_ENFORCED, each={"ds": DATASETS}),
            *claim("untrained_S/2_looks_equivariant", FIG4,
                   "control: an UNTRAINED TVAE with L=S/2 scores high CapCorr but cannot decode by Roll",
                   "capcorr > cfg.capcorr_min", "untrained >= cfg.control_margin * trained", kind="control",
                   labels={"capcorr": "min(CapCorr_x, CapCorr_y)", "untrained": "traversal BCE",
                           "trained": "the trained TVAE's"},
                   not_enforced=NOT_ENFORCED),
            *claim("{ds}_not_collapsed", FIG4, "{ds}: the TVAE reconstructs (not the mean image)",
                   "direct <= cfg.recon_factor * vae", kind="sanity",
                   labels={"direct": "direct BCE", "vae": "the VAE's"},
                   not_enforced=NOT_ENFORCED, each={"ds": DATASETS}),
            *claim("capcorr_{f}", TABLE2, "dSprites TVAE L=S/3: CapCorr_{f}, above its untrained control", *_CAPCORR,
                   labels={"trained": "CapCorr_{f}", "untrained": "CapCorr_{f} of the untrained TVAE L=S/3"},
                   paper="1.0 ± 0 (Table 2, L=S/3)", not_enforced=NOT_ENFORCED, each={"f": ("x", "y", "orientation")}),
            *claim("capcorr_orientation_heart", TABLE2,
                   "dSprites TVAE L=S/3: CapCorr_orientation on hearts (no rotational symmetry), above its untrained "
                   "control", *_CAPCORR,
                   labels={"trained": "CapCorr_orientation on hearts",
                           "untrained": "CapCorr_orientation on hearts of the untrained TVAE L=S/3"},
                   paper="1.0 ± 0 over all shapes (Table 2)", not_enforced=NOT_ENFORCED),
            *claim("orientation_square_symmetry", TABLE2,
                   "dSprites: a square 5 orientation steps on is almost the same image, capping CapCorr_orientation "
                   "for a code that does not separate them", "iou > cfg.square_iou_min", kind="known-answer",
                   labels={"iou": "IoU of a square and its turn by 5 orientation steps"}, not_enforced=NOT_ENFORCED),
            *claim("{ds}_untrained_S/2_low_eeq", EQ13,
                   "{ds}: control: E_eq of an UNTRAINED TVAE L=S/2 is already low (by construction)",
                   "untrained < cfg.low_eeq_factor * vae", kind="known-answer",
                   labels={"untrained": "E_eq", "vae": "the VAE's"}, each={"ds": DATASETS}),
            *claim("{ds}_eeq_offset_control", EQ13,
                   "{ds}: control: the code's constant offset alone gives a low E_eq; centred, a model with no roll "
                   "structure scores as unstructured codes do",
                   "raw < cfg.low_eeq_factor * raw_iid", "centred >= cfg.iid_centred_factor * centred_iid",
                   kind="control",
                   labels={"raw": "raw E_eq of the untrained TVAE L=0", "raw_iid": "i.i.d. codes'",
                           "centred": "its centred E_eq", "centred_iid": "i.i.d. codes' centred E_eq"},
                   paper="not in the paper (Eq 13 on the TVAE's offset)", each={"ds": DATASETS}),
            *claim("{ds}_eeq_trained_below_untrained", EQ13,
                   "{ds}: raw E_eq ranks the trained TVAE L=S/3 below its untrained control", "trained < untrained",
                   labels={"trained": "raw E_eq, trained", "untrained": "untrained TVAE L=S/3's"},
                   paper=_EEQ_PAPER, not_enforced=NOT_ENFORCED, each={"ds": DATASETS}),
            *claim("{ds}_eeq_centred_trained_below_untrained", EQ13,
                   "{ds}: centred E_eq ranks the trained TVAE L=S/3 below its untrained control",
                   "trained <= cfg.centred_eeq_factor * untrained",
                   labels={"trained": "centred E_eq, trained", "untrained": "untrained TVAE L=S/3's"},
                   paper=_EEQ_PAPER, not_enforced=NOT_ENFORCED, each={"ds": DATASETS}),
            *claim("{ds}_metrics_finite", "sanity", "{ds}: sanity", "finite", kind="sanity",
                   labels={"finite": "every score finite"}, each={"ds": DATASETS})),
    models=models)
