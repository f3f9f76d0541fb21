"""Make an executed chapter read well on the page: one parameters cell, no progress bars.

Papermill inserts an ``injected-parameters`` cell after the chapter's ``parameters`` cell, so a
rendered page would show two parameter cells (the source's defaults, then the values the run
used).  :func:`merge_parameters` writes the injected values into the source's cell, keeping its
comments (which say what each parameter may be), and drops the injected cell.
:func:`drop_progress_bars` removes the tqdm bars training writes to stderr (kept in the page they
read as wrapped "training ...: 100%|####| ..." lines); the one-line summaries chapters print
("loaded cached weights ... (trained in 194 s)", "trained in 5.0 s") stay.
"""
from __future__ import annotations

import re
from typing import Any

__all__ = ["merge_parameters", "drop_progress_bars", "tidy_notebook"]

_ASSIGN = re.compile(r"^(?P<name>[A-Za-z_]\w*)\s*=\s*(?P<value>.*?)(?P<comment>\s+#.*)?$")
_PROGRESS = re.compile(r"\d+%\|.*\|.*\[|\d+/\d+ \[\d+:\d+")


def _source(cell: Any) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def _tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def merge_parameters(nb: Any) -> Any:
    """Write the values of the ``injected-parameters`` cell into the ``parameters`` cell (same
    line, comment kept; parameters the source cell lacks are appended) and remove the injected
    cell.  A notebook without both cells is returned unchanged.  Modifies ``nb`` in place."""
    cells = nb["cells"]
    injected = next((i for i, c in enumerate(cells) if "injected-parameters" in _tags(c)), None)
    original = next((i for i, c in enumerate(cells) if "parameters" in _tags(c)), None)
    if injected is None or original is None:
        return nb
    values = {}
    for line in _source(cells[injected]).splitlines():
        m = _ASSIGN.match(line.strip())
        if m and not line.lstrip().startswith("#"):
            values[m["name"]] = m["value"]
    out, seen = [], set()
    for line in _source(cells[original]).splitlines():
        m = _ASSIGN.match(line)
        if m and m["name"] in values:
            seen.add(m["name"])
            line = line[:m.start("value")] + values[m["name"]] + line[m.end("value"):]
        out.append(line)
    out += [f"{k} = {v}   # set by the run" for k, v in values.items() if k not in seen]
    cells[original]["source"] = "\n".join(out)
    del cells[injected]
    return nb


def drop_progress_bars(nb: Any) -> Any:
    """Remove stderr stream outputs that are progress bars (tqdm's ``NN%|###| n/N [..]``).
    Modifies ``nb`` in place."""
    for cell in nb["cells"]:
        if "outputs" in cell:
            cell["outputs"] = [o for o in cell["outputs"] if not (
                o.get("output_type") == "stream" and o.get("name") == "stderr"
                and _PROGRESS.search("".join(o.get("text", ""))))]
    return nb


def tidy_notebook(nb: Any) -> Any:
    """:func:`merge_parameters` then :func:`drop_progress_bars`."""
    return drop_progress_bars(merge_parameters(nb))
