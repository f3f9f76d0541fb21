"""The weight cache (tvae_experiments.weights) and the run context (tvae_experiments.run).

* a saved entry loads bit for bit, under its key only; a file of another key or a truncated one is refused;
* entries of an older cache format are named once as stale and never loaded; the model retrains;
* ``fit`` records every cached model it trains or loads in its run context, not in a module global.
"""
from __future__ import annotations

import torch

from tvae_core.models import ModelConfig
from tvae_experiments.run import RunContext, current, using
from tvae_experiments.train import TrainConfig, fit
from tvae_experiments.weights import CACHE_FORMAT, WeightCache, cache_key

CFG = ModelConfig(kind="vae", weight_norm=False, in_dim=16, enc_hidden=(8,), dec_hidden=(8,), side=2, K=1)
TRAIN = TrainConfig(steps=6, batch_size=8, optimizer="adam", lr=1e-2)


def _trained():
    torch.manual_seed(0)
    return CFG.build()


def test_a_saved_entry_loads_bit_for_bit_under_its_key_only(tmp_path):
    cache, model = WeightCache(tmp_path), _trained()
    key = cache_key(CFG, TRAIN, "d")
    path = cache.save("m", key, model, [{"epoch": 1}], 2.5)
    assert path == tmp_path / f"m-{key[:12]}.pt" and torch.load(path, weights_only=True)["format"] == CACHE_FORMAT
    loaded, entry = cache.load("m", key, CFG.build)
    assert entry["seconds"] == 2.5 and entry["history"] == [{"epoch": 1}]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    other = cache_key(CFG, TRAIN, "e")
    path.rename(cache.path("m", other))  # the right name for another key, the wrong key inside
    assert cache.load("m", other, CFG.build) is None


def test_a_truncated_entry_is_refused_and_retrained(tmp_path, capsys):
    cache = WeightCache(tmp_path)
    key = cache_key(CFG, TRAIN, "d")
    path = cache.save("m", key, _trained(), [], 1.0)
    path.write_bytes(path.read_bytes()[:100])
    assert cache.load("m", key, CFG.build) is None and "is unusable" in capsys.readouterr().out


def test_stale_entries_are_named_once_and_never_loaded(tmp_path, capsys):
    cache = WeightCache(tmp_path)
    old_key = "0" * 64
    torch.save({"key": old_key, "state_dict": _trained().state_dict(), "history": [], "seconds": 1.0},
               tmp_path / f"m-{old_key[:12]}.pt")  # a format-1 file: no "format" field
    torch.save({"format": CACHE_FORMAT, "key": "1" * 64, "state_dict": {}, "history": [], "seconds": 1.0},
               tmp_path / f"m-{'1' * 12}.pt")         # same name, current format, another config: not stale
    torch.save({"key": "2" * 64}, tmp_path / f"m-other-{'2' * 12}.pt")  # another name sharing the prefix
    key = cache_key(CFG, TRAIN, "d")
    assert cache.stale("m", key) == [tmp_path / f"m-{old_key[:12]}.pt"]
    x = torch.rand(16, 16)
    ctx = RunContext(cache=cache)
    r = fit(CFG, x, TRAIN, data_id="d", name="m", progress=False, ctx=ctx)
    out = capsys.readouterr().out
    assert not r.from_cache and out.count("stale cache entry") == 1 and f"m-{old_key[:12]}.pt" in out
    assert "m-other" not in out
    # the next miss of the same name does not repeat it; the retrained entry loads
    cache.path("m", key).unlink()
    fit(CFG, x, TRAIN, data_id="d", name="m", progress=False, ctx=ctx)
    assert "stale" not in capsys.readouterr().out
    again = fit(CFG, x, TRAIN, data_id="d", name="m", progress=False, ctx=ctx)
    assert again.from_cache
    assert [u["from_cache"] for u in ctx.used] == [False, False, True]


def test_fit_records_in_its_own_context(tmp_path):
    x = torch.rand(16, 16)
    before = list(current().used)
    a, b = RunContext(cache=WeightCache(tmp_path)), RunContext(cache=WeightCache(tmp_path))
    fit(CFG, x, TRAIN, data_id="d", name="m", progress=False, ctx=a)
    with using(b):
        fit(CFG, x, TRAIN, data_id="d", name="m", progress=False)  # the context in force
    assert [u["from_cache"] for u in a.used] == [False] and [u["from_cache"] for u in b.used] == [True]
    assert current().used == before
    fit(CFG, x, TRAIN, data_id="d", name="toy", use_cache=False, progress=False, ctx=a)
    assert len(a.used) == 1 and not (tmp_path / "toy").exists()  # an uncached model is not a cache entry


def test_the_default_cache_folder(monkeypatch, tmp_path):
    from tvae_experiments.files import repo_root
    from tvae_experiments.weights import default_cache_dir

    monkeypatch.delenv("TVAE_CACHE_DIR", raising=False)
    assert default_cache_dir() == repo_root() / "_cache" / "models" and WeightCache().root == default_cache_dir()
    monkeypatch.setenv("TVAE_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path and WeightCache().root == tmp_path  # read at each use


def test_stale_skips_other_names_wherever_they_sort(tmp_path):
    """A file of another name sharing the prefix (``m-00-x-...``) sorts before ``m-<hash>``: it is skipped, not
    the end of the search."""
    cache = WeightCache(tmp_path)
    torch.save({"key": "2" * 64}, tmp_path / f"m-00-x-{'2' * 12}.pt")
    old = tmp_path / f"m-{'0' * 12}.pt"
    torch.save({"key": "0" * 64}, old)
    assert cache.stale("m", cache_key(CFG, TRAIN, "d")) == [old]
