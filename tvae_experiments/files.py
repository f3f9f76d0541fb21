"""Files: the repository root, and atomic writes (every file the package writes appears whole or not at all).

``atomic_file(path, mode)`` yields a handle on a temporary file in the same folder; on success
the file gets ordinary permissions (``0666 & ~umask``) and replaces ``path`` with
``os.replace``; on any error the temporary file is removed and ``path`` is untouched.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_file", "atomic_write_text", "repo_root", "PROGRESS_ENV"]

PROGRESS_ENV = "TVAE_PROGRESS_FILE"
"""If set (the book runner sets it), :func:`~tvae_experiments.train.fit` appends its progress bars to this
file instead of the notebook, and the runner streams the file to its terminal (``make book`` shows every
training's bar and ETA while a chapter runs)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Write ``path`` atomically through the yielded handle (``mode`` ``"w"`` or ``"wb"``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_file(path, "w") as fh:
        fh.write(text)


def repo_root() -> Path:
    """The repository root (``pyproject.toml`` next to the package), else the working directory."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").exists() else Path.cwd()
