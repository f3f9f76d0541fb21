"""The benchmark's conv3d reference (the original code's full-kernel convolution) equals the fast op."""
import importlib.util
from pathlib import Path

import pytest
import torch

from tvae_core.topography import TemporalTopography

_spec = importlib.util.spec_from_file_location("bench", Path(__file__).parents[1] / "benchmarks" / "bench_topography.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


@pytest.mark.parametrize("C,D,K,L,mode,window", [(3, 6, 3, 2, "shifting", "forward"), (2, 5, 1, 2, "shifting", "centered"),
                                                 (2, 7, 4, 1, "stationary", "forward"), (1, 6, 3, 3, "shifting", "forward")])
def test_conv3d_reference_matches(C, D, K, L, mode, window):
    topo = TemporalTopography(C, D, K, L, mode, window=window)
    v = torch.rand(4, 6, C * D)
    torch.testing.assert_close(bench.conv3d_reference(v, topo, bench.conv3d_kernel(topo)), topo(v))
