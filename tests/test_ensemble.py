"""Ensembles (tvae_experiments.ensemble): K models trained in one batched step equal K separate trainings."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from tvae_core.models import ModelConfig
from tvae_experiments.ensemble import EXACT_RTOL, Member, ensemble_key, fit_ensemble, train_ensemble
from tvae_experiments.run import RunContext
from tvae_experiments.train import TrainConfig, TrainingDiverged, fit, train_loop
from tvae_experiments.weights import WeightCache

S, P, STEPS = 6, 36, 12


def capsules(L: float = 1, mode: str = "shifting", **kw) -> ModelConfig:
    base = dict(kind="tvae", in_dim=P, enc_hidden=(24,), dec_hidden=(24,), topography="temporal", n_caps=2,
                capsule_dim=S, K=3, L=L, mode=mode, mu_init=5.0)
    return ModelConfig(**{**base, **kw})


def recipe(seed: int, **kw) -> TrainConfig:
    return TrainConfig(**{**dict(batch_size=8, optimizer="sgd", lr=1e-3, seed=seed, loss="frame", steps=STEPS), **kw})


@pytest.fixture(scope="module")
def sequences() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return (torch.rand(40, S, P, generator=g) * 255).to(torch.uint8)  # uint8, as the capsule data are stored


def alone(member: Member, x: torch.Tensor, steps: int = STEPS) -> torch.nn.Module:
    torch.manual_seed(member.train.seed)
    model = member.model.build()
    train_loop(model, (x,), member.train, steps)
    return model


def rel_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max(((sa[k] - sb[k]).abs().max() / sa[k].abs().max().clamp_min(1e-12)).item() for k in sa)


CASES = {
    # different windows, modes and seeds in one ensemble; SGD, gradient clipping, per-frame loss
    "windows+clip": [Member("a", capsules(1), recipe(0, grad_clip=2.0)),
                     Member("b", capsules(1.5), recipe(1, grad_clip=2.0)),
                     Member("c", capsules(1, "stationary"), recipe(2, grad_clip=2.0))],
    # one decoder standardises its input, the other does not (no parameter differs)
    "decoder norms": [Member("d0", capsules(1, decoder_norm=True), recipe(0)),
                      Member("d1", capsules(1.5), recipe(1))],
    # A.8's projected gradient descent with Adam, per-sequence loss
    "pgd+adam": [Member("p0", capsules(1, weight_norm=False, pgd=True), recipe(0, optimizer="adam", loss="sequence")),
                 Member("p1", capsules(2, weight_norm=False, pgd=True), recipe(5, optimizer="adam", loss="sequence"))],
    # the VAE baseline (no u, no W), standardised decoder input
    "vae": [Member("v0", capsules(0, kind="vae", topography="capsules", weight_norm=False, decoder_norm=True),
                   recipe(0)),
            Member("v1", capsules(0, kind="vae", topography="capsules", weight_norm=False, decoder_norm=True),
                   recipe(1))],
}


@pytest.mark.parametrize("vectorized", [False, True], ids=["per-model", "vmap"])
@pytest.mark.parametrize("case", CASES)
def test_ensemble_equals_separate_trainings(case: str, vectorized: bool, sequences) -> None:
    """Per model (the CPU default): bit for bit.  Vectorized (batched matrix products, the GPU default):
    within EXACT_RTOL."""
    members = CASES[case]
    models, histories = train_ensemble(members, (sequences,), STEPS, device="cpu", vectorized=vectorized)
    for member, model, history in zip(members, models, histories):
        single = alone(member, sequences)
        if vectorized:
            assert rel_diff(single, model) < EXACT_RTOL, member.name
        else:
            assert rel_diff(single, model) == 0, member.name
        assert history[-1]["step"] == STEPS and history[-1]["elbo"] == pytest.approx(
            train_ensemble([member], (sequences,), STEPS, device="cpu")[1][0][-1]["elbo"], rel=1e-5)
    # the models really differ from each other (each its own seed, window, noise)
    assert rel_diff(models[0], models[1]) > 1e-2


@pytest.mark.parametrize("vectorized", [False, True], ids=["per-model", "vmap"])
def test_members_do_not_change_each_other(vectorized: bool, sequences) -> None:
    """A model's weights do not depend on which models share its ensemble (bit for bit on a CPU)."""
    a, b, c = CASES["windows+clip"]
    with_bc = train_ensemble([a, b, c], (sequences,), STEPS, device="cpu", vectorized=vectorized)[0][0]
    with_c = train_ensemble([c, a], (sequences,), STEPS, device="cpu", vectorized=vectorized)[0][1]
    for (name, x), (_, y) in zip(with_bc.state_dict().items(), with_c.state_dict().items()):
        assert torch.equal(x, y), name


def test_a_broken_ensemble_is_noticed(sequences) -> None:
    """The comparison above can fail: a member trained with another seed than its own is caught."""
    a, b, _ = CASES["windows+clip"]
    model = train_ensemble([dataclasses.replace(a, train=recipe(7, grad_clip=2.0)), b], (sequences,), STEPS,
                           device="cpu")[0][0]
    assert rel_diff(alone(a, sequences), model) > 100 * EXACT_RTOL


@dataclasses.dataclass(frozen=True)
class NaNMu(ModelConfig):
    """A model whose first ``mu`` is NaN: its loss is NaN from the first step, the others' are not."""

    def build(self):
        model = super().build()
        with torch.no_grad():
            model.mu[0] = float("nan")
        return model


def test_a_diverging_member_stops_the_ensemble_and_is_named(tmp_path, sequences) -> None:
    a, b, _ = CASES["windows+clip"]
    bad = Member("broken-one", NaNMu(**dataclasses.asdict(b.model)), b.train)
    ctx = RunContext(cache=WeightCache(tmp_path))
    with pytest.raises(TrainingDiverged, match=r"step 0 .*1 model\(s\).*\n  broken-one: loss nan") as err:
        fit_ensemble([a, bad], sequences, data_id="seq", device="cpu", progress=False, ctx=ctx)
    assert "  a:" not in str(err.value)
    assert list(tmp_path.iterdir()) == []        # nothing of the ensemble cached


def test_fit_ensemble_caches_under_the_keys_fit_uses(tmp_path, sequences) -> None:
    a, b, c = CASES["windows+clip"]
    ctx = RunContext(cache=WeightCache(tmp_path))
    first = fit_ensemble([a, b], sequences, data_id="seq", device="cpu", progress=False, ctx=ctx)
    assert [r.from_cache for r in first] == [False, False]
    loaded = fit(b.model, sequences, b.train, data_id="seq", device="cpu", name=b.name, progress=False, ctx=ctx)
    assert loaded.from_cache and rel_diff(first[1].model, loaded.model) == 0
    again = fit_ensemble([c, a, b], sequences, data_id="seq", device="cpu", progress=False, ctx=ctx)
    assert [r.from_cache for r in again] == [False, True, True]      # only c trained
    assert rel_diff(again[0].model, alone(c, sequences)) < EXACT_RTOL


def test_ensemble_key_names_what_must_match() -> None:
    a, b, _ = CASES["windows+clip"]
    assert ensemble_key(a.model, a.train, "d") == ensemble_key(b.model, b.train, "d")   # L and seed may differ
    assert ensemble_key(a.model, a.train, "d") != ensemble_key(a.model, a.train, "other data")
    assert ensemble_key(a.model, recipe(0, grad_clip=3.0), "d") != ensemble_key(a.model, a.train, "d")
    assert ensemble_key(capsules(1, enc_hidden=(20,)), a.train, "d") != ensemble_key(a.model, a.train, "d")
    with pytest.raises(ValueError, match="ensemble_key.*a, wide"):
        fit_ensemble([a, Member("wide", capsules(1, enc_hidden=(20,)), a.train)], torch.zeros(16, S, P),
                     data_id="d", progress=False)


@pytest.mark.parametrize("vectorized", [False, True], ids=["per-model", "vmap"])
def test_static_step_is_the_eager_step(vectorized: bool, sequences) -> None:
    """The step a CUDA graph captures (fixed input buffers, the loss flag checked every CHECK_EVERY steps), run
    eagerly on the CPU: the same weights and history, bit for bit, as the eager step."""
    members = CASES["windows+clip"]
    eager, h_eager = train_ensemble(members, (sequences,), STEPS, device="cpu", vectorized=vectorized, mode="eager")
    static, h_static = train_ensemble(members, (sequences,), STEPS, device="cpu", vectorized=vectorized, mode="static")
    assert h_eager == h_static
    for a, b in zip(eager, static):
        assert rel_diff(a, b) == 0


def test_a_static_step_names_a_diverging_model_at_the_next_check(monkeypatch, sequences) -> None:
    from tvae_experiments import ensemble

    monkeypatch.setattr(ensemble, "CHECK_EVERY", 4)
    calls = []
    losses = ensemble._Stack.losses

    def nan_from_step_6(self, xs, post, noise):       # model 1's loss becomes NaN at the 7th step
        loss, terms = losses(self, xs, post, noise)
        calls.append(1)
        if len(calls) > 6:
            loss = loss * torch.tensor([1.0, float("nan"), 1.0])
        return loss, terms
    monkeypatch.setattr(ensemble._Stack, "losses", nan_from_step_6)
    # warm-up steps 0-2 eager; 3-4 static, checked at the end of the first epoch (5 batches); then 5-8
    with pytest.raises(TrainingDiverged, match=r"stopped at step 5-8 .*1 model\(s\).*\n  b: loss nan"):
        train_ensemble(CASES["windows+clip"], (sequences,), STEPS, device="cpu", mode="static")


def test_graph_mode_needs_cuda(sequences) -> None:
    with pytest.raises(ValueError, match="mode='graph' captures a CUDA graph and needs a CUDA device, got cpu"):
        train_ensemble(CASES["vae"], (sequences,), 2, device="cpu", mode="graph")
    with pytest.raises(ValueError, match="mode='lazy' is not allowed"):
        train_ensemble(CASES["vae"], (sequences,), 2, device="cpu", mode="lazy")


def test_augmented_images_train_as_alone() -> None:
    """Single images (no time axis) with rotation augmentation: each model rotates its own batch with its own
    generator, as it does alone."""
    images = (torch.rand(40, P, generator=torch.Generator().manual_seed(4)) * 255).to(torch.uint8)   # 6 x 6 digits
    cfg = capsules(0, kind="vae", topography="capsules", weight_norm=False)
    members = [Member(f"r{s}", cfg, recipe(s, augment="rotation", loss="sequence")) for s in (0, 1)]
    models, _ = train_ensemble(members, (images,), STEPS, device="cpu")
    for member, model in zip(members, models):
        assert rel_diff(alone(member, images), model) == 0, member.name
