"""Chapter 6 -- invariant projections of a permutation-equivariant graph VAE (second paper, Sec 5.1)."""
from __future__ import annotations

from tvae_experiments.chapters.base import ChapterSpec, ModelSpec, claim
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

PROP2 = "Prop 1-2: sorting is an isometric cross-section"
EQ23 = "Eq 2-3: a permutation-equivariant encoder"
FIG2 = "Fig 2: PCA of equivariant and sorted latents"
FIG34 = "Fig 3-4: interpolation between molecules"
FIG5 = "Fig 5: kNN regression of molecular properties"

RIVALS = {"equivariant": "the equivariant latents", "pooling": "the best of sum / mean / max pooling"}
"""Fig 5's rivals of the sorted latents -> their words in the statements."""

_PCA = {"wins": "properties with a higher R² on the sorted PCs", "n_prop": "all properties"}
_KNN = {"wins": "properties where sorted has the lower mean MAE over k", "n_prop": "all properties"}


def _knn(rival: str, than: str):
    """Fig 5's claims against ``rival``: every property, and the weaker form, most of them."""
    return (*claim(f"knn_sorted_beats_{rival}", FIG5,
                   f"Fig 5: kNN on the sorted latents has a lower MAE than on {than}, for every property",
                   "wins >= n_prop", labels=_KNN, not_enforced=NOT_ENFORCED,
                   paper="MAE consistently lowest on the sorted representation (Fig 5)"),
            *claim(f"knn_sorted_beats_{rival}_most", FIG5,
                   f"Fig 5, weaker form: sorted beats {than} on most properties",
                   "wins > n_prop / 2", labels=_KNN, not_enforced=NOT_ENFORCED, paper="every property (Fig 5)"))


SPEC = ChapterSpec(
    "06_invariant_graphs", "Graph VAE: equivariant vs sorted latents", "Interpreting Equivariant Representations",
    claims=(*claim("sort_isometry", PROP2, "Prop 2: ‖s(z1)-s(z2)‖ equals the quotient metric (brute force)",
                   "err < cfg.isometry_tol", kind="known-answer",
                   labels={"err": "max |‖s(z1)-s(z2)‖ - d([z1],[z2])|"}, paper="exact (Prop 2)"),
            *claim("sort_invariance", PROP2, "Eq 2-3: s(g z) = s(z)", "err == 0", kind="known-answer",
                   labels={"err": "max |s(g z) - s(z)|"}, paper="exact"),
            *claim("sorted_convex_cone", PROP2, "Prop 2: Z_s is a convex cone", "stays_sorted", kind="known-answer",
                   labels={"stays_sorted": "convex combinations and positive multiples stay sorted"},
                   paper="exact (B.2)"),
            *claim("encoder_equivariance", EQ23, "the trained encoder is permutation equivariant: mu(P G) = P mu(G)",
                   "err < cfg.equivariance_tol", kind="known-answer",
                   labels={"err": "max |mu(P G) - P mu(G)| (float32)"}, paper="by construction (appendix C)"),
            *claim("data_loaded", "sanity", "the molecule filter keeps molecules",
                   "molecules > 0", "most_atoms <= cfg.n_max", kind="sanity",
                   labels={"most_atoms": "most heavy atoms"}),
            *claim("elbo_finite", "sanity", "sanity: test ELBO is finite", "finite(elbo)", kind="sanity",
                   labels={"elbo": "test ELBO"}),
            *claim("pca_r2_sorted_above_equivariant", FIG2,
                   "Fig 2: the first two PCs of the sorted latents explain every property better than those of the "
                   "equivariant latents (R² of a linear fit)", "wins >= n_prop", labels=_PCA,
                   not_enforced=NOT_ENFORCED,
                   paper="no apparent structure in Z, a clear pattern in Z_s, for each property (Fig 2)"),
            *claim("pca_r2_sorted_above_equivariant_most", FIG2,
                   "Fig 2, weaker form: the sorted PCs explain most properties better", "wins > n_prop / 2",
                   labels=_PCA, not_enforced=NOT_ENFORCED, paper="every property (Fig 2)"),
            *claim("interpolation_hamming", FIG34,
                   "Fig 4: interpolation in Z_s is smoother than in Z ({cfg.n_interp_pairs:,} random test pairs; "
                   "the paper: 10,000)", "sorted < equivariant",
                   labels={"sorted": "mean consecutive Hamming over {cfg.n_interp_pairs:,} lines, sorted"},
                   not_enforced=NOT_ENFORCED, paper="Z_s lower, over 10,000 interpolations (Fig 4)"),
            *(c for rival, than in RIVALS.items() for c in _knn(rival, than))),
    models=models)
