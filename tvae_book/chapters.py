"""The book's chapters: discovery from ``_toc.yml``, run settings, and skip-if-unchanged fingerprints.

A chapter is a jupytext MyST-Markdown notebook ``book/NN_name.md`` listed in ``_toc.yml``.  It is
skipped when its source, the science code it imports (:mod:`tvae_core`, :mod:`tvae_experiments`)
and the run settings are unchanged since its last successful execution into the same results
folder (a ``.stamp.json`` file next to the metrics records that fingerprint).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tvae_experiments.files import atomic_write_text

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The repository root: ``_toc.yml``, ``_config.yml`` and ``book/`` live here."""

RESULTS_ENV = "TVAE_RESULTS_DIR"
"""Environment variable telling a chapter where to write its metrics JSON."""

CHAPTER_STEM = re.compile(r"^\d+_[A-Za-z0-9_]+$")
"""A chapter's file stem: a number, an underscore, a name (``01_pot``)."""

CODE_PACKAGES = ("tvae_core", "tvae_experiments")
"""Packages whose code influences chapter results (in every fingerprint); :mod:`tvae_book` does not."""


class ChapterError(RuntimeError):
    """A chapter could not be executed, or its run did not produce valid metrics."""

    def __init__(self, chapter: str, message: str, notebook: Path | None = None) -> None:
        self.chapter = chapter
        self.notebook = notebook
        self.message = message
        text = f"chapter {chapter} failed: {message}"
        if notebook is not None:
            text += f"\n  executed notebook (with the error): {notebook}"
        super().__init__(text)

    def __reduce__(self):  # picklable with its fields (raised in a worker process of run_chapters)
        return type(self), (self.chapter, self.message, self.notebook)


@dataclass(frozen=True)
class RunConfig:
    """The parameters injected into every chapter's ``parameters`` cell."""

    profile: str = "cpu"
    seed: int = 0
    device: str = "auto"
    data_dir: str | None = None
    extra: tuple[tuple[str, Any], ...] = ()  # chapter-specific parameters, e.g. (("n_seeds", 2),)
    dry_run: int = 0                         # >0: every training stops after this many steps (tvae_experiments.dry_run)

    def __post_init__(self) -> None:
        # a missing folder would silently fall back to the embedded data: a wrong result, not a run
        if not (isinstance(self.dry_run, int) and self.dry_run >= 0):
            raise ValueError(f"dry_run must be a whole number of optimiser steps >= 0 (0: a normal run), got {self.dry_run!r}")
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise ValueError(f"data_dir={str(self.data_dir)!r} is not a folder; give the folder holding the real data "
                             "(MNIST/raw, dsprites_ndarray_*.npz, QM9) or leave it unset for the embedded defaults")

    def kernel_env(self) -> dict[str, str]:
        """Environment variables of the chapter's kernel: the dry-run switch, set either way so a
        variable left in the caller's shell cannot turn a normal run into a dry run."""
        from tvae_experiments.dry_run import ENV

        return {ENV: str(self.dry_run)}

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
    """The profile names the chapters understand (``tvae_experiments.profiles.PROFILES``)."""
    from tvae_experiments.profiles import PROFILES

    return tuple(PROFILES)


def check_profile(profile: str) -> str:
    """Return ``profile`` if it is known, else raise ``ValueError`` naming the allowed values."""
    allowed = allowed_profiles()
    if profile not in allowed:
        raise ValueError(f"unknown profile {profile!r}; allowed profiles: {', '.join(allowed)}")
    return profile


def default_results_dir(profile: str, root: Path = REPO_ROOT, dry_run: int = 0) -> Path:
    """Where a profile's executed notebooks and metrics go: ``<root>/_results/<profile>``
    (a dry run: ``<root>/_results/<profile>-dry-run``)."""
    return Path(root) / "_results" / (f"{profile}-dry-run" if dry_run else profile)


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
    """Sources of :data:`CODE_PACKAGES` (what chapters import; the book pipeline left out)."""
    return sorted(p for pkg in CODE_PACKAGES if (Path(root) / pkg).is_dir()
                  for p in (Path(root) / pkg).rglob("*.py") if "__pycache__" not in p.parts)


def fingerprint(chapter: Chapter, config: RunConfig, root: Path = REPO_ROOT) -> str:
    """SHA-256 over the chapter source, the science code (:func:`code_files`), and the run parameters."""
    digest = hashlib.sha256()
    digest.update(json.dumps({**config.parameters(), "dry_run": config.dry_run}, sort_keys=True).encode())
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


