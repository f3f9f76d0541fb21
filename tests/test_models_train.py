"""TVAE / VAE: ELBO parts, weight norm, gradient check, IS log-likelihood; fit(): cache, NaN guard."""
import math

import numpy as np
import pytest
import torch

from tvae_experiments.data.mnist import mnist
from tvae_core.models import TVAE, VAE, ModelConfig, build_model, log_likelihood_is
from tvae_core.studentt import tpot
from tvae_experiments.train import TrainConfig, TrainingDiverged, fit

SMALL = dict(in_dim=784, enc_hidden=(32,), dec_hidden=(32,), side=4, K=3)


@pytest.fixture(scope="module")
def digits():
    return mnist(None, seed=0, n_train=256, n_test=128, verbose=False)


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    cfg = ModelConfig(kind="tvae", mu_init=1.0, **SMALL)
    return fit(cfg, digits.train_x, TrainConfig(epochs=30, batch_size=32, optimizer="adam", lr=3e-3),
               data_id=digits.fingerprint(), cache_dir=tmp_path_factory.mktemp("c"), progress=False).model


def test_elbo_parts_shapes_and_signs():
    for kind in ("tvae", "vae"):
        m = build_model(ModelConfig(kind=kind, **SMALL))
        p = m(torch.rand(5, 784))
        assert p.recon.shape == p.kl_z.shape == p.kl_u.shape == (5,)
        assert (p.kl_z >= 0).all() and (p.kl_u >= 0).all() and (p.recon <= 0).all()
        torch.testing.assert_close(p.elbo, p.recon - p.kl_z - p.kl_u)


def test_sequence_input_with_temporal_topography():
    cfg = ModelConfig(kind="tvae", in_dim=16, enc_hidden=(8,), dec_hidden=(8,), topography="temporal",
                      n_caps=2, capsule_dim=4, K=1, L=1)
    p = TVAE(cfg)(torch.rand(3, 4, 16))  # (B, S, P)
    assert p.recon.shape == (3,)


def test_weight_norm_only_where_asked():
    tv = TVAE(ModelConfig(kind="tvae", weight_norm=True, **SMALL))
    va = VAE(ModelConfig(kind="vae", weight_norm=False, **SMALL))
    assert any("parametrizations" in n for n, _ in tv.named_parameters())
    assert not any("parametrizations" in n for n, _ in va.named_parameters())


def _row_norms(model):
    return torch.cat([m.weight.norm(dim=1) for m in model.modules() if isinstance(m, torch.nn.Linear)])


def test_pgd_keeps_every_row_on_the_unit_sphere_through_training(digits, monkeypatch):
    """A.8's projected gradient descent: rows ||w_i|| = 1 when built and after every fit() step; the
    projection is the training loop's job: with it switched off the same steps move the norms off 1."""
    from tvae_core.models import ProjectedLinear, project_weights_
    from tvae_experiments import train as train_module

    cfg = ModelConfig(kind="tvae", weight_norm=False, pgd=True, **SMALL)
    m = build_model(cfg)
    assert sum(isinstance(x, ProjectedLinear) for x in m.modules()) == 6  # 2 encoders + decoder, 2 layers each
    torch.testing.assert_close(_row_norms(m), torch.ones(len(_row_norms(m))))
    tc = TrainConfig(steps=5, batch_size=32, optimizer="adam", lr=1e-2)
    trained = fit(cfg, digits.train_x, tc, use_cache=False, progress=False).model
    torch.testing.assert_close(_row_norms(trained), torch.ones(len(_row_norms(trained))))
    monkeypatch.setattr(train_module, "project_weights_", lambda model: 0)  # the loop without its projection
    drifted = fit(cfg, digits.train_x, tc, use_cache=False, progress=False).model
    assert (_row_norms(drifted) - 1).abs().max() > 1e-3
    assert project_weights_(drifted) == 6
    torch.testing.assert_close(_row_norms(drifted), torch.ones(len(_row_norms(drifted))))
    assert project_weights_(build_model(ModelConfig(kind="tvae", weight_norm=False, **SMALL))) == 0


def test_pgd_and_weight_norm_exclude_each_other():
    with pytest.raises(ValueError, match="weight_norm=True and pgd=True"):
        ModelConfig(kind="tvae", weight_norm=True, pgd=True, **SMALL)
    assert ModelConfig(kind="tvae", **SMALL).to_dict()["pgd"] is False
    assert ModelConfig(kind="tvae", weight_norm=False, pgd=True, **SMALL).to_dict()["pgd"] is True


def test_gradcheck_tpot_and_tvae_code():
    z = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    u = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    W = torch.eye(8, dtype=torch.float64) + torch.roll(torch.eye(8, dtype=torch.float64), 1, 1)
    assert torch.autograd.gradcheck(lambda z, u: tpot(z, u, W, 0.3), (z, u))
    m = TVAE(ModelConfig(kind="tvae", **SMALL)).double()
    z2 = torch.randn(2, 16, dtype=torch.float64, requires_grad=True)
    u2 = torch.randn(2, 16, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m.to_t, (z2, u2))


def test_is_loglik_bounds_elbo_and_grows_with_k(trained, digits):
    x = digits.test_x[:96]
    torch.manual_seed(0)
    elbo = torch.stack([trained(x).elbo for _ in range(20)]).mean(0)  # (N,) averaged over noise
    torch.manual_seed(1)
    ll = {k: log_likelihood_is(trained, x, k).mean().item() for k in (1, 10, 100)}
    assert abs(ll[1] - elbo.mean().item()) < 2.0  # K=1 is the ELBO
    assert ll[10] >= elbo.mean().item() and ll[100] >= ll[10] - 0.1 and ll[100] > ll[1]


def test_fit_learns(trained, digits):
    untrained = build_model(trained.cfg)
    with torch.no_grad():
        assert trained(digits.test_x).elbo.mean() > untrained(digits.test_x).elbo.mean() + 100


def test_fit_cache_hit_corruption_and_determinism(digits, tmp_path, capsys):
    cfg, tc = ModelConfig(kind="vae", weight_norm=False, **SMALL), TrainConfig(epochs=2, batch_size=64, optimizer="adam")
    x = digits.train_x[:128]
    a = fit(cfg, x, tc, data_id="d", cache_dir=tmp_path, progress=False)
    assert not a.from_cache and a.path.exists()
    b = fit(cfg, x, tc, data_id="d", cache_dir=tmp_path, progress=False)
    assert b.from_cache and all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
    c = fit(cfg, x, tc, data_id="d", cache_dir=tmp_path, progress=False, use_cache=False)  # retrain: same seed
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), c.model.parameters()))
    a.path.write_bytes(b"not a checkpoint")
    d = fit(cfg, x, tc, data_id="d", cache_dir=tmp_path, progress=False)
    assert not d.from_cache and "unusable" in capsys.readouterr().out
    assert fit(cfg, x, tc, data_id="d", cache_dir=tmp_path, progress=False).from_cache  # rewritten
    other = fit(cfg, x, TrainConfig(epochs=2, batch_size=64, optimizer="adam", seed=1), data_id="d",
                cache_dir=tmp_path, progress=False)
    assert not other.from_cache and other.path != a.path


def test_cache_written_for_other_config_is_rejected(digits, tmp_path, capsys):
    cfg, tc = ModelConfig(kind="vae", weight_norm=False, **SMALL), TrainConfig(epochs=1, batch_size=64)
    a = fit(cfg, digits.train_x[:64], tc, data_id="d", cache_dir=tmp_path, progress=False)
    blob = torch.load(a.path, weights_only=True)
    blob["key"] = "something else"
    torch.save(blob, a.path)
    assert not fit(cfg, digits.train_x[:64], tc, data_id="d", cache_dir=tmp_path, progress=False).from_cache
    assert "different configuration" in capsys.readouterr().out


def test_nan_guard_names_the_step(tmp_path):
    x = torch.rand(64, 784)
    x[5, 3] = math.nan
    with pytest.raises(TrainingDiverged, match=r"at step 0 \(epoch 0\)"):
        fit(ModelConfig(kind="vae", **SMALL), x, TrainConfig(epochs=1, batch_size=64), cache_dir=tmp_path, progress=False)


def test_bad_config_values_raise():
    with pytest.raises(ValueError, match="kind='gan' is not allowed"):
        ModelConfig(kind="gan")
    with pytest.raises(ValueError, match="optimizer='rmsprop' is not allowed; choose one of: 'sgd', 'adam'"):
        TrainConfig(optimizer="rmsprop")


def test_steps_override_epochs(digits, tmp_path):
    cfg = ModelConfig(kind="vae", weight_norm=False, **SMALL)
    r = fit(cfg, digits.train_x[:100], TrainConfig(epochs=50, batch_size=32, steps=7), cache_dir=tmp_path,
            progress=False)
    assert len(r.history) == 3  # 3 steps per epoch: 3 + 3 + 1
    with pytest.raises(ValueError, match="batch_size=32 is larger"):
        fit(cfg, digits.train_x[:10], TrainConfig(batch_size=32), cache_dir=tmp_path, progress=False)


def test_decoder_standardisation_commutes_with_roll():
    from tvae_core import roll
    cfg = ModelConfig(kind="tvae", in_dim=20, enc_hidden=(8,), dec_hidden=(8,), topography="capsules",
                      n_caps=3, capsule_dim=4, K=1, decoder_norm=True)
    dec = TVAE(cfg).dec
    t = torch.randn(5, 12) * 3 + 7
    std = (t - t.mean(-1, keepdim=True)) / t.std(-1, keepdim=True)
    torch.testing.assert_close(dec.net(std), dec(t), atol=1e-4, rtol=1e-4)
    rolled = roll(t, 2, 4)
    torch.testing.assert_close(dec.net(roll(std, 2, 4)), dec(rolled), atol=1e-4, rtol=1e-4)


def test_uint8_training_data_gives_the_same_model_as_its_float_version(tmp_path):
    """fit() rescales uint8 batches: the same training run as on x/255 in float32."""
    from tvae_experiments.data.sequences import SequenceData

    g = torch.Generator().manual_seed(0)
    x8 = torch.randint(0, 256, (64, 784), generator=g, dtype=torch.uint8)
    cfg, tc = ModelConfig(kind="vae", weight_norm=False, **SMALL), TrainConfig(epochs=1, batch_size=16)
    a = fit(cfg, x8, tc, cache_dir=tmp_path / "a", progress=False)
    b = fit(cfg, x8.float() / 255, tc, cache_dir=tmp_path / "b", progress=False)
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        torch.testing.assert_close(va, vb, msg=k)
    seq = SequenceData(x=torch.rand(3, 2, 4), frame_shape=(1, 2, 2), transform=torch.zeros(3, dtype=torch.long),
                       transforms=("x",), factor=torch.zeros(3, 2), step=torch.zeros(3, 2, dtype=torch.long),
                       canonical=torch.ones(3, 2, dtype=torch.bool), label=torch.zeros(3, dtype=torch.long), source="t")
    q = seq.as_uint8()
    assert q.x.dtype == torch.uint8 and q.x.element_size() * 4 == seq.x.element_size()
    assert (q.x.float() / 255 - seq.x).abs().max() <= 0.5 / 255 + 1e-7
    assert q.as_uint8() is q and "uint8" in q.source



def test_train_fields_are_in_the_key_and_checked():
    """Every training field enters the key (cache format 2), the ones added for the classifiers too."""
    from dataclasses import asdict

    from tvae_experiments.train import cache_key

    cfg, plain = ModelConfig(kind="vae", weight_norm=False, **SMALL), TrainConfig(steps=40)
    assert plain.to_dict() == asdict(plain)
    keys = {cache_key(cfg, tc, "d") for tc in (plain, TrainConfig(steps=40, weight_decay=1e-4),
                                                TrainConfig(steps=40, augment="rotation"), TrainConfig(steps=40, loss="frame"))}
    assert len(keys) == 4
    with pytest.raises(ValueError, match="augment='flip' is not allowed"):
        TrainConfig(augment="flip")
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        TrainConfig(weight_decay=-1.0)


def test_evaluate_scales_uint8_like_fit():
    from tvae_experiments.train import evaluate

    m = build_model(ModelConfig(kind="vae", weight_norm=False, **SMALL))
    x8 = torch.randint(0, 256, (40, 784), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    a, b = evaluate(m, x8, batch_size=16, seed=3), evaluate(m, x8.float() / 255, batch_size=16, seed=3)
    assert a == pytest.approx(b, rel=1e-6, abs=1e-4) and a["recon"] > -784  # not uint8 read as 0..255 pixels


def test_sample_prior_is_the_tpot_sampler_with_the_learned_mu():
    from tvae_core.models import sample_prior
    from tvae_core.studentt import sample_tpot

    m = TVAE(ModelConfig(kind="tvae", mu_init=2.5, **SMALL))
    t = sample_prior(m, 500, seed=3)
    torch.testing.assert_close(t, sample_tpot(500, m.topo, mu=m.mu.detach(), seed=3).t)
    assert abs(t.median().item() + 2.5 / 3.0) < 0.5  # (z - mu)/sqrt(sum of 9 u^2): centred near -mu/3
    v = sample_prior(VAE(ModelConfig(kind="vae", **SMALL)), 2000, seed=0)
    assert v.shape == (2000, 16) and abs(v.std().item() - 1) < 0.05
    seq = TVAE(ModelConfig(kind="tvae", topography="temporal", n_caps=2, capsule_dim=4, K=1, L=1,
                           in_dim=784, enc_hidden=(8,), dec_hidden=(8,)))
    with pytest.raises(ValueError, match="sample_tpot"):
        sample_prior(seq, 4)


def test_frame_loss_gives_exactly_S_times_smaller_gradients():
    """loss="frame" (the authors' code: the negative ELBO averaged over batch x S frames) vs
    "sequence" (Eq 12 per sequence): same noise, gradients differ by exactly the factor S."""
    from tvae_experiments.train import objective

    S = 6
    cfg = ModelConfig(kind="tvae", in_dim=16, enc_hidden=(8,), dec_hidden=(8,), topography="temporal",
                      n_caps=2, capsule_dim=S, K=3, L=1)
    x = torch.rand(4, S, 16, generator=torch.Generator().manual_seed(0))
    grads, losses = {}, {}
    for loss in ("sequence", "frame"):
        torch.manual_seed(0)
        model = TVAE(cfg)
        torch.manual_seed(1)  # the same reparameterisation noise
        value, terms = objective(model, (x,), TrainConfig(loss=loss))
        value.backward()
        losses[loss] = value.item()
        grads[loss] = torch.cat([p.grad.flatten() for p in model.parameters()])
        assert terms["elbo"].item() == pytest.approx(-losses["sequence"], rel=1e-6)  # logged per sequence
    assert losses["sequence"] / losses["frame"] == pytest.approx(S, rel=1e-6)
    torch.testing.assert_close(grads["sequence"], S * grads["frame"], rtol=1e-5, atol=1e-7)
    assert (grads["sequence"].norm() / grads["frame"].norm()).item() == pytest.approx(S, rel=1e-5)


def test_frame_loss_needs_a_sequence_model(digits, tmp_path):
    with pytest.raises(ValueError, match="loss='frame'.*\\(B, S, P\\) sequences"):
        fit(ModelConfig(kind="vae", weight_norm=False, **SMALL), digits.train_x[:64],
            TrainConfig(steps=1, batch_size=32, loss="frame"), cache_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="loss='mean' is not allowed"):
        TrainConfig(loss="mean")


def test_a_cache_file_missing_fields_is_retrained_with_a_message(tmp_path, capsys):
    from tvae_experiments.train import cache_key, cache_path

    cfg, tc = ModelConfig(kind="vae", weight_norm=False, **SMALL), TrainConfig(epochs=1, batch_size=64, optimizer="adam")
    x = torch.rand(128, 784)
    first = fit(cfg, x, tc, data_id="d", cache_dir=tmp_path, progress=False)
    path = cache_path("model", cache_key(cfg, tc, "d"), tmp_path)
    blob = torch.load(path, weights_only=True)
    del blob["history"]
    torch.save(blob, path)  # the right key, an incomplete file
    again = fit(cfg, x, tc, data_id="d", cache_dir=tmp_path, progress=False)
    assert not again.from_cache and "lacks the field(s) history" in capsys.readouterr().out
    assert fit(cfg, x, tc, data_id="d", cache_dir=tmp_path, progress=False).from_cache  # rewritten whole
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()))


def test_evaluate_refuses_non_finite_results():
    from tvae_experiments.train import evaluate

    m = VAE(ModelConfig(kind="vae", weight_norm=False, **SMALL))
    x = torch.rand(8, 784)
    x[3, 5] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite ELBO terms"):
        evaluate(m, x)


def test_an_interrupted_training_leaves_no_cache_file_and_the_next_run_trains(tmp_path):
    """SIGINT in the middle of fit: no partial or temporary file; a second run trains and caches."""
    import signal
    import subprocess
    import sys
    import time

    # the child restores Python's SIGINT handler: a shell that starts a job in the background (``cmd &``)
    # ignores SIGINT, children inherit that, and the training would then run its million steps
    script = f"""
import signal
signal.signal(signal.SIGINT, signal.default_int_handler)
import torch
from tvae_core.models import ModelConfig
from tvae_experiments.train import TrainConfig, fit
cfg = ModelConfig(kind="vae", weight_norm=False, in_dim=784, enc_hidden=(32,), dec_hidden=(32,), side=4, K=3)
steps = int(__import__("sys").argv[1])
print("training", flush=True)
r = fit(cfg, torch.rand(256, 784), TrainConfig(steps=steps, batch_size=32, optimizer="adam"), data_id="d",
        cache_dir={str(tmp_path)!r}, progress=False)
print("from_cache", r.from_cache, flush=True)
"""
    proc = subprocess.Popen([sys.executable, "-c", script, "1000000"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "training"
        time.sleep(3)  # well inside the million steps
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:  # never leave a million-step training behind
            proc.kill()
            proc.wait()
    assert proc.returncode != 0 and list(tmp_path.iterdir()) == []  # nothing written, not even a temporary
    done = subprocess.run([sys.executable, "-c", script, "20"], capture_output=True, text=True, timeout=120)
    assert "from_cache False" in done.stdout and len(list(tmp_path.glob("*.pt"))) == 1


def test_is_loglik_is_exact_when_the_decoder_ignores_z_and_q_is_the_prior():
    """p(x|z) = p(x) and q(z|x) = p(z): every importance weight is p(x), so the estimate equals
    log p(x) for every k (a missing -log k, or a wrong weight, shows at once)."""
    m = VAE(ModelConfig(kind="vae", weight_norm=False, **SMALL))
    b = torch.randn(784)
    m.enc_z.forward = lambda x: (torch.zeros(*x.shape[:-1], 16), torch.zeros(*x.shape[:-1], 16))
    m.decode = lambda z: b.expand(*z.shape[:-1], 784)
    x = (torch.rand(5, 784) > 0.5).float()
    exact = -torch.nn.functional.binary_cross_entropy_with_logits(b.expand_as(x), x, reduction="none").sum(-1)
    for k in (1, 7, 50):
        torch.testing.assert_close(log_likelihood_is(m, x, k), exact, rtol=1e-5, atol=1e-3)


def test_unit_effects_perturbs_one_unit_at_a_time():
    """A decoder that reads only unit 2: every other unit's effect is exactly 0."""
    from tvae_core.metrics import unit_effects

    m = VAE(ModelConfig(kind="vae", weight_norm=False, **SMALL))
    w = torch.randn(784)
    m.decode = lambda t: t[..., 2:3] * w
    eff = unit_effects(m, torch.rand(20, 784))
    assert eff.shape == (16, 784)
    assert eff[2].abs().sum() > 1.0
    assert torch.count_nonzero(torch.cat([eff[:2], eff[3:]])) == 0


@pytest.mark.parametrize("kind", ["vae", "tvae"])
def test_importance_weights_equal_scipy_densities_for_the_same_noise(kind):
    """log w = log p(x|t) + log p(z) [+ log p(u)] - log q(z|x) [- log q(u|x)] (Eq 10-11's densities,
    A.11's estimator) recomputed with scipy from the same Gaussian draws, for a posterior that is
    not the prior (a density with a wrong mean or scale argument shows here)."""
    from scipy.stats import norm

    torch.manual_seed(0)
    m = build_model(ModelConfig(kind=kind, weight_norm=False, **SMALL))
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))   # posterior means and log stds far from 0
    x = (torch.rand(3, 784) > 0.5).float()
    k = 4
    torch.manual_seed(1)
    with torch.no_grad():
        got = m.log_weights(x, k)                                     # (k, B)
        post = m.posterior(x) if kind == "tvae" else m.enc_z(x)
        torch.manual_seed(1)
        draws = [mean + torch.exp(ls) * torch.randn(k, *mean.shape) for mean, ls in zip(post[::2], post[1::2])]
        t = m.to_t(*draws) if kind == "tvae" else draws[0]
        log_px = -torch.nn.functional.binary_cross_entropy_with_logits(m.decode(t), x.expand(k, -1, -1),
                                                                        reduction="none").sum(-1)
    want = log_px.double().numpy()
    for v, mean, ls in zip(draws, post[::2], post[1::2]):
        v, mean, sd = v.double().numpy(), mean.double().numpy(), ls.exp().double().numpy()
        want = want + norm.logpdf(v).sum(-1) - norm.logpdf(v, mean, sd).sum(-1)
    assert float(post[1].abs().mean()) > 0.05 and float(post[0].abs().mean()) > 0.05   # q is not the prior
    np.testing.assert_allclose(got.double().numpy(), want, rtol=1e-4, atol=1e-2)
