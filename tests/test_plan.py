"""The training plan (tvae_experiments.plan) and its jobs on a scheduler (tvae_book.jobs, `make train`).

* The smoke plan is exactly the set of cached models the smoke chapters use (from their metrics).
* Two local workers write the same cache entries, with bit-identical weights, as a sequential run.
* A failed job is reported with its log and leaves no cache file; a rerun skips finished jobs.
* The submitit engine (``slurm_local``: submitit's own local executor) trains a job too.
"""
from __future__ import annotations

import dataclasses
import io
import json

import pytest
import torch

from tvae_book import jobs as bk_jobs
from tvae_experiments import plan
from tvae_experiments.profiles import TABLE1_MNIST_ROWS, TABLE4_MNIST_ROWS, TABLE5_DSPRITES_ROWS, tables_config
from tvae_experiments.train import cache_key

# small jobs: a capsule TVAE and a VAE on one data set (each worker builds it once), and the graph VAE
FAMILIES = ("caps-dsprites-tvae-L5-s0", "caps-dsprites-vae-L0-s0", "graphvae-nci-s0")


@pytest.fixture(scope="module")
def smoke_plan():
    return plan.training_plan("smoke")


@pytest.fixture(scope="module")
def small_jobs(smoke_plan):
    jobs = [j for j in smoke_plan if j.name in FAMILIES]
    assert sorted(j.name for j in jobs) == sorted(FAMILIES)
    return jobs


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_plan_lists_each_model_once_under_its_first_chapter(smoke_plan):
    keys = [(j.name, j.key) for j in smoke_plan]
    assert len(keys) == len(set(keys))
    assert {j.chapter for j in smoke_plan} == {"03_tvae_torus", "04_capsules", "05_tables", "06_invariant_graphs",
                                               "07_invariant_rotation", "10_capsule_extensions"}  # 8 reuses 4's
    for j in smoke_plan:
        assert j.key == cache_key(j.model, j.train, j.data_id) and j.steps >= 1
    two = plan.training_plan("smoke", chapters=["05_tables"], extra={"n_seeds": 2})
    # Tables 1-2's 5 + 6 rows and Table 3's 4 models that are not Table 1's (PGD TVAE and VAE, WN VAE, plain TVAE)
    # and Figs 18-19's two models (first seed only)
    assert {j.name.rsplit("-", 1)[1] for j in two} == {"s0", "s1"} and len(two) == 2 * (11 + 4) + 2
    assert {j.name for j in two if "color" in j.name} == {"caps-mnist-color-rotation-tvae-L6.5-s0",
                                                          "caps-mnist-color-perspective-tvae-L6.5-s0"}
    assert {j.name for j in two if "-pgd-" in j.name or "-wn-" in j.name or "-none-" in j.name} == {
        f"caps-mnist-{m}-s{s}" for m in ("tvae-L2.5-pgd", "tvae-L2.5-none", "vae-L0-pgd", "vae-L0-wn") for s in (0, 1)}
    # chapter 5's rows="all": every row of the appendix Tables 4-5 (9 MNIST + 12 dSprites), as the paper profile
    every = plan.training_plan("smoke", chapters=["05_tables"], extra={"n_seeds": 1, "rows": "all"})
    assert len(every) == 9 + 12 + 4 + 2 and {j.name for j in two if j.name.endswith("s0")} < {j.name for j in every}
    assert "caps-mnist-tvae-L6.5-s0" in {j.name for j in every} and "caps-dsprites-bubble-L4-s0" in {j.name for j in every}
    paper = tables_config("paper")
    assert (paper.mnist_rows, paper.dsprites_rows) == (TABLE4_MNIST_ROWS, TABLE5_DSPRITES_ROWS)
    assert len(tables_config("cpu").mnist_rows) == 5 and len(tables_config("cpu").dsprites_rows) == 6  # Tables 1-2
    assert tables_config("paper", rows="main").mnist_rows == tables_config("cpu").mnist_rows == TABLE1_MNIST_ROWS
    with pytest.raises(ValueError, match="rows='every' is not allowed; choose one of: 'profile', 'main', 'all'"):
        tables_config("cpu", rows="every")


@pytest.mark.timeout(1800)
def test_smoke_plan_is_exactly_the_models_the_smoke_chapters_use(smoke_plan, smoke_book):
    used = set()
    for ch in smoke_book.chapters:
        metrics = json.loads((smoke_book.results_dir / f"{ch.name}.json").read_text())
        used |= {(m["name"], m["key"]) for m in metrics.get("models", [])}
    planned = {(j.name, j.key[:12]) for j in smoke_plan}
    assert planned - used == set(), "planned but no chapter uses it"
    assert used - planned == set(), "a chapter trains a model that `make train` would not"


@pytest.mark.timeout(600)
def test_two_workers_write_the_same_cache_entries_and_weights_as_a_sequential_run(small_jobs, tmp_path):
    small_jobs = [j for j in small_jobs if j.name.startswith("caps-")]
    seq, par = tmp_path / "sequential", tmp_path / "parallel"
    out = io.StringIO()
    first = bk_jobs.run_plan(small_jobs, workers=1, threads=1, cache_dir=seq, device="cpu", stream=out)
    second = bk_jobs.run_plan(small_jobs, workers=2, threads=1, cache_dir=par, device="cpu", stream=out)
    assert [o.status for o in first] == [o.status for o in second] == ["trained"] * len(small_jobs)
    files = sorted(p.name for p in seq.glob("*.pt"))
    assert files == sorted(p.name for p in par.glob("*.pt")) == sorted(j.path().name for j in small_jobs)
    for name in files:
        a, b = _weights(seq / name), _weights(par / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    # a rerun trains nothing
    again = bk_jobs.run_plan(small_jobs, workers=2, cache_dir=par, device="cpu", stream=out)
    assert [o.status for o in again] == ["cached"] * len(small_jobs)
    assert f"{len(small_jobs)} cached (skipped), 0 to train" in out.getvalue().splitlines()[-1]


@pytest.mark.timeout(600)
def test_a_failed_job_is_reported_with_its_log_and_leaves_no_cache_file(small_jobs, tmp_path):
    good = next(j for j in small_jobs if j.name == "caps-dsprites-vae-L0-s0")
    train = dataclasses.replace(good.train, lr=1e30)  # Adam with lr 1e30: the loss becomes NaN
    bad = dataclasses.replace(good, name="diverges", train=train, key=cache_key(good.model, train, good.data_id))
    out = io.StringIO()
    outcomes = bk_jobs.run_plan([bad], workers=1, cache_dir=tmp_path, device="cpu", stream=out)
    assert [o.status for o in outcomes] == ["failed"]
    failed = outcomes[0]
    assert "TrainingDiverged" in failed.error and "loss became" in failed.error
    assert failed.log.is_file() and "Traceback" in failed.log.read_text() and str(failed.log) in out.getvalue()
    assert not bad.cached(tmp_path) and list(tmp_path.glob("*.pt")) == []
    assert list(tmp_path.glob(".*.tmp")) == [], "no partial cache file"


@pytest.mark.timeout(600)
def test_submitit_engine_trains_a_job(small_jobs, tmp_path):
    pytest.importorskip("submitit")
    job = next(j for j in small_jobs if j.name == "graphvae-nci-s0")
    out = io.StringIO()
    (o,) = bk_jobs.run_plan([job], engine="slurm_local", cache_dir=tmp_path, device="cpu", stream=out)
    assert o.status == "trained", (o.error, o.log and o.log.read_text()[-2000:])
    assert job.cached(tmp_path) and o.log.is_file()


def test_bad_engine_and_workers_name_the_parameter(small_jobs):
    with pytest.raises(ValueError, match="engine"):
        bk_jobs.run_plan(small_jobs, engine="ray")
    with pytest.raises(ValueError, match="workers"):
        bk_jobs.run_plan(small_jobs, workers=0)


def test_plan_table_shows_cached_steps_and_the_dry_run_estimate(small_jobs, tmp_path):
    rec = {small_jobs[0].key[:12]: {"s_per_step": 0.5}}
    text = bk_jobs.plan_table(small_jobs, cache_dir=tmp_path, costs=rec)
    assert f"{0.5 * small_jobs[0].steps / 3600:.2f} h" in text
    assert f"{len(small_jobs)} jobs: 0 cached, {len(small_jobs)} to train" in text


def test_workers_option_resolves_auto_and_rejects_nonsense():
    import os

    from tvae_book.cli import resolve_workers

    assert resolve_workers("3") == 3 and resolve_workers(1) == 1
    assert resolve_workers("auto", device="cpu") == max(1, min(os.cpu_count() or 1, 8))
    for bad in ("0", "-2", "two"):
        with pytest.raises(ValueError, match="--workers"):
            resolve_workers(bad)


def test_run_with_workers_trains_the_plan_before_the_chapters(tmp_path, monkeypatch):
    """``run``/``book --workers N``: the training stage runs first, with N workers; a failed training
    stops before any chapter; a dry run has nothing to train ahead."""
    from tvae_book import cli

    calls = []
    monkeypatch.setattr(cli, "train", lambda args, *a: calls.append(("train", args.workers)) or code[0])
    monkeypatch.setattr(cli, "run_chapters", lambda *a, **k: calls.append(("chapters",)) or ([], []))
    monkeypatch.setattr(cli, "write_report", lambda chapters, out: tmp_path / "report.md")
    base = ["run", "--profile", "smoke", "--chapters", "01_pot", "--out", str(tmp_path)]
    code = [0]
    assert cli.main([*base, "--workers", "2"]) == 0 and calls == [("train", 2), ("chapters",)]
    calls.clear()
    assert cli.main(base) == 0 and calls == [("chapters",)]                     # 1 worker: the chapters train
    calls.clear()
    assert cli.main([*base, "--workers", "2", "--dry-run", "2"]) == 0 and calls == [("chapters",)]
    calls.clear()
    code = [1]
    assert cli.main([*base, "--workers", "2"]) == 1 and calls == [("train", 2)]
    assert cli.main([*base, "--workers", "zero"]) == 2


def test_last_progress_reads_the_latest_bar_of_a_job_log(tmp_path):
    from tvae_book.jobs import last_progress

    log = tmp_path / "j.log"
    assert last_progress(log) == ""                                       # no log yet
    log.write_text("job x (key abc), pid 1\ntraining x:   0%|          | 0/300 [00:00<?, ?it/s]\r"
                   "training x:  40%|####      | 120/300 [00:02<00:03, 55.1it/s]\rtraining x:  50%|#####     "
                   "| 150/300 [00:03<00:03, 54.9it/s]")
    assert last_progress(log).startswith("training x:  50%") and "150/300" in last_progress(log)
    log.write_text("job x (key abc), pid 1\nloading data\n")
    assert last_progress(log) == ""


def test_measured_costs_reads_chapter_metrics_and_skips_stamps(tmp_path):
    import json

    from tvae_book.jobs import measured_costs

    rec = {"name": "m", "key": "abc123def456", "s_per_step": 0.05}
    (tmp_path / "04_capsules.json").write_text(json.dumps({"dry_run": {"steps": 3, "models": [rec]}}))
    (tmp_path / "04_capsules.stamp.json").write_text(json.dumps({"dry_run": 3, "profile": "cpu"}))
    (tmp_path / "broken.json").write_text("{")
    assert measured_costs(tmp_path) == {"abc123def456": rec}


def test_job_cost_is_the_flops_of_the_training_measured_on_the_meta_device(smoke_plan):
    """``Job.cost`` = steps x FLOPs of one step, counted without computing (meta device); it equals the count
    on real tensors, and ranks the convolutional G-CNN by its FLOPs, not by its few parameters."""
    from torch.utils.flop_counter import FlopCounterMode

    job = next(j for j in smoke_plan if j.name.startswith("caps-dsprites-vae"))
    tensors, _ = job.data.load()[job.part]
    model = job.model.build()
    with FlopCounterMode(display=False) as counter:
        loss, _ = model.training_loss(tensors[0][: job.train.batch_size].float())
        loss.backward()
    assert job.cost == job.steps * counter.get_total_flops() > 0
    gcnn = next(j for j in smoke_plan if j.name.startswith("gcnn"))
    with torch.device("meta"):
        params = sum(p.numel() for p in gcnn.model.build().parameters())
    assert gcnn.cost > 100 * gcnn.steps * gcnn.train.batch_size * params  # many FLOPs per weight: convolutions
    no_example = dataclasses.replace(job, example=())
    assert 0 < no_example.cost != job.cost  # the parameter-count fallback


@pytest.mark.timeout(600)
def test_ensembles_write_the_same_cache_entries_and_weights_as_single_jobs(smoke_plan, tmp_path):
    """``make train --ensemble N``: compatible jobs train together (on a CPU each model with the kernels of a
    single training) and leave exactly the cache files, bit for bit, that one job per model leaves."""
    jobs = [j for j in smoke_plan if j.name.startswith("caps-dsprites-") and j.chapter == "05_tables"]
    units = plan.group_ensembles(jobs, 3)
    sizes = sorted(len(getattr(u, "jobs", (u,))) for u in units)
    assert max(sizes) == 3 and sum(sizes) == len(jobs) >= 4, sizes           # the VAE cannot join the TVAEs
    assert plan.group_ensembles(jobs, 1) == jobs
    single, together = tmp_path / "single", tmp_path / "together"
    out = io.StringIO()
    a = bk_jobs.run_plan(jobs, workers=1, threads=1, cache_dir=single, device="cpu", stream=out)
    b = bk_jobs.run_plan(jobs, workers=1, threads=1, cache_dir=together, device="cpu", ensemble=3, stream=out)
    assert [o.status for o in a] == [o.status for o in b] == ["trained"] * len(jobs)
    assert f"as {len(units)} units (ensembles of up to 3)" in out.getvalue()
    files = sorted(p.name for p in single.glob("*.pt"))
    assert files == sorted(p.name for p in together.glob("*.pt")) == sorted(j.path().name for j in jobs)
    for name in files:
        x, y = _weights(single / name), _weights(together / name)
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), name
