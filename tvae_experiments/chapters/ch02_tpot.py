"""Chapter 2 -- topographic PoT: neighbourhoods, capsules and coherence over time (Eq 4-9).  Trains nothing."""
from __future__ import annotations

from tvae_experiments.chapters.base import ChapterSpec, claim

LATTICE = "Eq 4-6: correlated energies on a ring and a torus"
CAPSULES = "Sec 4.4: independent capsules"
TEMPORAL = "Eq 8-9: stationary and shifting temporal coherence"

_CI_LO = {"lo": "95% CI lower bound"}

SPEC = ChapterSpec(
    "02_tpot", "Topographic PoT: neighbourhoods, capsules and coherence over time", "Keller & Welling 2021",
    claims=(*claim("ring_near_positive", LATTICE, "ring: units sharing U's have correlated energies", "lo > 0",
                   labels={"lo": "lowest 95% CI lower bound for d < K"},
                   paper="cov(T_i², T_j²) > 0 for neighbours (Sec 3.1)"),
            *claim("ring_decreasing", LATTICE, "ring: correlation falls with lattice distance", "decreasing(r)",
                   labels={"r": "r(d=1..K-1)"}),
            *claim("ring_far_zero", LATTICE, "ring: no shared U, no energy correlation", "far < cfg.zero_corr_tol",
                   labels={"far": "max |r| for d >= K"}),
            *claim("torus_near_positive", LATTICE, "torus: neighbours within the KxK window have correlated energies",
                   "near > 0", labels={"near": "lowest mean r at distance 1..K-1"}),
            *claim("torus_decreasing", LATTICE, "torus: correlation falls with lattice distance", "decreasing(r)",
                   labels={"r": "mean r(d=1..K-1)"}),
            *claim("torus_far_zero", LATTICE, "torus: no shared U, no energy correlation", "far < cfg.zero_corr_tol",
                   labels={"far": "max |r| beyond the window"}),
            *claim("capsules_within", CAPSULES,
                   "capsules: neighbouring units inside a capsule have correlated energies", "lo > 0", labels=_CI_LO),
            *claim("capsules_independent", CAPSULES, "capsules: energies of different capsules are uncorrelated",
                   "lo > -cfg.cross_capsule_tol", "hi < cfg.cross_capsule_tol",
                   labels={**_CI_LO, "hi": "95% CI upper bound"}, paper="independent (Sec 4.4)"),
            *claim("stationary_same_unit", TEMPORAL, "stationary: corr(T²_(l,i), T²_(l-1,i)) > 0", "lo > 0",
                   labels=_CI_LO, paper="cov > 0 (Eq 8)"),
            *claim("stationary_not_diagonal", TEMPORAL, "stationary: no correlation along the diagonal (K=1)",
                   "abs(r) < cfg.zero_corr_tol", "same_unit > hi",
                   labels={"same_unit": "same-unit r", "hi": "this r's 95% CI upper bound"}),
            *claim("shifting_diagonal", TEMPORAL, "shifting: corr(T²_(l,i), T²_(l-1,i-1)) > 0", "lo > 0",
                   labels=_CI_LO, paper="cov > 0 (Eq 9)"),
            *claim("shifting_not_same_unit", TEMPORAL, "shifting: no correlation at the same unit (K=1)",
                   "abs(r) < cfg.zero_corr_tol", "diagonal > hi",
                   labels={"diagonal": "diagonal r", "hi": "this r's 95% CI upper bound"})))
