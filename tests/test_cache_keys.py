"""The cache keys of the cpu profile's trained models, pinned.

``_cache/models`` holds weights that took hours to train; they are found by
:func:`tvae_experiments.train.cache_key` over (model config, training config, data identity).
Any change to a config's fields, to ``TrainConfig`` or to the key's format orphans them (the run
names the stale files once and retrains), so these hashes (data identity ``"DATA"``) must not move
by accident.  A change meant to retrain bumps :data:`~tvae_experiments.weights.CACHE_FORMAT` and
updates them on purpose.
"""
from dataclasses import replace

import pytest

from tvae_experiments import config_for
from tvae_experiments.graphvae import graph_data_id
from tvae_experiments.train import cache_key

PINNED = {  # cache format 2: every config field is in the key
    "03 tvae": "c7e21ab9bedef3fc546959afff268b9ece215e4149a3d847ab0b8669fce57c75",
    "03 vae": "62581e0e742eb8d24467bba9fb5cc24b4b260cd5220c551c74b5152fb7183352",
    "04 mnist tvae L=S/3": "fddff6e17f6b1ed42f284e48b4626afabb6dc166cb721c4bcd151d67f81e5c5b",
    "04 mnist vae": "5b53642774202099ebeb0a62f1afadad8cd546ac756ca101951401a5942a29b3",
    "04 dsprites tvae L=S/3": "399854c889bea444d6e96fedfea270415c3123b444997ff904ed86b05d9ef6ae",
    "06 graph vae": "6af63ffd91b7b57da84623631957f4f202b8adb98c601ca9bcc7bea6950a8a8b",
}


def _key(which: str, **train) -> str:
    if which.startswith("03"):
        c = config_for("03_tvae_torus", "cpu")
        return cache_key(c.model(which.split()[1]), replace(c.train(0), **train), "DATA")
    if which.startswith("04"):
        _, ds, variant, *_ = which.split()
        d = getattr(config_for("04_capsules", "cpu"), ds)
        return cache_key(d.model(variant, d.L_of(1 / 3)), replace(d.train(0), **train), "DATA")
    c = config_for("06_invariant_graphs", "cpu")
    return cache_key(c.model(), replace(c.train(0), **train), graph_data_id("DATA"))


@pytest.mark.parametrize("which", list(PINNED))
def test_cpu_profile_cache_keys_are_unchanged(which):
    assert _key(which) == PINNED[which], f"the cache key of the cpu profile's {which} model changed"


def _changed(value):
    """A different valid value of a config field (for the every-field test)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, tuple):
        return value + value[-1:]
    return None


def test_every_config_field_is_in_the_key():
    """Format 2 leaves no field out: changing any field of the model or training config changes the key."""
    from dataclasses import fields

    from tvae_core.models import ModelConfig
    from tvae_experiments.train import TrainConfig

    base_m, base_t = ModelConfig(), TrainConfig(steps=10)
    key = cache_key(base_m, base_t, "D")
    strings = {"kind": "vae", "topography": "capsules", "mode": "stationary", "window": "centered", "band": "code",
               "time_boundary": "zero", "capsule_boundary": "zero", "roll": "linear", "optimizer": "adam",
               "augment": "rotation", "loss": "frame"}
    changed = 0
    for cfg, other in ((base_m, base_t), (base_t, base_m)):
        for f in fields(cfg):
            new = strings.get(f.name, _changed(getattr(cfg, f.name)))
            if f.name in ("alpha",):
                new = 0.5
            if f.name == "grad_clip":
                new = 1.0
            try:
                varied = replace(cfg, **{f.name: new})
            except ValueError:  # a value this field's neighbours refuse: still part of the key's dict
                assert f.name in cfg.to_dict(), f.name
                continue
            pair = (varied, other) if cfg is base_m else (other, varied)
            assert cache_key(*pair, "D") != key, f"{type(cfg).__name__}.{f.name} is not in the cache key"
            changed += 1
    assert changed >= 25
    assert cache_key(base_m, base_t, "E") != key
