"""The cache keys of the cpu profile's trained models, pinned.

``_cache/models`` holds weights that took hours to train; they are found by
:func:`tvae_experiments.train.cache_key` over (model config, training config, data identity).
Any change to a config's ``to_dict`` (a new field not left out at its default, a renamed one),
to ``TrainConfig`` or to the key's format silently orphans them and retrains everything, so these
hashes (computed by the code that trained the cached models, data identity ``"DATA"``) must not
move.  If a change is meant to retrain, update them on purpose.
"""
import pytest

from tvae_experiments import config_for
from tvae_experiments.graphvae import graph_data_id
from tvae_experiments.train import cache_key

PINNED = {
    "03 tvae": "b068bb547a3c1fe2b124fc8791a11cc4668cf8f7e531f605015d93818067d9d1",
    "03 vae": "73b8bca47309ac002d3183a7ab51a89adf7c19c7ada66e9b17b7673916d1aed8",
    "04 mnist tvae L=S/3": "728b16ca3edea79578df7e036ce330ad6c903442f5ffe443ea0b7f595b51670b",
    "04 mnist vae": "d9ec6e429f8d42931dd38ddcdf40897a0b4008484f6e79098c32090fea009b70",
    "04 dsprites tvae L=S/3": "b26d5c32f82037e602ed321156dad4b5760f0ea80732ff25954dcb4ac0600ef8",
    "06 graph vae": "d36c6d1769eeaafda233a5783188657b2e4663d6d1785964ade02aecd92b5563",
}


def _key(which: str) -> str:
    if which.startswith("03"):
        c = config_for("03_tvae_torus", "cpu")
        return cache_key(c.model(which.split()[1]), c.train(0), "DATA")
    if which.startswith("04"):
        _, ds, variant, *_ = which.split()
        d = getattr(config_for("04_capsules", "cpu"), ds)
        return cache_key(d.model(variant, d.L_of(1 / 3)), d.train(0), "DATA")
    c = config_for("06_invariant_graphs", "cpu")
    return cache_key(c.model(), c.train(0), graph_data_id("DATA"))


@pytest.mark.parametrize("which", list(PINNED))
def test_cpu_profile_cache_keys_are_unchanged(which):
    assert _key(which) == PINNED[which], f"the cache key of the cpu profile's {which} model changed"
