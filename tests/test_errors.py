"""Every argument check of ``tvae_core`` raises an error that names the parameter, the value and
what is allowed -- and accepts the boundary value it allows.

Written against the mutation run (``make mutate``): a mutant that renames the parameter in a
message (``"t"`` -> ``"XXtXX"``, ``None``, ``"T"``), drops a check or moves a bound (``minimum=1``
-> ``2``) survived every other test.  Messages are matched literally and case-sensitively.
"""
from __future__ import annotations

import re

import pytest
import torch

from tvae_core import invariance as inv
from tvae_core import metrics as met
from tvae_core.roll import partial_roll as rl_partial, roll
from tvae_core import studentt as st
from tvae_core import topography as tp
from tvae_core.models import ModelConfig, VAE, log_likelihood_is

t7 = torch.randn(4, 7)      # 7 units: capsule_dim 3 does not divide it
t6 = torch.randn(4, 6)

# (what is called, the exception, the exact text its message must contain)
CASES = [
    # invariance
    (lambda: inv.quotient_distance_sn_bruteforce(torch.randn(2, 9), torch.randn(2, 9)), ValueError, "n must be <= 8, got 9"),
    (lambda: inv.quotient_distance_sn_bruteforce(torch.randn(2, 0), torch.randn(2, 0)), ValueError, "n must be >= 1, got 0"),
    (lambda: inv.quotient_distance_cyclic(t7, t7, 3), ValueError, "the last axis of t1;"),
    (lambda: inv.canonical_shift(t6, 3, statistic="median"), ValueError,
     "statistic='median' is not allowed; choose one of: 'energy', 'mean'"),
    (lambda: inv.canonical_shift(t7, 3), ValueError, "the last axis of t;"),
    (lambda: inv.fourier_modulus(t7, 3), ValueError, "the last axis of t;"),
    (lambda: inv.capsule_norms(t7, 3), ValueError, "the last axis of t;"),
    (lambda: inv.RandomInvariantProjection(2, 3, pool="sum"), ValueError,
     "pool='sum' is not allowed; choose one of: 'max', 'mean'"),
    (lambda: inv.knn_scores(t6, torch.zeros(4), t6, torch.zeros(4), task="ranking"), ValueError,
     "task='ranking' is not allowed; choose one of: 'classification', 'regression'"),
    # metrics
    (lambda: met.max_activating(t6, k=0), ValueError, "k must be >= 1, got 0"),
    (lambda: met.max_activating(t6, k=5), ValueError, "k must be <= 4, got 5"),
    (lambda: met.equivariance_error(torch.randn(2, 3, 6), 3, norm="l2"), ValueError,
     "norm='l2' is not allowed; choose one of: 'capsule', 'vector'"),
    (lambda: met.equivariance_error(torch.randn(2, 3, 7), 3), ValueError, "the last axis of t;"),
    (lambda: met.capsule_roll(t7, t7, 3), ValueError, "the last axis of t_a;"),
    # models
    (lambda: ModelConfig(kind="ae"), ValueError, "kind='ae' is not allowed; choose one of: 'tvae', 'vae'"),
    (lambda: ModelConfig(topography="grid"), ValueError, "topography='grid' is not allowed"),
    (lambda: ModelConfig(band="wide"), ValueError, "band='wide' is not allowed; choose one of: 'full', 'code'"),
    (lambda: ModelConfig(in_dim=0), ValueError, "in_dim must be >= 1, got 0"),
    # roll
    (lambda: roll(t7, 1, 3), ValueError, "the last axis of x;"),
    # Student-t / TPoT samplers
    (lambda: st.sample_pot(0, 2, 3), ValueError, "num_samples must be >= 1, got 0"),
    (lambda: st.sample_pot(5, 0, 3), ValueError, "n must be >= 1, got 0"),
    (lambda: st.sample_pot(5, 2, 0), ValueError, "nu must be >= 1, got 0"),
    (lambda: st.sample_tpot(0, tp.CapsuleTopography(1, 3, 1)), ValueError, "num_samples must be >= 1, got 0"),
    # topographies
    (lambda: tp.window_offsets(0), ValueError, "K must be >= 1, got 0"),
    (lambda: tp.box_sum(t6, -1, 3, boundary="reflect"), ValueError, "boundary='reflect' is not allowed"),
    (lambda: tp.CapsuleTopography(0, 3), ValueError, "n_caps must be >= 1, got 0"),
    (lambda: tp.CapsuleTopography(2, 0, 1), ValueError, "capsule_dim must be >= 1, got 0"),
    (lambda: tp.CapsuleTopography(2, 3, 4), ValueError, "K must be <= 3, got 4"),
    (lambda: tp.CapsuleTopography(2, 3, 0), ValueError, "K must be >= 1, got 0"),
    (lambda: tp.TorusTopography(0), ValueError, "side must be >= 1, got 0"),
    (lambda: tp.TorusTopography(3, K=4), ValueError, "K must be <= 3, got 4"),
    (lambda: tp.TorusTopography(3, K=0), ValueError, "K must be >= 1, got 0"),
    (lambda: tp.TemporalTopography(0, 3), ValueError, "n_caps must be >= 1, got 0"),
    (lambda: tp.TemporalTopography(2, 0), ValueError, "capsule_dim must be >= 1, got 0"),
    (lambda: tp.TemporalTopography(2, 3, K=4), ValueError, "K must be <= 3, got 4"),
    (lambda: tp.TemporalTopography(2, 3, K=0), ValueError, "K must be >= 1, got 0"),
    (lambda: tp.TemporalTopography(2, 3, mode="drift"), ValueError,
     "mode='drift' is not allowed; choose one of: 'shifting', 'stationary'"),
    (lambda: tp.TemporalTopography(2, 3, time_boundary="wrap"), ValueError, "time_boundary='wrap' is not allowed"),
    (lambda: tp.TemporalTopography(2, 3, window="backward"), ValueError, "window='backward' is not allowed"),
    (lambda: tp.TemporalTopography(2, 3, band="wide"), ValueError, "band='wide' is not allowed"),
    (lambda: tp.TemporalTopography(2, 3, L=-1), ValueError, "L=-1 is not allowed"),
    (lambda: tp.TemporalTopography(2, 3, L=0.5), ValueError, "L=0.5 is not allowed with window='centered'"),
    (lambda: tp.TemporalTopography(2, 3, L=0).dense(0), ValueError, "S must be >= 1, got 0"),
    (lambda: tp.CapsuleTopography(2, 3)(torch.randn(4, 5)), ValueError,
     "v has last axis of size 5, but this topography has n=6 units"),
    (lambda: tp.TorusTopography(3, 3)(torch.randn(4, 8)), ValueError,
     "v has last axis of size 8, but this topography has n=9 units"),
    (lambda: tp.TemporalTopography(2, 3)(torch.randn(4, 2, 7)), ValueError,
     "v has last axis of size 7, but this topography has n=6 units"),
    (lambda: tp.TemporalTopography(2, 3, window="forward").window_dense(), ValueError,
     "window_dense is Eq 7's centered form with the full band; use dense(S) for window='forward', band='full'"),
    (lambda: st.student_t(torch.randn(2, 3), torch.randn(2, 4, 5)), ValueError,
     "u must have shape (*z.shape, nu) = (2, 3, nu); got z (2, 3) and u (2, 4, 5)"),
    (lambda: tp.TemporalTopography(1, 3, L=3).dense(6), ValueError,
     "L=3 with window='centered' spans 7 frames but the sequence has S=6: with circular time frames would be "
     "counted twice; use L <= 2 (or time_boundary='zero')"),
    (lambda: tp.TemporalTopography(1, 3, L=4, window="forward").dense(6), ValueError,
     "L=4 with window='forward' spans 8 frames but the sequence has S=6"),
    (lambda: tp.TemporalTopography(1, 3, L=4, window="forward").dense(6), ValueError, "use L <= 3 (or"),
    (lambda: tp.TemporalTopography(1, 3, L=4).dense(7), ValueError, "S=7: with circular time frames would be "
     "counted twice; use L <= 3 (or"),                              # centred: 2L+1 <= S, odd S
    (lambda: rl_partial(torch.randn(2, 3), 1.5, 3), ValueError, "alpha=1.5 is not allowed; partial_roll needs 0 < alpha <= 1"),
]


@pytest.mark.parametrize("call,exc,text", CASES, ids=[c[2][:40] for c in CASES])
def test_bad_input_raises_naming_the_parameter(call, exc, text):
    with pytest.raises(exc, match=re.escape(text)):
        call()


def test_is_loglik_names_k():
    model = VAE(ModelConfig(kind="vae", in_dim=4, enc_hidden=(3,), dec_hidden=(3,), topography="capsules",
                            n_caps=1, capsule_dim=2, K=1))
    with pytest.raises(ValueError, match=re.escape("k must be >= 1, got 0")):
        log_likelihood_is(model, torch.rand(2, 4), k=0)
    assert log_likelihood_is(model, torch.rand(2, 4), k=1).shape == (2,)   # k = 1 is allowed


def test_the_smallest_allowed_values_are_accepted():
    """The lower bounds are the documented ones (a bound moved from 1 to 2 fails here)."""
    assert list(tp.window_offsets(1)) == [0]
    assert tp.CapsuleTopography(1, 1, 1).dense().shape == (1, 1)
    assert tp.TorusTopography(1, K=1).dense().shape == (1, 1)
    assert tp.TemporalTopography(1, 1, K=1, L=0).dense(1).shape == (1, 1)
    assert st.sample_pot(1, 1, 1, seed=0).t.shape == (1, 1)
    assert met.max_activating(t6, k=4).shape == (6, 4)
    assert inv.quotient_distance_sn_bruteforce(torch.randn(2, 8), torch.randn(2, 8)).shape == (2,)
    assert inv.quotient_distance_sn_bruteforce(torch.randn(2, 1), torch.randn(2, 1)).shape == (2,)
    assert ModelConfig(in_dim=1, side=2, K=1).in_dim == 1
