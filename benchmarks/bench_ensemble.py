"""Benchmark: Table 1's MNIST rows trained as ensembles against the same models trained one after another.

Table 1 (chapter 5) trains one capsule model per row on the same rotating-MNIST sequences: TVAE with
L = 0, 1/3 S and 1/2 S, the BubbleVAE and the VAE.  The four TVAE rows share their layer shapes and
train as one ensemble (:mod:`tvae_experiments.ensemble`); the VAE (no ``u`` encoder, no ``mu``) trains
alone.  This script trains every row for ``--steps`` steps both ways, in one run, and prints

* the seconds of each way and the throughput ratio (model-steps per second, ensemble / alone), for
  both ways an ensemble computes: per model (the CPU default) and vectorized (``vmap``, the GPU default);
* per model, how far its weights are from those trained alone (relative norm of the difference per
  tensor, and the largest element relative to the tensor's largest; the tolerance the tests state is
  :data:`~tvae_experiments.ensemble.EXACT_RTOL`).

Run:  python benchmarks/bench_ensemble.py [--profile cpu] [--steps 100] [--threads 2]
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from collections import defaultdict

import torch

from tvae_experiments.chapters.models_capsules import capsule_rows
from tvae_experiments.ensemble import EXACT_RTOL, Member, ensemble_key, train_ensemble
from tvae_experiments.plan import DataSpec
from tvae_experiments.profiles import tables_config
from tvae_experiments.train import train_loop


def table1_members(profile: str, seed: int = 0) -> tuple[list[Member], torch.Tensor, str]:
    """Table 1's MNIST rows of ``profile`` (first seed) as ensemble members, their training data and its id."""
    cfg = tables_config(profile)
    specs = capsule_rows(cfg.capsules, {"mnist": cfg.mnist_rows}, [seed + cfg.seeds[0]])
    (x,), data_id = DataSpec(specs[0].data, specs[0].data_cfg, None, seed).load()[specs[0].part]
    return [Member(s.name, s.model, s.train) for s in specs], x, data_id


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", choices=("smoke", "cpu", "paper"))
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--paper-recipe", action="store_true",
                    help="train with the paper profile's recipe (SGD, lr 1e-4, per-frame loss) at the profile's sizes")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    members, x, data_id = table1_members(args.profile)
    if args.paper_recipe:
        paper = capsule_rows(tables_config("paper").capsules, {"mnist": tables_config("paper").mnist_rows[:1]}, [0])
        recipe = paper[0].train
        members = [dataclasses.replace(m, train=dataclasses.replace(
            m.train, optimizer=recipe.optimizer, lr=recipe.lr, loss=recipe.loss, momentum=recipe.momentum))
            for m in members]
    steps = args.steps

    t0 = time.perf_counter()
    alone = []
    for m in members:
        torch.manual_seed(m.train.seed)
        model = m.model.build()
        train_loop(model, (x,), m.train, steps)
        alone.append(model)
    t_alone = time.perf_counter() - t0

    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, m in enumerate(members):
        groups[ensemble_key(m.model, m.train, data_id)].append(i)
    print(f"Table 1, MNIST rows of the {args.profile} profile: {len(members)} models x {steps} steps, "
          f"{args.threads} thread(s); ensembles of {[len(g) for g in groups.values()]} models")
    print(f"one after another: {t_alone:.1f} s ({len(members) * steps / t_alone:.1f} model-steps/s)")
    result = {"alone_s": t_alone}
    for vectorized in (False, True):
        together: dict[int, torch.nn.Module] = {}
        t0 = time.perf_counter()
        for idx in groups.values():
            models, _ = train_ensemble([members[i] for i in idx], (x,), steps, device="cpu", vectorized=vectorized)
            together.update(zip(idx, models))
        seconds = time.perf_counter() - t0
        mode = "vmap" if vectorized else "per-model"
        print(f"as ensembles ({mode}): {seconds:.1f} s ({len(members) * steps / seconds:.1f} model-steps/s), "
              f"throughput ratio to one after another {t_alone / seconds:.2f}x")
        for i, m in enumerate(members):
            a, b = alone[i].state_dict(), together[i].state_dict()
            rel = max(((a[k] - b[k]).norm() / a[k].norm()).item() for k in a)
            top = max(((a[k] - b[k]).abs().max() / a[k].abs().max().clamp_min(1e-12)).item() for k in a)
            print(f"  {m.name:30s} weights vs alone: relative norm {rel:.1e}, largest element {top:.1e} "
                  f"(tolerance {EXACT_RTOL:.0e})")
        result[mode] = {"seconds": seconds, "ratio": t_alone / seconds}
    return result


if __name__ == "__main__":
    from tvae_book.performance import write_benchmark

    done = main()
    write_benchmark("bench_ensemble", [{"way": "one after another", "seconds": done["alone_s"], "throughput vs one "
                                        "after another": 1.0}] + [
        {"way": f"as ensembles ({mode})", "seconds": done[mode]["seconds"],
         "throughput vs one after another": done[mode]["ratio"]} for mode in ("per-model", "vmap")],
        title=__doc__.splitlines()[0].removeprefix("Benchmark: "))
