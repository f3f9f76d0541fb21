"""Chapter 1 -- the Product of Student-t built from Gaussians (Eq 2-3, Sec 4.2).  Trains nothing."""
from __future__ import annotations

from tvae_experiments.chapters.base import ChapterSpec, declare
from tvae_experiments.profiles import config_for

EQ2 = "Eq 2-3: a Student-t from Gaussians"
SPARSE = "Sec 4.2: PoT vectors are sparse"

SPEC = ChapterSpec(
    "01_pot", "The Product of Student-t, built from Gaussians", "Keller & Welling 2021",
    claims=(*declare(EQ2, [f"ks_nu{nu}" for nu in config_for("01_pot", "cpu").nus]),
            *declare(EQ2, [f"ks_nu{nu}" for nu in config_for("01_pot", "paper").nus
                           if nu not in config_for("01_pot", "cpu").nus], profiles=("paper",)),
            *declare(EQ2, ["ks_power"], kind="control"),
            *declare(SPARSE, ["sparsity", "constraint_view"])))
