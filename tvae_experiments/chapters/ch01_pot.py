"""Chapter 1 -- the Product of Student-t built from Gaussians (Eq 2-3, Sec 4.2).  Trains nothing."""
from __future__ import annotations

from tvae_experiments.chapters.base import ChapterSpec, claim
from tvae_experiments.profiles import config_for

EQ2 = "Eq 2-3: a Student-t from Gaussians"
SPARSE = "Sec 4.2: PoT vectors are sparse"

_CPU_NUS = config_for("01_pot", "cpu").nus
_PAPER_ONLY = tuple(nu for nu in config_for("01_pot", "paper").nus if nu not in _CPU_NUS)
_KS = dict(labels={"p": "KS p"}, paper="exact (Eq 2)")

SPEC = ChapterSpec(
    "01_pot", "The Product of Student-t, built from Gaussians", "Keller & Welling 2021",
    claims=(*claim("ks_nu{nu}", EQ2, "Eq 2 samples ~ Student-t(ν={nu}) (KS test, N={cfg.n_samples:,})", "p > cfg.ks_alpha",
                   each={"nu": _CPU_NUS}, **_KS),
            *claim("ks_nu{nu}", EQ2, "Eq 2 samples ~ Student-t(ν={nu}) (KS test, N={cfg.n_samples:,})", "p > cfg.ks_alpha",
                   each={"nu": _PAPER_ONLY}, profiles=("paper",), **_KS),
            *claim("ks_power", EQ2, "KS rejects ν={cfg.nus[0]} samples as t(ν={cfg.nus[-1]}) (the test has power)",
                   "p < cfg.ks_alpha", kind="control", labels={"p": "KS p"}),
            *claim("sparsity", SPARSE, "PoT vectors are sparser than Gaussian ones, more so for small ν",
                   "heavy > light", "light > gauss",
                   labels={"heavy": "share(ν={cfg.nus[0]})", "light": "share(ν={cfg.nus[-1]})", "gauss": "share(Gaussian)"}),
            *claim("constraint_view", SPARSE, "T is large when its U's are small (Sec 4.2)",
                   "rho < cfg.constraint_rho_max", "ratio > cfg.constraint_ratio_min",
                   labels={"rho": "rho", "ratio": "ratio"})))
