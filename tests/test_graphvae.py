"""Permutation-equivariant layers and graph VAE (chapter 6): equivariance of every basis map,
layer and network under random permutations (Eq 4), independence of the 15 edge maps, masking,
gradients, training determinism/cache/NaN guard, and the latent-analysis helpers."""
import pytest
import torch

from tvae_experiments.graph_latents import (graph_hamming, interpolate, interpolation_hamming, invariant_features, pca_2d)
from tvae_experiments.graphvae import (N_BASIS, EquivariantLinear, GraphVAE, GraphVAEConfig, HybridLinear,
                                edge_to_edge_basis, edge_to_node_basis, evaluate_graph_vae, graph_data_id,
                                masked_instance_norm, node_to_edge_basis, node_to_node_basis, permute_graphs,
                                random_permutations)
from tvae_core.invariance import sort_projection
from tvae_experiments.train import TrainConfig, TrainingDiverged, fit

D = torch.float64
TOL = dict(atol=1e-5, rtol=1e-5)
BASES = {(1, 1): node_to_node_basis, (1, 2): node_to_edge_basis, (2, 1): edge_to_node_basis,
         (2, 2): edge_to_edge_basis}


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def rand(order, B=3, n=6, C=4, seed=0):
    shape = (B, n, C) if order == 1 else (B, n, n, C)
    return torch.randn(*shape, generator=gen(seed), dtype=D)


def act(perm, t, order):
    """Eq 4 on a node tensor (order 1) or an edge tensor (order 2)."""
    return permute_graphs(perm, t) if order == 1 else permute_graphs(perm, t[:, :, 0], t)[1]


def one_hot_graphs(B=4, n=6, A=5, Be=4, seed=0):
    g = gen(seed)
    X = torch.nn.functional.one_hot(torch.randint(0, A, (B, n), generator=g), A).to(D)
    t = torch.randint(0, Be, (B, n, n), generator=g)
    t = torch.triu(t, 1) + torch.triu(t, 1).transpose(1, 2)
    E = torch.nn.functional.one_hot(t, Be).to(D)
    E[:, torch.arange(n), torch.arange(n)] = 0
    return X, E


@pytest.mark.parametrize("orders", list(BASES))
def test_every_basis_map_is_equivariant(orders):
    k, l = orders
    x = rand(k)
    perm = random_permutations(3, 6, gen(1))
    out, out_p = BASES[orders](x), BASES[orders](act(perm, x, k))
    assert out.shape[-1] == N_BASIS[orders]
    for b in range(out.shape[-1]):
        torch.testing.assert_close(out_p[..., b], act(perm, out[..., b], l), **TOL)


def _layer_with_bias(k: int, l: int) -> EquivariantLinear:
    """A seeded float64 layer k -> l (4 -> 3 channels) with random biases (zero at init: make them count)."""
    torch.manual_seed(0)
    layer = EquivariantLinear(k, l, 4, 3).to(D)
    with torch.no_grad():
        layer.bias.normal_()
    return layer


@pytest.mark.parametrize("orders", list(BASES))
def test_every_layer_is_equivariant(orders):
    k, l = orders
    layer = _layer_with_bias(k, l)
    x = rand(k)
    perm = random_permutations(3, 6, gen(2))
    torch.testing.assert_close(layer(act(perm, x, k)), act(perm, layer(x), l), **TOL)


def test_a_non_equivariant_map_fails_the_same_check():
    """The check has power: a plain dense layer on the flattened edges is not equivariant."""
    torch.manual_seed(0)
    dense = torch.nn.Linear(36, 36).to(D)
    f = lambda e: dense(e[..., 0].flatten(1)).view(-1, 6, 6, 1)  # noqa: E731
    x, perm = rand(2, C=1), random_permutations(3, 6, gen(2))
    assert (f(act(perm, x, 2)) - act(perm, f(x), 2)).abs().max() > 1e-2


def test_fast_edge_layer_equals_the_explicit_15_map_combination():
    torch.manual_seed(0)
    layer = EquivariantLinear(2, 2, 4, 3, bias=False).to(D)
    x = rand(2)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 0, 1, 1, 0, 1]], dtype=D)
    for m in (None, mask):
        ref = torch.einsum("bijck,kco->bijo", edge_to_edge_basis(x, m), layer.weight)
        torch.testing.assert_close(layer(x, m), ref, atol=1e-12, rtol=1e-12)


def test_the_15_edge_maps_are_linearly_independent_on_random_inputs():
    outs = edge_to_edge_basis(torch.randn(4, 5, 5, 1, generator=gen(3), dtype=D))   # (4, 5, 5, 1, 15)
    assert torch.linalg.matrix_rank(outs.permute(4, 0, 1, 2, 3).reshape(15, -1)).item() == 15
    # one input alone gives 13: trace and total both put a constant on the diagonal/everywhere
    one = edge_to_edge_basis(torch.randn(1, 5, 5, 1, generator=gen(3), dtype=D))
    assert torch.linalg.matrix_rank(one.reshape(-1, 15).T).item() == 13


@pytest.mark.parametrize("n", [4, 6])
def test_the_15_edge_maps_span_all_equivariant_maps(n):
    """Independence from the other side: their span is the whole commutant (dimension b(4) = 15)
    -- a 16th map built from them (their sum) adds no rank, a non-equivariant one does."""
    units = torch.eye(n * n, dtype=D).view(n * n, n, n, 1)
    M = edge_to_edge_basis(units)[..., 0, :].permute(3, 0, 1, 2).reshape(15, -1)
    assert torch.linalg.matrix_rank(M).item() == 15
    assert torch.linalg.matrix_rank(torch.cat([M, M.sum(0, keepdim=True)])).item() == 15
    other = torch.randn(1, M.shape[1], generator=gen(4), dtype=D)
    assert torch.linalg.matrix_rank(torch.cat([M, other])).item() == 16


@pytest.mark.parametrize("orders", list(BASES))
def test_padded_nodes_do_not_affect_real_outputs(orders):
    k, l = orders
    layer = _layer_with_bias(k, l)
    small = rand(k, B=2, n=4)                      # graphs with 4 real nodes
    big = rand(k, B=2, n=7, seed=5)                # padded to 7 with garbage in the padding
    if k == 1:
        big[:, :4] = small
    else:
        big[:, :4, :4] = small
    mask = torch.zeros(2, 7, dtype=D)
    mask[:, :4] = 1
    out_small, out_big = layer(small), layer(big, mask)
    real = out_big[:, :4] if l == 1 else out_big[:, :4, :4]
    torch.testing.assert_close(real, out_small, atol=1e-12, rtol=1e-12)
    pad = out_big[:, 4:] if l == 1 else torch.cat([out_big[:, 4:].flatten(), out_big[:, :, 4:].flatten()])
    assert pad.abs().max() == 0


def test_masked_vae_ignores_padding():
    torch.manual_seed(0)
    vae = GraphVAE(GraphVAEConfig(hidden=6)).to(D)
    X, E = one_hot_graphs(B=2, n=5)
    Xb = torch.nn.functional.pad(X, (0, 0, 0, 3), value=0.7)
    Eb = torch.nn.functional.pad(E, (0, 0, 0, 3, 0, 3), value=-0.3)
    mask = torch.tensor([[1.0] * 5 + [0.0] * 3] * 2, dtype=D)
    mu, lv = vae.encode(X, E)
    mub, lvb = vae.encode(Xb, Eb, mask)
    torch.testing.assert_close(mub[:, :5], mu, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(lvb[:, :5], lv, atol=1e-10, rtol=1e-10)
    a, b = vae(X, E), vae(Xb, Eb, mask)
    assert torch.isfinite(b.elbo).all()
    torch.testing.assert_close(b.kl, a.kl, atol=1e-10, rtol=1e-10)  # padded nodes carry no KL


def test_instance_norm_is_equivariant_and_normalises():
    h = rand(2, C=3)
    perm = random_permutations(3, 6, gen(6))
    torch.testing.assert_close(masked_instance_norm(act(perm, h, 2)), act(perm, masked_instance_norm(h), 2), **TOL)
    out = masked_instance_norm(h)
    torch.testing.assert_close(out.mean((1, 2)), torch.zeros(3, 3, dtype=D), atol=1e-10, rtol=0)
    torch.testing.assert_close(out.var((1, 2), unbiased=False), torch.ones(3, 3, dtype=D), atol=1e-4, rtol=0)


def test_hybrid_layer_is_equivariant():
    torch.manual_seed(0)
    layer = HybridLinear(5, 4, 3).to(D)
    X, E = one_hot_graphs()
    perm = random_permutations(4, 6, gen(7))
    Xp, Ep = permute_graphs(perm, X, E)
    out = layer(X, E)
    assert out.shape == (4, 6, 6, 6)
    torch.testing.assert_close(layer(Xp, Ep), act(perm, out, 2), **TOL)


def test_encoder_decoder_and_elbo_are_equivariant(monkeypatch):
    torch.manual_seed(0)
    vae = GraphVAE(GraphVAEConfig(hidden=8)).to(D)
    X, E = one_hot_graphs()
    perm = random_permutations(4, 6, gen(8))
    Xp, Ep = permute_graphs(perm, X, E)
    mu, lv = vae.encode(X, E)
    mup, lvp = vae.encode(Xp, Ep)
    torch.testing.assert_close(mup, permute_graphs(perm, mu), **TOL)
    torch.testing.assert_close(lvp, permute_graphs(perm, lv), **TOL)
    nl, el = vae.decode(mu)
    nlp, elp = vae.decode(permute_graphs(perm, mu))
    torch.testing.assert_close(nlp, permute_graphs(perm, nl), **TOL)
    torch.testing.assert_close(elp, act(perm, el, 2), **TOL)
    torch.testing.assert_close(el, el.transpose(1, 2))  # symmetric edge logits
    # with the noise at 0 (z = mu) the ELBO is exactly invariant
    monkeypatch.setattr(torch, "randn_like", torch.zeros_like)
    a, b = vae(X, E).elbo, vae(Xp, Ep).elbo
    assert a.shape == (4,)
    torch.testing.assert_close(a, b, **TOL)
    # the sorted latent is invariant (Prop 2): the chapter's invariant representation
    torch.testing.assert_close(sort_projection(mup), sort_projection(mu), **TOL)


def test_gradcheck_tiny_layers():
    torch.manual_seed(0)
    for k, l in BASES:
        layer = EquivariantLinear(k, l, 2, 2).to(D)
        x = rand(k, B=1, n=3, C=2).requires_grad_()
        assert torch.autograd.gradcheck(lambda t: layer(t), (x,), eps=1e-6, atol=1e-6)
    w = EquivariantLinear(2, 2, 2, 2).to(D)
    assert torch.autograd.gradcheck(lambda W: torch.einsum("bijck,kco->bijo", edge_to_edge_basis(rand(2, 1, 3, 2)), W),
                                    (w.weight.detach().clone().requires_grad_(),))


def test_training_learns_is_seeded_cached_and_guarded(tmp_path):
    # 16 randomly permuted copies of two graphs: structure a VAE can learn (uniformly random graphs
    # are already at their entropy, ~22 nats, before training)
    T, TE = one_hot_graphs(B=2, n=5, seed=1)
    X, E = permute_graphs(random_permutations(16, 5, gen(2)), T.repeat(8, 1, 1).float(), TE.repeat(8, 1, 1, 1).float())
    cfg, tc = GraphVAEConfig(hidden=8, n_hidden=1), TrainConfig(batch_size=8, optimizer="adam", lr=1e-2, seed=0, steps=300)
    kw = dict(cache_dir=tmp_path, progress=False, device="cpu")
    a = fit(cfg, (X, E), tc, data_id="t", **kw)
    b = fit(cfg, (X, E), tc, data_id="t", use_cache=False, **kw)
    assert not a.from_cache and a.path.exists()
    for (k, v), w in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(v, w), k  # deterministic on CPU
    c = fit(cfg, (X, E), tc, data_id="t", **kw)
    assert c.from_cache
    torch.manual_seed(tc.seed)
    before, after = evaluate_graph_vae(cfg.build(), X, E)["elbo"], evaluate_graph_vae(a.model, X, E)["elbo"]
    # measured: 150 steps -23.9 -> -14.3 nats per graph on an Intel CPU but only -> -19.1 on an AMD EPYC (float
    # rounding differs by CPU); 300 steps on the EPYC, seeds 0-3: gains of 6.0-11.9 nats. An untrained run gains 0.
    assert after > before + 4.0, (before, after)
    assert a.history[-1]["elbo"] > a.history[0]["elbo"] + 4.0 and a.history[-1]["step"] == 300
    d = fit(cfg, (X, E), tc, data_id="other", **kw)
    assert not d.from_cache  # another data set: another key
    m = fit(cfg, (X, E, torch.ones(16, 5)), tc, data_id=graph_data_id("t", masked=True), use_cache=False, **kw)
    for (k, v), w in zip(a.model.state_dict().items(), m.model.state_dict().values()):
        torch.testing.assert_close(v, w, msg=k)  # an all-ones mask is no mask
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 0 \(epoch 0\); elbo=nan, node_ll="):
        fit(cfg, (X * float("nan"), E), tc, data_id="nan", **kw)


def test_interpolation_and_hamming():
    z1, z2 = torch.tensor([[0.0, 1.0, 2.0]]), torch.tensor([[2.0, 1.0, 0.0]])
    path = interpolate(z1, z2, 5)
    assert path.shape == (1, 5, 3)
    torch.testing.assert_close(path[:, 0], z1)
    torch.testing.assert_close(path[:, -1], z2)
    torch.testing.assert_close(path[0, 2], torch.tensor([1.0, 1.0, 1.0]))  # z2 is a permutation of z1 ...
    torch.testing.assert_close(sort_projection(z1), sort_projection(z2))      # ... so in Z_s the line is a point
    X, E = one_hot_graphs(B=2, n=4)
    assert graph_hamming(X, E, X, E).tolist() == [0, 0]
    X2, E2 = X.clone(), E.clone()
    X2[0, 1] = X2[0, 1].roll(1, -1)           # one node type changed
    E2[0, 0, 2] = E2[0, 2, 0] = E2[0, 0, 2].roll(1, -1)  # one bond (both triangles) changed
    assert graph_hamming(X, E, X2, E2).tolist() == [2, 0]


def test_interpolation_hamming_is_zero_between_permuted_copies_in_sorted_space():
    torch.manual_seed(0)
    vae = GraphVAE(GraphVAEConfig(hidden=6)).eval()
    z = torch.randn(5, 6)
    zp = permute_graphs(random_permutations(5, 6, gen(9)), z)
    h_sorted = interpolation_hamming(vae, z, zp, 7, "sorted")
    assert h_sorted.shape == (5, 6) and h_sorted.sum() == 0  # the same orbit: one point of Z_s


def test_invariant_features_and_pca():
    z = torch.randn(10, 6, generator=gen(10))
    zp = permute_graphs(random_permutations(10, 6, gen(11)), z)
    for kind in ("sorted", "sum", "mean", "max"):
        torch.testing.assert_close(invariant_features(zp, kind), invariant_features(z, kind))
    assert not torch.allclose(invariant_features(zp, "equivariant"), invariant_features(z, "equivariant"))
    assert invariant_features(z, "sum").shape == (10, 1)
    with pytest.raises(ValueError, match="kind='median' is not allowed"):
        invariant_features(z, "median")
    p = pca_2d(z)
    assert p.shape == (10, 2) and p[:, 0].var() >= p[:, 1].var()
    assert pca_2d(z[:, :1]).shape == (10, 2)


def test_decode_path_in_chunks_equals_decoding_at_once():
    """The paper's 10,000 interpolation lines are decoded a chunk at a time (memory); chunks must not
    change a single decoded graph (instance normalisation is per graph)."""
    from tvae_experiments.graph_latents import decode_path

    torch.manual_seed(1)
    vae = GraphVAE(GraphVAEConfig(hidden=6)).eval()
    path = interpolate(torch.randn(4, 9), torch.randn(4, 9), 5)        # (4, 5, 9): 20 points
    X1, E1 = decode_path(vae, path, chunk=3)                              # 7 chunks, the last partial
    X2, E2 = decode_path(vae, path, chunk=10_000)
    assert X1.shape == (4, 5, 9, X1.shape[-1]) and torch.equal(X1, X2) and torch.equal(E1, E2)
