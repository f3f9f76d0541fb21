"""The ``paper`` profile's capsule chapters as a dry run on the CPU (``make test-paper``, run by CI after
``make test``): the papers' data sizes, model widths, batch sizes, seeds and importance samples, with
every training cut to two optimiser steps (``tvae_experiments.dry_run``).  The paper configs cannot rot:
a size that no longer fits in memory, a shape error at full width, a chapter that trains a model the
training plan does not list, or a plan whose step count disagrees with what the training loop runs,
fails here.  pytest prints its duration; `make reproduce PROFILE=paper DRY_RUN=2` keeps the same run's results."""
from __future__ import annotations

import json

import pytest

from tvae_book import chapters as bk, execute, report
from tvae_experiments.plan import training_plan
from tvae_experiments.profiles import tables_config

CHAPTERS = ("04_capsules", "05_tables", "08_capsule_invariants", "10_capsule_extensions")


@pytest.mark.timeout(4200)
def test_capsule_chapters_run_at_paper_size_and_match_the_training_plan(tmp_path, monkeypatch):
    monkeypatch.setenv("TVAE_CACHE_DIR", str(tmp_path / "cache"))  # a dry run writes no weights; data caches go here
    # Chapter 5 with Tables 1-2's rows and one seed (the paper profile's default, every row of Tables 4-5 over
    # 3 seeds, would take hours here; the same model classes at the same sizes, with other L and seeds). With 3
    # seeds and Table 3, chapter 5 alone does not fit in this test's hour on a 2-core CPU.
    config = bk.RunConfig(profile="paper", dry_run=2, extra=(("rows", "main"), ("n_seeds", 1)))
    chapters = bk.discover_chapters(bk.REPO_ROOT, list(CHAPTERS))
    results, failures = execute.run_chapters(chapters, config, tmp_path / "out", timeout=3000)
    assert failures == [], [str(f) for f in failures]
    records = {}
    for name in CHAPTERS:
        metrics = json.loads((tmp_path / "out" / f"{name}.json").read_text())
        assert metrics["dry_run"]["steps"] == 2
        for rec in metrics["dry_run"]["models"]:
            assert rec["steps_run"] == 2 and rec["flops_per_step"] > 0 and rec["peak_rss_mb"] < 22_000
            if rec["cached"]:  # not chapter 4's toy model, which always trains (in seconds)
                records.setdefault(rec["key"], rec)
    plan = {j.key[:12]: j for j in training_plan("paper", chapters=list(CHAPTERS), extra=dict(config.extra))}
    assert set(plan) == set(records), "the dry run trained other models than `make train` would"
    for key, job in plan.items():
        assert records[key]["steps_full"] == job.steps and records[key]["batch_size"] == job.train.batch_size
    # the papers' sizes: 100 epochs of 60,000 MNIST / 50,625 dSprites sequences in batches of 8 (3 seeds in the
    # profile: tests/test_plan.py; one here)
    mnist = [j for j in plan.values() if j.name.startswith("caps-mnist")]
    assert {j.steps for j in mnist} == {100 * 60_000 // 8} and {j.name[-2:] for j in mnist} == {"s0"}
    assert tables_config("paper").seeds == (0, 1, 2)
    text = report.render_dry_run({n: json.loads((tmp_path / "out" / f"{n}.json").read_text()) for n in CHAPTERS})
    assert text.count("`caps-") == len(plan)
