"""The capsule-activity picture of chapter 4: which capsule it shows and what a rolling capsule looks like."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest
import torch

from tvae_core import roll
from tvae_experiments.capsule_views import capsule_activity, roll_consistency
from tvae_experiments.plots import capsule_activity_figure


def _rolling_codes(S=6, C=3, D=6, rolling=1, seed=0):
    """Codes (S, C*D) whose capsule ``rolling`` rolls one unit per frame on top of a large offset; the others are noise."""
    g = torch.Generator().manual_seed(seed)
    t0 = torch.randn(C * D, generator=g)
    t = torch.stack([roll(t0, l, D) for l in range(S)]) + torch.randn(S, C * D, generator=g) * 0.05
    noise = torch.randn(S, C * D, generator=g)
    keep = torch.zeros(C * D, dtype=torch.bool)
    keep[rolling * D:(rolling + 1) * D] = True
    return torch.where(keep, t, noise) - 30.0


def test_the_rolling_capsule_is_found_and_drawn_as_a_band():
    t = _rolling_codes()
    score = roll_consistency(t, 6)
    assert score.shape == (3,) and score[1] > 0.95 and score[0] < 0.5 and score[2] < 0.5
    a, c = capsule_activity(t, 6)
    assert c == 1 and a.shape == (6, 6)
    assert a.abs().max() == pytest.approx(1.0)
    assert a.mean(1).abs().max() < 1e-5                       # each frame centred: the offset is gone
    # the band: frame l is frame 0 rolled by l
    for l in range(6):
        torch.testing.assert_close(a[l], roll(a[0], l, 6), atol=0.15, rtol=0)


def test_capsule_choice_can_be_forced_and_is_checked():
    t = _rolling_codes()
    assert capsule_activity(t, 6, capsule=2)[1] == 2
    with pytest.raises(ValueError, match="outside"):
        capsule_activity(t, 6, capsule=3)
    with pytest.raises(ValueError, match=r"\(S, C\*D\)"):
        roll_consistency(t[None], 6)


def test_the_figure_has_a_row_of_codes_and_a_row_rolled_back():
    t = _rolling_codes()
    a, _ = capsule_activity(t, 6)
    held = torch.arange(6) >= 4
    fig = capsule_activity_figure({"rolls": a, "noise": capsule_activity(t, 6, capsule=0)[0]}, held, "test")
    axes = fig.axes
    assert len(axes) == 4
    aligned = np.asarray(axes[2].images[0].get_array())        # column 0, second row: Roll_{-l}(t_l)
    assert np.abs(aligned - aligned[:1]).max() < 0.15          # vertical stripes
    assert len(axes[0].lines) == 1                             # the held-out boundary
    assert len(capsule_activity_figure({"rolls": a}, aligned=False).axes) == 1
