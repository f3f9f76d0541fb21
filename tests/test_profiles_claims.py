"""Profiles resolve, bad values raise naming the options; claims write metrics and fail loudly."""
import json

import pytest

from tvae_experiments import ClaimFailed, ClaimReport, config_for, resolve_device
from tvae_experiments.profiles import EXPERIMENTS, PROFILES


def test_every_experiment_resolves_in_every_profile():
    for chapter in EXPERIMENTS:
        for p in PROFILES:
            config_for(chapter, p)
    assert config_for("01_pot", "cpu").n_samples == 20_000  # the KS size
    assert config_for("01_pot", "smoke").n_samples < config_for("01_pot", "cpu").n_samples


def test_unknown_profile_and_device_raise():
    with pytest.raises(ValueError, match="profile='laptop' is not allowed; choose one of: 'smoke', 'cpu', 'paper'"):
        config_for("01_pot", "laptop")
    with pytest.raises(ValueError, match="device='gpu' is not allowed"):
        resolve_device("gpu")
    with pytest.raises(ValueError, match="unknown field"):
        config_for("01_pot", "cpu", n_sample=3)
    assert resolve_device("cpu").type == "cpu"


def test_claim_report_writes_and_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("TVAE_RESULTS_DIR", str(tmp_path))
    rep = ClaimReport("99_demo", "Demo", "smoke", 3)
    rep.check("ok", True, 0.5, "> 0.1", "a true claim", paper="0.6")
    rep.finish()
    data = json.loads((tmp_path / "99_demo.json").read_text())
    assert data["all_passed"] and data["claims"][0]["value"] == 0.5 and data["profile"] == "smoke"
    rep.check("bad", False, 0.0, "> 0.1", "a false claim")
    with pytest.raises(ClaimFailed, match="bad"):
        rep.finish()
    assert json.loads((tmp_path / "99_demo.json").read_text())["all_passed"] is False
