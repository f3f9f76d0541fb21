"""The cache keys of the cpu profile's trained models, pinned.

``_cache/models`` holds weights that took hours to train; they are found by
:func:`tvae_experiments.train.cache_key` over (model config, training config, data identity).
Any change to a config's ``to_dict`` (a new field not left out at its default, a renamed one),
to ``TrainConfig`` or to the key's format silently orphans them and retrains everything, so these
hashes (computed by the code that trained the cached models, data identity ``"DATA"``) must not
move.  If a change is meant to retrain, update them on purpose.
"""
from dataclasses import replace

import pytest

from tvae_experiments import config_for
from tvae_experiments.graphvae import graph_data_id
from tvae_experiments.train import cache_key

PINNED = {  # TrainConfig.adam="fused" (the default) is in these keys: a change of Adam's implementation retrains
    "03 tvae": "d2a3cc6a84b202a5f3c1c7e5143a8663c7983773a880f328e802acdd63202431",
    "03 vae": "0d940cf4e05a0f32203dd607a423032037dd56333abd7e93f0266472c1fdb587",
    "04 mnist tvae L=S/3": "91179968df0bc04fbd29745a3ad8ee3bc18137fb8c5f61e1308687e31cf0fbcc",
    "04 mnist vae": "aeb91198d5169c3ca8388fa0263ef795dc8fdb2f39a59b056978a862e251d1d9",
    "04 dsprites tvae L=S/3": "01c762456a2698154d033cef4166804d4d407497c9eba2798b424fc1997f005c",
    "06 graph vae": "1baeff5fa4417aa0dd8b47ae2cacaf9809d396b44416764ee91f88727f3be941",
}

PINNED_LOOP_ADAM = {  # adam="loop" (torch's for-loop Adam) must still find the models cached with it
    "03 tvae": "b068bb547a3c1fe2b124fc8791a11cc4668cf8f7e531f605015d93818067d9d1",
    "03 vae": "73b8bca47309ac002d3183a7ab51a89adf7c19c7ada66e9b17b7673916d1aed8",
    "04 mnist tvae L=S/3": "728b16ca3edea79578df7e036ce330ad6c903442f5ffe443ea0b7f595b51670b",
    "04 mnist vae": "d9ec6e429f8d42931dd38ddcdf40897a0b4008484f6e79098c32090fea009b70",
    "04 dsprites tvae L=S/3": "b26d5c32f82037e602ed321156dad4b5760f0ea80732ff25954dcb4ac0600ef8",
    "06 graph vae": "d36c6d1769eeaafda233a5783188657b2e4663d6d1785964ade02aecd92b5563",
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


@pytest.mark.parametrize("which", list(PINNED_LOOP_ADAM))
def test_loop_adam_keeps_the_keys_of_the_models_cached_before(which):
    assert _key(which, adam="loop") == PINNED_LOOP_ADAM[which]


def test_adam_implementation_counts_only_for_adam():
    from tvae_experiments.train import TrainConfig

    sgd = TrainConfig(optimizer="sgd")
    assert cache_key(config_for("06_invariant_graphs", "cpu").model(), sgd, "D") == \
        cache_key(config_for("06_invariant_graphs", "cpu").model(), replace(sgd, adam="loop"), "D")
    with pytest.raises(ValueError, match="adam"):
        TrainConfig(adam="foreach")
