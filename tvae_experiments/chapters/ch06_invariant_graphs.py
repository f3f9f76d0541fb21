"""Chapter 6 -- invariant projections of a permutation-equivariant graph VAE (second paper, Sec 5.1)."""
from __future__ import annotations

from tvae_experiments.chapters.base import ChapterSpec, ModelSpec, declare
from tvae_experiments.profiles import config_for


def model(profile: str, seed: int) -> ModelSpec:
    """The graph VAE of the chapter on ``profile``'s molecules."""
    cfg = config_for("06_invariant_graphs", profile)
    return ModelSpec(f"graphvae-{cfg.source}-s{seed}", cfg.model(), cfg.train(seed), "molecules", cfg, "graphs")


def models(profile: str, seed: int, **_) -> list[ModelSpec]:
    return [model(profile, seed)]


def _cpu_most(figure: str, weaker: str) -> str:
    """Why cpu enforces ``weaker`` (most properties) instead of ``figure``'s every-property claim."""
    return (f"cpu relaxes {figure} from every property to most of them ({weaker}, enforced): the NCI molecules of "
            "the cpu profile (a few hundred, a quarter of them test queries) instead of QM9's ~130,000, and a VAE "
            "trained 1,500 steps instead of 1,000 epochs, leave single properties within noise (the per-property "
            "table above); enforced on paper")


NOT_ENFORCED = {
    "smoke": dict.fromkeys(("pca_r2_*", "interpolation_hamming", "knn_sorted_beats_*"),
                           "smoke trains the graph VAE for seconds: the PCA, interpolation and kNN comparisons need "
                           "a trained model; enforced on cpu and paper (the every-property forms: paper)"),
    "cpu": {"pca_r2_sorted_above_equivariant": _cpu_most("Fig 2", "pca_r2_sorted_above_equivariant_most"),
            "knn_sorted_beats_equivariant": _cpu_most("Fig 5", "knn_sorted_beats_equivariant_most"),
            "knn_sorted_beats_pooling": _cpu_most("Fig 5", "knn_sorted_beats_pooling_most")},
}

SPEC = ChapterSpec(
    "06_invariant_graphs", "Graph VAE: equivariant vs sorted latents", "Interpreting Equivariant Representations",
    claims=(*declare("Prop 1-2: sorting is an isometric cross-section", ["sort_isometry", "sort_invariance",
                                                                          "sorted_convex_cone"], kind="known-answer"),
            *declare("Eq 2-3: a permutation-equivariant encoder", ["encoder_equivariance"], kind="known-answer"),
            *declare("sanity", ["data_loaded", "elbo_finite"], kind="sanity"),
            *declare("Fig 2: PCA of equivariant and sorted latents",
                     ["pca_r2_sorted_above_equivariant", "pca_r2_sorted_above_equivariant_most"],
                     not_enforced=NOT_ENFORCED),
            *declare("Fig 3-4: interpolation between molecules", ["interpolation_hamming"], not_enforced=NOT_ENFORCED),
            *declare("Fig 5: kNN regression of molecular properties",
                     [f"knn_sorted_beats_{rival}{most}" for rival in ("equivariant", "pooling") for most in ("", "_most")],
                     not_enforced=NOT_ENFORCED)),
    models=models)
