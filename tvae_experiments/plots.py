"""Figures shared by the chapters, so every chapter draws them the same way.

All functions take an optional matplotlib ``ax`` and return it; none calls ``plt.show``.
"""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator
from scipy import stats as sps
import torch
from torch import Tensor

from tvae_core.stats import EnergyCorr

__all__ = ["use_book_style", "student_t_panel", "matrix_image", "energy_profile", "lag_shift_map", "tile",
           "image_grid", "pca_rgb_map", "traversal_rows", "frame_table", "traversal_sheet_figure", "capsule_activity_figure", "knn_curves", "embedding_scatter"]


def use_book_style() -> None:
    """Readable defaults for notebook and HTML figures."""
    plt.rcParams.update({
        "figure.dpi": 100, "savefig.dpi": 100, "font.size": 10, "axes.titlesize": 11,
        "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
        "image.cmap": "viridis",
    })


def _ax(ax: Axes | None, size=(4.5, 3.2)) -> Axes:
    return ax if ax is not None else plt.subplots(figsize=size)[1]


def student_t_panel(t: np.ndarray, nu: float, ax: Axes | None = None, lim: float = 8.0, bins: int = 121) -> Axes:
    """Histogram of constructed samples ``t`` (log density) against scipy's t(nu) and N(0,1)."""
    ax = _ax(ax)
    edges = np.linspace(-lim, lim, bins)
    ax.hist(t, bins=edges, density=True, color="C0", alpha=0.45, label="Z / sqrt(mean U²)")
    x = np.linspace(-lim, lim, 400)
    ax.plot(x, sps.t(df=nu).pdf(x), "C3", lw=1.8, label=f"scipy t(ν={nu:g})")
    ax.plot(x, sps.norm.pdf(x), "k--", lw=1, label="N(0,1)")
    ax.set_yscale("log")
    ax.set_ylim(1e-5, 1)
    ax.set_xlabel("t")
    ax.set_title(f"ν = {nu:g}")
    return ax


def matrix_image(W: Tensor | np.ndarray, title: str = "", ax: Axes | None = None) -> Axes:
    """Show an adjacency matrix ``W`` (rows: variables T_i, columns: the U's they share)."""
    ax = _ax(ax, (3.4, 3.4))
    W = W.numpy() if isinstance(W, Tensor) else W
    ax.imshow(W, cmap="Greys", interpolation="nearest", vmin=0)
    ax.set_title(title)
    ax.set_xlabel("U index j")
    ax.set_ylabel("T index i")
    ax.grid(False)
    return ax


def energy_profile(dist: Sequence[float], corrs: Sequence[EnergyCorr], label: str = "",
                   ax: Axes | None = None, window: float | None = None) -> Axes:
    """Energy correlation with 95% CI against lattice distance; ``window`` marks the edge
    beyond which no U is shared."""
    ax = _ax(ax)
    r = np.array([c.r for c in corrs])
    err = np.array([[c.r - c.lo for c in corrs], [c.hi - c.r for c in corrs]])
    ax.errorbar(dist, r, yerr=err, fmt="o-", ms=4, capsize=3, label=label)
    ax.axhline(0, color="k", lw=0.8)
    if window is not None:
        ax.axvline(window, color="C3", ls=":", lw=1.2, label="no shared U beyond")
    ax.set_xlabel("lattice distance")
    ax.set_ylabel("rank corr. of energies T²")
    return ax


def lag_shift_map(m: np.ndarray, lags: Sequence[int], shifts: Sequence[int], title: str = "",
                  ax: Axes | None = None, vmax: float | None = None) -> Axes:
    """Energy correlation ``corr(T²_{l,i}, T²_{l-lag, i-shift})`` as an image (lag x shift)."""
    ax = _ax(ax, (3.6, 3.2))
    vmax = vmax if vmax is not None else float(np.abs(m).max())
    im = ax.imshow(m, cmap="RdBu_r", vmin=-vmax, vmax=vmax, origin="lower",
                   extent=(shifts[0] - 0.5, shifts[-1] + 0.5, lags[0] - 0.5, lags[-1] + 0.5))
    ax.set_xlabel("unit shift (i → i - shift)")
    ax.set_ylabel("time lag (l → l - lag)")
    ax.set_title(title)
    ax.grid(False)
    plt.colorbar(im, ax=ax, shrink=0.8)
    return ax


def tile(images: Tensor | np.ndarray, rows: int, cols: int, img_side: int = 28, pad: int = 1) -> np.ndarray:
    """Tile ``rows*cols`` flattened images ``(rows*cols, img_side**2)`` into one array with
    ``pad`` pixels of gap (gaps are drawn at value 1, white in the ``gray_r`` colormap)."""
    imgs = images.numpy() if isinstance(images, Tensor) else np.asarray(images)
    imgs = imgs.reshape(rows, cols, img_side, img_side)
    s = img_side + pad
    out = np.ones((rows * s + pad, cols * s + pad))
    for r in range(rows):  # plotting only: rows x cols small
        for c in range(cols):
            out[pad + r * s: pad + r * s + img_side, pad + c * s: pad + c * s + img_side] = imgs[r, c]
    return out


def image_grid(images: Tensor | np.ndarray, rows: int, cols: int, title: str = "", ax: Axes | None = None,
               img_side: int = 28) -> Axes:
    """Show flattened images ``(rows*cols, img_side**2)`` in a grid (ink dark on white)."""
    ax = _ax(ax, (cols * 0.35 + 1, rows * 0.35 + 1))
    ax.imshow(tile(images, rows, cols, img_side), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title)
    ax.axis("off")
    return ax


def pca_rgb_map(features: Tensor, side: int, title: str = "", ax: Axes | None = None) -> Axes:
    """Colour every unit of a ``side x side`` torus by the first three principal components of
    its ``features: (side^2, F)`` (each unit's feature vector normalised first).  Units that
    encode similar things get similar colours: smooth patches mean a topographic map."""
    ax = _ax(ax, (4, 4))
    f = features / (features.norm(dim=1, keepdim=True) + 1e-12)
    f = f - f.mean(0)
    _, _, V = torch.linalg.svd(f, full_matrices=False)
    pcs = (f @ V[:3].T).numpy()  # (n, 3)
    lo, hi = np.percentile(pcs, 2, axis=0), np.percentile(pcs, 98, axis=0)
    rgb = np.clip((pcs - lo) / (hi - lo + 1e-12), 0, 1).reshape(side, side, 3)
    ax.imshow(rgb, interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    return ax


def _frame_rgb(frame: Tensor, frame_shape: tuple[int, int, int]) -> np.ndarray:
    """A flattened frame ``(C*H*W,)`` as an ``(H, W, 3)`` array (grey frames: ink dark on white)."""
    c, h, w = frame_shape
    f = frame.reshape(c, h, w).clamp(0, 1).numpy()
    if c == 1:
        return np.repeat(1.0 - f[0][..., None], 3, axis=-1)
    return f.transpose(1, 2, 0)


def frame_table(cells: dict[tuple[str, str], Tensor], frame_shape: tuple[int, int, int], title: str = "",
                cell_inches: float = 0.95):
    """A table of frames: ``cells[(row, column)]`` a flattened frame ``(C*H*W,)``; rows and
    columns in first-seen order, missing cells blank.  Drawn as one image (one ``imshow``, fast
    enough to render hundreds of settings for :func:`~tvae_experiments.explorer.explorer`).
    Returns the figure."""
    rows = list(dict.fromkeys(r for r, _ in cells))
    cols = list(dict.fromkeys(c for _, c in cells))
    _, h, w = frame_shape
    pad = max(2, h // 10)
    canvas = np.ones((len(rows) * (h + pad) + pad, len(cols) * (w + pad) + pad, 3))
    for (r, c), frame in cells.items():  # plotting only: a few cells
        y, x = pad + rows.index(r) * (h + pad), pad + cols.index(c) * (w + pad)
        canvas[y:y + h, x:x + w] = _frame_rgb(frame, frame_shape)
    fig, ax = plt.subplots(figsize=(len(cols) * cell_inches + 0.9, len(rows) * cell_inches + 0.6))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_xticks([pad + j * (w + pad) + w / 2 for j in range(len(cols))], cols, fontsize=8)
    ax.xaxis.tick_top()
    ax.set_yticks([pad + i * (h + pad) + h / 2 for i in range(len(rows))], rows, fontsize=8)
    ax.tick_params(length=0)
    ax.grid(False)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title, fontsize=9, pad=18)
    fig.tight_layout()
    return fig


def traversal_rows(rows: dict[str, Tensor], frame_shape: tuple[int, int, int], held_out: Tensor | None = None,
                   title: str = "", ax: Axes | None = None) -> Axes:
    """Fig 4 layout: one row per entry of ``rows`` (each ``(S, P)`` flattened frames); frames
    marked in ``held_out`` are drawn faded in the first row (the data), as in the paper."""
    names = list(rows)
    S = next(iter(rows.values())).shape[0]
    _, h, w = frame_shape
    pad = 2
    canvas = np.ones((len(names) * (h + pad) + pad, S * (w + pad) + pad, 3))
    for r, name in enumerate(names):
        for l in range(S):  # plotting only
            img = _frame_rgb(rows[name][l], frame_shape)
            if r == 0 and held_out is not None and bool(held_out[l]):
                img = 0.35 * img + 0.65  # greyed out: not in the input window
            canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + l * (w + pad): pad + l * (w + pad) + w] = img
    ax = _ax(ax, (S * 0.55, len(names) * 0.6 + 0.4))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_yticks([pad + r * (h + pad) + h / 2 for r in range(len(names))], names)
    ax.set_xticks([pad + l * (w + pad) + w / 2 for l in range(S)], [str(l) for l in range(S)])
    ax.tick_params(length=0, labelsize=8)
    ax.set_title(title, fontsize=10)
    ax.grid(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    return ax


def capsule_activity_figure(panels: dict[str, Tensor], held_out: Tensor | None = None, title: str = "",
                            aligned: bool = True):
    """Capsules as images: for each entry of ``panels`` a ``(S, D)`` activity of one capsule over a sequence
    (:func:`~tvae_experiments.capsule_views.capsule_activity`), frames down, units across.  A capsule that
    rolls one unit per frame draws a diagonal band.  With ``aligned`` a second row shows each frame rolled
    back by its index, ``Roll_{-l}(t_l)``: the band of a rolling capsule becomes vertical stripes.
    A dashed line marks the first frame of ``held_out`` (frames outside ``t_0``'s window).  Returns the figure."""
    names = list(panels)
    n_rows = 2 if aligned else 1
    fig, axes = plt.subplots(n_rows, len(names), figsize=(2.6 * len(names) + 0.6, 2.7 * n_rows + 0.5),
                             squeeze=False)
    for j, name in enumerate(names):
        a = np.asarray(panels[name], dtype=float)                             # (S, D)
        S, D = a.shape
        rows = [(a, r"$\mathbf{t}_l$")]
        if aligned:
            rows.append((np.stack([np.roll(a[l], -l) for l in range(S)]), r"$\mathrm{Roll}_{-l}(\mathbf{t}_l)$"))
        for i, (img, what) in enumerate(rows):
            ax = axes[i, j]
            ax.imshow(img, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest", aspect="auto")
            ax.set_title(f"{name}\n{what}", fontsize=9)
            ax.set_xlabel("unit d of the capsule", fontsize=8)
            ax.set_ylabel("frame l", fontsize=8)
            if held_out is not None and bool(np.asarray(held_out).any()):
                ax.axhline(int(np.asarray(held_out).argmax()) - 0.5, color="k", ls="--", lw=1)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.tick_params(labelsize=7)
            ax.grid(False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def traversal_sheet_figure(sheet, frame_shape: tuple[int, int, int], title: str = "", cols: int = 2):
    """Appendix D's page for one model: every sequence of a
    :class:`~tvae_experiments.capsules.TraversalSheet` as three rows (data with the frames outside
    ``t_0``'s window faded, direct ``g(t_l)``, rolled ``g(Roll_l(t_0))``), ``cols`` per row of the page.
    Returns the figure."""
    n, S = sheet.data.shape[:2]
    n_rows = -(-n // cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(cols * S * 0.42 + 0.8, n_rows * 1.45 + 0.5), squeeze=False)
    for j, ax in enumerate(axes.flat):
        if j >= n:
            ax.axis("off")
            continue
        traversal_rows({"data": sheet.data[j], "direct": sheet.direct[j], "rolled": sheet.rolled[j]}, frame_shape,
                       sheet.held_out, f"test sequence {sheet.index[j]}", ax=ax)
        ax.title.set_fontsize(8)
        ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def knn_curves(scores: dict[str, dict[int, float]], ylabel: str = "macro F1 of kNN", title: str = "",
               ax: Axes | None = None) -> Axes:
    """One line per representation: ``scores[name][k]`` against ``k`` (log axis), as the
    kNN figures of "Interpreting Equivariant Representations" (Fig 5-6)."""
    ax = _ax(ax, (5.2, 3.4))
    for i, (name, sc) in enumerate(scores.items()):
        ks = sorted(sc)
        ax.plot(ks, [sc[k] for k in ks], "o-", ms=4, color=f"C{i}", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("k (neighbours)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return ax


def embedding_scatter(xy: np.ndarray, color: np.ndarray, kind: str = "class", title: str = "",
                      ax: Axes | None = None) -> Axes:
    """2-D embedding ``xy: (N, 2)`` coloured by class labels (``kind="class"``, tab10 with a
    legend) or by an angle in degrees (``kind="angle"``, cyclic colour map with a colour bar)."""
    if kind not in ("class", "angle"):
        raise ValueError(f"kind={kind!r} is not allowed; choose one of: 'class', 'angle'")
    ax = _ax(ax, (4, 4))
    xy, color = np.asarray(xy), np.asarray(color)
    if kind == "class":
        for c in np.unique(color):
            m = color == c
            ax.scatter(xy[m, 0], xy[m, 1], s=4, color=plt.cm.tab10(int(c) % 10), label=str(c), alpha=0.7)
        ax.legend(fontsize=6, markerscale=2.5, ncol=2, loc="best", handletextpad=0.1, columnspacing=0.5)
    else:
        sc = ax.scatter(xy[:, 0], xy[:, 1], s=4, c=color, cmap="twilight", vmin=0, vmax=360, alpha=0.8)
        plt.colorbar(sc, ax=ax, label="angle (degrees)", fraction=0.046)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax
