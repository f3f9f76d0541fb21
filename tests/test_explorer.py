"""explorer(): every setting drawn once, nested Stacks switched by client-side links."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from tvae_experiments.explorer import explorer  # noqa: E402


def draw(a, b):
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.set_title(f"{a}-{b}")
    ax.plot([0, a], [0, len(b)])
    return fig


def test_every_setting_is_drawn_once_and_reachable_through_the_stacks():
    seen = []
    v = explorer(lambda a, b: (seen.append((a, b)), draw(a, b))[1], {"a": [1, 2, 3], "b": ["x", "yy"]},
                 defaults={"a": 2}, note="a: 3 values")
    assert seen == [(a, b) for a in (1, 2, 3) for b in ("x", "yy")]
    assert set(v.images) == set(seen) and all(p.startswith(b"\x89PNG") for p in v.images.values())
    assert len(set(v.images.values())) == 6                      # every setting its own picture
    assert [len(s) for s in v.stacks_by_level] == [1, 3]          # one outer stack, one inner per a
    assert type(v.controls["a"]).__name__ == "SelectionSlider" and type(v.controls["b"]).__name__ == "Dropdown"
    assert v.controls["a"].index == 1 and v.root.selected_index == 1          # the default a = 2
    # the links: each control's index drives every stack of its level (this is what the page runs)
    pairs = {(l.source[0].description, id(l.target[0])) for l in v.links}
    assert pairs == {("a", id(v.root))} | {("b", id(s)) for s in v.stacks_by_level[1]}
    assert all(l.source[1] == "index" and l.target[1] == "selected_index" for l in v.links)
    # following the stacks by index reaches the image of that setting
    for i, a in enumerate((1, 2, 3)):
        for j, b in enumerate(("x", "yy")):
            assert v.root.children[i].children[j].value == v.images[(a, b)]
    assert v.n_bytes == sum(len(p) for p in v.images.values())
    assert "a: 3 values" in v.box.children[1].value


def test_bad_controls_name_the_problem():
    with pytest.raises(ValueError, match="control 'a' has no values"):
        explorer(draw, {"a": [], "b": ["x"]})
    with pytest.raises(ValueError, match=r"defaults\['b'\]='z' is not one of the values of control 'b'"):
        explorer(draw, {"a": [1], "b": ["x"]}, defaults={"b": "z"})
    with pytest.raises(ValueError, match="at least one control"):
        explorer(draw, {})
    with pytest.raises(ValueError, match="image_format='gif' is not allowed; choose one of: 'png', 'jpeg'"):
        explorer(draw, {"a": [1], "b": ["x"]}, image_format="gif")


def test_jpeg_drawings_are_jpeg_widgets():
    v = explorer(draw, {"a": [1, 2], "b": ["x"]}, image_format="jpeg")
    assert all(p.startswith(b"\xff\xd8\xff") for p in v.images.values())  # the JPEG magic number
    assert {v.root.children[i].children[0].format for i in range(2)} == {"jpeg"}


def test_keep_draws_the_ends_evenly_spaced_values_and_the_default_and_says_so():
    seen = []
    v = explorer(lambda a, b: (seen.append((a, b)), draw(a, b))[1], {"a": list(range(10)), "b": ["x", "yy"]},
                 defaults={"a": 7}, note="a: 0..9", keep=3)
    assert sorted({a for a, _ in seen}) == [0, 4, 7, 9]           # ends, the middle (round(4.5) = 4), the default
    assert {b for _, b in seen} == {"x", "yy"}                    # a control with <= keep values is untouched
    assert [o[1] for o in v.controls["a"].options] == [0, 4, 7, 9] and v.controls["a"].value == 7
    html = v.box.children[1].value
    assert "a: 0..9" in html and "a 4 of 10" in html and "b " not in html.split("fewer values:")[1]
    full = explorer(draw, {"a": [1, 2], "b": ["x"]}, keep=3)
    assert len(full.box.children) == 2 or "fewer" not in full.box.children[1].value
    for bad in (1, 0, 2.5):
        with pytest.raises(ValueError, match="keep must be an int >= 2"):
            explorer(draw, {"a": [1, 2, 3], "b": ["x"]}, keep=bad)
