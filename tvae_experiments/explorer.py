"""Interactive figures that respond without a kernel: every setting drawn once, switched in the browser.

``widgets.interactive`` redraws by calling Python, so on the static HTML book its sliders move and
nothing changes (ipywidgets issues 2069, 1695, 3319).  :func:`explorer` instead renders the figure
for every combination of the controls' values when the chapter executes, puts the images in
nested ``widgets.Stack`` s (one level per control) and links each control's ``index`` to the
``selected_index`` of the stacks of its level with ``widgets.jslink``.  The embedded widget
manager of the built page runs those links client-side, so the figure responds offline; in a live
notebook the same links run in the front end.  Cost: ``prod(len(values))`` renders and PNGs at
execution time; a range subsampled to keep the page light is said so under the controls.

    view = explorer(draw, {"nu": [1, 2, 5, 30]}, note="nu: 4 of 1..30")
    view        # last expression of a cell: displayed

``draw(**setting)`` must draw one matplotlib figure and return it (it is saved and closed).
"""
from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["explorer", "Explorer", "IMAGE_FORMATS"]


IMAGE_FORMATS = ("png", "jpeg")
"""How :func:`explorer` stores its drawings: PNG (exact; line art and flat colours) or JPEG (quality 85;
several times smaller for photographic content such as decoded images, which PNG compresses poorly)."""


def _png(fig, dpi: int, image_format: str = "png") -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    extra = {"pil_kwargs": {"quality": 85}} if image_format == "jpeg" else {}
    fig.savefig(buf, format=image_format, dpi=dpi, bbox_inches="tight", **extra)
    plt.close(fig)
    return buf.getvalue()


def _control(name: str, values: Sequence[Any], default: Any):
    """A ``SelectionSlider`` (numbers) or ``Dropdown`` (anything else) over ``values``."""
    import ipywidgets as widgets

    options = [(str(v), v) for v in values]
    index = values.index(default)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return widgets.SelectionSlider(options=options, index=index, description=name, continuous_update=True,
                                       style={"description_width": "initial"}, layout=widgets.Layout(width="300px"))
    return widgets.Dropdown(options=options, index=index, description=name, style={"description_width": "initial"},
                            layout=widgets.Layout(width="260px"))


def _thin(values: list, keep: int, default: Any) -> list:
    """At most ``keep`` of ``values`` in their order: first, last, evenly spaced between, and ``default``."""
    if len(values) <= keep:
        return values
    idx = {round(i * (len(values) - 1) / (keep - 1)) for i in range(keep)} | {values.index(default)}
    return [v for i, v in enumerate(values) if i in idx]


class Explorer:
    """The widget tree of :func:`explorer`: ``controls`` (one per name), ``root`` (the outer Stack),
    ``stacks_by_level``, ``links`` (the client-side links: control ``index`` -> stack
    ``selected_index``) and ``images`` (the PNG of every setting, keyed by its tuple of values)."""

    def __init__(self, controls, root, stacks_by_level, links, images, box):
        self.controls, self.root, self.stacks_by_level = controls, root, stacks_by_level
        self.links, self.images, self.box = links, images, box

    @property
    def n_bytes(self) -> int:
        return sum(len(p) for p in self.images.values())

    def _repr_mimebundle_(self, **kwargs):  # display as the widget box
        return self.box._repr_mimebundle_(**kwargs)


def explorer(draw: Callable[..., Any], controls: Mapping[str, Sequence[Any]], *, defaults: Mapping[str, Any] | None = None,
             labels: Mapping[str, str] | None = None, same: Callable[..., Any] | None = None, note: str = "",
             dpi: int = 80, keep: int | None = None, image_format: str = "png") -> Explorer:
    """A kernel-free interactive figure: ``draw(**setting)`` for every combination of ``controls``
    (name -> the values offered, in order), switched client-side.

    Numeric values get a ``SelectionSlider``, others a ``Dropdown``; ``defaults`` (name -> value)
    picks the setting shown first (default: each list's first value); ``labels`` (name -> text)
    the controls' descriptions (default: the names); ``same(**setting)`` (optional) returns a key,
    and settings with equal keys share one drawing (e.g. a control the figure ignores for some
    values of another).  ``note`` is printed under
    the controls (say there which ranges are subsampled).  ``keep`` (optional, >= 2) draws at most
    that many values of each control -- the first, the last and evenly spaced ones between, plus its
    default -- and adds to the note which were kept (the smoke profile's explorers: a few drawings,
    the same widgets).  ``image_format``: one of :data:`IMAGE_FORMATS`.  Raises ``ValueError`` naming a
    control with no values, a default that is not among them, a ``keep`` below 2 or an unknown format."""
    import ipywidgets as widgets

    from tvae_core.checks import check_choice

    check_choice("image_format", image_format, IMAGE_FORMATS)
    names, values, first, note = _settings(controls, defaults, keep, note)
    images = _draw_all(draw, names, values, same, dpi, image_format)
    labels = dict(labels or {})
    ctrls = {k: _control(labels.get(k, k), values[k], first[k]) for k in names}
    root, stacks_by_level = _stacks(names, values, first, images, image_format)
    links = [widgets.jslink((ctrls[k], "index"), (stack, "selected_index"))
             for level, k in enumerate(names) for stack in stacks_by_level[level]]
    parts = [widgets.HBox(list(ctrls.values()), layout=widgets.Layout(flex_flow="row wrap"))]
    if note:
        parts.append(widgets.HTML(f"<span style='font-size: 0.8em; color: #555'>{note}</span>"))
    box = widgets.VBox(parts + [root], layout=widgets.Layout(align_items="flex-start"))
    box.add_class("tvae-explorer")
    return Explorer(ctrls, root, stacks_by_level, links, images, box)


def _settings(controls: Mapping[str, Sequence[Any]], defaults: Mapping[str, Any] | None, keep: int | None,
              note: str) -> tuple[list[str], dict[str, list], dict[str, Any], str]:
    """The checked controls of :func:`explorer`: their names, the values drawn (thinned to ``keep``), the
    setting shown first, and ``note`` with the thinning said."""
    names = list(controls)
    values = {k: list(v) for k, v in controls.items()}
    if not names:
        raise ValueError("controls must name at least one control")
    for k, v in values.items():
        if not v:
            raise ValueError(f"control {k!r} has no values")
    defaults = dict(defaults or {})
    for k, d in defaults.items():
        if k not in values or d not in values[k]:
            raise ValueError(f"defaults[{k!r}]={d!r} is not one of the values of control {k!r}: {values.get(k)}")
    first = {k: defaults.get(k, v[0]) for k, v in values.items()}
    if keep is not None:
        if not isinstance(keep, int) or keep < 2:
            raise ValueError(f"keep must be an int >= 2 (values drawn per control) or None, got {keep!r}")
        thinned = {k: _thin(v, keep, first[k]) for k, v in values.items()}
        kept = [f"{k} {len(thinned[k])} of {len(v)}" for k, v in values.items() if len(thinned[k]) < len(v)]
        if kept:
            note = (note + "; " if note else "") + "this run drew fewer values: " + ", ".join(kept)
        values = thinned
    return names, values, first, note


def _draw_all(draw: Callable[..., Any], names: list[str], values: dict[str, list], same: Callable[..., Any] | None,
              dpi: int, image_format: str) -> dict[tuple, bytes]:
    """The image of every setting (a tuple of values in ``names`` order); equal ``same`` keys share one drawing."""
    images: dict[tuple, bytes] = {}
    drawn: dict[Any, bytes] = {}
    for setting in itertools.product(*(values[k] for k in names)):
        kw = dict(zip(names, setting))
        key = setting if same is None else same(**kw)
        if key not in drawn:
            drawn[key] = _png(draw(**kw), dpi, image_format)
        images[setting] = drawn[key]
    return images


def _stacks(names: list[str], values: dict[str, list], first: dict[str, Any], images: dict[tuple, bytes],
            image_format: str) -> tuple[Any, list[list]]:
    """The nested ``Stack`` s (one level per control, the images as leaves): the root and each level's stacks."""
    import ipywidgets as widgets

    stacks_by_level: list[list] = [[] for _ in names]

    def build(level: int, prefix: tuple):
        if level == len(names):
            return widgets.Image(value=images[prefix], format=image_format)
        k = names[level]
        stack = widgets.Stack([build(level + 1, prefix + (v,)) for v in values[k]],
                              selected_index=values[k].index(first[k]))
        stacks_by_level[level].append(stack)
        return stack

    return build(0, ()), stacks_by_level
