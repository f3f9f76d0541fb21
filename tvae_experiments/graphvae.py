r"""A permutation-equivariant graph VAE with one latent scalar per node (chapter 6).

Paper: "Interpreting Equivariant Representations", Sec 5.1 and appendix C.  ``S_n`` acts on a
graph by Eq 4, ``g(V, E) = (P_g V, P_g E P_g^T)``, and on the latent ``z in Z = R^n`` by
``z -> P_g z``.  Encoder and decoder are built only from maps that commute with this action:

**Linear equivariant layers** (Maron et al. 2019; appendix C, Eq 15-16).  Every linear map
``R^{n^k x d} -> R^{n^l x d'}`` that commutes with ``S_n`` is a combination of ``b(k+l) d d'``
fixed basis maps (``b`` = Bell number) plus ``b(l)`` biases per output channel:

* node -> node (``k = l = 1``, 2 maps): ``x_i``, ``mean_j x_j``;
* node -> edge (``1 -> 2``, 5 maps): ``delta_ij x_i``, ``delta_ij mean x``, ``x_i``, ``x_j``,
  ``mean x``  (appendix C says 8 weights per channel pair for L_V; the basis has ``b(3) = 5``);
* edge -> node (``2 -> 1``, 5 maps): ``e_ii``, ``mean_j e_ij``, ``mean_j e_ji``,
  ``mean_k e_kk``, ``mean_kl e_kl``;
* edge -> edge (``2 -> 2``, 15 maps, :func:`edge_to_edge_basis`): the identity ``e_ij`` and
  transpose ``e_ji``; row/column means and the diagonal broadcast along rows or columns
  (``r_i, r_j, c_i, c_j, e_ii, e_jj``); the trace and total means broadcast everywhere; and five
  maps onto the diagonal only (``delta_ij`` times ``e_ii, r_i, c_i``, trace, total).

Sums are means over the *real* nodes (``mask``), so a graph padded with extra masked nodes gives
the same outputs on its real nodes as the unpadded graph, and outputs on padded positions are 0.

**Encoder** (appendix C): a hybrid layer ``L_{V,E}`` (node->edge and edge->edge, concatenated
along channels), two edge->edge layers, each followed by a 1x1 convolution, ReLU and instance
normalisation, and an edge->node layer to 2 channels: ``mu, log sigma^2 in R^n``.
**Decoder**: node->edge from ``z: (B, n)``, two edge->edge layers (same post-processing), then
edge->edge to edge-type logits (symmetrised by adding the transpose) and edge->node to
node-type logits; a softmax gives categorical likelihoods.  Loss: the negative ELBO with a
``N(0, I)`` prior on ``z``.

Shapes: ``B`` graphs, ``n`` nodes, ``C`` channels; nodes ``(B, n, C)``, edges ``(B, n, n, C)``,
``mask: (B, n)`` (1 = real node; ``None``: all real).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from tvae_core.checks import check_choice, check_int

__all__ = ["N_BASIS", "node_to_node_basis", "node_to_edge_basis", "edge_to_node_basis", "edge_to_edge_basis",
           "EquivariantLinear", "HybridLinear", "masked_instance_norm", "GraphVAEConfig", "GraphEncoder",
           "GraphDecoder", "GraphVAE", "GraphELBO", "graph_data_id", "evaluate_graph_vae", "permute_graphs",
           "random_permutations"]

N_BASIS = {(1, 1): 2, (1, 2): 5, (2, 1): 5, (2, 2): 15}
"""Number of basis maps ``b(k + l)`` for input order ``k`` and output order ``l``."""


# --------------------------------------------------------------------------- masked reductions


def _mask(x: Tensor, mask: Tensor | None) -> Tensor:
    """``(B, n)`` float mask (all ones when ``mask`` is None)."""
    return x.new_ones(x.shape[:2]) if mask is None else mask.to(x.dtype)


def _count(m: Tensor) -> Tensor:
    return m.sum(1).clamp_min(1.0)  # (B,)


def _edge_stats(e: Tensor, m: Tensor):
    """Masked means of ``e: (B, n, n, C)``: diag, row, col ``(B, n, C)``; trace, total ``(B, C)``."""
    cnt = _count(m)[:, None]                                   # (B, 1)
    diag = e.diagonal(dim1=1, dim2=2).transpose(1, 2)          # (B, n, C): e_ii
    row = e.sum(2) / cnt[..., None]                            # (B, n, C): mean_j e_ij
    col = e.sum(1) / cnt[..., None]                            # (B, n, C): mean_i e_ij (indexed by j)
    tr = diag.sum(1) / cnt                                     # (B, C)
    tot = e.sum((1, 2)) / cnt ** 2                             # (B, C)
    return diag, row, col, tr, tot


# --------------------------------------------------------------------------- basis maps


def node_to_node_basis(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """The 2 maps ``R^n -> R^n``: ``x_i`` and ``mean_j x_j``.  ``(B, n, C) -> (B, n, C, 2)``."""
    m = _mask(x, mask)
    x = x * m[..., None]
    mean = (x.sum(1) / _count(m)[:, None])[:, None].expand_as(x)     # (B, n, C)
    return torch.stack([x, mean], -1) * m[..., None, None]


def node_to_edge_basis(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """The 5 maps ``R^n -> R^{n x n}``.  ``(B, n, C) -> (B, n, n, C, 5)``."""
    m = _mask(x, mask)
    B, n, C = x.shape
    x = x * m[..., None]
    mean = x.sum(1) / _count(m)[:, None]                              # (B, C)
    eye = torch.eye(n, dtype=x.dtype, device=x.device)[None, :, :, None]  # (1, n, n, 1)
    xi = x[:, :, None].expand(B, n, n, C)                              # out_ij = x_i
    xj = x[:, None].expand(B, n, n, C)                                 # out_ij = x_j
    mm = mean[:, None, None].expand(B, n, n, C)                        # out_ij = mean x
    basis = torch.stack([eye * xi, eye * mm, xi, xj, mm], -1)          # (B, n, n, C, 5)
    return basis * (m[:, :, None] * m[:, None, :])[..., None, None]


def edge_to_node_basis(e: Tensor, mask: Tensor | None = None) -> Tensor:
    """The 5 maps ``R^{n x n} -> R^n``.  ``(B, n, n, C) -> (B, n, C, 5)``."""
    m = _mask(e, mask)
    e = e * (m[:, :, None] * m[:, None, :])[..., None]
    diag, row, col, tr, tot = _edge_stats(e, m)
    basis = torch.stack([diag, row, col, tr[:, None].expand_as(diag), tot[:, None].expand_as(diag)], -1)
    return basis * m[..., None, None]


def edge_to_edge_basis(e: Tensor, mask: Tensor | None = None) -> Tensor:
    """The 15 maps ``R^{n x n} -> R^{n x n}`` (Bell number ``b(4) = 15``; module docstring).

    ``(B, n, n, C) -> (B, n, n, C, 15)``.  Order: ``e_ij, e_ji``; ``r_i, r_j, c_i, c_j, e_ii,
    e_jj`` (``r`` row means, ``c`` column means); trace, total; then on the diagonal only:
    ``delta_ij`` times ``e_ii, r_i, c_i``, trace, total.  :class:`EquivariantLinear` computes
    the same combination without materialising this tensor (a test checks they agree)."""
    m = _mask(e, mask)
    B, n, _, C = e.shape
    mm = m[:, :, None] * m[:, None, :]                                 # (B, n, n)
    e = e * mm[..., None]
    diag, row, col, tr, tot = _edge_stats(e, m)
    full = (B, n, n, C)
    eye = torch.eye(n, dtype=e.dtype, device=e.device)[None, :, :, None]
    at_i = lambda v: v[:, :, None].expand(full)                        # noqa: E731  out_ij = v_i
    at_j = lambda v: v[:, None].expand(full)                           # noqa: E731  out_ij = v_j
    const = lambda v: v[:, None, None].expand(full)                    # noqa: E731  out_ij = v
    maps = [e, e.transpose(1, 2), at_i(row), at_j(row), at_i(col), at_j(col), at_i(diag), at_j(diag),
            const(tr), const(tot), eye * at_i(diag), eye * at_i(row), eye * at_i(col), eye * const(tr),
            eye * const(tot)]
    return torch.stack(maps, -1) * mm[..., None, None]


_BASIS = {(1, 1): node_to_node_basis, (1, 2): node_to_edge_basis, (2, 1): edge_to_node_basis,
          (2, 2): edge_to_edge_basis}


# --------------------------------------------------------------------------- layers


class EquivariantLinear(nn.Module):
    r"""``y = sum_k basis_k(x) W_k + bias`` for input order ``k_in`` and output order ``k_out``
    (1: nodes ``(B, n, C)``, 2: edges ``(B, n, n, C)``).

    ``W: (b, C_in, C_out)`` with ``b = N_BASIS[(k_in, k_out)]``; biases: one per output channel
    for nodes; for edges one everywhere and one on the diagonal (the ``b(2) = 2`` invariant
    edge tensors).  Equivariant: ``L(P . x) = P . L(x)`` for every permutation ``P``."""

    def __init__(self, in_order: int, out_order: int, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__()
        check_choice("in_order", in_order, (1, 2))
        check_choice("out_order", out_order, (1, 2))
        check_int("in_channels", in_channels, minimum=1)
        check_int("out_channels", out_channels, minimum=1)
        self.in_order, self.out_order = in_order, out_order
        nb = N_BASIS[(in_order, out_order)]
        bound = 1.0 / math.sqrt(in_channels * nb)
        self.weight = nn.Parameter(torch.empty(nb, in_channels, out_channels).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(out_order, out_channels)) if bias else None

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        m = _mask(x, mask)
        if (self.in_order, self.out_order) == (2, 2):
            y = self._edge_to_edge(x, m)
        else:
            y = torch.einsum("...ck,kco->...o", _BASIS[(self.in_order, self.out_order)](x, m), self.weight)
        if self.bias is not None:
            if self.out_order == 1:
                y = y + self.bias[0] * m[..., None]
            else:
                n = x.shape[1]
                eye = torch.eye(n, dtype=x.dtype, device=x.device)[None, :, :, None]
                y = y + (self.bias[0] + eye * self.bias[1]) * (m[:, :, None] * m[:, None, :])[..., None]
        return y

    def _edge_to_edge(self, e: Tensor, m: Tensor) -> Tensor:
        """The 15-map combination of :func:`edge_to_edge_basis` without the ``(..., C, 15)``
        tensor: reductions are mixed first, then broadcast.  ``(B, n, n, C) -> (B, n, n, C')``."""
        W = self.weight
        mm = m[:, :, None] * m[:, None, :]
        e = e * mm[..., None]
        diag, row, col, tr, tot = _edge_stats(e, m)
        y = e @ W[0] + e.transpose(1, 2) @ W[1]                                      # (B, n, n, C')
        a = row @ W[2] + col @ W[4] + diag @ W[6]                                    # (B, n, C'): out_ij += a_i
        b = row @ W[3] + col @ W[5] + diag @ W[7]                                    # out_ij += b_j
        c = tr @ W[8] + tot @ W[9]                                                   # (B, C')
        d = diag @ W[10] + row @ W[11] + col @ W[12] + (tr @ W[13] + tot @ W[14])[:, None]  # diagonal only
        y = y + a[:, :, None] + b[:, None] + c[:, None, None]
        y = y + torch.diag_embed(d.transpose(1, 2)).permute(0, 2, 3, 1)             # (B, n, n, C')
        return y * mm[..., None]


class HybridLinear(nn.Module):
    """``L_{V,E}`` of appendix C: node->edge and edge->edge layers concatenated along channels.
    ``(B, n, A), (B, n, n, Be) -> (B, n, n, 2 C)``."""

    def __init__(self, node_channels: int, edge_channels: int, out_channels: int) -> None:
        super().__init__()
        self.from_nodes = EquivariantLinear(1, 2, node_channels, out_channels)
        self.from_edges = EquivariantLinear(2, 2, edge_channels, out_channels)

    def forward(self, x: Tensor, e: Tensor, mask: Tensor | None = None) -> Tensor:
        return torch.cat([self.from_nodes(x, mask), self.from_edges(e, mask)], -1)


def masked_instance_norm(h: Tensor, mask: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Instance normalisation of an edge tensor ``(B, n, n, C)``: per graph and channel, over
    the real ``(i, j)`` entries (permutation invariant statistics, so equivariant)."""
    m = _mask(h, mask)
    mm = (m[:, :, None] * m[:, None, :])[..., None]                  # (B, n, n, 1)
    cnt = mm.sum((1, 2)).clamp_min(1.0)                              # (B, 1)
    mean = (h * mm).sum((1, 2)) / cnt                                # (B, C)
    var = ((h - mean[:, None, None]) ** 2 * mm).sum((1, 2)) / cnt
    return (h - mean[:, None, None]) / torch.sqrt(var[:, None, None] + eps) * mm


class _Post(nn.Module):
    """Appendix C after every hidden layer: ReLU, 1x1 convolution (a per-entry linear map over
    channels), ReLU, instance normalisation.  ``(B, n, n, C_in) -> (B, n, n, C)``."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.conv = nn.Linear(in_channels, channels)

    def forward(self, h: Tensor, mask: Tensor | None) -> Tensor:
        m = _mask(h, mask)
        h = torch.relu(self.conv(torch.relu(h))) * (m[:, :, None] * m[:, None, :])[..., None]
        return masked_instance_norm(h, m)


# --------------------------------------------------------------------------- the VAE


@dataclass(frozen=True)
class GraphVAEConfig:
    """Sizes of :class:`GraphVAE` (appendix C; the paper gives no channel counts)."""

    node_types: int = 5      # A: none, C, N, O, F
    edge_types: int = 4      # B: none, single, double, triple
    hidden: int = 32         # channels of every hidden edge layer
    n_hidden: int = 2        # edge->edge layers between the first and the last (appendix C: 2)

    def to_dict(self) -> dict:
        return asdict(self)

    def build(self) -> "GraphVAE":
        return GraphVAE(self)


def graph_data_id(fingerprint: str, masked: bool = False) -> str:
    """The ``data_id`` of graph-VAE training for :func:`~tvae_experiments.train.fit`: the data's
    fingerprint tagged with whether a node mask is passed (the keys of already cached models)."""
    return f"graphvae|mask={masked}|{fingerprint}"


class GraphEncoder(nn.Module):
    """``(X (B, n, A), E (B, n, n, Be)) -> (mu, log sigma^2)``, each ``(B, n)``."""

    def __init__(self, cfg: GraphVAEConfig) -> None:
        super().__init__()
        c = cfg.hidden
        self.hybrid = HybridLinear(cfg.node_types, cfg.edge_types, c)
        self.post0 = _Post(2 * c, c)
        self.hidden = nn.ModuleList(EquivariantLinear(2, 2, c, c) for _ in range(cfg.n_hidden))
        self.posts = nn.ModuleList(_Post(c, c) for _ in range(cfg.n_hidden))
        self.out = EquivariantLinear(2, 1, c, 2)

    def forward(self, x: Tensor, e: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = self.post0(self.hybrid(x, e, mask), mask)                 # (B, n, n, c)
        for lin, post in zip(self.hidden, self.posts):
            h = post(lin(h, mask), mask)
        out = self.out(h, mask)                                       # (B, n, 2)
        return out[..., 0], out[..., 1].clamp(-12.0, 8.0)


class GraphDecoder(nn.Module):
    """``z (B, n) -> (node logits (B, n, A), edge logits (B, n, n, Be))``; edge logits are
    symmetric (``L + L^T``)."""

    def __init__(self, cfg: GraphVAEConfig) -> None:
        super().__init__()
        c = cfg.hidden
        self.first = EquivariantLinear(1, 2, 1, c)
        self.post0 = _Post(c, c)
        self.hidden = nn.ModuleList(EquivariantLinear(2, 2, c, c) for _ in range(cfg.n_hidden))
        self.posts = nn.ModuleList(_Post(c, c) for _ in range(cfg.n_hidden))
        self.edge_out = EquivariantLinear(2, 2, c, cfg.edge_types)
        self.node_out = EquivariantLinear(2, 1, c, cfg.node_types)

    def forward(self, z: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = self.post0(self.first(z[..., None], mask), mask)          # (B, n, n, c)
        for lin, post in zip(self.hidden, self.posts):
            h = post(lin(h, mask), mask)
        el = self.edge_out(h, mask)
        return self.node_out(h, mask), el + el.transpose(1, 2)


@dataclass
class GraphELBO:
    """Per-graph terms ``(B,)`` in nats: ``elbo = node_ll + edge_ll - kl``."""

    elbo: Tensor
    node_ll: Tensor   # sum_i log p(type_i | z)
    edge_ll: Tensor   # sum_{i<j} log p(type_ij | z)
    kl: Tensor        # KL(q(z | G) || N(0, I))

    @property
    def recon(self) -> Tensor:
        return self.node_ll + self.edge_ll


class GraphVAE(nn.Module):
    """Encoder + decoder; ``Z = R^n`` with a Gaussian posterior per node (Sec 5.1)."""

    def __init__(self, cfg: GraphVAEConfig = GraphVAEConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = GraphEncoder(cfg)
        self.decoder = GraphDecoder(cfg)

    def encode(self, x: Tensor, e: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.encoder(x, e, mask)

    def decode(self, z: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.decoder(z, mask)

    @torch.no_grad()
    def decode_graph(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Most likely graph: one-hot ``X (B, n, A)`` and ``E (B, n, n, Be)`` (zero diagonal)."""
        nl, el = self.decode(z)
        X = nn.functional.one_hot(nl.argmax(-1), nl.shape[-1]).to(z.dtype)
        E = nn.functional.one_hot(el.argmax(-1), el.shape[-1]).to(z.dtype)
        n = z.shape[-1]
        E[:, torch.arange(n), torch.arange(n)] = 0
        return X, E

    def forward(self, x: Tensor, e: Tensor, mask: Tensor | None = None) -> GraphELBO:
        """One-sample ELBO of one-hot graphs ``x: (B, n, A)``, ``e: (B, n, n, Be)``."""
        mu, logvar = self.encode(x, e, mask)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        m = _mask(x, mask)
        nl, el = self.decode(z, mask)
        node_ll = ((x * nl.log_softmax(-1)).sum(-1) * m).sum(-1)
        n = x.shape[1]
        upper = torch.triu(torch.ones(n, n, dtype=x.dtype, device=x.device), diagonal=1)
        pair = upper * m[:, :, None] * m[:, None, :]
        edge_ll = ((e * el.log_softmax(-1)).sum(-1) * pair).sum((1, 2))
        kl = (0.5 * (mu ** 2 + logvar.exp() - 1.0 - logvar) * m).sum(-1)
        return GraphELBO(node_ll + edge_ll - kl, node_ll, edge_ll, kl)

    def training_loss(self, x: Tensor, e: Tensor, mask: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """:func:`~tvae_experiments.train.fit`'s objective: minus the batch-mean ELBO, and its terms."""
        p = self(x, e, mask)
        return -p.elbo.mean(), {"elbo": p.elbo.mean(), "node_ll": p.node_ll.mean(), "edge_ll": p.edge_ll.mean(),
                                "kl": p.kl.mean()}


@torch.no_grad()
def evaluate_graph_vae(model: GraphVAE, X: Tensor, E: Tensor, mask: Tensor | None = None, seed: int = 0,
                       batch_size: int = 256) -> dict[str, float]:
    """Mean one-sample ELBO terms (nats per graph) and the reconstruction accuracy at the
    posterior mean: the fraction of graphs decoded exactly (every node and edge type)."""
    torch.manual_seed(seed)
    dev = next(model.parameters()).device
    sums, exact = torch.zeros(4), 0
    for i in range(0, len(X), batch_size):
        xb, eb = X[i:i + batch_size].to(dev), E[i:i + batch_size].to(dev)
        mb = None if mask is None else mask[i:i + batch_size].to(dev)
        p = model(xb, eb, mb)
        sums += torch.stack([p.elbo.sum(), p.node_ll.sum(), p.edge_ll.sum(), p.kl.sum()]).cpu()
        Xd, Ed = model.decode_graph(model.encode(xb, eb, mb)[0])
        exact += int(((Xd.argmax(-1) == xb.argmax(-1)).all(-1) & (Ed.argmax(-1) == eb.argmax(-1)).flatten(1).all(-1)).sum())
    elbo, node_ll, edge_ll, kl = (sums / len(X)).tolist()
    return {"elbo": elbo, "node_ll": node_ll, "edge_ll": edge_ll, "kl": kl, "exact_recon": exact / len(X)}


# --------------------------------------------------------------------------- the group action


def random_permutations(batch: int, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``(batch, n)`` independent uniform permutations of ``range(n)``."""
    return torch.rand(batch, n, generator=generator).argsort(-1)


def permute_graphs(perm: Tensor, x: Tensor, e: Tensor | None = None, mask: Tensor | None = None):
    """Eq 4 with ``(P x)_i = x_{perm_i}``: nodes ``(B, n, ...)``, edges ``(P E P^T)_ij =
    E_{perm_i perm_j}``, mask ``(B, n)``.  Returns the permuted tensors that were given (a
    tuple when more than one); ``x`` may also be a latent ``z: (B, n)``."""
    b = torch.arange(x.shape[0], device=x.device)[:, None]
    out = [x[b, perm]]
    if e is not None:
        out.append(e[b[:, :, None], perm[:, :, None], perm[:, None, :]])
    if mask is not None:
        out.append(mask[b, perm])
    return out[0] if len(out) == 1 else tuple(out)
