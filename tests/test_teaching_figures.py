"""The teaching figures of chapters 3, 6 and 10 and the glue helpers (tvae_experiments.teaching_figures)."""
from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tvae_core.models import ModelConfig  # noqa: E402
from tvae_experiments import teaching_figures as tf  # noqa: E402


def _texts(ax) -> str:
    return " ".join(t.get_text() for t in ax.texts)


@pytest.mark.parametrize("window, L, offsets", [("forward", 1, [0, 1]), ("centered", 1, [-1, 0, 1]),
                                                ("causal", 2, [-2, -1, 0])])
def test_time_offsets_follow_the_topography(window, L, offsets) -> None:
    cfg = ModelConfig(topography="temporal", n_caps=2, capsule_dim=6, K=3, L=L, window=window,
                      time_boundary="zero" if window == "causal" else "circular")
    assert tf.time_offsets(cfg) == offsets == list(cfg.build_topography().offsets)
    assert tf.time_offsets(ModelConfig()) == [0]  # the torus: no time


def test_tvae_diagram_is_drawn_from_the_config() -> None:
    cfg = ModelConfig(in_dim=64, enc_hidden=(32,), dec_hidden=(32,), topography="temporal", n_caps=3, capsule_dim=6,
                      K=3, L=1.5, window="forward")
    ax = tf.tvae_diagram(cfg, S=6)
    text = _texts(ax)
    assert "64-32-2x18" in text and "18-32-64" in text          # encoder and decoder sizes from the config
    assert "3 capsules x 6 units" in text and "L = 1.5" in text  # the topography and the window
    shaded = [p for p in ax.patches if type(p).__name__ == "Rectangle" and p.get_facecolor()[:3] != (0.95, 0.95, 0.95)]
    assert len(shaded) == 3                                      # 2L = 3 frames read by t_0
    plt.close(ax.figure)
    torus = tf.tvae_diagram(ModelConfig())
    assert "18 x 18 torus" in _texts(torus) and "L = 0" in _texts(torus)
    plt.close(torus.figure)


def test_orbit_spread_marks_the_minimum_and_the_sorted_distance() -> None:
    d = np.array([[3.0, 1.0, 2.0], [5.0, 4.0, 6.0]])
    ax = tf.orbit_spread(d, np.array([1.0, 4.0]))
    ticks = [line for line in ax.lines if line.get_marker() == "|"]
    assert [float(t.get_xdata()[0]) for t in ticks] == [1.0, 4.0]
    assert len(ax.get_yticks()) == 2
    plt.close(ax.figure)


def test_appendix_c_sketch_has_four_panels() -> None:
    fig = tf.appendix_c_sketch()
    assert [a.get_title()[:3] for a in fig.axes] == ["C.1", "C.2", "C.3", "C.4"]
    plt.close(fig)


def test_verdicts_and_glue_values(monkeypatch) -> None:
    glued = {}
    monkeypatch.setattr(tf, "_glue", lambda key, value: glued.__setitem__(key, value))
    claims = [SimpleNamespace(name="a", passed=True, enforced=True), SimpleNamespace(name="b", passed=False, enforced=False),
              SimpleNamespace(name="c", passed=False, enforced=True)]
    out = tf.glue_verdicts(SimpleNamespace(claims=claims), "ch")
    assert out == {"ch_a": "holds", "ch_b": "does not hold (reported on this profile, not enforced)",
                   "ch_c": "does not hold"} == glued
    glued.clear()
    assert tf.glue_values("p", {"x": np.float64(0.5), "n": 3}) == {"p_x": 0.5, "p_n": 3} == glued
    assert type(glued["p_x"]) is float
