"""The device check (benchmarks/gpu_check.py, `make gpu-check`) at its small size on the CPU, and its hours table."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("gpu_check", Path(__file__).parents[1] / "benchmarks" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(_spec)
sys.modules["gpu_check"] = gpu_check              # its dataclass looks its module up while it is defined
_spec.loader.exec_module(gpu_check)
PlanRow = gpu_check.PlanRow


def test_hours_table_on_a_constructed_plan() -> None:
    """Known answers: 3 compatible trainings of 3,600 steps and one other; eager 1 s/step, ensembles of 2 take
    1.5 s/step and of 4 take 2 s/step; a model of twice the reference FLOPs costs two reference steps."""
    rows = [PlanRow("a", f"m{i}", 3600, 10.0, "g") for i in range(3)] + [PlanRow("b", "big", 3600, 20.0, "")]
    h = gpu_check.hours_table(rows, ref_flops=10.0, eager_s=1.0, per_k={1: 1.0, 2: 1.5, 4: 2.0}, max_k=2)
    assert h["chapters"]["a"] == {"trainings": 3, "steps": 10800, "alone_h": 3.0, "ensembles_h": 1.5 + 1.0}
    assert h["chapters"]["b"] == {"trainings": 1, "steps": 3600, "alone_h": 2.0, "ensembles_h": 2.0}
    assert h["total"]["alone_h"] == 5.0 and h["total"]["ensembles_h"] == 4.5
    # up to 4 per ensemble: the three share one ensemble step of the next measured K (4: 2 s)
    assert gpu_check.hours_table(rows, 10.0, 1.0, {1: 1.0, 2: 1.5, 4: 2.0}, 4)["chapters"]["a"]["ensembles_h"] == 2.0
    # a smaller model is not faster (launch-bound): it costs one reference step
    small = gpu_check.hours_table([PlanRow("c", "tiny", 3600, 1.0, "")], 10.0, 1.0, {1: 1.0}, 1)
    assert small["total"]["alone_h"] == 1.0


@pytest.mark.timeout(600)
def test_the_small_check_runs_on_the_cpu_and_writes_its_record(tmp_path) -> None:
    result = gpu_check.main(["--size", "small", "--out", str(tmp_path)])
    record = json.loads((tmp_path / "gpu_check.json").read_text())
    assert record["machine"]["torch"] and record["size"] == "small" and record["profile"] == "smoke"
    assert [e["K"] for e in record["ensembles"]] == [1, 2, 4]
    assert all(e["s_per_step"] > 0 and e["model_steps_per_s"] > 0 for e in record["ensembles"])
    assert record["one_model"]["eager_s"] > 0 and record["one_model"]["graphed_mode"] == "static"
    assert record["graph_vs_eager"]["max_rel_diff"] == 0          # on a CPU the static step is the eager step
    assert record["chapter"]["rc"] == 0, record["chapter"]["tail"]
    hours = record["hours"]
    assert {"03_tvae_torus", "04_capsules", "05_tables"} <= set(hours["chapters"])
    assert hours["total"]["trainings"] >= 20 and hours["total"]["alone_h"] > 0
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| 4 | static |" in table and "| **all** |" in table and result["hours"] == hours


def test_the_committed_paper_plan_names_the_paper_models_of_the_chapter_specs() -> None:
    """benchmarks/paper_plan.json (written once by --write-plan: the paper data take minutes to build) lists
    exactly the models the chapter specs train at paper, less the chapters it says it could not plan."""
    from tvae_experiments.chapters import chapter_spec, planned_chapters

    saved = json.loads(gpu_check.PAPER_PLAN.read_text())
    planned = {r["name"] for r in saved["rows"]}
    wanted = {m.name for c in planned_chapters() if c not in saved["missing"] for m in chapter_spec(c).models("paper", 0)}
    assert planned == wanted, (sorted(planned - wanted), sorted(wanted - planned))
    assert set(saved["missing"]) <= {"06_invariant_graphs"}           # QM9 is not available offline


def test_the_device_script_calls_the_check_with_flags_it_takes(capsys) -> None:
    """benchmarks/device_check.sh (run on a lent GPU machine, never here) passes flags gpu_check.py has."""
    import re

    script = (gpu_check.REPO / "benchmarks" / "device_check.sh").read_text()
    call = next(line for line in script.splitlines() if "benchmarks/gpu_check.py" in line and line.startswith("python3"))
    with pytest.raises(SystemExit):
        gpu_check.main(["--help"])
    usage = capsys.readouterr().out
    flags = re.findall(r"--[a-z-]+", call)
    assert flags and all(f in usage for f in flags), (flags, usage)
    assert "/.whl/" in (gpu_check.REPO / ".gitignore").read_text().split()     # carried wheels are never committed
