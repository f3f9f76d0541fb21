"""Unit tests of the chapter runner and the report, on throwaway books written to tmp_path.

The throwaway chapters are tiny jupytext notebooks that follow the chapter contract (a
``parameters`` cell; metrics JSON written to ``$TVAE_RESULTS_DIR/<chapter>.json``) without
importing torch, so each execution costs about a kernel start.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from tvae_book import chapters as bk, cli, execute, html as bk_html, report
from tvae_book.chapters import Chapter, ChapterError, RunConfig

HEADER = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""

PARAMETERS = """\
```{code-cell} ipython3
:tags: [parameters]

profile = "cpu"
seed = 0
device = "auto"
data_dir = None
```
"""

WRITE_METRICS = """\
```{code-cell} ipython3
import json, os, sys
from pathlib import Path

claims = [{"name": "cwd", "statement": "runs in book/", "value": os.getcwd(),
           "threshold": "ends with book", "paper": None,
           "passed": os.path.basename(os.getcwd()) == "book"},
          {"name": "python", "statement": "kernel python", "value": sys.executable,
           "threshold": "the runner's python", "paper": "n/a", "passed": True},
          {"name": "seed", "statement": "injected seed", "value": float(seed),
           "threshold": "any", "paper": None, "passed": True},
          {"name": "data_dir", "statement": "injected data_dir", "value": str(data_dir),
           "threshold": "any", "paper": None, "passed": True}]
metrics = {"chapter": "NAME", "title": "Chapter NAME", "profile": profile, "seed": seed,
           "device": "cpu", "claims": claims, "all_passed": all(c["passed"] for c in claims),
           "elapsed_s": 0.01}
Path(os.environ["TVAE_RESULTS_DIR"], "NAME.json").write_text(json.dumps(metrics))
```
"""


def chapter_source(name: str, body: str = "", metrics: bool = True) -> str:
    """A throwaway chapter: header, title, parameters cell, ``body`` cells, metrics cell."""
    text = HEADER + f"\n# Chapter {name}\n\nSome math: $x^2$.\n\n" + PARAMETERS + "\n" + body
    if metrics:
        text += "\n" + WRITE_METRICS.replace("NAME", name)
    return text


def code_cell(source: str) -> str:
    """A MyST code cell holding ``source``."""
    return "```{code-cell} ipython3\n" + textwrap.dedent(source).strip() + "\n```\n"


@pytest.fixture
def book(tmp_path: Path) -> Path:
    """A throwaway book root: intro, two chapters, a plain page, the report page."""
    root = tmp_path / "book_root"
    (root / "book").mkdir(parents=True)
    (root / "_config.yml").write_text((bk.REPO_ROOT / "_config.yml").read_text())
    (root / "_theme").mkdir()                      # the stylesheet the real _config.yml names
    (root / "_theme" / "tvae.css").write_text((bk.REPO_ROOT / "_theme" / "tvae.css").read_text())
    (root / "_toc.yml").write_text(textwrap.dedent("""\
        format: jb-book
        root: book/intro
        chapters:
          - file: book/01_alpha
          - file: book/notes
          - file: book/02_beta
          - file: book/report
        """))
    (root / "book" / "intro.md").write_text("# Intro\n\nSee {doc}`report`.\n")
    (root / "book" / "notes.md").write_text("# Notes\n\nA plain page.\n")
    (root / "book" / "report.md").write_text("# Report placeholder\n")
    (root / "book" / "01_alpha.md").write_text(chapter_source("01_alpha"))
    (root / "book" / "02_beta.md").write_text(chapter_source("02_beta"))
    return root


def chapter(root: Path, name: str) -> Chapter:
    """The chapter ``name`` of the book at ``root``."""
    return bk.discover_chapters(root, [name])[0]


# --------------------------------------------------------------------------- profiles, discovery


def test_unknown_profile_raises_naming_the_options() -> None:
    with pytest.raises(ValueError, match=r"'gpu'.*smoke, cpu, paper"):
        bk.check_profile("gpu")
    assert bk.check_profile("smoke") == "smoke"


def test_cli_unknown_profile_exits_2_naming_the_options(book: Path, capsys) -> None:
    assert cli.main(["run", "--profile", "laptop", "--root", str(book)]) == 2
    err = capsys.readouterr().err
    assert "'laptop'" in err and "smoke, cpu, paper" in err


def test_discover_chapters_follows_toc_and_skips_non_chapters(book: Path) -> None:
    chapters = bk.discover_chapters(book)
    assert [c.name for c in chapters] == ["01_alpha", "02_beta"]
    assert chapters[0].path == book / "book" / "01_alpha.md"
    assert [c.name for c in bk.discover_chapters(book, ["02_beta"])] == ["02_beta"]


def test_discover_chapters_needs_a_jupytext_header(book: Path) -> None:
    (book / "book" / "02_beta.md").write_text("# Just Markdown\n")
    assert [c.name for c in bk.discover_chapters(book)] == ["01_alpha"]


def test_discover_chapters_errors(book: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown chapter.*03_gamma.*01_alpha, 02_beta"):
        bk.discover_chapters(book, ["03_gamma"])
    (book / "book" / "02_beta.md").unlink()
    with pytest.raises(FileNotFoundError, match="02_beta"):
        bk.discover_chapters(book)


def test_real_toc_lists_intro_chapters_and_report() -> None:
    files = bk.toc_files(bk.REPO_ROOT)
    assert files[0] == "book/intro" and files[-1] == "book/report"
    assert all(c.path.is_file() for c in bk.discover_chapters(bk.REPO_ROOT))


def test_toc_headings_and_intro_number_the_chapters_alike() -> None:
    """The sidebar (``_toc.yml``), each chapter's heading ("# 4. ...") and the intro's numbered list agree."""
    import re

    chapters = [c.path for c in bk.discover_chapters(bk.REPO_ROOT)]
    numbers = [int(re.match(r"# (\d+)\. ", next(line for line in p.read_text().splitlines() if line.startswith("# ")))
                   .group(1)) for p in chapters]
    assert numbers == list(range(1, len(chapters) + 1)), [p.name for p in chapters]
    assert [int(p.name[:2]) for p in chapters] == numbers
    intro = (bk.REPO_ROOT / "book" / "intro.md").read_text().split("## Chapters", 1)[1].split("\n## ", 1)[0]
    assert [int(n) for n in re.findall(r"^(\d+)\. \*\*", intro, re.MULTILINE)] == numbers


def test_run_config_makes_data_dir_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    params = RunConfig("smoke", 3, "cpu", "data").parameters()
    assert params == {"profile": "smoke", "seed": 3, "device": "cpu",
                      "data_dir": str(tmp_path / "data")}
    assert RunConfig().parameters()["data_dir"] is None


def test_a_missing_data_dir_is_an_error_not_a_silent_fallback(tmp_path: Path, capsys) -> None:
    with pytest.raises(ValueError, match="data_dir=.*is not a folder"):
        RunConfig("smoke", data_dir=str(tmp_path / "nowhere"))
    assert cli.main(["run", "--profile", "smoke", "--data-dir", str(tmp_path / "nowhere"), "--root", str(tmp_path)]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "x.json"
    bk.atomic_write_json(path, {"a": 1})
    bk.atomic_write_json(path, {"b": 2})
    assert bk.read_json(path) == {"b": 2}
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


# --------------------------------------------------------------------------- report


def metrics(name: str, claims: list[dict], **extra) -> dict:
    """A metrics record in the chapters' schema."""
    return {"chapter": name, "title": f"Title {name}", "profile": "cpu", "seed": 0,
            "device": "cpu", "claims": claims, "all_passed": all(c["passed"] for c in claims),
            "elapsed_s": 1.5, **extra}


CLAIM = {"name": "ks_nu3", "statement": "t(3) | KS", "value": 0.4321987, "threshold": "p > 0.01",
         "paper": "Eq 3", "passed": True}


def test_validate_metrics_accepts_the_schema_and_names_problems() -> None:
    assert report.validate_metrics(metrics("01_a", [CLAIM])) == []
    bad = metrics("01_a", [{**CLAIM, "value": True, "passed": "yes"}])
    del bad["seed"]
    problems = report.validate_metrics(bad)
    assert "missing field 'seed'" in problems
    assert any("claims[0].value" in p for p in problems)
    assert any("claims[0].passed" in p for p in problems)
    assert "no claims" in report.validate_metrics(metrics("01_a", []))
    lying = {**metrics("01_a", [{**CLAIM, "passed": False}]), "all_passed": True}
    assert any("all_passed disagrees" in p for p in report.validate_metrics(lying))


def test_report_on_a_results_folder_with_a_missing_chapter(tmp_path: Path) -> None:
    failed = {**CLAIM, "name": "roll_bce", "value": "n/a", "paper": None, "passed": False}
    bk.atomic_write_json(tmp_path / "01_a.json",
                             metrics("01_a", [CLAIM, failed], wall_time_s=12.34))
    text = report.render_report(tmp_path, ["01_a", "02_b"], titles={"02_b": "Second"})
    assert text.startswith("# Reproduction report\n")
    assert "1 of 2 chapters have metrics (profile `cpu`); 1 of 2 enforced claims passed" in text
    assert "No metrics yet for `02_b`" in text
    assert "## Title 01_a" in text and "## Second" in text
    assert "wall time 12.3 s" in text and "seed `0`" in text
    assert "Chapters' wall time: 0.2 min in total." in text
    assert "| ks_nu3 | t(3) \\| KS | Eq 3 | 0.4322 | p > 0.01 | pass |" in text
    assert "| roll_bce | t(3) \\| KS | – | n/a | p > 0.01 | **FAIL** |" in text
    assert "**some claims failed**" in text
    assert "{doc}`01_a`" in report.render_report(tmp_path, ["01_a"], book_links=True)


def test_report_with_no_results_at_all(tmp_path: Path) -> None:
    text = report.render_report(tmp_path / "nothing", ["01_a"])
    assert "0 of 1 chapters have metrics; 0 of 0 enforced claims passed" in text
    assert "has no metrics yet" in text


# --------------------------------------------------------------------------- execution


def test_execute_injects_parameters_and_records_wall_time(book: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (tmp_path / "data").mkdir()
    config = RunConfig("smoke", 7, "cpu", str(tmp_path / "data"))
    result = execute.execute_chapter(chapter(book, "01_alpha"), config, out, timeout=120,
                                    root=book)
    assert result.status == "ran" and result.notebook == out / "01_alpha.ipynb"
    data = bk.read_json(out / "01_alpha.json")
    values = {c["name"]: c["value"] for c in data["claims"]}
    assert data["profile"] == "smoke" and data["seed"] == 7
    assert values["cwd"] == str(book / "book")
    assert values["python"] == sys.executable
    assert values["data_dir"] == str(tmp_path / "data")
    assert data["wall_time_s"] > 0
    nb = nbformat.read(out / "01_alpha.ipynb", as_version=4)
    # one parameters cell on the page, holding the values the run used (tvae_book.tidy)
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and 'profile = "smoke"' in params[0].source and "seed = 7" in params[0].source
    assert nb.metadata.papermill.input_path == str(book / "book" / "01_alpha.md")
    assert sorted(p.name for p in out.iterdir()) == [
        "01_alpha.ipynb", "01_alpha.json", "01_alpha.stamp.json"]


def test_skip_if_unchanged(book: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    alpha = [chapter(book, "01_alpha")]

    def statuses(config: RunConfig) -> list[str]:
        results, failures = execute.run_chapters(alpha, config, out, timeout=120, root=book)
        assert failures == []
        return [r.status for r in results]

    smoke = RunConfig("smoke")
    assert statuses(smoke) == ["ran"]
    assert statuses(smoke) == ["skipped"]
    assert "unchanged since its last successful run, skipped" in capsys.readouterr().out
    assert statuses(RunConfig("smoke", seed=1)) == ["ran"]       # new parameters
    assert statuses(RunConfig("smoke", seed=1)) == ["skipped"]
    source = book / "book" / "01_alpha.md"
    source.write_text(source.read_text() + "\nOne more sentence.\n")
    assert statuses(RunConfig("smoke", seed=1)) == ["ran"]       # new source
    (book / "tvae_core").mkdir()
    (book / "tvae_core" / "model.py").write_text("X = 1\n")
    assert statuses(RunConfig("smoke", seed=1)) == ["ran"]       # new library code
    (book / "tvae_experiments").mkdir()
    (book / "tvae_experiments" / "train.py").write_text("Y = 1\n")
    assert statuses(RunConfig("smoke", seed=1)) == ["ran"]       # new experiment code
    (book / "tvae_book").mkdir()
    (book / "tvae_book" / "report.py").write_text("# pipeline only\n")
    assert statuses(RunConfig("smoke", seed=1)) == ["skipped"]   # pipeline code is ignored
    (out / "01_alpha.ipynb").unlink()
    assert statuses(RunConfig("smoke", seed=1)) == ["ran"]       # output gone


def test_chapters_run_in_parallel_workers_with_their_share_of_threads(book: Path, tmp_path: Path, capfd) -> None:
    """``run_chapters(workers=2)``: both chapters run, each kernel in a worker process gets
    ``cpu_count // 2`` threads (``OMP_NUM_THREADS``), results come back in chapter order, and a
    failing chapter is reported (its error crosses the process boundary) while the other finishes."""
    import os

    record = code_cell("""
        import os
        from pathlib import Path
        Path(os.environ["TVAE_RESULTS_DIR"], f"threads-{os.getpid()}.txt").write_text(os.environ.get("OMP_NUM_THREADS", "unset"))
        """)
    for name in ("01_alpha", "02_beta"):
        (book / "book" / f"{name}.md").write_text(chapter_source(name, record))
    chapters = [chapter(book, "01_alpha"), chapter(book, "02_beta")]
    out = tmp_path / "out"
    results, failures = execute.run_chapters(chapters, RunConfig("smoke"), out, timeout=120, root=book, workers=2)
    assert failures == [] and [(r.chapter, r.status) for r in results] == [("01_alpha", "ran"), ("02_beta", "ran")]
    seen = [p.read_text() for p in out.glob("threads-*.txt")]
    assert seen == [str(max(1, (os.cpu_count() or 1) // 2))] * 2  # two kernels (two pids), each its share
    printed = capfd.readouterr().out
    assert "2 chapters to run, 2 at a time" in printed and "[2/2] 02_beta: ok in" in printed

    broken = code_cell("""
        raise ValueError("claim broke in a worker")
        """)
    (book / "book" / "02_beta.md").write_text(chapter_source("02_beta", broken))
    (book / "book" / "01_alpha.md").write_text(chapter_source("01_alpha", record + "\n# changed\n"))
    results, failures = execute.run_chapters(chapters, RunConfig("smoke"), out, timeout=120, root=book, workers=2,
                                             keep_going=True)
    assert [(r.chapter, r.status) for r in results] == [("01_alpha", "ran")]
    assert [f.chapter for f in failures] == ["02_beta"] and "claim broke in a worker" in str(failures[0])
    assert failures[0].notebook == out / "02_beta.failed.ipynb" and failures[0].notebook.is_file()


def test_failing_cell_fails_the_run_naming_the_error(book: Path, tmp_path: Path,
                                                     capsys) -> None:
    body = code_cell("""
        x = 41
        raise ValueError(f"claim broke: {x + 1}")
        """)
    (book / "book" / "02_beta.md").write_text(chapter_source("02_beta", body))
    out = tmp_path / "out"
    with pytest.raises(ChapterError) as info:
        execute.execute_chapter(chapter(book, "02_beta"), RunConfig("smoke"), out,
                               timeout=120, root=book)
    message = str(info.value)
    assert "chapter 02_beta failed" in message
    assert "ValueError: claim broke: 42" in message and "'x = 41'" in message
    assert (out / "02_beta.failed.ipynb").is_file()
    assert not (out / "02_beta.stamp.json").exists() and not (out / "02_beta.ipynb").exists()

    code = cli.main(["run", "--profile", "smoke", "--root", str(book), "--out", str(out),
                        "--timeout", "120", "--keep-going"])
    captured = capsys.readouterr()
    assert code == 1
    assert "[1/2] 01_alpha: ok in" in captured.out
    assert "02_beta: FAILED" in captured.err and "ValueError: claim broke: 42" in captured.err
    assert "failed chapter(s): 02_beta" in captured.err
    assert "No metrics yet for `02_beta`" in (out / "report.md").read_text()


def _broken(kind: str) -> tuple[str, int]:
    """A chapter source broken in one way, and the cell timeout to run it with."""
    if kind == "no_metrics":
        return chapter_source("02_beta", metrics=False), 120
    if kind == "wrong_profile":
        return chapter_source("02_beta").replace('"profile": profile', '"profile": "paper"'), 120
    return chapter_source("02_beta", code_cell("import time\ntime.sleep(60)")), 3


@pytest.mark.parametrize("kind,message", [
    ("no_metrics", "wrote no metrics file 02_beta.json"),
    ("wrong_profile", "profile is 'paper', expected 'smoke'"),
    ("cell_timeout", "02_beta failed.*(?i:timeout|timed out)"),
])
def test_broken_chapter_fails_the_run(book: Path, tmp_path: Path, kind: str, message: str) -> None:
    source, timeout = _broken(kind)
    (book / "book" / "02_beta.md").write_text(source)
    with pytest.raises(ChapterError, match=message):
        execute.execute_chapter(chapter(book, "02_beta"), RunConfig("smoke"), tmp_path,
                               timeout=timeout, root=book)


def test_notebook_without_parameters_cell_is_refused(book: Path, tmp_path: Path) -> None:
    source = chapter_source("02_beta").replace(":tags: [parameters]\n", "")
    (book / "book" / "02_beta.md").write_text(source)
    with pytest.raises(ChapterError, match="no code cell tagged 'parameters'"):
        execute.execute_chapter(chapter(book, "02_beta"), RunConfig("smoke"), tmp_path,
                               timeout=120, root=book)


# --------------------------------------------------------------------------- HTML book


def test_book_command_stages_executed_notebooks_and_builds_html(book: Path, capsys) -> None:
    vendor = book / "_build" / "vendor"            # stand-ins for the npm JavaScript
    for rel in bk_html.VENDOR_JS.values():
        (vendor / rel).parent.mkdir(parents=True, exist_ok=True)
        (vendor / rel).write_text("/* stand-in */\n")
    (vendor / bk_html.VENDOR_MANIFEST).write_text(json.dumps({rel: 15 for rel in bk_html.VENDOR_JS.values()}))
    args = ["book", "--profile", "smoke", "--root", str(book), "--timeout", "120"]
    assert cli.main(args) == 0
    stage = book / "_build" / "src"
    staged = sorted(str(p.relative_to(stage)) for p in stage.rglob("*")
                    if p.is_file() and p.relative_to(stage).parts[0] not in ("_build", "_vendor"))
    assert staged == ["_config.yml", "_theme/tvae.css", "_toc.yml", "book/01_alpha.ipynb", "book/02_beta.ipynb",
                      "book/intro.md", "book/notes.md", "book/report.md"]
    assert "_static/tvae.css" in (book / "_build" / "html" / "book" / "01_alpha.html").read_text()
    config = (stage / "_config.yml").read_text()
    assert "execute_notebooks: 'off'" in config or "execute_notebooks: off" in config
    assert "{doc}`01_alpha`" in (stage / "book" / "report.md").read_text()
    html = book / "_build" / "html"
    assert (html / "index.html").is_file()
    report_html = (html / "book" / "report.html").read_text()
    assert "2 of 2 chapters have metrics" in report_html and "<td><p>pass</p></td>" in report_html
    assert (book / "_results" / "smoke" / "report.md").is_file()
    page = (html / "book" / "01_alpha.html").read_text()
    assert 'src="../_static/vendor/mathjax/es5/tex-mml-chtml.js' in page
    assert "cdn.jsdelivr.net/npm/mathjax" not in page
    assert (html / "_static" / "vendor" / bk_html.VENDOR_JS["mathjax"]).is_file()
    capsys.readouterr()

    assert cli.main(args) == 0                       # second run: nothing re-executed
    out = capsys.readouterr().out
    assert out.count("unchanged since") == 2 and "0 chapter(s) ran, 2 skipped" in out

    assert cli.main([*args, "--cdn"]) == 0                  # CDN links instead of vendor
    page = (html / "book" / "01_alpha.html").read_text()
    assert "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js" in page
    assert not (stage / "_vendor").exists()


def test_vendor_falls_back_to_cdn_without_npm(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(bk_html.shutil, "which", lambda name: None)
    assert bk_html.fetch_vendor(tmp_path / "vendor") is False
    assert "npm not found" in capsys.readouterr().out
    config: dict = {"sphinx": {"config": None}}
    assert bk_html.use_vendor(config, tmp_path / "vendor") == {}
    assert config == {"sphinx": {"config": None}}


def test_report_marks_unenforced_claims(tmp_path: Path) -> None:
    """A claim checked but not enforced (smoke scale) is shown with its reason and does not count."""
    soft = {**CLAIM, "name": "organised", "passed": False, "enforced": False,
            "reason": "smoke trains for seconds | too short"}
    met = {**soft, "name": "ordered", "passed": True, "reason": "needs >= 100k steps: paper profile"}
    m = metrics("01_a", [CLAIM, soft, met])
    m["all_passed"] = True
    assert report.validate_metrics(m) == []
    bk.atomic_write_json(tmp_path / "01_a.json", m)
    text = report.render_report(tmp_path, ["01_a"])
    assert "| not met (not enforced at this profile: smoke trains for seconds \\| too short) |" in text
    assert "| met (not enforced: needs >= 100k steps: paper profile) |" in text
    assert "1 of 1 enforced claims passed" in text
    silent = metrics("01_a", [CLAIM, {**soft, "reason": None}])
    silent["all_passed"] = True
    assert report.validate_metrics(silent) == ["claims[1] is not enforced but gives no reason"]
    assert any("claims[0].enforced" in p for p in report.validate_metrics(metrics("01_a", [{**CLAIM, "enforced": "no"}])))


def claim(name: str, passed: bool, enforced: bool = True, statement: str = "s", paper: str | None = None,
          reason: str | None = None, item: str = "Fig 1", kind: str = "paper") -> dict:
    """A claim record; a not-enforced one gets a reason unless given."""
    return {**CLAIM, "name": name, "statement": statement, "paper": paper, "passed": passed, "enforced": enforced,
            "reason": None if enforced else (reason or f"{name} is reported only: too small"), "item": item,
            "kind": kind}


def test_item_status_classifies_reproduced_partially_and_not() -> None:
    ok, failed = claim("a", True), claim("b", False)
    met_only, unmet_only = claim("c", True, enforced=False), claim("d", False, enforced=False)
    assert report.item_status([ok]) == report.item_status([ok, ok]) == "reproduced"
    # a claim the profile only reports counts when it was met (the paper's form beside cpu's weaker one)
    assert report.item_status([ok, met_only]) == "reproduced"
    # a claim that failed or was not met: partially; nothing enforced (smoke): partially at best
    assert report.item_status([ok, failed]) == report.item_status([ok, unmet_only]) == "partially reproduced"
    assert report.item_status([met_only]) == report.item_status([met_only, met_only]) == "partially reproduced"
    # nothing held: not reproduced (an item with no claims neither)
    assert report.item_status([failed]) == report.item_status([failed, unmet_only]) == "not reproduced"
    assert report.item_status([unmet_only]) == report.item_status([]) == "not reproduced"
    # the reasons: failed claims with value and rule, not-enforced ones grouped by reason
    same = claim("e", False, enforced=False, reason="d is reported only: too small")
    assert report.item_reasons([ok]) == []
    assert report.item_reasons([failed, unmet_only, same, met_only]) == [
        "`b` failed (0.4322; rule p > 0.01)",
        "`d` (not met), `e` (not met) not enforced: d is reported only: too small",
        "`c` (met) not enforced: c is reported only: too small"]


def test_paper_item_comes_from_the_declaration() -> None:
    assert report.paper_item("07_invariant_rotation", {"name": "knn_projection_full_reference"}).startswith("Fig 6")
    assert report.paper_item("06_invariant_graphs", {"name": "sort_isometry"}).startswith("Prop 1-2")
    assert report.paper_item("06_invariant_graphs", {"name": "elbo_finite"}) == report.OTHER_ITEM  # a sanity check
    # the metrics' own item and kind (written from the declaration when the chapter ran) come first
    assert report.paper_item("99_new", {"name": "x", "item": "Fig 5-6", "kind": "paper"}) == "Fig 5-6"
    assert report.paper_item("99_new", {"name": "x", "item": "Table 2", "kind": "sanity"}) == report.OTHER_ITEM
    assert report.paper_item("99_new", {"name": "x", "statement": "Fig 2: not read from the text"}) == report.OTHER_ITEM


def test_report_states_a_status_per_figure_with_reasons(tmp_path: Path) -> None:
    claims = [claim("fig4_a", True, item="Fig 4"), claim("fig4_b", True, item="Fig 4"),
              claim("fig5_a", True, item="Fig 5"),
              claim("fig5_b", False, enforced=False, item="Fig 5", reason="cpu relaxes it; enforced on paper"),
              claim("tab1", False, item="Table 1"),
              claim("sane", True, item="Fig 4", kind="sanity")]
    m = metrics("99_new", claims)
    m["all_passed"] = False
    assert report.validate_metrics(m) == []
    bk.atomic_write_json(tmp_path / "99_new.json", m)
    text = report.render_report(tmp_path, ["99_new"])
    status = text[text.index("## Status per figure and table"):text.index("## Title 99_new")]
    rows = [line for line in status.splitlines() if line.startswith("| Title 99_new")]
    assert [row.split(" | ")[2:4] for row in rows] == [
        ["Fig 4", "reproduced"], ["Fig 5", "**partially reproduced**"], ["Table 1", "**not reproduced**"],
        [report.OTHER_ITEM, "reproduced"]]
    assert "| 2 of 2 held, 2 enforced | – |" in rows[0]
    assert "| 1 of 2 held, 1 enforced | `fig5_b` (not met) not enforced: cpu relaxes it; enforced on paper |" in rows[1]
    assert "`tab1` failed (0.4322; rule p > 0.01)" in rows[2]
    # the counts are generated, in the summary line and the section (other checks are not a paper item)
    summary = "3 figures, tables and equations: 1 reproduced, 1 partially reproduced, 1 not reproduced."
    assert text.count(summary) == 2
    linked = report.render_report(tmp_path, ["99_new"], book_links=True)
    assert "| {doc}`99_new` | – | Fig 4 | reproduced |" in linked
    assert "No chapter has metrics yet." in report.render_report(tmp_path / "none", ["99_new"])


def test_extra_parameters_are_parsed_and_injected() -> None:
    assert bk.parse_param("n_seeds=2") == ("n_seeds", 2)
    assert bk.parse_param("name=abc") == ("name", "abc")
    assert bk.parse_param("x=null") == ("x", None)
    with pytest.raises(ValueError, match="NAME=VALUE"):
        bk.parse_param("n_seeds")
    cfg = bk.RunConfig("smoke", extra=(("n_seeds", 2),))
    assert cfg.parameters()["n_seeds"] == 2
    # no extra parameters: only the four standard ones, so the chapter stamps of plain runs stay as they are
    assert set(bk.RunConfig("smoke").parameters()) == {"profile", "seed", "device", "data_dir"}


def test_progress_shows_cells_and_training_bars_and_a_time_table(book: Path, tmp_path: Path, capsys) -> None:
    """`make book` shows each cell as it starts, every training bar that fit draws (streamed from the
    kernel through $TVAE_PROGRESS_FILE, not into the notebook) and a per-chapter time table; the
    dry-run switch reaches the kernel (and a stray shell value cannot turn a normal run into one)."""
    body = code_cell("""
        import os
        from tvae_experiments.run import current
        from tvae_experiments.train import _progress_bar
        with _progress_bar(5, "training toy-model", True, current().progress_file) as bar:
            for _ in range(5):
                bar.update(1)
        assert os.environ["TVAE_DRY_RUN_STEPS"] == "0", os.environ["TVAE_DRY_RUN_STEPS"]
        """)
    (book / "book" / "01_alpha.md").write_text(chapter_source("01_alpha", body))
    out = tmp_path / "out"
    with bk.environment(TVAE_DRY_RUN_STEPS="3"):
        results, failures = execute.run_chapters([chapter(book, "01_alpha")], RunConfig("smoke"), out, timeout=120,
                                                 root=book, progress=True)
    assert failures == [] and results[0].status == "ran"
    err = capsys.readouterr().err
    nb = nbformat.read(out / "01_alpha.ipynb", as_version=4)
    n = sum(c.cell_type == "code" for c in nb.cells) + 1  # + papermill's parameters cell, merged on saving
    assert f"01_alpha: cell 1/{n} " in err and f"01_alpha: cell {n}/{n} " in err
    assert "training toy-model" in err and "5/5" in err
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "training toy-model" not in text                      # the bar went to the terminal only
    assert not list(out.glob(".*.progress"))
    table = execute.time_table(results)
    assert table.splitlines()[1].startswith("01_alpha") and "ran" in table and "total" in table


def test_the_summary_counts_paper_claims_apart_from_controls_and_checks() -> None:
    """The headline counts the papers' claims (reproduced / only reported / failed) apart from the controls,
    known-answer and sanity checks; the kind comes from the metrics, else from the chapter spec's declaration."""
    claims = [claim("capcorr_x", True), claim("capcorr_y", False),
              claim("capcorr_orientation", True, enforced=False), claim("capcorr_orientation_heart", False, enforced=False),
              {**claim("mnist_metrics_finite", True), "kind": None},         # declared a sanity check in chapter 4
              claim("mnist_controls_fail_traversal", True, kind="control"),
              claim("toy_x_capcorr", False, kind="known-answer")]
    text = report.summarize_kinds({"04_capsules": {"claims": claims}})
    assert text.startswith("Paper claims: 1 reproduced (enforced, held), 2 only reported at this profile "
                           "(1 of them met; each with its reason below), 1 failed.")
    assert "1 control checks (1 held)" in text and "1 known-answer checks (0 held, 1 failed)" in text
    assert "1 sanity checks (1 held)" in text


def _fake_npm(tmp_path: Path) -> Path:
    """An ``npm`` whose ``pack`` writes a tarball per package with each wanted entry point."""
    script = tmp_path / "npm"
    script.write_text(f"""#!{sys.executable}
import io, sys, tarfile, time
from pathlib import Path
args = sys.argv[1:]
dest = Path(args[args.index("--pack-destination") + 1])
specs = [a for a in args[args.index("--pack-destination") + 2:]]
files = {{"mathjax": "es5/tex-mml-chtml.js", "html-manager": "dist/embed-amd.js", "requirejs": "require.js"}}
for i, spec in enumerate(specs):
    name = spec.rsplit("@", 1)[0].split("/")[-1]
    out = dest / f"pkg{{i}}.tgz"
    with tarfile.open(out, "w:gz") as tar:
        data = (name * 200_000).encode()      # large, so a half-written copy would show
        info = tarfile.TarInfo("package/" + files[name]); info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    time.sleep(0.2)
    print(out.name)
""")
    script.chmod(0o755)
    return script


def test_vendor_fetch_is_atomic(tmp_path: Path, monkeypatch) -> None:
    """Two fetches at once both end with complete files; an incomplete folder left by an
    interrupted fetch is replaced; nothing temporary is left beside the folder."""
    import threading

    npm = _fake_npm(tmp_path)
    monkeypatch.setattr(bk_html.shutil, "which", lambda name: str(npm) if name == "npm" else None)
    vendor = tmp_path / "build" / "vendor"
    (vendor / "requirejs").mkdir(parents=True)
    (vendor / "requirejs" / "require.js").write_text("half")     # incomplete: no MathJax, no widgets
    full = {rel: len(rel.split("/")[0]) * 200_000 for rel in bk_html.VENDOR_JS.values()}
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(bk_html.fetch_vendor(vendor)))
               for _ in range(2)]
    for t in threads:
        t.start()
    seen = []                 # what a third process finds whenever the folder looks complete
    while any(t.is_alive() for t in threads):
        if bk_html.vendor_complete(vendor):
            seen.append({rel: len((vendor / rel).read_bytes()) for rel in full})
    for t in threads:
        t.join()
    assert results == [True, True]
    assert {rel: len((vendor / rel).read_bytes()) for rel in full} == full
    assert all(sizes == full for sizes in seen), [s for s in seen if s != full][:1]
    assert sorted(p.name for p in vendor.parent.iterdir()) == ["vendor"]

    widgets = vendor / bk_html.VENDOR_JS["widgets"]       # a copy cut short is not complete: fetched again
    widgets.write_bytes(widgets.read_bytes()[:1000])
    assert not bk_html.vendor_complete(vendor)
    assert bk_html.fetch_vendor(vendor) and len(widgets.read_bytes()) == full[bk_html.VENDOR_JS["widgets"]]
    assert sorted(p.name for p in vendor.parent.iterdir()) == ["vendor"]
