"""Chapter 2 -- topographic PoT: neighbourhoods, capsules and coherence over time (Eq 4-9).  Trains nothing."""
from __future__ import annotations

from tvae_experiments.chapters.base import ChapterSpec, declare

SPEC = ChapterSpec(
    "02_tpot", "Topographic PoT: neighbourhoods, capsules and coherence over time", "Keller & Welling 2021",
    claims=(*declare("Eq 4-6: correlated energies on a ring and a torus",
                     [f"{lattice}_{c}" for lattice in ("ring", "torus") for c in ("near_positive", "decreasing",
                                                                                  "far_zero")]),
            *declare("Sec 4.4: independent capsules", ["capsules_within", "capsules_independent"]),
            *declare("Eq 8-9: stationary and shifting temporal coherence",
                     ["stationary_same_unit", "stationary_not_diagonal", "shifting_diagonal",
                      "shifting_not_same_unit"])))
