"""Weight bundles (tvae_experiments.bundles, `make weights-pack`, `make book WEIGHTS=...`).

* a bundle served over HTTP installs bit for bit into an empty cache, and only the entries whose key the
  current code asks for; a model of a bundle entry then loads instead of training;
* a corrupt and a truncated bundle each raise an error naming the file and the expected checksum and leave
  the cache as it was; a bundle whose sha256 is not the pinned one is refused before it is read;
* a chapter run from an empty cache with ``TVAE_WEIGHTS`` set trains nothing (smoke, chapter 3).
"""
from __future__ import annotations

import functools
import http.server
import json
import tarfile
import threading
from pathlib import Path

import pytest
import torch

from tvae_core.models import ModelConfig
from tvae_experiments.bundles import Bundle, BundleError, open_bundle, pack_bundle, pinned_sha256, sha256_of
from tvae_experiments.run import RunContext
from tvae_experiments.train import TrainConfig, fit
from tvae_experiments.weights import WeightCache, cache_key

CFGS = {"a": ModelConfig(kind="vae", weight_norm=False, in_dim=16, enc_hidden=(8,), dec_hidden=(8,), side=2, K=1),
        "b": ModelConfig(kind="vae", weight_norm=False, in_dim=16, enc_hidden=(12,), dec_hidden=(8,), side=2, K=1)}
TRAIN = TrainConfig(steps=5, batch_size=8, optimizer="adam", lr=1e-2)
X = torch.rand(16, 16)


@pytest.fixture
def packed(tmp_path):
    """Two trained models in a cache and their bundle: ``(bundle path, source cache, entries)``."""
    cache = WeightCache(tmp_path / "trained")
    entries = []
    for name, cfg in CFGS.items():
        fit(cfg, X, TRAIN, data_id="d", name=name, progress=False, ctx=RunContext(cache=cache))
        entries.append((name, cache_key(cfg, TRAIN, "d"), cfg, TRAIN, "d"))
    return pack_bundle(entries, tmp_path / "tvae-weights-test.tar", profile="test", cache=cache), cache, entries


@pytest.fixture
def server(tmp_path):
    """A local HTTP server on ``tmp_path``; yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.pt"))} if folder.exists() else {}


def test_a_served_bundle_installs_bit_for_bit_and_only_what_the_code_asks_for(packed, server, tmp_path):
    path, trained, entries = packed
    manifest = Bundle(path).manifest
    assert manifest["profile"] == "test" and manifest["cache_format"] == 2 and len(manifest["entries"]) == 2
    assert {e["name"]: e["model"]["enc_hidden"] for e in manifest["entries"]} == {"a": [8], "b": [12]}
    bundle = open_bundle(f"{server}/{path.name}", sha256=sha256_of(path), download_dir=tmp_path / "dl", progress=False)
    target = WeightCache(tmp_path / "empty")
    done = bundle.install(target, keys=[entries[0][1], "f" * 64])  # the code asks for "a" and a model not in it
    assert done == {"installed": ["a"], "cached": [], "unused": ["b"]}
    assert _files(target.root) == {k: v for k, v in _files(trained.root).items() if k.startswith("a-")}
    assert bundle.install(target, keys=[entries[0][1]])["cached"] == ["a"]
    ctx = RunContext(cache=target)
    r = fit(CFGS["a"], X, TRAIN, data_id="d", name="a", progress=False, ctx=ctx)
    assert r.from_cache and ctx.used == [{"name": "a", "key": entries[0][1][:12], "from_cache": True}]


def test_a_url_needs_a_pinned_checksum_and_a_substituted_file_is_refused(packed, server, tmp_path):
    path, _, _ = packed
    with pytest.raises(BundleError, match="no sha256 pinned .* refusing to download"):
        open_bundle(f"{server}/{path.name}", download_dir=tmp_path / "dl", lock=tmp_path / "none.json")
    lock = tmp_path / "bundles.lock.json"
    lock.write_text(json.dumps({path.name: {"sha256": "0" * 64}}))
    assert pinned_sha256(path.name, lock) == "0" * 64
    with pytest.raises(BundleError, match=f"expected the pinned {'0' * 64}"):
        open_bundle(f"{server}/{path.name}", download_dir=tmp_path / "dl", lock=lock, progress=False)
    with pytest.raises(BundleError, match="expected the pinned"):
        open_bundle(path, lock=lock)  # a local file with a pin is checked too


def test_a_corrupt_bundle_names_the_file_and_checksum_and_leaves_the_cache(packed, tmp_path):
    path, _, entries = packed
    target = WeightCache(tmp_path / "cache")
    target.root.mkdir()
    (target.root / "kept.pt").write_bytes(b"an entry already there")
    before = _files(target.root)
    data = bytearray(path.read_bytes())
    with tarfile.open(path) as tar:
        member = tar.getmember(Bundle(path).entries[entries[1][1]].file)
    data[member.offset_data + 100] ^= 0xFF  # one flipped byte inside entry "b"
    bad = tmp_path / "corrupt.tar"
    bad.write_bytes(bytes(data))
    expected = Bundle(bad).entries[entries[1][1]].sha256
    with pytest.raises(BundleError, match=f"models/b-{entries[1][1][:12]}.pt is corrupt: .* expected {expected}"):
        Bundle(bad).install(target)
    assert _files(target.root) == before and not list(target.root.glob(".bundle-*"))


def test_a_truncated_bundle_is_an_error_and_leaves_the_cache(packed, tmp_path):
    path, _, _ = packed
    target = WeightCache(tmp_path / "cache")
    short = tmp_path / "truncated.tar"
    short.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(BundleError, match="truncated|corrupt"):
        Bundle(short).install(target)
    assert _files(target.root) == {}
    short.write_bytes(path.read_bytes()[:300])  # not even the manifest
    with pytest.raises(BundleError, match="not a readable weight bundle"):
        Bundle(short)


def test_a_missing_entry_cannot_be_packed(tmp_path):
    with pytest.raises(BundleError, match="cannot pack a: .* train it first"):
        pack_bundle([("a", "0" * 64, CFGS["a"], TRAIN, "d")], tmp_path / "x.tar", profile="test",
                    cache=WeightCache(tmp_path / "none"))
    assert not (tmp_path / "x.tar").exists()


def test_the_environment_fills_a_missing_entry_from_the_bundle(packed, tmp_path, monkeypatch):
    path, _, entries = packed
    monkeypatch.setenv("TVAE_WEIGHTS", str(path))
    monkeypatch.setenv("TVAE_CACHE_DIR", str(tmp_path / "empty"))
    ctx = RunContext.from_env()
    r = fit(CFGS["b"], X, TRAIN, data_id="d", name="b", progress=False, ctx=ctx)
    assert r.from_cache and (tmp_path / "empty" / f"b-{entries[1][1][:12]}.pt").is_file()
    other = fit(CFGS["b"], X, TrainConfig(steps=6, batch_size=8, optimizer="adam"), data_id="d", name="b",
                progress=False, ctx=ctx)
    assert not other.from_cache  # another key: not in the bundle, trained


@pytest.mark.timeout(900)
def test_a_chapter_from_an_empty_cache_with_the_bundle_trains_nothing(smoke_run, tmp_path):
    """Chapter 3 (smoke) packed from the session's smoke run, then run again from an empty weight cache with
    ``TVAE_WEIGHTS``: every model comes from the bundle and every enforced claim passes."""
    from conftest import run_chapter_once
    from tvae_book import chapters as bk, execute
    from tvae_experiments.plan import training_plan

    chapter = next(c for c in smoke_run.chapters if c.name == "03_tvae_torus")
    run_chapter_once(chapter, smoke_run)  # trains (or already trained) its models into the default cache
    jobs = training_plan("smoke", chapters=["03_tvae_torus"])
    bundle = pack_bundle([(j.name, j.key, j.model, j.train, j.data_id) for j in jobs], tmp_path / "b.tar",
                         profile="smoke")
    empty = tmp_path / "empty"
    with bk.environment(TVAE_WEIGHTS=str(bundle), TVAE_CACHE_DIR=str(empty)):
        results, failures = execute.run_chapters([chapter], bk.RunConfig("smoke"), tmp_path / "out", timeout=600)
    assert failures == [] and results[0].status == "ran"
    metrics = json.loads((tmp_path / "out" / "03_tvae_torus.json").read_text())
    assert metrics["all_passed"] is True
    assert sorted((m["name"], m["from_cache"]) for m in metrics["models"]) == sorted((j.name, True) for j in jobs)
    assert sorted(p.name for p in empty.glob("*.pt")) == sorted(j.path(empty).name for j in jobs)
