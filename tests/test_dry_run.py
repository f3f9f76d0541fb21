"""Dry runs (tvae_experiments.dry_run): a profile's real sizes with a few steps per model, measured.

The switch is TVAE_DRY_RUN_STEPS; fit trains that many steps, never reads or writes the cache, and
records parameters / steps / time / FLOPs / memory; claims checked after it are reported, not
enforced; config_for cuts test sets; the report renders the cost table."""
from __future__ import annotations

import json

import pytest
import torch

from tvae_book import report
from tvae_core.models import ModelConfig
from tvae_experiments.chapters import ChapterSpec
from tvae_experiments.chapters.base import claim
from tvae_experiments import ClaimReport, dry_run
from tvae_experiments.profiles import config_for
from tvae_experiments.run import RunContext, using
from tvae_experiments.train import TrainConfig, cache_path, cache_key, fit

CFG = ModelConfig(kind="vae", weight_norm=False, in_dim=64, enc_hidden=(16,), dec_hidden=(16,), side=4, K=3)
TRAIN = TrainConfig(steps=50, batch_size=8, optimizer="adam")


@pytest.fixture
def dry():
    """A dry run of 3 steps per model as this process's run context."""
    with using(RunContext(dry_run_steps=3)) as ctx:
        yield ctx


def test_the_context_comes_from_the_environment_once(monkeypatch):
    monkeypatch.setenv(dry_run.ENV, "4")
    monkeypatch.setenv("TVAE_PROGRESS_FILE", "/tmp/p.log")
    ctx = RunContext.from_env()
    assert ctx.dry_run_steps == 4 and ctx.progress_file == "/tmp/p.log" and ctx.used == ctx.dry_runs == []
    monkeypatch.setenv(dry_run.ENV, "0")
    assert RunContext.from_env().dry_run_steps is None
    with pytest.raises(ValueError, match="dry_run_steps=0"):
        RunContext(dry_run_steps=0)


def test_dry_run_trains_a_few_steps_records_the_cost_and_never_touches_the_cache(dry, tmp_path):
    x = torch.rand(64, 64)
    r = fit(CFG, x, TRAIN, data_id="d", cache_dir=tmp_path, progress=False)
    assert r.history[-1]["step"] == 3 and not r.from_cache and list(tmp_path.iterdir()) == []
    (rec,) = dry.dry_runs
    assert rec["steps_run"] == 3 and rec["steps_full"] == 50 and rec["batch_size"] == 8 and rec["n_train"] == 64
    assert rec["parameters"] == sum(p.numel() for p in CFG.build().parameters())
    assert rec["key"] == cache_key(CFG, TRAIN, "d")[:12] and rec["s_per_step"] > 0 and rec["peak_rss_mb"] > 10
    # FLOPs of one step: at least the forward and backward of the first linear layer (2 * 8 * 64 * 16 each)
    assert rec["flops_per_step"] >= 2 * 2 * 8 * 64 * 16


def test_a_dry_run_does_not_load_the_trained_model_of_the_same_key(tmp_path):
    x = torch.rand(64, 64)
    trained = fit(CFG, x, TRAIN, data_id="d", cache_dir=tmp_path, progress=False, ctx=RunContext())
    assert cache_path("model", cache_key(CFG, TRAIN, "d"), tmp_path).is_file()
    r = fit(CFG, x, TRAIN, data_id="d", cache_dir=tmp_path, progress=False, ctx=RunContext(dry_run_steps=2))
    assert not r.from_cache and r.history[-1]["step"] == 2
    same = [torch.equal(a, b) for a, b in zip(trained.model.state_dict().values(), r.model.state_dict().values())]
    assert not all(same)
    assert len(list(tmp_path.glob("*.pt"))) == 1  # the trained file is untouched, nothing added


def test_claims_after_a_shortened_training_are_reported_not_enforced(dry, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TVAE_RESULTS_DIR", str(tmp_path))
    spec = ChapterSpec("04_capsules", "t", "p", claims=(
        *claim("before_training", "i", "checked before any training", "v > 2"),
        *claim("after_training", "i", "checked after a 3-step training", "v > 2")))
    rep = ClaimReport("04_capsules", "t", "paper", 0, spec=spec, ctx=dry)
    assert "DRY RUN" in capsys.readouterr().out
    rep.check("before_training", v=1.0)
    fit(CFG, torch.rand(64, 64), TRAIN, data_id="d", cache_dir=tmp_path, progress=False)
    rep.check("after_training", v=1.0)
    before, after = rep.claims
    assert before.enforced and not before.passed          # a claim that needs no training still fails the run
    assert not after.enforced and "dry run" in after.reason and "3 optimiser step(s)" in after.reason
    with pytest.raises(Exception, match="before_training"):
        rep.finish()
    metrics = json.loads((tmp_path / "04_capsules.json").read_text())
    assert metrics["dry_run"]["steps"] == 3 and metrics["dry_run"]["models"][0]["steps_full"] == 50
    rss = metrics["dry_run"]["peak_rss_mb"]  # the whole process's peak, in MB to one decimal
    assert isinstance(rss, float) and rss == round(rss, 1) and rss > 10


@pytest.mark.parametrize("bad", ["-1", "three", "1.5"])
def test_a_bad_dry_run_value_names_the_variable(monkeypatch, bad):
    monkeypatch.setenv(dry_run.ENV, bad)
    with pytest.raises(ValueError, match=dry_run.ENV):
        dry_run.steps()
    monkeypatch.setenv(dry_run.ENV, "0")
    assert dry_run.steps() is None


def test_dry_run_cuts_test_sets_and_keeps_the_training_sets_and_their_keys(monkeypatch):
    """A dry run cuts the capsule test sets to TEST_CAP; the training sets (and so every model's cache key
    and the training plan) are exactly the full run's -- dSprites train and test are split from one draw."""
    from tvae_experiments.capsules import capsule_data

    cfg = config_for("04_capsules", "smoke")
    monkeypatch.setattr(dry_run, "TEST_CAP", 5)
    with using(RunContext(dry_run_steps=3)):
        cut = capsule_data(cfg.mnist, cfg.dsprites)
    with using(RunContext()):
        full = capsule_data(cfg.mnist, cfg.dsprites)
    assert len(full.mnist_test) == len(full.dsprites_test) == 16 and len(cut.mnist_test) == len(cut.dsprites_test) == 5
    for part in ("mnist_train", "dsprites_train"):
        a, b = getattr(cut, part), getattr(full, part)
        assert torch.equal(a.x, b.x) and cut.data_id(a) == full.data_id(b)
    assert torch.equal(cut.dsprites_test.x, full.dsprites_test.x[:5])
    assert config_for("04_capsules", "paper").mnist.n_test == 10_000  # the config itself is the paper's


def test_report_renders_the_cost_table_once_per_model():
    rec = dict(name="m", key="abc", device="cpu", parameters=1000, n_train=80, batch_size=8, steps_full=1000,
               steps_run=3, s_per_step=0.01, flops_per_step=int(4e9), est_hours_here=0.003, peak_rss_mb=900.0)
    metrics = {"a": {"dry_run": {"steps": 3, "models": [rec]}}, "b": {"dry_run": {"steps": 3, "models": [rec]}},
               "c": None}
    text = report.render_dry_run(metrics)
    assert text.count("`m`") == 1 and "| a | 1 | 1,000 |" in text
    # GPU estimate: 1000 steps x max(4e9 / 20e12 = 0.2 ms, 4 ms floor) = 4 s
    assert f"{4 / 3600:.2f}" in text and "Assumed" in text and "Measured" in text
    assert report.render_dry_run({"a": {"claims": []}}) == ""


def test_a_model_spec_trains_under_its_name_then_loads(tmp_path, monkeypatch):
    """``ModelSpec.fit`` trains the spec's model with its training config into ``<name>-<key>.pt`` of the cache and
    loads that file the second time (the chapters train through it)."""
    from tvae_experiments.chapters import ModelSpec

    monkeypatch.setenv("TVAE_CACHE_DIR", str(tmp_path))
    spec = ModelSpec("demo-vae", CFG, TrainConfig(steps=5, batch_size=8, optimizer="adam"), "mnist", None, "train")
    x = torch.rand(64, 64)
    with using(RunContext()) as ctx:
        first = spec.fit(x, "d", progress=False)  # the default device: 'auto', the CPU here
        again = spec.fit(x, "d", progress=False)
    assert not first.from_cache and again.from_cache and first.history[-1]["step"] == 5
    assert [p.name for p in tmp_path.glob("*.pt")] == [f"demo-vae-{cache_key(CFG, spec.train, 'd')[:12]}.pt"]
    assert [u["name"] for u in ctx.used] == ["demo-vae", "demo-vae"]
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()))
