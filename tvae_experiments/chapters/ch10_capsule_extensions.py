"""Chapter 10 -- appendix C's extensions (C.1-C.4) on the toy problem and at MNIST scale."""
from __future__ import annotations

from tvae_experiments.chapters.base import ChapterSpec, ModelSpec, declare
from tvae_experiments.chapters.models_capsules import capsule_model
from tvae_experiments.profiles import CapsuleExtensionsConfig, config_for

MNIST_MODELS = ("partial-linear", "partial-integer", "causal", "causal-wide", "ramps-noncyclic", "ramps-cyclic",
                "lattice")
"""The chapter's MNIST models: C.1 with Eq 19's roll and its whole-unit control, C.4's causal window (and one
as wide as the forward window), C.2's non-cyclic capsules and the cyclic model on the same scale ramps, C.3's
2-D capsule.  The toy models train in seconds on every run and are not cached."""


def mnist_model(kind: str, cfg: CapsuleExtensionsConfig, seed: int) -> ModelSpec:
    """One of :data:`MNIST_MODELS` (cache name ``caps-mnist-<kind>-s<seed>``), trained with chapter 4's MNIST recipe."""
    from tvae_core.checks import check_choice

    check_choice("kind", kind, MNIST_MODELS)
    train = cfg.capsules.mnist.train(seed)
    section, _, variant = kind.partition("-")
    if section == "partial":
        model, data = cfg.mnist_model("linear" if variant == "linear" else "integer"), ("capsules", "mnist")
    elif section == "causal":
        model, data = cfg.mnist_causal_model(wide=variant == "wide"), ("capsules", "mnist")
    elif section == "ramps":
        model, data = cfg.mnist_ramp_model(variant), ("scale-ramps", "scale-ramps")
    else:
        model, data = cfg.mnist_lattice_model(), ("rotation+color", "rotation+color")
    data_cfg = cfg if data[0] == "scale-ramps" else cfg.capsules
    return ModelSpec(f"caps-mnist-{kind}-s{seed}", model, train, data[0], data_cfg, data[1])


def chapter4_model(cfg: CapsuleExtensionsConfig, seed: int) -> ModelSpec:
    """Chapter 4's MNIST TVAE (``L = mnist_L_frac * S``, the same cache entry): the base of every MNIST model here
    and the reference they are compared with."""
    return capsule_model(cfg.capsules, "mnist", ("tvae", cfg.mnist_L_frac), seed)


def models(profile: str, seed: int, **_) -> list[ModelSpec]:
    cfg = config_for("10_capsule_extensions", profile)
    return [mnist_model(kind, cfg, seed) for kind in MNIST_MODELS] + [chapter4_model(cfg, seed)]


C4 = "Eq 22: causal temporal coherence (C.4, toy scale)"
C4_MNIST = "Eq 22: causal temporal coherence (C.4, MNIST)"
C3 = "Eq 21: two-dimensional capsules (C.3, toy scale)"
C3_MNIST = "Eq 21: two-dimensional capsules (C.3, MNIST)"
C1 = "Eq 19-20: partial roll (C.1, toy scale)"
C1_MNIST = "Eq 19-20: partial roll (C.1, MNIST)"
C2 = "C.2: non-cyclic capsules (MNIST scale ramps)"
TOY = ("x", "y")
"""The toy problem's transformations (chapter 4's toy)."""
MNIST = ("rotation", "color", "scale")
"""Chapter 4's MNIST transformations; C.3's sequences use the first two."""

_CPU = "the cpu recipe (3,000 steps of chapter 4's MNIST recipe)"
NOT_ENFORCED = {
    "smoke": dict.fromkeys(("partial_mnist_*", "lattice_mnist_*", "causal_mnist_*_traversal_predicts_pose",
                            "causal_mnist_*_online_decodes_pose", "causal_mnist_*_full_window_predicts_pose",
                            "ramps_*"),
                           "smoke trains chapter 10's MNIST models for 60 steps (chapter 4's smoke recipe): too few "
                           "to learn a roll; enforced on paper, and on cpu where the cpu recipe reaches the bar; the "
                           "toy sections' claims and C.4's online known answer are enforced on every profile"),
    "cpu": {**dict.fromkeys(("partial_mnist_rotation_*", "partial_mnist_scale_*"),
                            f"not reached by {_CPU}, and not by C.1 alone: by the same measure chapter 4's own TVAE "
                            "rolls correctly on a minority of the rotation and scale test sequences too (the reference "
                            "row of the C.1 table); colour is enforced; enforced on paper"),
            **dict.fromkeys(("lattice_mnist_axes_disentangle", "lattice_mnist_rotation_*", "lattice_mnist_color_capcorr_*"),
                            f"not reached by {_CPU}, and not by C.3 alone: chapter 4's own TVAE with 1-D capsules has "
                            "CapCorr below the CapCorr bar on these rotation and colour sequences too (the reference row "
                            "of the C.3 table); the colour traversal claim is enforced; enforced on paper"),
            "causal_mnist_rotation_*": f"{_CPU} does not learn MNIST rotation as a roll with either window: chapter 4's "
                                       "forward-window TVAE decodes held-out rotation frames no closer than the "
                                       "opposite pose either (the C.4 table); enforced on paper",
            **dict.fromkeys(("causal_mnist_color_traversal_predicts_pose", "causal_mnist_scale_traversal_predicts_pose"),
                            "the price of causality at cpu scale: t_0 of the causal window saw frame 0 only (the "
                            "forward window's saw frames 0 .. 2L-1), and the rolled t_0 decodes held-out frames above "
                            "chapter 4's traversal bar (this claim's value; the 2L-frame causal window rolled from t_{2L-1} "
                            "is the enforced comparison); enforced on paper"),
            "causal_mnist_scale_full_window_predicts_pose": (
                "scale is the transformation where a causal code that saw the forward t_0's frames still falls "
                "short: it meets the ratio bar but decodes no closer than the opposite pose (this claim's value; "
                "chapter 4's forward window in the C.4 table); colour is enforced; enforced on paper"),
            "ramps_*": "C.2 does not learn at cpu scale, on MNIST as on the toy: the non-cyclic capsules' observed roll "
                       "follows the scale level less than the cyclic model's on the same ramps (the C.2 table; "
                       "untrained models beside them); scale is the factor the cpu recipe learns least (chapter 4's "
                       "CapCorr_scale); enforced on paper"},
}

SPEC = ChapterSpec(
    "10_capsule_extensions", "Beyond the paper: the appendix-C capsules",
    "Keller & Welling 2021, appendix C (proposed there; no experiment published, one sentence on C.3)",
    claims=(*declare(C4, ["causal_online_equals_full"], kind="known-answer"),
            *declare(C4, [f"causal_{c}" for n in TOY for c in (f"online_{n}_decodes_pose", f"{n}_traversal_predicts_pose",
                                                                f"{n}_capcorr")]),
            *declare(C4_MNIST, ["causal_mnist_online_equals_full"], kind="known-answer"),
            *declare(C4_MNIST, [f"causal_mnist_{n}_{c}" for n in MNIST for c in ("traversal_predicts_pose",
                                                                               "full_window_predicts_pose",
                                                                               "online_decodes_pose")],
                     not_enforced=NOT_ENFORCED),
            *declare(C3, ["lattice_axes_disentangle"] + [f"lattice_{n}_{c}" for n in TOY
                                                        for c in ("capcorr_own_axis", "traversal_predicts_pose")]),
            *declare(C3_MNIST, ["lattice_mnist_axes_disentangle"] + [f"lattice_mnist_{n}_{c}" for n in MNIST[:2]
                                                                    for c in ("capcorr_own_axis", "traversal_predicts_pose")],
                     not_enforced=NOT_ENFORCED),
            *declare(C1, [f"partial_{n}_rolls_on_the_circle" for n in TOY] + ["partial_rolls_alpha_per_frame"]),
            *declare(C1_MNIST, [f"partial_mnist_{n}_rolls_on_the_circle" for n in MNIST], not_enforced=NOT_ENFORCED),
            *declare(C2, ["ramps_noncyclic_rolls_with_scale", "ramps_noncyclic_at_least_cyclic"],
                     not_enforced=NOT_ENFORCED),
            *declare("sanity", ["metrics_finite"], kind="sanity")),
    models=models)
