"""tvae_core -- the package behind tvae-book.

Topographic Product of Student-t priors built from Gaussians, topographic neighbourhoods
``W`` (capsules, torus, stationary and shifting temporal coherence, and appendix C's proposed
extensions: causal windows, non-cyclic and two-dimensional capsules, partial rolls), Roll on
capsules, and the claim checks the chapters run.  Names follow Keller & Welling (2021),
"Topographic VAEs learn Equivariant Capsules"; equation numbers in docstrings refer to that paper.
"""
from .invariance import sort_projection
from .metrics import capcorr, capsule_roll, equivariance_error, partial_capsule_roll
from .roll import (crop_capsules, fourier_roll, linear_roll, noncyclic_roll, pad_capsules, pad_sequence_ends,
                   partial_roll, roll, roll2d)
from .stats import (EnergyCorr, cross_capsule_energy_corr, energy_corr, lag_shift_energy_map, ring_energy_profile,
                    temporal_energy_corr, torus_energy_map)
from .studentt import PriorSample, sample_pot, sample_tpot, student_t, tpot
from .topography import (CapsuleTopography, TemporalTopography, TemporalTopography2D, TorusTopography, box_sum,
                         capsule_W, temporal_W, torus_W, window_W)

__version__ = "0.1.0"

__all__ = [
    "equivariance_error", "capsule_roll", "capcorr", "partial_capsule_roll", "sort_projection",
    "roll", "partial_roll", "fourier_roll", "noncyclic_roll", "linear_roll", "roll2d",
    "pad_capsules", "crop_capsules", "pad_sequence_ends",
    "EnergyCorr", "energy_corr", "ring_energy_profile", "torus_energy_map",
    "cross_capsule_energy_corr", "temporal_energy_corr", "lag_shift_energy_map",
    "student_t", "tpot", "PriorSample", "sample_pot", "sample_tpot",
    "CapsuleTopography", "TorusTopography", "TemporalTopography", "TemporalTopography2D", "box_sum",
    "capsule_W", "torus_W", "temporal_W", "window_W",
]
