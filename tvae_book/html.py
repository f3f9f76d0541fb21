"""Stage the executed chapters into a source tree and build the HTML with Jupyter Book 1.x.

MathJax, require.js and the widget manager are fetched once with ``npm pack`` into
``_build/vendor`` and served from the book itself, so the pages work offline.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml

from tvae_book import performance, report
from tvae_book.chapters import (REPO_ROOT, RESULTS_ENV, Chapter, chapter_title, default_results_dir,
                                discover_chapters, output_paths)
from tvae_experiments.files import atomic_write_text

VENDOR_FILES: dict[str, tuple[str, ...]] = {
    "mathjax@3.2.2": ("es5/tex-mml-chtml.js", "es5/output/chtml/", "es5/a11y/", "es5/ui/",
                      "es5/input/tex/extensions/"),
    "@jupyter-widgets/html-manager@1.0.6": ("dist/embed-amd.js", "dist/*.woff2", "dist/*.woff", "dist/*.ttf",
                                            "dist/*.eot", "dist/*.svg"),  # + the widgets' icon fonts
    "requirejs@2.3.7": ("require.js",),
}
"""npm packages (and the files of them: path prefixes or globs) the HTML needs to show math and widgets offline."""

PERFORMANCE_PAGE = Path("book/performance.md")
"""The Performance page (:mod:`tvae_book.performance`): staged generated, like ``book/report.md``."""

VENDOR_JS = {"mathjax": "mathjax/es5/tex-mml-chtml.js",
             "requirejs": "requirejs/require.js",
             "widgets": "html-manager/dist/embed-amd.js"}
"""Entry points inside the vendor folder (``<package name without scope>/<file>``)."""



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


VENDOR_MANIFEST = "manifest.json"
"""File in the vendor folder listing every unpacked file and its size (written last)."""


def vendor_complete(vendor_dir: Path) -> bool:
    """True if ``vendor_dir`` holds the MathJax, require.js and widget-manager entry points and every
    file of its manifest at its recorded size (so a truncated copy is never served)."""
    vendor_dir = Path(vendor_dir)
    try:
        sizes = json.loads((vendor_dir / VENDOR_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (all(rel in sizes for rel in VENDOR_JS.values())
            and all((vendor_dir / rel).is_file() and (vendor_dir / rel).stat().st_size == size
                    for rel, size in sizes.items()))


def _wanted(name: str, entry: str) -> bool:
    """A package file is kept if it lies under ``entry`` (a path prefix) or matches it (a glob)."""
    import fnmatch

    return name.startswith(entry) or ("*" in entry and fnmatch.fnmatch(name, entry))


def fetch_vendor(vendor_dir: Path) -> bool:
    """Put the JavaScript of :data:`VENDOR_FILES` into ``vendor_dir`` with ``npm pack``.

    The packages are unpacked into a temporary folder beside ``vendor_dir`` and renamed into
    place only when complete, so a process that finds ``vendor_dir`` never reads a file another
    process is still writing (two builds at once, e.g. test workers, each unpack their own copy and
    the first rename wins). Returns False (and says why) when npm is missing or fails: the HTML
    then uses CDNs.
    """
    vendor_dir = Path(vendor_dir)
    if vendor_complete(vendor_dir):
        return True
    npm = shutil.which("npm")
    if npm is None:
        print("note: npm not found; the HTML will load MathJax and widgets from CDNs", flush=True)
        return False
    import tarfile

    vendor_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, \
            tempfile.TemporaryDirectory(dir=vendor_dir.parent, prefix=f".{vendor_dir.name}-") as part:
        cmd = [npm, "pack", "--silent", "--pack-destination", tmp, *VENDOR_FILES]
        done = subprocess.run(cmd, capture_output=True, text=True)
        tarballs = done.stdout.split()
        if done.returncode != 0 or len(tarballs) != len(VENDOR_FILES):
            print(f"note: `npm pack` failed ({done.stderr.strip()[-300:]}); the HTML will load "
                  "MathJax and widgets from CDNs", flush=True)
            return False
        staged = Path(part) / "vendor"
        for spec, tarball in zip(VENDOR_FILES, tarballs, strict=True):
            name = spec.rsplit("@", 1)[0].split("/")[-1]
            with tarfile.open(Path(tmp) / tarball) as tar:
                members = [m for m in tar.getmembers() if m.isfile() and any(
                    _wanted(m.name.removeprefix("package/"), f) for f in VENDOR_FILES[spec])]
                for member in members:
                    member.name = member.name.removeprefix("package/")
                safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(staged / name, members=members, **safe)
        sizes = {p.relative_to(staged).as_posix(): p.stat().st_size for p in sorted(staged.rglob("*")) if p.is_file()}
        (staged / VENDOR_MANIFEST).write_text(json.dumps(sizes, indent=1), encoding="utf-8")
        if not vendor_complete(staged):
            print("note: the npm packages lack an entry point; the HTML will load MathJax and "
                  "widgets from CDNs", flush=True)
            return False
        if vendor_dir.exists() and not vendor_complete(vendor_dir):
            shutil.rmtree(vendor_dir, ignore_errors=True)  # left incomplete by an interrupted fetch
        try:
            staged.rename(vendor_dir)
        except OSError:  # another process put a complete copy there first
            pass
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
            for p in sorted(vendor_dir.rglob("*")) if p.is_file() and p.name != VENDOR_MANIFEST}


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
                and rel not in (Path("book/report.md"), PERFORMANCE_PAGE) and src.suffix != ".ipynb"
                and "__pycache__" not in rel.parts and ".ipynb_checkpoints" not in rel.parts):
            wanted[rel] = src
    for chapter in chapters:
        executed = output_paths(chapter.name, results_dir)["notebook"]
        if not executed.is_file():
            raise FileNotFoundError(f"no executed notebook for chapter {chapter.name} at "
                                    f"{executed}; run the chapters first")
        wanted[chapter.path.relative_to(root).with_suffix(".ipynb")] = executed
    for extra in ("_theme", "references.bib", "logo.png"):
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
    if (root / PERFORMANCE_PAGE).is_file():  # generated in place of its source page, as the report is
        atomic_write_text_if_changed(stage_dir / PERFORMANCE_PAGE, performance.performance_text(
            results_dir, [c.name for c in chapters], titles={c.name: chapter_title(c.path) for c in chapters},
            root=root, book_links=True))
        keep.add(PERFORMANCE_PAGE)
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


