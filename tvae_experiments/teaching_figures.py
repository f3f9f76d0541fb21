"""Teaching figures and page helpers for chapters 1-3, 6, 7, 9 and 10.

* :func:`tvae_diagram` -- the TVAE drawn from a model's own config (chapter 3): encoders to ``z`` and
  ``u``, ``u -> W u^2`` over the frames its temporal window reads, ``t = (z - mu) / sqrt(W u^2)``,
  decoder.
* :func:`orbit_spread` -- chapter 6's orbit spread: ``||z1 - g z2||`` over every order ``g`` of a
  pair, its minimum (the quotient metric) and the sorted distance.
* :func:`appendix_c_sketch` -- chapter 10's opening picture: what each of appendix C's four
  extensions changes (partial roll, padded capsule, lattice, causal window).
* :func:`glue_values`, :func:`claim_verdict`, :func:`glue_verdicts` -- run numbers and claim results
  into the prose through MyST-NB's ``glue`` (a no-op where MyST-NB is not installed).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

__all__ = ["time_offsets", "tvae_diagram", "orbit_spread", "appendix_c_sketch", "glue_values", "claim_verdict",
           "glue_verdicts"]


# --------------------------------------------------------------------------------------------- glue

def _glue(key: str, value: Any) -> None:
    try:
        from myst_nb import glue
    except ImportError:  # the package without the book extras
        return
    glue(key, value, display=False)


def glue_values(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Glue every ``values[name]`` as ``<prefix>_<name>`` (numbers as Python floats/ints, for
    ``{glue:text}`key:.2f```); returns the glued mapping, so the cell can also display it."""
    out = {}
    for name, v in values.items():
        if hasattr(v, "item"):
            v = v.item()
        out[f"{prefix}_{name}"] = v
        _glue(f"{prefix}_{name}", v)
    return out


def claim_verdict(claim: Any) -> str:
    """One claim's result in words, for a sentence: "holds" / "does not hold", and for a claim the
    profile only reports, "(reported on this profile, not enforced)"."""
    word = "holds" if claim.passed else "does not hold"
    return word if claim.enforced else f"{word} (reported on this profile, not enforced)"


def glue_verdicts(report: Any, prefix: str, names: Iterable[str] | None = None) -> dict[str, str]:
    """Glue :func:`claim_verdict` of the report's claims (all, or ``names``) as text under
    ``<prefix>_<claim name>`` (``{glue:text}`key```); returns them."""
    want = None if names is None else set(names)
    out = {f"{prefix}_{c.name}": claim_verdict(c) for c in report.claims if want is None or c.name in want}
    for key, text in out.items():
        _glue(key, text)
    return out


# --------------------------------------------------------------------------------------------- TVAE diagram

def time_offsets(model_cfg: Any) -> list[int]:
    """The frame offsets ``delta`` whose ``u_{l+delta}`` enter ``t_l`` (``[0]`` without time)."""
    if model_cfg.kind != "tvae" or model_cfg.topography in ("torus", "capsules"):
        return [0]
    return list(model_cfg.build_topography().offsets)


def _box(ax, xy, w, h, text, color, fontsize=9):
    ax.add_patch(FancyBboxPatch((xy[0] - w / 2, xy[1] - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                fc=color, ec="0.25", lw=1))
    ax.text(xy[0], xy[1], text, ha="center", va="center", fontsize=fontsize)


def _arrow(ax, a, b, text=None, **kw):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=12, lw=1.1, color="0.2",
                                 shrinkA=2, shrinkB=2, **kw))
    if text:
        ax.text((a[0] + b[0]) / 2, (a[1] + b[1]) / 2 + 0.12, text, ha="center", va="bottom", fontsize=7.5, color="0.3")


def _layout_text(model_cfg: Any) -> str:
    if model_cfg.topography == "torus":
        return (f"{model_cfg.side} x {model_cfg.side} torus,\n"
                f"{model_cfg.K} x {model_cfg.K} neighbourhood")
    D = model_cfg.capsule_dim
    return f"{model_cfg.n_caps} capsules x {D} units,\nK = {model_cfg.K} units"


def _window_strip(ax: plt.Axes, model_cfg: Any, offs: Sequence[int], S: int, frame: int, colour: str) -> None:
    """The bottom strip of :func:`tvae_diagram`: ``S`` frames, those ``t_frame`` reads shaded, ``frame`` in red."""
    ax.text(0.2, 1.05, "sequence:", ha="left", va="center", fontsize=8)
    x0, w = 1.4, min(0.55, 8.8 / S)
    seen = {(frame + d) % S for d in offs}
    for k in range(S):
        on = k in seen
        ax.add_patch(Rectangle((x0 + k * w, 0.8), w * 0.9, 0.5, fc=colour if on else "0.95",
                               ec="C3" if k == frame else "0.5", lw=2 if k == frame else 0.8))
        ax.text(x0 + k * w + w * 0.45, 1.05, str(k), ha="center", va="center", fontsize=7)
    if len(offs) == 1:
        note = "no time: t_l reads u of its own frame only (L = 0)"
    else:
        note = (f"window '{model_cfg.window}', L = {model_cfg.L:g}: t_{frame} reads u from the {len(offs)} shaded frames "
                f"(red: frame {frame}); W also rolls u by one capsule unit per frame (Eq 9)")
    ax.text(x0, 0.45, note, ha="left", va="center", fontsize=8)


def tvae_diagram(model_cfg: Any, *, S: int | None = None, frame: int = 0, ax: plt.Axes | None = None,
                 title: str | None = None) -> plt.Axes:
    """The TVAE of ``model_cfg`` (a :class:`tvae_core.models.ModelConfig`) as a block diagram.

    Top row: frame ``x_l`` -> ``q_phi`` -> ``z_l``; middle row: the frames of the temporal window ->
    ``q_gamma`` -> ``u_{l+delta}`` -> ``W u^2`` (summed over the neighbourhood *and* the window's frames);
    then ``t_l = (z_l - mu) / sqrt(W u^2)`` -> ``g_theta`` -> the decoded frame.  A strip at the bottom
    shows the sequence of ``S`` frames (default: enough to show the window) with the frames ``t_l``
    reads highlighted.  Sizes come from the config: pixels, hidden layers, latent units, topography."""
    offs = time_offsets(model_cfg)
    n, P = model_cfg.n_latent, model_cfg.in_dim
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 3.9))
    ax.set_xlim(0, 11)
    ax.set_ylim(0.25, 4.2)
    ax.set_axis_off()
    enc = "-".join(str(h) for h in model_cfg.enc_hidden)
    dec = "-".join(str(h) for h in model_cfg.dec_hidden)
    zc, uc, tc, wc = "#cfe3f7", "#f8dcc2", "#d8efd0", "#efe2f5"
    # z path
    _box(ax, (0.8, 3.7), 1.2, 0.6, r"frame $\mathbf{x}_l$" + f"\n{P} pixels", "white")
    _box(ax, (2.7, 3.7), 1.7, 0.6, r"encoder $q_\phi$" + f"\n{P}-{enc}-2x{n}", zc, 8)
    _box(ax, (4.6, 3.7), 1.1, 0.6, r"$\mathbf{z}_l$" + f"\n{n} units", zc)
    _arrow(ax, (1.4, 3.7), (1.85, 3.7))
    _arrow(ax, (3.55, 3.7), (4.05, 3.7), "sample")
    # u path
    window = ", ".join(f"l{d:+d}" if d else "l" for d in offs) if len(offs) <= 4 else \
        f"l{offs[0]:+d} ... l{offs[-1]:+d}".replace("+0", "")
    _box(ax, (0.8, 2.2), 1.2, 0.6, r"frames $\mathbf{x}_{l+\delta}$" + "\n" + window, "white", 8)
    _box(ax, (2.7, 2.2), 1.7, 0.6, r"encoder $q_\gamma$" + f"\n{P}-{enc}-2x{model_cfg.n_u}", uc, 8)
    _box(ax, (4.6, 2.2), 1.1, 0.6, r"$\mathbf{u}_{l+\delta}$" + f"\n{model_cfg.n_u} units", uc)
    _box(ax, (6.5, 2.2), 2.0, 0.75, r"$\mathbf{W}\,\mathbf{u}^2$" + "\n" + _layout_text(model_cfg), wc, 8)
    _arrow(ax, (1.4, 2.2), (1.85, 2.2))
    _arrow(ax, (3.55, 2.2), (4.05, 2.2), "sample")
    _arrow(ax, (5.15, 2.2), (5.5, 2.2), "square")
    # t and decoder
    _box(ax, (7.4, 3.7), 2.1, 0.75, r"$\mathbf{t}_l = \dfrac{\mathbf{z}_l - \mu}{\sqrt{\mathbf{W}\mathbf{u}^2}}$", tc, 10)
    _arrow(ax, (5.15, 3.7), (6.35, 3.7))
    _arrow(ax, (6.9, 2.6), (7.2, 3.3), r"$\sqrt{\cdot}$")
    _box(ax, (9.55, 3.7), 1.5, 0.6, r"decoder $g_\theta$" + f"\n{n}-{dec}-{P}", tc, 8)
    _arrow(ax, (8.45, 3.7), (8.8, 3.7))
    _box(ax, (9.55, 2.45), 1.5, 0.6, r"$p_\theta(\mathbf{x}_l \mid g_\theta(\mathbf{t}_l))$" + "\nBernoulli", "white", 8)
    _arrow(ax, (9.55, 3.4), (9.55, 2.75))
    _window_strip(ax, model_cfg, offs, S or max(6, len(offs) + 4), frame, uc)
    ax.set_title(title or f"the TVAE ({n} latent units)", fontsize=11)
    return ax


# --------------------------------------------------------------------------------------------- orbit spread

def orbit_spread(d_all: Any, d_sorted: Any | None = None, ax: plt.Axes | None = None) -> plt.Axes:
    """Chapter 6: for each pair (row of ``d_all``: ``||z1 - g z2||`` over every order ``g``), the spread of
    the Euclidean distance (dots), its minimum over the group (the quotient metric) and, if given, the
    distance of the sorted vectors ``||s(z1) - s(z2)||`` (Prop 2: the same point)."""
    d = np.asarray(d_all, dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.6 + 0.5 * len(d)))
    rng = np.random.default_rng(0)
    for i, row in enumerate(d):
        ax.scatter(row, i + rng.uniform(-0.18, 0.18, len(row)), s=5, alpha=0.35, color="C0",
                   label="||z1 - g z2||, every order g" if i == 0 else None)
        ax.plot([row.min()], [i], "|", ms=16, mew=2.5, color="C3", label="min over g (quotient metric)" if i == 0 else None)
        if d_sorted is not None:
            ax.plot([float(np.asarray(d_sorted)[i])], [i], "o", mfc="none", ms=9, color="k",
                    label="||s(z1) - s(z2)|| (sorted)" if i == 0 else None)
    ax.set(yticks=range(len(d)), yticklabels=[f"pair {i}" for i in range(len(d))], xlabel="distance",
           title=f"random pairs of latents, {d.shape[1]} orders each: many Euclidean distances")
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="lower right")
    return ax


# --------------------------------------------------------------------------------------------- appendix C

def _ring(ax, cx, cy, r, values, cmap="Oranges", label=None):
    D = len(values)
    for i, v in enumerate(values):
        a = np.pi / 2 - 2 * np.pi * i / D
        ax.add_patch(plt.Circle((cx + r * np.cos(a), cy + r * np.sin(a)), 0.11, fc=plt.get_cmap(cmap)(0.15 + 0.8 * v),
                                ec="0.3", lw=0.8))
    if label:
        ax.text(cx, cy - r - 0.2, label, ha="center", va="top", fontsize=7.5)


def appendix_c_sketch(fig: plt.Figure | None = None) -> plt.Figure:
    """Four panels, one per extension of appendix C: C.1 a 3-unit capsule rolled by a whole unit vs by
    ``alpha = 1/2`` (Eq 19); C.2 a capsule as a padded line, not a ring; C.3 a capsule as a lattice with two
    roll axes (Eq 21); C.4 the frames a forward and a causal window read (Eq 22)."""
    fig = fig or plt.figure(figsize=(11, 2.9))
    axes = fig.subplots(1, 4)
    for ax in axes:
        ax.set_axis_off()
        ax.set_aspect("equal")
    # C.1
    ax = axes[0]
    base = np.array([1.0, 0.2, 0.0])
    half = 0.5 * base + 0.5 * np.roll(base, 1)
    _ring(ax, 0.0, 0.0, 0.35, base, label="frame 0")
    _ring(ax, 1.1, 0.0, 0.35, np.roll(base, 1), label="Eq 9: 1 unit")
    _ring(ax, 2.2, 0.0, 0.35, half, label="Eq 19: 1/2")
    ax.set(xlim=(-0.6, 2.8), ylim=(-1.0, 0.6), title="C.1 partial roll (D = 3)")
    # C.2
    ax = axes[1]
    D, pad = 6, 2
    for i in range(-pad, D + pad):
        inside = 0 <= i < D
        ax.add_patch(Rectangle((i * 0.3, 0), 0.26, 0.26, fc="#f8dcc2" if inside else "0.92", ec="0.3",
                               ls="-" if inside else "--", lw=0.8))
    ax.annotate("", (D * 0.3 + 0.05, -0.15), (-0.05, -0.15), arrowprops=dict(arrowstyle="->", lw=1))
    ax.text(D * 0.15, -0.35, "rolls along a line;", ha="center", fontsize=7.5)
    ax.text(D * 0.15, -0.55, "L padded units of U at each end", ha="center", fontsize=7.5)
    ax.set(xlim=(-0.8, (D + pad) * 0.3 + 0.1), ylim=(-0.8, 0.6), title="C.2 non-cyclic capsule")
    # C.3
    ax = axes[2]
    s = 5
    ang = np.linspace(0, 2 * np.pi, s, endpoint=False)
    img = np.exp(np.add.outer(np.cos(ang), np.cos(ang - 1.3)))
    ax.imshow(img, cmap="Oranges", extent=(0, 1.5, 0, 1.5))
    ax.annotate("", (1.75, 1.5), (1.75, 0), arrowprops=dict(arrowstyle="<->", lw=1, color="C0"))
    ax.annotate("", (1.5, -0.2), (0, -0.2), arrowprops=dict(arrowstyle="<->", lw=1, color="C2"))
    ax.text(1.85, 0.75, "axis 0", fontsize=7.5, va="center", color="C0")
    ax.text(0.75, -0.42, "axis 1", fontsize=7.5, ha="center", color="C2")
    ax.set(xlim=(-0.2, 2.4), ylim=(-0.6, 1.6), title="C.3 2-D capsule: one axis per transformation")
    # C.4
    ax = axes[3]
    S, l, L = 7, 3, 2
    for row, (name, frames) in enumerate((("forward", range(l, l + 2 * L)), ("causal", range(l - L, l + 1)))):
        y = 0.5 - row * 0.6
        ax.text(-0.15, y + 0.13, name, ha="right", va="center", fontsize=7.5)
        for k in range(S):
            ax.add_patch(Rectangle((k * 0.3, y), 0.26, 0.26, fc="#f8dcc2" if k in frames else "0.95",
                                   ec="C3" if k == l else "0.5", lw=1.8 if k == l else 0.8))
    ax.text(S * 0.15, -0.55, f"frames t_{l} reads (red: frame {l})", ha="center", fontsize=7.5)
    ax.set(xlim=(-1.1, S * 0.3 + 0.1), ylim=(-0.8, 1.0), title="C.4 causal window")
    fig.tight_layout()
    return fig
