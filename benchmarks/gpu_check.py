"""The device check (``make gpu-check``): what training the paper profile costs on this machine, measured.

One command, one run, a JSON record and a Markdown table in ``--out`` (default ``_results/gpu-check/``):

1. **One model, eager vs graphed**: seconds per optimiser step of chapter 4's MNIST capsule TVAE at the
   profile's widths, trained as a chapter trains it (:func:`~tvae_experiments.train.train_loop`) and as a
   one-model ensemble whose step is captured as a CUDA graph (on a CPU: the same step on static buffers);
   and whether the graphed step trains the weights the eager step trains (:func:`same_weights`).
2. **Ensembles of K = 1, 4, 16** of that model (:mod:`tvae_experiments.ensemble`, vectorized): model-steps
   per second and peak memory.
3. **A chapter end to end**: the runner executes chapter 4 with the profile's sizes and every training cut
   to ``--chapter-steps`` steps (``python -m tvae_book run --dry-run N``), timed.
4. **The GPU-hours table** of the whole profile: every training of its plan (steps, FLOPs per step), its
   time alone and in ensembles, from the measured seconds per step (the model of item 1 is the reference;
   another model's step is assumed to cost ``max(1, its FLOPs / the reference's)`` reference steps: the
   small capsule MLPs are bound by launches, not arithmetic, so a smaller model is not faster).

Sizes: ``--size paper`` (the paper profile, for a GPU: about 5-8 minutes on one H100 with the plan read
from ``--plan``) or ``--size small`` (smoke widths, a few steps, chapter 1 as the end-to-end run; what
``tests/test_gpu_check.py`` runs on the CPU in ``make test``, so the check cannot rot).

Run:  python benchmarks/gpu_check.py [--size paper|small] [--plan PLAN.json] [--out DIR]
      python benchmarks/gpu_check.py --write-plan paper benchmarks/paper_plan.json  # once per change of the plan
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
PAPER_PLAN = REPO / "benchmarks" / "paper_plan.json"
"""The paper profile's trainings (steps, FLOPs per step, ensemble group), written here by ``--write-plan paper``:
building the paper-size data sets to key the models takes minutes; ``tests/test_gpu_check.py`` checks the
names against the chapter specs, so it cannot drift unnoticed."""
ASSUMED_TFLOPS = 30.0
"""Sustained fp32 rate assumed for the arithmetic floor printed under the table (not a measurement)."""
SIZES = {  # profile of the model and plan, steps timed, Ks, chapter run end to end and its steps
    "paper": dict(profile="paper", steps=60, ks=(1, 4, 16), chapter="04_capsules", chapter_steps=20),
    "small": dict(profile="smoke", steps=8, ks=(1, 2, 4), chapter="01_pot", chapter_steps=2),
}


def machine() -> dict:
    """What ran the check: recorded by the code, never typed."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpus": os.cpu_count(), "threads": torch.get_num_threads(), "gpu": gpu,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def reference_members(profile: str, k: int):
    """``k`` ensemble members: chapter 4's MNIST capsule TVAE (L = S/3) of ``profile``, seeds 0..k-1."""
    from tvae_experiments.chapters.ch04_capsules import SPEC  # noqa: F401  (the chapter's own models)
    from tvae_experiments.ensemble import Member

    spec = next(m for m in SPEC.models(profile, 0) if m.part == "mnist" and m.model.kind == "tvae")
    return [Member(f"{spec.name}-k{i}", spec.model, dataclasses.replace(spec.train, seed=i)) for i in range(k)], spec


def _data(spec, n: int, dev: torch.device) -> torch.Tensor:
    """Random ``uint8`` sequences of the model's frame shape (the timing does not depend on the pixels)."""
    caps = spec.data_cfg.mnist
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, caps.S, spec.model.in_dim), generator=g, dtype=torch.uint8).to(dev)


class _Clock:
    """A progress bar stand-in timing the steps after ``skip`` (warm-up and capture), synchronised at both ends."""

    def __init__(self, skip: int, total: int, dev: torch.device) -> None:
        self.skip, self.total, self.dev, self.step, self.t0, self.t1 = skip, total, dev, 0, 0.0, 0.0

    def _now(self) -> float:
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
        return time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.step += n
        if self.step == self.skip:
            self.t0 = self._now()
        if self.step == self.total:
            self.t1 = self._now()

    @property
    def per_step(self) -> float:
        return (self.t1 - self.t0) / (self.total - self.skip)


def time_eager(spec, steps: int, dev: torch.device) -> float:
    """Median seconds per step of one model trained as a chapter trains it (``train_loop``, timed)."""
    from tvae_experiments.train import train_loop

    torch.manual_seed(0)
    model = spec.model.build().to(dev)
    x = _data(spec, spec.train.batch_size * 4, dev)
    _, timing = train_loop(model, (x,), spec.train, steps + 3, timed=True)
    return statistics.median(timing.step_times[3:])


def time_ensemble(members, spec, steps: int, dev: torch.device, mode: str, tf32: bool = False) -> dict:
    """Seconds per ensemble step (after warm-up and capture), model-steps per second and peak memory.
    ``tf32``: matrix products in TF32 on the GPU's tensor cores for this measurement only (the book trains in
    fp32: TF32 is not yet shown to leave the chapters' claims where they are)."""
    from tvae_experiments.ensemble import WARMUP_STEPS, train_ensemble

    x = _data(spec, spec.train.batch_size * 4, dev)
    skip = WARMUP_STEPS + 2
    clock = _Clock(skip, skip + steps, dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        train_ensemble(members, (x,), skip + steps, device=str(dev), vectorized=True, mode=mode, bar=clock)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    memory = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None
    return {"K": len(members), "mode": mode + (" + TF32" if tf32 else ""), "s_per_step": clock.per_step,
            "model_steps_per_s": len(members) / clock.per_step, "peak_memory_bytes": memory}


def same_weights(members, spec, steps: int, dev: torch.device, mode: str) -> dict:
    """Does the buffered step (``mode``: the CUDA graph on a GPU) train the weights the eager step trains?
    The largest relative difference of any tensor between the two, after ``steps`` steps of a vectorized
    ensemble (0 on a CPU, where the static step is bit-identical; rounding-level on a GPU, whose kernels may
    pick other reduction orders between runs)."""
    from tvae_experiments.ensemble import train_ensemble

    x = _data(spec, spec.train.batch_size * 4, dev)
    runs = [train_ensemble(members, (x,), steps, device=str(dev), vectorized=True, mode=m)[0] for m in ("eager", mode)]
    worst = 0.0
    for a, b in zip(*runs):
        for (name, u), (_, v) in zip(a.state_dict().items(), b.state_dict().items()):
            worst = max(worst, ((u - v).abs().max() / u.abs().max().clamp_min(1e-12)).item())
    return {"mode": mode, "steps": steps, "K": len(members), "max_rel_diff": worst}


def run_chapter(size: dict, out: Path, timeout: float) -> dict:
    """The runner on one chapter with the profile's sizes and trainings cut to ``chapter_steps`` steps."""
    cmd = [sys.executable, "-m", "tvae_book", "run", "--profile", size["profile"], "--chapters", size["chapter"],
           "--dry-run", str(size["chapter_steps"]), "--out", str(out / "chapter"), "--force", "--quiet"]
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        rc, tail = done.returncode, (done.stdout + done.stderr)[-1500:]
    except subprocess.TimeoutExpired:
        rc, tail = None, f"timed out after {timeout:.0f} s"
    return {"chapter": size["chapter"], "dry_run_steps": size["chapter_steps"], "rc": rc,
            "seconds": time.perf_counter() - t0, "tail": tail}


# --------------------------------------------------------------------------- the plan and its hours


@dataclass
class PlanRow:
    """One training of a profile's plan, as the GPU-hours table needs it."""

    chapter: str
    name: str
    steps: int
    flops_per_step: float
    group: str            # jobs with equal group may train in one ensemble ("" : alone)


def plan_rows(profile: str) -> tuple[list[PlanRow], dict[str, str]]:
    """The plan of ``profile`` chapter by chapter (builds its data sets to key the models: slow at paper size),
    and the chapters that could not be planned here, with why (e.g. QM9 missing for chapter 6 at paper)."""
    from tvae_experiments.chapters import planned_chapters
    from tvae_experiments.ensemble import ensemble_key
    from tvae_experiments.plan import training_plan

    rows, seen, missing = [], set(), {}
    for chapter in planned_chapters():
        try:
            jobs = training_plan(profile, chapters=[chapter])
        except (ImportError, FileNotFoundError) as err:
            missing[chapter] = f"{type(err).__name__}: {err}"
            continue
        for job in jobs:
            if (job.name, job.key) in seen:        # a model a later chapter reuses is trained once
                continue
            seen.add((job.name, job.key))
            key = ensemble_key(job.model, job.train, job.data_id)
            rows.append(PlanRow(job.chapter, job.name, job.steps, job.cost / job.steps,
                                "" if key is None else hashlib.sha1(repr(key).encode()).hexdigest()[:12]))
    return rows, missing


def hours_table(rows: list[PlanRow], ref_flops: float, eager_s: float, per_k: dict[int, float],
                max_k: int) -> dict:
    """Hours of every training alone (eager) and in ensembles of up to ``max_k`` (``per_k``: measured seconds
    per ensemble step at each K; a K between two measured ones costs the larger's)."""
    def scale(r: PlanRow) -> float:
        return max(1.0, r.flops_per_step / ref_flops)

    def ensemble_step(k: int) -> float:
        return per_k[min(m for m in per_k if m >= k)] if any(m >= k for m in per_k) else per_k[max(per_k)] * k / max(per_k)

    chapters: dict[str, dict] = {}
    for r in rows:
        c = chapters.setdefault(r.chapter, {"trainings": 0, "steps": 0, "alone_h": 0.0, "ensembles_h": 0.0})
        c["trainings"] += 1
        c["steps"] += r.steps
        c["alone_h"] += r.steps * eager_s * scale(r) / 3600
    groups: dict[tuple, list[PlanRow]] = {}
    for i, r in enumerate(rows):
        groups.setdefault((r.chapter, r.group or f"alone-{i}", r.steps), []).append(r)
    for (chapter, group, steps), members in groups.items():
        k_max = max_k if not group.startswith("alone-") else 1
        for start in range(0, len(members), k_max):
            chunk = members[start:start + k_max]
            per_step = eager_s if len(chunk) == 1 else ensemble_step(len(chunk))
            chapters[chapter]["ensembles_h"] += steps * per_step * max(scale(r) for r in chunk) / 3600
    total = {k: sum(c[k] for c in chapters.values()) for k in ("trainings", "steps", "alone_h", "ensembles_h")}
    total["pflop"] = sum(r.steps * r.flops_per_step for r in rows) / 1e15
    return {"chapters": chapters, "total": total}


def markdown(result: dict) -> str:
    m, one = result["machine"], result["one_model"]
    lines = [f"# Device check: {result['size']} size, profile {result['profile']}", "",
             f"Machine: {m['gpu'] or 'no GPU'}; {m['cpus']} CPUs; torch {m['torch']}; {m['date']}", "",
             f"One model ({one['name']}): eager {one['eager_s'] * 1e3:.2f} ms per step, "
             f"{one['graphed_mode']} {one['graphed_s'] * 1e3:.2f} ms per step "
             f"({one['eager_s'] / one['graphed_s']:.2f}x)", "",
             f"The {result['graph_vs_eager']['mode']} step trains the eager step's weights: largest relative difference "
             f"{result['graph_vs_eager']['max_rel_diff']:.1e} after {result['graph_vs_eager']['steps']} steps of "
             f"{result['graph_vs_eager']['K']} models.", "",
             "| K | mode | ms per ensemble step | model-steps/s | peak memory (MiB) |", "| --- | --- | --- | --- | --- |"]
    for e in result["ensembles"]:
        mem = f"{e['peak_memory_bytes'] / 2**20:.0f}" if e["peak_memory_bytes"] else "-"
        lines.append(f"| {e['K']} | {e['mode']} | {e['s_per_step'] * 1e3:.2f} | {e['model_steps_per_s']:.1f} | {mem} |")
    ch = result["chapter"]
    lines += ["", f"Chapter {ch['chapter']} end to end, trainings cut to {ch['dry_run_steps']} steps: "
              f"{ch['seconds']:.0f} s (exit code {ch['rc']})", ""]
    if result.get("hours"):
        h = result["hours"]
        lines += [f"Hours of the {result['profile']} profile's trainings on this machine, from the times above:", "",
                  "| chapter | trainings | steps | one after another (h) | in ensembles (h) |",
                  "| --- | --- | --- | --- | --- |"]
        for name, c in sorted(h["chapters"].items()):
            lines.append(f"| {name} | {c['trainings']} | {c['steps']:,} | {c['alone_h']:.2f} | {c['ensembles_h']:.2f} |")
        t = h["total"]
        lines.append(f"| **all** | {t['trainings']} | {t['steps']:,} | {t['alone_h']:.2f} | {t['ensembles_h']:.2f} |")
        if "ensembles_tf32_h" in t:
            lines.append(f"\nWith TF32 matrix products (measured at K = {result['tf32']['K']}, not used by the book): "
                         f"{t['ensembles_tf32_h']:.2f} h in ensembles.")
        lines += [f"\nNot in the table (could not be planned here): {c}: {why}" for c, why in h.get("not_planned", {}).items()]
        lines += ["", f"Arithmetic: {t['pflop']:.1f} PFLOP in all, {t['pflop'] * 1e3 / ASSUMED_TFLOPS / 3600:.2f} h at an "
                  f"assumed sustained {ASSUMED_TFLOPS:.0f} TFLOP/s (fp32 on an H100 at about 45% of its peak; TF32 "
                  "would be several times faster but is off: the claims are not yet shown not to move under it)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=tuple(SIZES), default="paper" if torch.cuda.is_available() else "small")
    ap.add_argument("--plan", type=Path, default=None,
                    help=f"the plan's rows (--write-plan); default at paper size: {PAPER_PLAN.relative_to(REPO)}, "
                         "at small size: computed here")
    ap.add_argument("--out", type=Path, default=REPO / "_results" / "gpu-check")
    ap.add_argument("--chapter-timeout", type=float, default=240.0)
    ap.add_argument("--write-plan", nargs=2, metavar=("PROFILE", "PATH"))
    ap.add_argument("--ks", type=int, nargs="+", help="ensemble sizes to time (default: the size's)")
    ap.add_argument("--steps", type=int, help="steps timed per measurement (default: the size's)")
    ap.add_argument("--no-chapter", action="store_true", help="skip the chapter run (a CPU look at paper widths)")
    args = ap.parse_args(argv)
    if args.write_plan:
        rows, missing = plan_rows(args.write_plan[0])
        Path(args.write_plan[1]).write_text(json.dumps({"rows": [r.__dict__ for r in rows], "missing": missing},
                                                       indent=1))
        print(f"{len(rows)} trainings of {args.write_plan[0]} written to {args.write_plan[1]}; not planned: {missing}")
        return {}
    size = dict(SIZES[args.size])
    size.update({k: v for k, v in (("ks", tuple(args.ks or ())), ("steps", args.steps)) if v})
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    graphed_mode = "graph" if dev.type == "cuda" else "static"
    members, spec = reference_members(size["profile"], max(size["ks"]))
    result = {"size": args.size, "profile": size["profile"], "machine": machine()}
    eager = time_eager(spec, size["steps"], dev)
    graphed = time_ensemble(members[:1], spec, size["steps"], dev, graphed_mode)["s_per_step"]
    result["one_model"] = {"name": spec.name, "eager_s": eager, "graphed_s": graphed, "graphed_mode": graphed_mode}
    print(f"one model: eager {eager * 1e3:.2f} ms/step, {graphed_mode} {graphed * 1e3:.2f} ms/step", flush=True)
    result["graph_vs_eager"] = same_weights(members[:2], spec, 12, dev, graphed_mode)
    print(f"{graphed_mode} vs eager step, 2 models x 12 steps: largest relative weight difference "
          f"{result['graph_vs_eager']['max_rel_diff']:.1e}", flush=True)
    result["ensembles"] = []
    for k in size["ks"]:
        result["ensembles"].append(time_ensemble(members[:k], spec, size["steps"], dev, graphed_mode))
        print(f"K={k}: {result['ensembles'][-1]['model_steps_per_s']:.1f} model-steps/s", flush=True)
    if dev.type == "cuda":   # what TF32 would give (not used for the book's trainings): the largest ensemble
        result["tf32"] = time_ensemble(members, spec, size["steps"], dev, graphed_mode, tf32=True)
        result["ensembles"].append(result["tf32"])
    result["chapter"] = ({"chapter": size["chapter"], "dry_run_steps": 0, "rc": None, "seconds": 0.0, "tail": "skipped"}
                         if args.no_chapter else run_chapter(size, args.out, args.chapter_timeout))
    print(f"chapter {size['chapter']}: {result['chapter']['seconds']:.0f} s, rc {result['chapter']['rc']}", flush=True)
    plan = args.plan or (PAPER_PLAN if args.size == "paper" else None)
    if plan:
        saved = json.loads(plan.read_text())
        rows, missing = [PlanRow(**r) for r in saved["rows"]], saved["missing"]
    else:
        rows, missing = plan_rows(size["profile"])
    ref_flops = next((r.flops_per_step for r in rows if r.name == spec.name), None) or _flops(spec)
    per_k = {e["K"]: e["s_per_step"] for e in result["ensembles"] if "TF32" not in e["mode"]}
    result["hours"] = hours_table(rows, ref_flops, eager, per_k, max(size["ks"]))
    result["hours"]["not_planned"] = missing
    if "tf32" in result:     # the same table's ensemble column with the largest K's step in TF32
        k = result["tf32"]["K"]
        tf32 = hours_table(rows, ref_flops, eager, {**per_k, k: result["tf32"]["s_per_step"]}, k)
        result["hours"]["total"]["ensembles_tf32_h"] = tf32["total"]["ensembles_h"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=1))
    (args.out / "gpu_check.md").write_text(markdown(result))
    print(markdown(result))
    return result


def _flops(spec) -> float:
    from tvae_experiments.plan import _step_flops

    return _step_flops(spec.model, (((spec.data_cfg.mnist.S, spec.model.in_dim), "uint8"),), spec.train.batch_size)


if __name__ == "__main__":
    main()
