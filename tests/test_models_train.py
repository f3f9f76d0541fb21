"""TVAE / VAE: ELBO parts, weight norm, gradient check, IS log-likelihood; fit(): cache, NaN guard."""
import math

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


def test_conv_encoder_shapes_errors_and_unchanged_cache_keys():
    from tvae_core.models import ConvGaussianEncoder

    cfg = ModelConfig(kind="tvae", in_dim=32 * 32, enc_hidden=(16,), dec_hidden=(16,), topography="temporal",
                      n_caps=2, capsule_dim=5, K=1, L=1, encoder="conv", in_shape=(1, 32, 32))
    m = build_model(cfg)
    assert isinstance(m.enc_z, ConvGaussianEncoder)
    x = torch.rand(3, 5, 32 * 32)
    assert m.encode(x).shape == (3, 5, 10)
    assert torch.isfinite(m(x).elbo).all()
    # a frame's code depends on that frame only (the CNN runs per frame)
    x2 = x.clone()
    x2[:, 2] = torch.rand(3, 32 * 32)
    zm, _ = m.enc_z(x)
    zm2, _ = m.enc_z(x2)
    assert torch.equal(zm[:, [0, 1, 3, 4]], zm2[:, [0, 1, 3, 4]]) and not torch.equal(zm[:, 2], zm2[:, 2])
    with pytest.raises(ValueError, match=r"in_shape=\(C, H, W\) with C\*H\*W == in_dim=1024"):
        ModelConfig(in_dim=1024, encoder="conv", in_shape=(1, 16, 16))
    with pytest.raises(ValueError, match="encoder='rnn' is not allowed"):
        ModelConfig(encoder="rnn")
    # defaults are left out of the cache key: models cached before the field existed keep their keys
    assert "encoder" not in ModelConfig().to_dict() and "in_shape" not in ModelConfig().to_dict()
    assert cfg.to_dict()["encoder"] == "conv" and cfg.to_dict()["in_shape"] == (1, 32, 32)


def test_kl_warmup_lets_the_code_carry_more_information_and_keeps_old_keys(digits, tmp_path):
    """With the KL weight still near 0 (warm-up over 10^6 steps) the encoder is free to use the
    code: after the same 40 steps its KL is far above the KL of the plain ELBO run."""
    from dataclasses import asdict

    from tvae_experiments.train import cache_key

    cfg = ModelConfig(kind="vae", weight_norm=False, **SMALL)
    plain = TrainConfig(epochs=1, batch_size=32, optimizer="adam", lr=3e-3, steps=40)
    warm = TrainConfig(epochs=1, batch_size=32, optimizer="adam", lr=3e-3, steps=40, kl_warmup=10**6)
    kl = {}
    for name, tc in (("plain", plain), ("warm", warm)):
        r = fit(cfg, digits.train_x, tc, cache_dir=tmp_path / name, progress=False)
        kl[name] = r.history[-1]["kl_z"]
    assert kl["warm"] > 1.5 * kl["plain"], kl
    # kl_warmup=0 (the default) is left out of the key: models cached before the field existed keep theirs
    late = ("kl_warmup", "coherence_warmup")
    assert plain.to_dict() == {k: v for k, v in asdict(plain).items() if k not in late}
    assert cache_key(cfg, plain, "d") != cache_key(cfg, warm, "d")
    with pytest.raises(ValueError, match="kl_warmup"):
        TrainConfig(kl_warmup=-1)


def test_conv_decoder_shapes_locality_errors_and_unchanged_cache_keys():
    from tvae_core.models import ConvBernoulliDecoder

    cfg = ModelConfig(kind="tvae", in_dim=32 * 32, enc_hidden=(16,), dec_hidden=(16,), topography="temporal",
                      n_caps=2, capsule_dim=5, K=1, L=1, decoder="conv", in_shape=(1, 32, 32), decoder_norm=True)
    m = build_model(cfg)
    assert isinstance(m.dec, ConvBernoulliDecoder)
    x = torch.rand(3, 5, 32 * 32)
    t = m.encode(x)
    assert m.decode(t).shape == (3, 5, 32 * 32) and torch.isfinite(m(x).elbo).all()
    # each frame is decoded from its own code only
    t2 = t.clone()
    t2[:, 1] += torch.randn(3, 10)
    a, b = m.decode(t), m.decode(t2)
    assert torch.equal(a[:, [0, 2, 3, 4]], b[:, [0, 2, 3, 4]]) and not torch.equal(a[:, 1], b[:, 1])
    with pytest.raises(ValueError, match="decoder='conv' needs frames .* multiples of 16"):
        ModelConfig(in_dim=3 * 28 * 28, decoder="conv", in_shape=(3, 28, 28))
    with pytest.raises(ValueError, match="decoder='gan' is not allowed"):
        ModelConfig(decoder="gan")
    assert "decoder" not in ModelConfig().to_dict() and cfg.to_dict()["decoder"] == "conv"


def test_coherence_warmup_starts_frame_local_and_ends_at_eq9(tmp_path):
    from tvae_experiments.train import coherence_at

    assert [coherence_at(s, 100) for s in (0, 49, 50, 75, 100, 500)] == [0.0, 0.0, 0.0, 0.5, 1.0, 1.0]
    assert coherence_at(0, 0) == 1.0
    cfg = ModelConfig(kind="tvae", in_dim=20, enc_hidden=(8,), dec_hidden=(8,), topography="temporal",
                      n_caps=2, capsule_dim=5, K=1, L=2, mode="shifting")
    m = build_model(cfg)
    u2 = torch.rand(3, 5, 10)
    torch.testing.assert_close(m.pooled(u2), m.topo(u2))  # default: Eq 9
    m.coherence = 0.0
    # alpha = 0: frame l's code sees frame l only (times the window length 2L = 4)
    torch.testing.assert_close(m.pooled(u2), 4 * u2)
    x = torch.rand(3, 5, 20)
    z, _, u, _ = m.posterior(x)
    u_changed = u.clone()
    u_changed[:, 3] += 1.0
    assert torch.equal(m.to_t(z, u)[:, [0, 1, 2, 4]], m.to_t(z, u_changed)[:, [0, 1, 2, 4]])
    m.coherence = 1.0
    assert not torch.equal(m.to_t(z, u)[:, 2], m.to_t(z, u_changed)[:, 2])  # Eq 9: frame 2 sees frame 3
    # training with a warm-up returns the Eq-9 model, and the option leaves old cache keys alone
    seqs = torch.rand(16, 5, 20).round()
    r = fit(cfg, seqs, TrainConfig(epochs=1, batch_size=4, optimizer="adam", steps=6, coherence_warmup=4),
            cache_dir=tmp_path, progress=False)
    assert r.model.coherence == 1.0
    assert "coherence_warmup" not in TrainConfig().to_dict()
