"""The generated Performance page (tvae_book/performance.py): every number on it comes from a record the code
wrote -- chapter metrics, weight cache entries, benchmark records -- with the machine and date beside it;
``make book`` stages it in place of ``book/performance.md``; the benchmarks write their records."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from tvae_book import html as bk_html, performance
from tvae_book.chapters import REPO_ROOT, toc_files

MACHINE_A = {"date": "2031-03-04T05:06:07+00:00", "platform": "Linux-A", "processor": "x86_64", "cpu_count": 2,
             "torch_threads": 1, "python": "3.11.7", "torch": "2.14.1", "gpu": None}
MACHINE_B = {**MACHINE_A, "date": "2031-03-05T00:00:00+00:00", "cpu_count": 64, "gpu": "Some GPU 80GB"}


def _metrics(folder: Path, name: str, wall: float, machine: dict, models: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps({
        "chapter": name, "title": f"Title {name}", "profile": "cpu", "seed": 0, "device": "cpu", "claims": [],
        "all_passed": True, "elapsed_s": wall - 1, "machine": machine, "models": models, "wall_time_s": wall}))


@pytest.fixture
def records(tmp_path):
    """Two chapters on two machines, a cache with one of their three models, one benchmark record."""
    results, cache, bench = tmp_path / "_results" / "cpu", tmp_path / "cache", tmp_path / "_results" / "benchmarks"
    _metrics(results, "01_a", 12.25, MACHINE_A, [{"name": "m1", "key": "aaaaaaaaaaaa", "from_cache": True},
                                                  {"name": "m2", "key": "bbbbbbbbbbbb", "from_cache": False}])
    _metrics(results, "02_b", 4000.0, MACHINE_B, [{"name": "m1", "key": "aaaaaaaaaaaa", "from_cache": True}])
    cache.mkdir()
    torch.save({"format": 2, "key": "a" * 64, "state_dict": {"w": torch.zeros(2)}, "history": [],
                "seconds": 245.4}, cache / "m1-aaaaaaaaaaaa.pt")
    bench.mkdir(parents=True)
    (bench / "bench_x.json").write_text(json.dumps({
        "benchmark": "bench_x", "title": "the x op.", "argv": ["--repeats", "5"], "machine": MACHINE_B,
        "rows": [{"case": "small", "ms/call": 1.23456}, {"case": "big", "ms/call": 9.5}], "notes": ["a note"]}))
    return tmp_path, results, cache, bench


def test_the_page_shows_what_the_records_hold(records):
    root, results, cache, bench = records
    text = performance.performance_text(results, ["01_a", "02_b"], root=root, cache_dir=cache, bench_dir=bench)
    # chapters: wall times, own time, loaded/trained counts, machine reference and the recorded date
    assert "| Title 01_a (`01_a`) | 12.2 s | 11.2 s | 1 | 1 | M1 | 2031-03-04 05:06 |" in text
    assert "| Title 02_b (`02_b`) | 1 h 06 min | 1 h 06 min | 1 | 0 | M2 | 2031-03-05 00:00 |" in text
    assert "2 chapter(s), 1 h 06 min of chapter time in all" in text
    # trainings: the cache entry's seconds; a model missing from the cache says so; who uses which
    assert "| `m1` | `aaaaaaaaaaaa` | 4 min 05 s | 01_a, 02_b |" in text
    assert "| `m2` | `bbbbbbbbbbbb` | not in the cache | 01_a |" in text
    assert "2 model(s) the chapters use; 1 of them in the weight cache" in text
    # benchmarks: command, machine, date, one table row per measured case, the notes
    assert "`python benchmarks/bench_x.py --repeats 5` on M2, 2031-03-05 00:00 UTC." in text
    assert "### The x op\n" in text and "| case | ms/call |" in text and "| small | 1.235 |" in text and "- a note" in text
    # machines: each distinct one once, with what was recorded
    assert "| M1 | Linux-A | 2 | 1 | 3.11.7 | 2.14.1 | none |" in text
    assert "| M2 | Linux-A | 64 | 1 | 3.11.7 | 2.14.1 | Some GPU 80GB |" in text
    assert "M3" not in text
    linked = performance.performance_text(results, ["01_a", "02_b"], root=root, cache_dir=cache, bench_dir=bench,
                                          book_links=True)
    assert "| {doc}`01_a` | 12.2 s | 11.2 s | 1 | 1 | M1 |" in linked  # the link shows the chapter's title


def test_other_result_folders_and_empty_sources(records, tmp_path):
    root, results, cache, _ = records
    _metrics(root / "_results" / "paper-dry-run", "04_c", 30.0, MACHINE_A, [])
    text = performance.performance_text(results, ["01_a", "02_b"], root=root, cache_dir=cache,
                                        bench_dir=tmp_path / "none")
    assert "## Chapters (`_results/paper-dry-run`)" in text and "| Title 04_c (`04_c`) | 30.0 s |" in text
    assert "## Chapters (`_results/benchmarks`)" not in text  # benchmark records are not chapters
    assert "No benchmark has recorded results yet" in text
    empty = performance.performance_text(tmp_path / "nothing", [], root=tmp_path / "nothing", cache_dir=cache,
                                         bench_dir=tmp_path / "none")
    assert "No chapter has run into this folder yet." in empty and "## Machines" not in empty


@pytest.mark.parametrize("seconds,text", [(0.04, "0.0 s"), (59.94, "59.9 s"), (60, "1 min 00 s"),
                                          (245.4, "4 min 05 s"), (3599.4, "59 min 59 s"), (3600, "1 h 00 min"),
                                          (None, "–"), ("x", "–"), (True, "–")])
def test_format_duration(seconds, text):
    assert performance.format_duration(seconds) == text


def test_write_benchmark_records_the_machine_and_the_date(tmp_path):
    path = performance.write_benchmark("bench_y", [{"a": 1, "b": torch.tensor(2.5)}], title="y", argv=["--n", "3"],
                                       out_dir=tmp_path)
    rec = json.loads(path.read_text())
    assert path == tmp_path / "bench_y.json"
    assert rec["rows"] == [{"a": 1, "b": 2.5}] and rec["argv"] == ["--n", "3"] and rec["title"] == "y"
    assert rec["machine"]["torch"] == torch.__version__ and rec["machine"]["cpu_count"] >= 1
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", rec["machine"]["date"])
    text = performance.performance_text(tmp_path / "r", [], root=tmp_path, cache_dir=tmp_path, bench_dir=tmp_path)
    assert "### Y" in text and "| 1 | 2.5 |" in text


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO_ROOT / "benchmarks").glob("bench_*.py")))
def test_every_benchmark_writes_its_record(script):
    """Each benchmark script ends by writing its record for the page (read from its source: running them is
    too slow for the suite)."""
    source = (REPO_ROOT / "benchmarks" / script).read_text(encoding="utf-8")
    assert re.search(rf"write_benchmark\(\s*\"{Path(script).stem}\"", source), (
        f"benchmarks/{script} does not write its record (tvae_book.performance.write_benchmark)")


def test_the_page_is_in_the_book_and_staged_generated(tmp_path):
    """``_toc.yml`` lists the page; staging replaces the placeholder by the generated Markdown (and leaves the
    page out of a book whose root has none)."""
    assert "book/performance" in toc_files(REPO_ROOT)
    assert "profile_performance" in (REPO_ROOT / "book" / "performance.md").read_text(encoding="utf-8")
    root = tmp_path / "book_root"
    (root / "book").mkdir(parents=True)
    (root / "_config.yml").write_text("title: t\n")
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/performance\n")
    (root / "book" / "intro.md").write_text("# Intro\n")
    (root / "book" / "performance.md").write_text("# placeholder\n")
    stage = bk_html.stage_book([], tmp_path / "results", tmp_path / "stage", root)
    staged = (stage / "book" / "performance.md").read_text(encoding="utf-8")
    assert staged.startswith("# Performance\n") and "placeholder" not in staged
    (root / "book" / "performance.md").unlink()
    stage = bk_html.stage_book([], tmp_path / "results", tmp_path / "stage", root)
    assert not (stage / "book" / "performance.md").exists()


def test_no_timings_typed_on_the_page_source():
    """The page's source is a placeholder that renders the records: no number of seconds or minutes in it."""
    source = (REPO_ROOT / "book" / "performance.md").read_text(encoding="utf-8")
    assert not re.search(r"\d+(\.\d+)?\s*(s|min|h|seconds|minutes|hours)\b", source)
