"""Benchmark: seconds per optimiser step of the book's dominant training, against options to speed it up.

Chapters 4 and 5 spend their time training capsule models (16 models x 3,000 steps on ``cpu``).  This
script times one step -- forward, backward, optimiser -- of the ``cpu`` profile's MNIST capsule TVAE
and VAE (batch 8 sequences x 18 frames) under each option, in one run, and prints the ratio to the
plain eager baseline (the code of ``tvae_experiments.train.fit``):

* ``eager``         -- Adam (for-loop implementation, torch's CPU default), float32: the baseline;
* ``adam_foreach``  -- ``torch.optim.Adam(foreach=True)``; ``adam_fused``: ``fused=True``;
* ``bf16_autocast`` -- forward under ``torch.autocast("cpu", torch.bfloat16)`` (changes the numbers);
* ``compile``       -- ``torch.compile(model)`` (the first calls, compiling, are not timed; reported apart).

Run:  python benchmarks/bench_train_step.py [--steps 30] [--options eager adam_fused ...]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from tvae_book.performance import write_benchmark
from tvae_experiments.profiles import config_for

OPTIONS = ("eager", "adam_foreach", "adam_fused", "bf16_autocast", "compile")


def time_steps(variant: str, option: str, steps: int, seed: int = 0) -> tuple[float, float]:
    """``(median seconds per step, seconds of the untimed warm-up)`` of ``option`` on the cpu-profile model."""
    dcfg = config_for("04_capsules", "cpu").mnist
    torch.manual_seed(seed)
    model = dcfg.model(variant, dcfg.L_of(1 / 3)).build().train()
    x = torch.rand(dcfg.batch_size, dcfg.S, dcfg.in_dim)
    kw = {"foreach": True} if option == "adam_foreach" else {"fused": True} if option == "adam_fused" else {}
    opt = torch.optim.Adam(model.parameters(), lr=dcfg.lr, **kw)
    run = torch.compile(model) if option == "compile" else model

    def step() -> None:
        if option == "bf16_autocast":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                p = run(x)
            loss = -p.elbo.float().mean()
        else:
            loss = -run(x).elbo.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    for _ in range(3):  # warm-up (and compilation)
        step()
    warm = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times), warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--options", nargs="+", default=list(OPTIONS), choices=OPTIONS)
    parser.add_argument("--variants", nargs="+", default=["tvae", "vae"])
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; cpu-profile MNIST capsule models, "
          f"median of {args.steps} steps")
    rows = []
    for variant in args.variants:
        base = None
        for option in args.options:
            s, warm = time_steps(variant, option, args.steps)
            base = base or s
            print(f"{variant:5s} {option:14s} {s * 1e3:7.1f} ms/step  x{base / s:4.2f} vs eager  "
                  f"(warm-up {warm:.1f} s)", flush=True)
            rows.append({"model": variant, "option": option, "ms/step": s * 1e3, "speed vs eager": base / s,
                         "warm-up (s)": warm})
    write_benchmark("bench_train_step", rows, title=__doc__.splitlines()[0].removeprefix("Benchmark: "),
                    notes=[f"median of {args.steps} steps after 3 untimed warm-up steps; "
                           f"{torch.get_num_threads()} torch thread(s)"])


if __name__ == "__main__":
    main()
