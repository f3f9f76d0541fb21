"""tidy_notebook: one parameters cell with the run's values, no progress bars on the page."""
from __future__ import annotations

import nbformat

from tvae_book.tidy import drop_progress_bars, merge_parameters, tidy_notebook


def _nb():
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell('profile = "cpu"   # "smoke" | "cpu"\nseed = 0          # seed\ndata_dir = None   # data')
    p.metadata["tags"] = ["parameters"]
    inj = nbformat.v4.new_code_cell('# Parameters\nprofile = "smoke"\nseed = 3\ndevice = "cpu"\n')
    inj.metadata["tags"] = ["injected-parameters"]
    c = nbformat.v4.new_code_cell("x")
    c.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="training a:  50%|#####     | 5/10 [00:01<00:01,  4.1step/s]"),
        nbformat.v4.new_output("stream", name="stderr", text="UserWarning: something to read\n"),
        nbformat.v4.new_output("stream", name="stdout", text="a: loaded cached weights a.pt (trained in 3 s)\n")]
    nb.cells = [p, inj, c]
    return nb


def test_the_run_values_replace_the_defaults_and_the_comments_stay():
    nb = merge_parameters(_nb())
    assert len(nb.cells) == 2 and "parameters" in nb.cells[0].metadata["tags"]
    assert nb.cells[0].source.splitlines() == [
        'profile = "smoke"   # "smoke" | "cpu"', "seed = 3          # seed", "data_dir = None   # data",
        'device = "cpu"   # set by the run']
    assert all("injected-parameters" not in c.metadata.get("tags", []) for c in nb.cells)


def test_only_progress_bars_are_dropped():
    nb = drop_progress_bars(_nb())
    texts = [o["text"] for o in nb.cells[2].outputs]
    assert texts == ["UserWarning: something to read\n", "a: loaded cached weights a.pt (trained in 3 s)\n"]


def test_a_notebook_without_injected_parameters_is_unchanged():
    nb = _nb()
    del nb.cells[1]
    before = nbformat.writes(nb)
    assert nbformat.writes(merge_parameters(nb)) == before
    assert len(tidy_notebook(_nb()).cells) == 2
