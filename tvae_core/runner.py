"""Execute the book's chapters, collect their metrics, and build the HTML book.

Command line (see ``python -m tvae_core.runner --help``)::

    python -m tvae_core.runner run    --profile cpu     # execute chapters + write the report
    python -m tvae_core.runner book   --profile cpu     # the above, then stage + build the HTML
    python -m tvae_core.runner report --profile cpu     # only (re)write the report Markdown

Each chapter is a jupytext MyST-Markdown notebook ``book/NN_name.md`` listed in ``_toc.yml``.
It is converted to a notebook in memory, parameterised by papermill (``profile``, ``seed``,
``device``, ``data_dir``) and executed with ``cwd=book/`` by an ipykernel running *this*
interpreter. The chapter writes its metrics to ``$TVAE_RESULTS_DIR/<chapter>.json``; the runner
points that variable at the results folder, then adds the wall time to the metrics file.

A chapter is skipped when its source, the ``tvae_core`` code it imports, and the run settings
are unchanged since its last successful execution into the same results folder (a ``.stamp.json``
file next to the metrics records that fingerprint).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from tvae_core import report
from tvae_core._io import atomic_write_text

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The repository root: ``_toc.yml``, ``_config.yml`` and ``book/`` live here."""

KERNEL_NAME = "python3"
"""Kernel name written into executed notebooks; the kernel always runs ``sys.executable``."""

DEFAULT_TIMEOUT_S = 3600
"""Default per-cell execution timeout in seconds."""

KERNEL_START_TIMEOUT_S = 300
"""Seconds a kernel may take to start (papermill's default, 60, failed once on a loaded 2-core machine)."""

RESULTS_ENV = "TVAE_RESULTS_DIR"
"""Environment variable telling a chapter where to write its metrics JSON."""

CHAPTER_STEM = re.compile(r"^\d+_[A-Za-z0-9_]+$")
"""A chapter's file stem: a number, an underscore, a name (``01_pot``)."""

PIPELINE_FILES = ("runner.py", "report.py")
"""``tvae_core`` files that do not influence chapter results (left out of the fingerprint)."""

VENDOR_FILES: dict[str, tuple[str, ...]] = {
    "mathjax@3.2.2": ("es5/tex-mml-chtml.js", "es5/output/chtml/", "es5/a11y/", "es5/ui/",
                      "es5/input/tex/extensions/"),
    "@jupyter-widgets/html-manager@1.0.6": ("dist/embed-amd.js", "dist/*.woff2", "dist/*.woff", "dist/*.ttf",
                                            "dist/*.eot", "dist/*.svg"),  # + the widgets' icon fonts
    "requirejs@2.3.7": ("require.js",),
}
"""npm packages (and the files of them: path prefixes or globs) the HTML needs to show math and widgets offline."""

VENDOR_JS = {"mathjax": "mathjax/es5/tex-mml-chtml.js",
             "requirejs": "requirejs/require.js",
             "widgets": "html-manager/dist/embed-amd.js"}
"""Entry points inside the vendor folder (``<package name without scope>/<file>``)."""


class ChapterError(RuntimeError):
    """A chapter could not be executed, or its run did not produce valid metrics."""

    def __init__(self, chapter: str, message: str, notebook: Path | None = None) -> None:
        self.chapter = chapter
        self.notebook = notebook
        text = f"chapter {chapter} failed: {message}"
        if notebook is not None:
            text += f"\n  executed notebook (with the error): {notebook}"
        super().__init__(text)


@dataclass(frozen=True)
class RunConfig:
    """The parameters injected into every chapter's ``parameters`` cell."""

    profile: str = "cpu"
    seed: int = 0
    device: str = "auto"
    data_dir: str | None = None
    extra: tuple[tuple[str, Any], ...] = ()  # chapter-specific parameters, e.g. (("n_seeds", 2),)

    def parameters(self) -> dict[str, Any]:
        """Papermill parameters; ``data_dir`` is made absolute since chapters run in book/."""
        data_dir = None if self.data_dir is None else str(Path(self.data_dir).resolve())
        return {"profile": self.profile, "seed": self.seed, "device": self.device,
                "data_dir": data_dir, **dict(self.extra)}


def parse_param(text: str) -> tuple[str, Any]:
    """``"NAME=VALUE"`` -> ``(NAME, VALUE)``; VALUE is read as JSON when it parses (``2``,
    ``null``, ``[1, 2]``), else kept as a string."""
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise ValueError(f"--param expects NAME=VALUE with a Python identifier as NAME, got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


@dataclass(frozen=True)
class Chapter:
    """A chapter notebook: its name (file stem, e.g. ``01_pot``) and its source path."""

    name: str
    path: Path


@dataclass(frozen=True)
class ChapterResult:
    """Outcome of one chapter: ``status`` is ``"ran"`` or ``"skipped"``."""

    chapter: str
    status: str
    wall_time_s: float
    notebook: Path
    metrics: Path


# --------------------------------------------------------------------------- profiles, paths


def allowed_profiles() -> tuple[str, ...]:
    """The profile names the chapters understand (``tvae_core.profiles.PROFILES``)."""
    from tvae_core.profiles import PROFILES

    return tuple(PROFILES)


def check_profile(profile: str) -> str:
    """Return ``profile`` if it is known, else raise ``ValueError`` naming the allowed values."""
    allowed = allowed_profiles()
    if profile not in allowed:
        raise ValueError(f"unknown profile {profile!r}; allowed profiles: {', '.join(allowed)}")
    return profile


def default_results_dir(profile: str, root: Path = REPO_ROOT) -> Path:
    """Where a profile's executed notebooks and metrics go: ``<root>/_results/<profile>``."""
    return Path(root) / "_results" / profile


# --------------------------------------------------------------------------- file helpers


def atomic_write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Temporarily set environment variables (the kernel inherits them)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


# --------------------------------------------------------------------------- chapter discovery


def toc_files(root: Path = REPO_ROOT) -> list[str]:
    """All ``file`` entries of ``<root>/_toc.yml`` (root page first, then in book order)."""
    toc_path = Path(root) / "_toc.yml"
    if not toc_path.is_file():
        raise FileNotFoundError(f"no table of contents at {toc_path}")
    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8")) or {}
    found: list[str] = [toc["root"]] if "root" in toc else []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "file" in node:
                found.append(str(node["file"]))
            for key in ("parts", "chapters", "sections"):
                walk(node.get(key, []))
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return found


def is_jupytext_notebook(path: Path) -> bool:
    """True if ``path`` is a Markdown file whose YAML front matter has a ``jupytext`` header."""
    text = Path(path).read_text(encoding="utf-8")
    if not text.startswith("---"):
        return False
    end = text.find("\n---", 3)
    if end < 0:
        return False
    header = yaml.safe_load(text[3:end]) or {}
    return isinstance(header, dict) and "jupytext" in header


def chapter_title(path: Path) -> str:
    """The first level-1 Markdown heading of a chapter (its stem if there is none)."""
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return Path(path).stem


def discover_chapters(root: Path = REPO_ROOT, only: Sequence[str] | None = None) -> list[Chapter]:
    """Chapters in book order: ``_toc.yml`` entries ``book/NN_name`` that are jupytext notebooks.

    ``only`` restricts the list to the given chapter names (an unknown name raises, listing the
    chapters there are). A ``_toc.yml`` entry whose file is missing raises ``FileNotFoundError``.
    """
    root = Path(root)
    chapters: list[Chapter] = []
    for entry in toc_files(root):
        entry_path = Path(entry)
        if entry_path.parts[:1] != ("book",) or not CHAPTER_STEM.match(entry_path.stem):
            continue
        path = root / entry_path.with_suffix(".md")
        if not path.is_file():
            raise FileNotFoundError(f"_toc.yml lists {entry!r} but {path} does not exist")
        if is_jupytext_notebook(path):
            chapters.append(Chapter(name=entry_path.stem, path=path))
    if only:
        known = {c.name: c for c in chapters}
        unknown = [name for name in only if name not in known]
        if unknown:
            raise ValueError(f"unknown chapter(s) {', '.join(unknown)}; "
                             f"chapters in _toc.yml: {', '.join(known) or '(none)'}")
        chapters = [known[name] for name in only]
    return chapters


# --------------------------------------------------------------------------- skip-if-unchanged


def code_files(root: Path = REPO_ROOT) -> list[Path]:
    """``tvae_core`` sources that chapters import (the pipeline's own files left out)."""
    package = Path(root) / "tvae_core"
    if not package.is_dir():
        return []
    return sorted(p for p in package.rglob("*.py")
                  if p.name not in PIPELINE_FILES and "__pycache__" not in p.parts)


def fingerprint(chapter: Chapter, config: RunConfig, root: Path = REPO_ROOT) -> str:
    """SHA-256 over the chapter source, the ``tvae_core`` code, and the run parameters."""
    digest = hashlib.sha256()
    digest.update(json.dumps(config.parameters(), sort_keys=True).encode())
    for path in [chapter.path, *code_files(root)]:
        digest.update(str(Path(path).relative_to(root) if Path(path).is_relative_to(root)
                          else Path(path).name).encode())
        digest.update(b"\0")
        digest.update(Path(path).read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def output_paths(chapter: str, out_dir: Path) -> dict[str, Path]:
    """Files a chapter run writes into ``out_dir``."""
    out_dir = Path(out_dir)
    return {
        "notebook": out_dir / f"{chapter}.ipynb",
        "failed": out_dir / f"{chapter}.failed.ipynb",
        "running": out_dir / f".{chapter}.running.ipynb",
        "metrics": out_dir / f"{chapter}.json",
        "stamp": out_dir / f"{chapter}.stamp.json",
    }


def is_up_to_date(chapter: Chapter, config: RunConfig, out_dir: Path,
                  root: Path = REPO_ROOT) -> bool:
    """True if ``out_dir`` holds a successful run of this exact chapter source, code and config."""
    paths = output_paths(chapter.name, out_dir)
    if not all(paths[key].is_file() for key in ("notebook", "metrics", "stamp")):
        return False
    try:
        stamp = read_json(paths["stamp"])
        metrics = read_json(paths["metrics"])
    except (OSError, ValueError):
        return False
    return (stamp.get("fingerprint") == fingerprint(chapter, config, root)
            and metrics.get("all_passed") is True
            and "wall_time_s" in metrics)  # written by this runner, not by another build


# --------------------------------------------------------------------------- execution


def load_notebook(path: Path) -> Any:
    """Read a jupytext notebook into an ``nbformat.NotebookNode`` (no file is written)."""
    import jupytext

    nb = jupytext.read(path)
    if not any("parameters" in cell.get("metadata", {}).get("tags", []) for cell in nb.cells):
        raise ChapterError(Path(path).stem, f"{path} has no code cell tagged 'parameters'")
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python 3",
                                 "language": "python"}
    return nb


def this_python_kernel_manager() -> type:
    """A kernel manager class whose kernel is ipykernel on ``sys.executable``, whatever name.

    This makes the run independent of which ``python3`` kernelspec happens to be registered.
    On POSIX it talks to the kernel over local IPC sockets (no TCP port, no plain-text warning).
    """
    from ipykernel.kernelspec import RESOURCES, get_kernel_dict
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from traitlets import CaselessStrEnum, default

    class ThisPythonKernelSpecManager(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            return KernelSpec(resource_dir=RESOURCES, **get_kernel_dict())

    class ThisPythonKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], config=True,
                                    default_value="ipc" if os.name == "posix" else "tcp")

        @default("kernel_spec_manager")
        def _kernel_spec_manager_default(self) -> KernelSpecManager:
            return ThisPythonKernelSpecManager(data_dir=self.data_dir)

    return ThisPythonKernelManager


def describe_failure(exc: BaseException) -> str:
    """One readable line for a notebook failure, naming the cell and the error."""
    ename = getattr(exc, "ename", None)
    if ename is not None:  # papermill.exceptions.PapermillExecutionError
        first_line = next((ln for ln in str(exc.source).splitlines() if ln.strip()), "")
        return (f"cell {exc.cell_index} (In [{exc.exec_count}], starting {first_line!r}) "
                f"raised {ename}: {exc.evalue}")
    return f"{type(exc).__name__}: {exc}"


def execute_chapter(chapter: Chapter, config: RunConfig, out_dir: Path, *,
                    timeout: float = DEFAULT_TIMEOUT_S, root: Path = REPO_ROOT,
                    log_output: bool = False) -> ChapterResult:
    """Execute one chapter with papermill into ``out_dir`` and return its result.

    Writes ``<chapter>.ipynb`` (executed), ``<chapter>.json`` (the chapter's metrics plus
    ``wall_time_s``) and ``<chapter>.stamp.json``. On failure the executed notebook is kept as
    ``<chapter>.failed.ipynb`` and :class:`ChapterError` names the failing cell and error.
    """
    import papermill

    check_profile(config.profile)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = output_paths(chapter.name, out_dir)
    for key in ("stamp", "metrics", "failed"):
        paths[key].unlink(missing_ok=True)

    nb = load_notebook(chapter.path)
    stamp_fingerprint = fingerprint(chapter, config, root)  # before running: code may change
    start = time.perf_counter()
    try:
        with environment(**{RESULTS_ENV: str(out_dir)}):
            executed = papermill.execute_notebook(
                nb, str(paths["running"]), parameters=config.parameters(),
                kernel_name=KERNEL_NAME, language="python", cwd=str(chapter.path.parent),
                execution_timeout=timeout, start_timeout=KERNEL_START_TIMEOUT_S, progress_bar=False,
                log_output=log_output,
                kernel_manager_class=this_python_kernel_manager())
    except Exception as exc:  # papermill, nbclient timeouts, dead kernels
        failed = None
        if paths["running"].is_file():
            import nbformat

            save_notebook(nbformat.read(paths["running"], as_version=4), paths["failed"],
                          source=chapter.path)
            paths["running"].unlink()
            failed = paths["failed"]
        raise ChapterError(chapter.name, describe_failure(exc), failed) from exc
    wall = time.perf_counter() - start
    save_notebook(executed, paths["notebook"], source=chapter.path)
    paths["running"].unlink(missing_ok=True)

    metrics = finish_metrics(chapter.name, config, paths["metrics"], wall)
    if metrics.get("all_passed") is not True:
        raise ChapterError(chapter.name, "metrics report all_passed != true", paths["notebook"])
    atomic_write_json(paths["stamp"], {
        "chapter": chapter.name, "fingerprint": stamp_fingerprint,
        **asdict(config), "wall_time_s": round(wall, 3),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return ChapterResult(chapter.name, "ran", wall, paths["notebook"], paths["metrics"])


def save_notebook(nb: Any, path: Path, *, source: Path) -> None:
    """Atomically write an executed notebook, recording its source path (not the whole
    input notebook, which papermill stores when given a NotebookNode)."""
    import nbformat

    info = nb.metadata.get("papermill", {})
    info["input_path"] = str(source)
    info["output_path"] = str(path)
    atomic_write_text(path, nbformat.writes(nb))


def finish_metrics(chapter: str, config: RunConfig, path: Path, wall_time_s: float) -> dict:
    """Check the metrics a chapter wrote and add ``wall_time_s``; raise if missing or invalid."""
    if not path.is_file():
        raise ChapterError(chapter, f"it ran but wrote no metrics file {path.name} "
                                    f"(expected via ${RESULTS_ENV}/<chapter>.json)")
    metrics = read_json(path)
    problems = report.validate_metrics(metrics)
    if metrics.get("chapter") != chapter:
        problems.append(f"chapter is {metrics.get('chapter')!r}, expected {chapter!r}")
    if metrics.get("profile") != config.profile:
        problems.append(f"profile is {metrics.get('profile')!r}, expected {config.profile!r}")
    if problems:
        raise ChapterError(chapter, f"invalid metrics {path}: " + "; ".join(problems))
    metrics["wall_time_s"] = round(wall_time_s, 3)
    atomic_write_json(path, metrics)
    return metrics


def run_chapters(chapters: Sequence[Chapter], config: RunConfig, out_dir: Path, *,
                 force: bool = False, keep_going: bool = False,
                 timeout: float = DEFAULT_TIMEOUT_S, root: Path = REPO_ROOT,
                 log_output: bool = False) -> tuple[list[ChapterResult], list[ChapterError]]:
    """Execute (or skip, if unchanged) each chapter in order, printing progress.

    Stops at the first failure unless ``keep_going``. Returns results and failures.
    """
    check_profile(config.profile)
    results: list[ChapterResult] = []
    failures: list[ChapterError] = []
    total = len(chapters)
    for i, chapter in enumerate(chapters, 1):
        tag = f"[{i}/{total}] {chapter.name}"
        paths = output_paths(chapter.name, out_dir)
        if not force and is_up_to_date(chapter, config, out_dir, root):
            wall = float(read_json(paths["metrics"]).get("wall_time_s", 0.0))
            print(f"{tag}: unchanged since its last successful run, skipped "
                  f"(took {wall:.1f} s then)", flush=True)
            results.append(ChapterResult(chapter.name, "skipped", wall,
                                         paths["notebook"], paths["metrics"]))
            continue
        print(f"{tag}: running (profile={config.profile}, seed={config.seed}, "
              f"device={config.device}) ...", flush=True)
        try:
            result = execute_chapter(chapter, config, out_dir, timeout=timeout, root=root,
                                     log_output=log_output)
        except ChapterError as err:
            print(f"{tag}: FAILED\n  {err}", file=sys.stderr, flush=True)
            failures.append(err)
            if not keep_going:
                break
            continue
        print(f"{tag}: ok in {result.wall_time_s:.1f} s", flush=True)
        results.append(result)
    return results, failures


def report_text(chapters: Sequence[Chapter], results_dir: Path, *,
                book_links: bool = False) -> str:
    """The reproduction report Markdown of ``chapters`` from the metrics in ``results_dir``."""
    return report.render_report(results_dir, [c.name for c in chapters],
                                titles={c.name: chapter_title(c.path) for c in chapters},
                                book_links=book_links)


def write_report(chapters: Sequence[Chapter], results_dir: Path, *, book_links: bool = False,
                 path: Path | None = None) -> Path:
    """Render the reproduction report for ``results_dir`` and write it (default: its report.md)."""
    path = Path(path) if path is not None else Path(results_dir) / "report.md"
    atomic_write_text(path, report_text(chapters, results_dir, book_links=book_links))
    return path


def profile_report(profile: str = "cpu", root: Path = REPO_ROOT) -> str:
    """The report Markdown for one profile, as a plain ``jupyter-book build .`` shows it.

    Reads ``$TVAE_RESULTS_DIR`` if set (where the chapters then wrote), else
    ``<root>/_results/<profile>``; used by ``book/report.md``.
    """
    results_dir = Path(os.environ.get(RESULTS_ENV) or default_results_dir(profile, root))
    return report_text(discover_chapters(root), results_dir, book_links=True)


# --------------------------------------------------------------------------- HTML book


def sync_file(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` unless identical (keeps mtimes, so Sphinx rebuilds incrementally)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_file() and dst.read_bytes() == src.read_bytes():
        return
    shutil.copy2(src, dst)


def vendor_complete(vendor_dir: Path) -> bool:
    """True if ``vendor_dir`` holds the MathJax, require.js and widget-manager entry points."""
    return all((Path(vendor_dir) / rel).is_file() for rel in VENDOR_JS.values())


def _wanted(name: str, entry: str) -> bool:
    """A package file is kept if it lies under ``entry`` (a path prefix) or matches it (a glob)."""
    import fnmatch

    return name.startswith(entry) or ("*" in entry and fnmatch.fnmatch(name, entry))


def fetch_vendor(vendor_dir: Path) -> bool:
    """Put the JavaScript of :data:`VENDOR_FILES` into ``vendor_dir`` with ``npm pack``.

    Returns False (and says why) when npm is missing or fails: the HTML then uses CDNs.
    """
    vendor_dir = Path(vendor_dir)
    if vendor_complete(vendor_dir):
        return True
    npm = shutil.which("npm")
    if npm is None:
        print("note: npm not found; the HTML will load MathJax and widgets from CDNs", flush=True)
        return False
    import tarfile

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [npm, "pack", "--silent", "--pack-destination", tmp, *VENDOR_FILES]
        done = subprocess.run(cmd, capture_output=True, text=True)
        tarballs = done.stdout.split()
        if done.returncode != 0 or len(tarballs) != len(VENDOR_FILES):
            print(f"note: `npm pack` failed ({done.stderr.strip()[-300:]}); the HTML will load "
                  "MathJax and widgets from CDNs", flush=True)
            return False
        for spec, tarball in zip(VENDOR_FILES, tarballs, strict=True):
            name = spec.rsplit("@", 1)[0].split("/")[-1]
            with tarfile.open(Path(tmp) / tarball) as tar:
                members = [m for m in tar.getmembers() if m.isfile() and any(
                    _wanted(m.name.removeprefix("package/"), f) for f in VENDOR_FILES[spec])]
                for member in members:
                    member.name = member.name.removeprefix("package/")
                safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(vendor_dir / name, members=members, **safe)
    return vendor_complete(vendor_dir)


def use_vendor(config: dict, vendor_dir: Path | None) -> dict[Path, Path]:
    """Point ``config`` at local MathJax/widget JavaScript; return the files to stage.

    The files go to ``<stage>/_vendor/vendor/`` and are served from ``_static/vendor/``.
    Returns an empty mapping (config untouched: CDNs) when ``vendor_dir`` is None or incomplete.
    """
    if vendor_dir is None or not vendor_complete(vendor_dir):
        return {}
    vendor_dir = Path(vendor_dir)
    section = config.setdefault("sphinx", {})
    sphinx = section["config"] = section.get("config") or {}
    sphinx["html_static_path"] = [*sphinx.get("html_static_path", []), "_vendor"]
    sphinx["mathjax_path"] = f"vendor/{VENDOR_JS['mathjax']}"
    sphinx["nb_ipywidgets_js"] = {
        f"vendor/{VENDOR_JS['requirejs']}": {},
        f"vendor/{VENDOR_JS['widgets']}": {"data-jupyter-widgets-cdn": "https://cdn.jsdelivr.net/npm/"},
    }
    return {Path("_vendor/vendor") / p.relative_to(vendor_dir): p
            for p in sorted(vendor_dir.rglob("*")) if p.is_file()}


def stage_book(chapters: Sequence[Chapter], results_dir: Path, stage_dir: Path,
               root: Path = REPO_ROOT, vendor_dir: Path | None = None) -> Path:
    """Lay out a source tree for ``jupyter-book build`` that needs no execution.

    Holds ``_config.yml`` (execution off), ``_toc.yml``, the non-chapter files of ``book/``, the
    *executed* ``<chapter>.ipynb`` in place of each chapter's ``.md``, and the generated
    ``book/report.md``. With a complete ``vendor_dir`` (see :func:`fetch_vendor`) MathJax and
    the widget manager are served from the book itself instead of CDNs. Files no longer wanted
    are removed; unchanged files are not rewritten.
    """
    root, results_dir, stage_dir = Path(root), Path(results_dir), Path(stage_dir)
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8")) or {}
    config.setdefault("execute", {})["execute_notebooks"] = "off"

    wanted: dict[Path, Path | None] = {Path("_toc.yml"): root / "_toc.yml"}
    chapter_sources = {c.path.resolve() for c in chapters}
    for src in sorted((root / "book").rglob("*")):
        rel = src.relative_to(root)
        if (src.is_file() and src.resolve() not in chapter_sources
                and rel != Path("book/report.md") and src.suffix != ".ipynb"
                and "__pycache__" not in rel.parts and ".ipynb_checkpoints" not in rel.parts):
            wanted[rel] = src
    for chapter in chapters:
        executed = output_paths(chapter.name, results_dir)["notebook"]
        if not executed.is_file():
            raise FileNotFoundError(f"no executed notebook for chapter {chapter.name} at "
                                    f"{executed}; run the chapters first")
        wanted[chapter.path.relative_to(root).with_suffix(".ipynb")] = executed
    for extra in ("_static", "references.bib", "logo.png"):
        src = root / extra
        for path in ([src] if src.is_file() else sorted(src.rglob("*")) if src.is_dir() else []):
            if path.is_file():
                wanted[path.relative_to(root)] = path

    wanted.update(use_vendor(config, vendor_dir))
    stage_dir.mkdir(parents=True, exist_ok=True)
    for rel, src in wanted.items():
        sync_file(src, stage_dir / rel)
    atomic_write_text_if_changed(stage_dir / "_config.yml", yaml.safe_dump(config, sort_keys=False))
    atomic_write_text_if_changed(stage_dir / "book" / "report.md",
                                 report_text(chapters, results_dir, book_links=True))
    keep = set(wanted) | {Path("_config.yml"), Path("book/report.md")}
    for path in sorted(stage_dir.rglob("*"), reverse=True):
        rel = path.relative_to(stage_dir)
        if path.is_file() and rel not in keep and rel.parts[0] != "_build":
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return stage_dir


def atomic_write_text_if_changed(path: Path, text: str) -> None:
    """Atomically write ``text`` unless the file already holds exactly that."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    atomic_write_text(path, text)


def build_html(stage_dir: Path, output_root: Path, *, strict: bool = True) -> Path:
    """Run ``jupyter-book build`` on the staged tree; HTML lands in ``<output_root>/_build/html``.

    ``strict`` turns warnings into errors (``-W -n --keep-going``). Returns the index.html path.
    """
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(stage_dir),
           "--path-output", str(output_root), "--builder", "html"]
    if not Path(cmd[0]).is_file():
        cmd[0] = shutil.which("jupyter-book") or "jupyter-book"
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    index = Path(output_root) / "_build" / "html" / "index.html"
    if not index.is_file():
        raise FileNotFoundError(f"jupyter-book finished but {index} is missing")
    return index


# --------------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m tvae_core.runner", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("run", "book", "report"),
                        help="run: execute chapters + report; book: run, then build the HTML; "
                             "report: only write the report from existing metrics")
    parser.add_argument("--profile", default="cpu", help="smoke, cpu or paper (default: cpu)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (default: auto)")
    parser.add_argument("--data-dir", default=None, help="folder with real data sets, if any")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="extra chapter parameter (repeatable), e.g. --param n_seeds=2 for chapter 5")
    parser.add_argument("--out", type=Path, default=None,
                        help="results folder (default: _results/<profile>)")
    parser.add_argument("--chapters", nargs="+", default=None, metavar="NAME",
                        help="only these chapters, e.g. 01_pot (default: all in _toc.yml)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help="per-cell execution timeout in seconds "
                             f"(default: {DEFAULT_TIMEOUT_S})")
    parser.add_argument("--force", action="store_true", help="re-run unchanged chapters too")
    parser.add_argument("--keep-going", action="store_true",
                        help="run the remaining chapters after a failure")
    parser.add_argument("--verbose", action="store_true", help="stream cell outputs to stderr")
    parser.add_argument("--cdn", action="store_true",
                        help="book: load MathJax and widget JavaScript from CDNs instead of "
                             "fetching them with npm into _build/vendor")
    parser.add_argument("--no-strict", action="store_true",
                        help="book: do not turn Sphinx warnings into errors")
    parser.add_argument("--root", type=Path, default=REPO_ROOT,
                        help="book root holding _toc.yml, _config.yml and book/ "
                             "(default: this repository)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = parse_args(argv)
    root = args.root.resolve()
    try:
        check_profile(args.profile)
        config = RunConfig(args.profile, args.seed, args.device, args.data_dir,
                           tuple(parse_param(p) for p in args.param))
        out_dir = (args.out or default_results_dir(args.profile, root)).resolve()
        chapters = discover_chapters(root, args.chapters)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    failures: list[ChapterError] = []
    if args.command in ("run", "book"):
        start = time.perf_counter()
        results, failures = run_chapters(chapters, config, out_dir, force=args.force,
                                         keep_going=args.keep_going, timeout=args.timeout,
                                         root=root, log_output=args.verbose)
        ran = sum(r.status == "ran" for r in results)
        print(f"{ran} chapter(s) ran, {len(results) - ran} skipped, {len(failures)} failed "
              f"in {time.perf_counter() - start:.1f} s; results in {out_dir}", flush=True)
    report_path = write_report(chapters, out_dir)
    print(f"report: {report_path}", flush=True)
    if failures:
        print("error: failed chapter(s): " + ", ".join(f.chapter for f in failures),
              file=sys.stderr)
        return 1
    if args.command == "book":
        vendor = None if args.cdn else root / "_build" / "vendor"
        if vendor is not None and not fetch_vendor(vendor):
            vendor = None
        stage = stage_book(chapters, out_dir, root / "_build" / "src", root, vendor)
        try:
            index = build_html(stage, root, strict=not args.no_strict)
        except subprocess.CalledProcessError as err:
            print(f"error: jupyter-book build failed (exit {err.returncode})", file=sys.stderr)
            return 1
        print(f"book: {index}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
