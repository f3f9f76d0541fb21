"""Benchmark: the temporal topography op vs a dense 3-D convolution with the full kernel.

The original TVAE code computes ``W [U^2_{l+L}; ...]`` with a 3-D convolution over
(time, capsule, unit) whose kernel spans the whole time window and the whole capsule
(a shifted-diagonal pattern of ones for shifting coherence), with circular padding.
``conv3d_reference`` does exactly that; ``TemporalTopography`` uses a shear (per-frame roll)
and box sums instead.  Both give the same numbers (checked here and in tests).

Run:  python benchmarks/bench_topography.py [--repeats 20]
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F

from tvae_book.performance import write_benchmark
from tvae_core.topography import TemporalTopography, window_offsets


def conv3d_kernel(topo: TemporalTopography) -> torch.Tensor:
    """``(1, 1, T, 1, D)`` kernel: ``kern[delta, j] = 1`` if unit offset ``j - D//2`` is in the
    (rolled) window of time offset ``delta``."""
    D = topo.capsule_dim
    sh = 1 if topo.mode == "shifting" else 0
    offs = list(topo.offsets)
    kern = torch.zeros(len(offs), D)
    for a, delta in enumerate(offs):  # builds the kernel once; not timed
        for k in window_offsets(topo.K):
            kern[a, (sh * delta + k + D // 2) % D] += 1.0
    return kern[None, None, :, None, :]


def conv3d_reference(v: torch.Tensor, topo: TemporalTopography, kern: torch.Tensor) -> torch.Tensor:
    """``v: (B, S, C*D) -> (B, S, C*D)`` by circular padding + ``F.conv3d`` with the full kernel."""
    B, S, n = v.shape
    D = topo.capsule_dim
    x = v.reshape(B, 1, S, topo.n_caps, D)
    lo, hi = topo.offsets.start, topo.offsets.stop - 1
    t_idx = torch.arange(lo, S + hi) % S
    x = x.index_select(2, t_idx)  # circular time padding
    x = torch.cat([x[..., D - D // 2:], x, x[..., : D - 1 - D // 2]], dim=-1) if D > 1 else x  # circular units
    return F.conv3d(x, kern).reshape(B, S, n)


def bench(fn, v, repeats: int) -> float:
    for _ in range(3):
        fn(v).sum().backward()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn(v).sum().backward()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; forward + backward, seconds per call")
    print(f"{'shape (B,S,C,D) K L mode':<40}{'fast op':>10}{'conv3d':>10}{'speed-up':>10}")
    rows = []
    for B, S, C, D, K, L, mode in [(8, 18, 18, 18, 3, 6, "shifting"), (8, 18, 18, 18, 3, 9, "shifting"),
                                   (8, 15, 15, 15, 1, 5, "shifting"), (8, 18, 18, 18, 12, 6, "stationary"),
                                   (32, 18, 18, 18, 3, 6, "shifting")]:
        topo = TemporalTopography(C, D, K, L, mode, window="forward")
        kern = conv3d_kernel(topo)
        v = torch.rand(B, S, C * D, requires_grad=True)
        torch.testing.assert_close(topo(v), conv3d_reference(v, topo, kern))
        fast = bench(topo, v, args.repeats)
        ref = bench(lambda x: conv3d_reference(x, topo, kern), v, args.repeats)
        print(f"{str((B, S, C, D)) + f' K={K} L={L} {mode}':<40}{fast:>10.5f}{ref:>10.5f}{ref / fast:>9.1f}x")
        rows.append({"shape (B, S, C, D)": str((B, S, C, D)), "K": K, "L": L, "mode": mode,
                     "fast op (ms/call)": fast * 1e3, "conv3d (ms/call)": ref * 1e3, "speed-up": ref / fast})
    write_benchmark("bench_topography", rows, title=__doc__.splitlines()[0].removeprefix("Benchmark: "),
                    notes=[f"forward + backward per call, mean of {args.repeats} calls after 3 warm-up calls; "
                           f"{torch.get_num_threads()} torch thread(s)"])


if __name__ == "__main__":
    main()
