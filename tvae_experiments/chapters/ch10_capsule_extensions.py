"""Chapter 10 -- appendix C's extensions (C.1-C.4) on the toy problem and at MNIST scale."""
from __future__ import annotations

from tvae_experiments.chapters.base import ChapterSpec, ModelSpec, claim
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

_POSE = ("traversal < cfg.capsules.right_pose_factor * opposite", "untrained >= cfg.control_margin * traversal")
"""A traversal in the right pose: closer to the held-out frames than the opposite pose, and the untrained
model's further off by chapter 4's control margin."""
_HELD_OUT = {"traversal": "held-out BCE", "opposite": "the opposite pose's BCE", "untrained": "untrained held-out BCE"}
_ONLINE_POSE = ("online < cfg.capsules.right_pose_factor * opposite", "untrained >= cfg.control_margin * online")
_ONLINE = {"online": "online BCE", "opposite": "the opposite pose's BCE", "untrained": "untrained online BCE"}
_BAR = ("ratio <= cfg.capsules.traversal_factor", *_POSE)
"""Chapter 4's bar for its TVAE's held-out traversal (ratio, right pose, untrained control)."""
_BAR_LABELS = {"ratio": "held-out traversal BCE / direct BCE", **_HELD_OUT}
_CAPCORR = ("capcorr >= cfg.capcorr_min", "capcorr >= untrained + cfg.capcorr_margin")
_ONLINE_EQUALS_FULL = ("err <= cfg.online_tol", "forward_err >= cfg.future_tol")
_ONLINE_EQUALS_FULL_LABELS = {"err": "causal: max relative difference",
                              "forward_err": "forward window: max relative difference"}
_CIRCLE = ("share >= 1 / 2", "share >= untrained + cfg.circle_margin")  # a majority, by a margin over the untrained
_SLOPE = "abs(slope - cfg.partial_alpha) < cfg.partial_alpha / 4"  # closer to alpha than to alpha/2 or 3 alpha/2
_CIRCLE_LABELS = {"share": "share of sequences with ObservedRoll = alpha x shift (mod D)", "untrained": "untrained share"}
_SLOPE_LABELS = {"slope": "units per frame"}

SPEC = ChapterSpec(
    "10_capsule_extensions", "Beyond the paper: the appendix-C capsules",
    "Keller & Welling 2021, appendix C (proposed there; no experiment published, one sentence on C.3)",
    claims=(*claim("causal_online_equals_full", C4,
                   "Eq 22: t_l computed from frames 0..l only equals the full-sequence t_l (the forward window's does not)",
                   *_ONLINE_EQUALS_FULL, kind="known-answer", labels=_ONLINE_EQUALS_FULL_LABELS,
                   paper="not in the paper (C.4 proposes Eq 22; T_l needs no future frame by construction)"),
            *claim("causal_online_{n}_decodes_pose", C4,
                   "causal, {n}: the online code of frame l decodes frame l in its pose, the untrained model's does not",
                   *_ONLINE_POSE, labels=_ONLINE, paper="not in the paper (C.4: for online applications)",
                   each={"n": TOY}),
            *claim("causal_{n}_traversal_predicts_pose", C4,
                   "causal, {n}: Roll_l(t_0) decodes the held-out frames in the right pose; the untrained model cannot",
                   *_POSE, labels=_HELD_OUT, paper="not in the paper (Fig 4's traversal, with Eq 22's window)",
                   each={"n": TOY}),
            *claim("causal_{n}_capcorr", C4, "causal, {n}: capsules roll with the transformation (CapCorr, Eq 17)",
                   *_CAPCORR, labels={"capcorr": "trained CapCorr", "untrained": "untrained CapCorr"},
                   paper="not in the paper (Table 2's bar: 1.0 for the TVAE L=S/3)", each={"n": TOY}),
            *claim("causal_mnist_online_equals_full", C4_MNIST,
                   "Eq 22 on MNIST: t_l from frames 0..l only equals the full-sequence t_l (chapter 4's forward window's "
                   "does not)",
                   *_ONLINE_EQUALS_FULL, kind="known-answer", labels=_ONLINE_EQUALS_FULL_LABELS,
                   paper="not in the paper (C.4 proposes Eq 22; T_l needs no future frame by construction)"),
            *claim("causal_mnist_{n}_traversal_predicts_pose", C4_MNIST,
                   "causal window on MNIST, {n}: Roll_l(t_0) decodes the held-out frames (chapter 4's bar; forward "
                   "window's ratio reported)",
                   *_BAR, labels=_BAR_LABELS, paper="not in the paper (C.4 proposes Eq 22; Fig 4's traversal)",
                   not_enforced=NOT_ENFORCED, each={"n": MNIST}),
            *claim("causal_mnist_{n}_full_window_predicts_pose", C4_MNIST,
                   "causal window of 2L frames on MNIST, {n}: Roll_(l-2L+1)(t_{2L-1}), a code that saw frames "
                   "0-(2L-1) as the forward t_0 did, decodes the held-out frames (chapter 4's bar; forward window's "
                   "ratio reported)",
                   *_BAR, labels=_BAR_LABELS, paper="not in the paper (C.4 proposes Eq 22; Fig 4's traversal)",
                   not_enforced=NOT_ENFORCED, each={"n": MNIST}),
            *claim("causal_mnist_{n}_online_decodes_pose", C4_MNIST,
                   "causal window on MNIST, {n}: the online code of frame l decodes frame l in its pose, the untrained "
                   "model's does not (a check of the online encoder: by the known answer it is the direct "
                   "reconstruction)",
                   *_ONLINE_POSE, labels=_ONLINE, paper="not in the paper (C.4: for online applications)",
                   not_enforced=NOT_ENFORCED, each={"n": MNIST}),
            *claim("lattice_axes_disentangle", C3,
                   "Eq 21: x- and y-sequences roll along different axes of the 2-D capsules", "axis_x != axis_y",
                   labels={"axis_x": "axis of x", "axis_y": "axis of y"},
                   paper="not in the paper (C.3: 'such models can indeed disentangle up to 2 distinct transformations')"),
            *claim("lattice_{n}_capcorr_own_axis", C3,
                   "2-D capsules, {n}: the code rolls along its lattice axis (CapCorr along the other axis reported)",
                   *_CAPCORR, labels={"capcorr": "CapCorr along its axis", "untrained": "untrained CapCorr along it"},
                   paper="not in the paper (C.3: roll 'only along a single axis of the lattice for a given sequence')",
                   each={"n": TOY}),
            *claim("lattice_{n}_traversal_predicts_pose", C3,
                   "2-D capsules, {n}: Roll^d_l(t_0) along the transformation's axis decodes the held-out frames",
                   *_POSE, labels=_HELD_OUT, paper="not in the paper (Fig 4's traversal with Eq 21's Roll^d)",
                   each={"n": TOY}),
            *claim("lattice_mnist_axes_disentangle", C3_MNIST,
                   "Eq 21 on MNIST: rotation and colour sequences roll along different axes of the 2-D capsule",
                   "axis_rotation != axis_color", labels={"axis_rotation": "axis of rotation", "axis_color": "axis of colour"},
                   paper="not in the paper (C.3: 'such models can indeed disentangle up to 2 distinct transformations')",
                   not_enforced=NOT_ENFORCED),
            *claim("lattice_mnist_{n}_capcorr_own_axis", C3_MNIST,
                   "2-D capsules on MNIST, {n}: the code rolls along its lattice axis (other axis and chapter 4's 1-D "
                   "capsules reported)",
                   *_CAPCORR, labels={"capcorr": "CapCorr along its axis", "untrained": "untrained CapCorr along it"},
                   paper="not in the paper (C.3: roll 'only along a single axis of the lattice for a given sequence')",
                   not_enforced=NOT_ENFORCED, each={"n": MNIST[:2]}),
            *claim("lattice_mnist_{n}_traversal_predicts_pose", C3_MNIST,
                   "2-D capsules on MNIST, {n}: Roll^d_l(t_0) along the transformation's axis decodes the held-out frames",
                   *_POSE, labels=_HELD_OUT, paper="not in the paper (Fig 4's traversal with Eq 21's Roll^d)",
                   not_enforced=NOT_ENFORCED, each={"n": MNIST[:2]}),
            *claim("partial_{n}_rolls_on_the_circle", C1,
                   "partial roll, {n}: {cfg.partial_dim}-unit capsules roll alpha x the factor shift (Eq 20, read "
                   "modulo D; CapCorr reported)",
                   *_CIRCLE, labels=_CIRCLE_LABELS, paper="not in the paper (C.1 proposes Eq 19-20)", each={"n": TOY}),
            *claim("partial_rolls_alpha_per_frame", C1,
                   "partial roll: the code rolls alpha = {cfg.partial_alpha:g} unit per frame (closer to alpha than to "
                   "alpha/2 or 3 alpha/2)",
                   _SLOPE, labels=_SLOPE_LABELS,
                   paper="not in the paper (C.1: 'a partial permutation for each observed transformation')"),
            *claim("partial_mnist_{n}_rolls_on_the_circle", C1_MNIST,
                   "partial roll at MNIST scale, {n}: capsules of D = S/2 units (S = {cfg.capsules.mnist.S}) roll "
                   "alpha x the factor shift (Eq 20)",
                   *_CIRCLE, _SLOPE, labels=_CIRCLE_LABELS | _SLOPE_LABELS, paper="not in the paper (C.1 proposes Eq 19-20)",
                   not_enforced=NOT_ENFORCED, each={"n": MNIST}),
            *claim("ramps_noncyclic_rolls_with_scale", C2,
                   "C.2 on MNIST scale ramps: non-cyclic capsules roll one unit per scale level",
                   "corr >= cfg.capcorr_min", "corr >= untrained + cfg.capcorr_margin",
                   labels={"corr": "corr(ObservedRoll, offset), non-cyclic", "untrained": "untrained corr"},
                   paper="not in the paper (C.2 proposes non-cyclic capsules for non-cyclic transformations)",
                   not_enforced=NOT_ENFORCED),
            # each model's gain over its own untrained initialisations; the second rule keeps "neither learns"
            # from passing
            *claim("ramps_noncyclic_at_least_cyclic", C2,
                   "C.2 on MNIST scale ramps: non-cyclic capsules learn to follow the level at least as well as cyclic "
                   "ones",
                   "gain_noncyclic >= gain_cyclic", "gain_noncyclic >= cfg.capcorr_margin",
                   labels={"gain_noncyclic": "non-cyclic corr - its untrained",
                           "gain_cyclic": "cyclic corr - its untrained"},
                   paper="not in the paper (C.2: capsules for transformations that are not cyclic)",
                   not_enforced=NOT_ENFORCED),
            *claim("metrics_finite", "sanity", "sanity: every measured value is finite", "finite", kind="sanity",
                   labels={"finite": "every value finite"})),
    models=models)
