"""What the release workflow (``.github/workflows/release.yml``) runs around ``make book`` and ``make weights-pack``::

    python -m tvae_book.publish check-url https://github.com/OWNER/REPO   # _config.yml's repository.url is it
    python -m tvae_book.publish site _build/html _results/cpu             # the HTML is complete; + notebooks
    python -m tvae_book.publish lock _build/tvae-weights-cpu.tar --tag v1.0 [--lock PATH]   # pin the bundle

``site`` fails (exit 1) when the build produced no HTML: no ``index.html`` or a page of ``_toc.yml`` missing or
empty.  Otherwise it copies the executed notebooks of the results folder into ``<html>/notebooks/`` with an
``index.html`` listing them and ``notebooks.zip`` of them all, and writes ``.nojekyll`` (GitHub Pages then
serves ``_static/`` and ``_images/`` as they are).  Every chapter page also offers its own notebook through
the page's download button.
"""
from __future__ import annotations

import argparse
import html
import shutil
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

from tvae_book.chapters import REPO_ROOT, toc_files

__all__ = ["NOTEBOOKS", "PublishError", "check_html", "add_notebooks", "check_repository_url", "parser", "main"]

NOTEBOOKS = "notebooks"
"""Folder of the site that holds the executed notebooks."""


class PublishError(RuntimeError):
    """The site or the settings are not fit to publish."""


def check_html(html_dir: Path, root: Path = REPO_ROOT) -> list[Path]:
    """The built pages of every ``_toc.yml`` entry; raises :class:`PublishError` naming what is missing."""
    html_dir = Path(html_dir)
    index = html_dir / "index.html"
    if not index.is_file() or index.stat().st_size == 0:
        raise PublishError(f"no HTML: {index} is missing or empty (did `make book` fail?)")
    pages = [html_dir / f"{entry}.html" for entry in toc_files(root)]
    missing = [p for p in pages if not p.is_file() or p.stat().st_size == 0]
    if missing:
        raise PublishError(f"{len(missing)} page(s) of _toc.yml not built: "
                           + ", ".join(str(p.relative_to(html_dir)) for p in missing))
    return pages


def add_notebooks(html_dir: Path, results_dir: Path) -> list[Path]:
    """Copy ``results_dir``'s executed notebooks (not the ``.failed.ipynb`` of a failed run) into
    ``<html_dir>/notebooks/``, with an ``index.html`` and ``notebooks.zip``; write ``.nojekyll``."""
    html_dir, results_dir = Path(html_dir), Path(results_dir)
    notebooks = sorted(p for p in results_dir.glob("*.ipynb") if not p.name.endswith(".failed.ipynb"))
    if not notebooks:
        raise PublishError(f"no executed notebooks in {results_dir}")
    out = html_dir / NOTEBOOKS
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    copied = [Path(shutil.copy2(p, out / p.name)) for p in notebooks]
    with zipfile.ZipFile(out / "notebooks.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for p in copied:
            zf.write(p, p.name)
    items = "\n".join(f'<li><a href="{html.escape(p.name)}" download>{html.escape(p.name)}</a></li>' for p in copied)
    (out / "index.html").write_text(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Executed notebooks</title></head><body>\n"
        "<h1>Executed notebooks</h1>\n<p>Each chapter as it ran for this book (outputs included); "
        '<a href="notebooks.zip" download>all of them as one zip</a>. '
        '<a href="../index.html">Back to the book</a>.</p>\n'
        f"<ul>\n{items}\n</ul>\n</body></html>\n", encoding="utf-8")
    (html_dir / ".nojekyll").write_text("", encoding="utf-8")
    return copied


def check_repository_url(expected: str, root: Path = REPO_ROOT) -> str:
    """``_config.yml``'s ``repository.url`` (the one setting), which must be ``expected`` (where the release is
    published); raises :class:`PublishError` saying what to set otherwise."""
    from tvae_experiments.bundles import BundleError, repository_url

    try:
        url = repository_url(root)
    except BundleError as err:
        raise PublishError(str(err)) from err
    if url.rstrip("/").lower() != expected.rstrip("/").lower():
        raise PublishError(f"_config.yml's repository.url is {url}, but this repository is {expected}: set "
                           "repository.url there (launch buttons and weight downloads read it)")
    return url


def parser() -> argparse.ArgumentParser:
    """The command line (module doc)."""
    parser = argparse.ArgumentParser(prog="python -m tvae_book.publish", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    url = sub.add_parser("check-url", help="_config.yml's repository.url is this URL")
    url.add_argument("expected")
    site = sub.add_parser("site", help="check the built HTML; add the executed notebooks")
    site.add_argument("html_dir", type=Path)
    site.add_argument("results_dir", type=Path)
    lock = sub.add_parser("lock", help="pin a bundle's sha256 and release tag in bundles.lock.json")
    lock.add_argument("bundle", type=Path)
    lock.add_argument("--tag", required=True)
    lock.add_argument("--lock", type=Path, default=None, help="the lock file (default: this repository's)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (module doc); returns the exit status."""
    args = parser().parse_args(argv)
    try:
        if args.command == "check-url":
            print(f"repository.url: {check_repository_url(args.expected)}")
        elif args.command == "site":
            pages = check_html(args.html_dir)
            copied = add_notebooks(args.html_dir, args.results_dir)
            print(f"{len(pages)} pages built; {len(copied)} executed notebooks in {args.html_dir / NOTEBOOKS}")
        else:
            from tvae_experiments.bundles import pin_bundle

            pin = pin_bundle(args.bundle, args.tag, args.lock)
            print(f"pinned {args.bundle.name}: sha256 {pin['sha256']}, release {pin['tag']}")
    except (PublishError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
