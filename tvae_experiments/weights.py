"""The weight cache: trained weights on disk, one file per (model config, training config, data identity).

A file is named ``<name>-<key[:12]>.pt``: ``name`` is readable (``caps-mnist-tvae-L6-s0``), ``key``
(:func:`cache_key`) is a SHA-256 over everything that determines the trained weights -- the model
config's ``to_dict()``, the training config's ``to_dict()``, the identity of the training data and
:data:`CACHE_FORMAT`.  A file holds ``{"format", "key", "state_dict", "history", "seconds"}`` and is
written atomically (temporary file + ``os.replace``), on the CPU, exactly as trained (no casting).

:meth:`WeightCache.load` never uses a file silently when it does not fit: a file written for another
key, unreadable, truncated or not matching the model is reported and ignored (the model retrains).
Files of the same name written by an older :data:`CACHE_FORMAT` are *stale*: the first miss of that
name says so once, naming them, and the model retrains under its new key.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tvae_experiments.files import atomic_file, repo_root

__all__ = ["CACHE_FORMAT", "CacheEntry", "WeightCache", "cache_key", "default_cache_dir"]

CACHE_FORMAT = 2
"""Version of the key and the file layout.  Every key includes it: bumping it retrains every model once.
Format 2: every config field is in the key (format 1 left fields added later out at their defaults)."""

CACHE_ENV = "TVAE_CACHE_DIR"
"""Environment variable: the weight cache folder (default ``<repo>/_cache/models``)."""


def default_cache_dir() -> Path:
    """``$TVAE_CACHE_DIR``, else ``<repo>/_cache/models``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else repo_root() / "_cache" / "models"


def cache_key(model_cfg: Any, train_cfg: Any, data_id: str) -> str:
    """SHA-256 over everything that determines the trained weights (module doc)."""
    blob = json.dumps({"model": model_cfg.to_dict(), "train": train_cfg.to_dict(), "data": data_id,
                       "format": CACHE_FORMAT}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class CacheEntry(dict):
    """A loaded cache file: ``state_dict``, ``history`` (per epoch), ``seconds`` (training wall time)."""


class WeightCache:
    """The cache folder ``root``: path, load and atomic save of weights."""

    def __init__(self, root: str | os.PathLike | None = None, bundle: Any = None) -> None:
        """``bundle``: a verified :class:`~tvae_experiments.bundles.Bundle` to fill a missing entry from (its key
        must match: the bundle then holds exactly what this code would train)."""
        self._root = Path(root) if root is not None else None
        self.bundle = bundle
        self._reported: set[Path] = set()  # stale files already named in this run

    @property
    def root(self) -> Path:
        """The folder: the one given, else :func:`default_cache_dir` (read at each use)."""
        return self._root if self._root is not None else default_cache_dir()

    def __repr__(self) -> str:
        return f"WeightCache({str(self.root)!r})"

    def path(self, name: str, key: str) -> Path:
        """``<root>/<name>-<key[:12]>.pt``."""
        return self.root / f"{name}-{key[:12]}.pt"

    def load(self, name: str, key: str, build: Callable[[], nn.Module]) -> tuple[nn.Module, CacheEntry] | None:
        """The cached weights of ``(name, key)`` in a fresh ``build()`` (on the CPU), with the file's entry; None
        if there is no usable file (an unusable one is reported; stale files of the name are named once)."""
        path = self.path(name, key)
        if not path.exists() and self.bundle is not None and self.bundle.fetch_entry(self, name, key):
            print(f"{name}: weights from the bundle {self.bundle.path.name}")
        if not path.exists():
            self._report_stale(name, key)
            return None
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if blob.get("key") != key:
                raise ValueError("it was written for a different configuration")
            missing = [f for f in ("state_dict", "history", "seconds") if f not in blob]
            if missing:
                raise ValueError(f"it lacks the field(s) {', '.join(missing)}")
            model = build()
            model.load_state_dict(blob["state_dict"], strict=True)
        except Exception as e:  # corrupt, truncated, incomplete, incompatible: never use it
            print(f"cache file {path} is unusable ({type(e).__name__}: {e}); retraining")
            return None
        return model, CacheEntry(blob)

    def save(self, name: str, key: str, model: nn.Module, history: list[dict], seconds: float) -> Path:
        """Write the weights (on the CPU, exactly as trained), history and training time atomically."""
        path = self.path(name, key)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        with atomic_file(path, "wb") as fh:
            torch.save({"format": CACHE_FORMAT, "key": key, "state_dict": state, "history": history,
                        "seconds": seconds}, fh)
        return path

    def stale(self, name: str, key: str) -> list[Path]:
        """Files of ``name`` written by an older :data:`CACHE_FORMAT` (read lazily: ``mmap``, no weights copied)."""
        out = []
        for p in sorted(self.root.glob(f"{name}-*.pt")):
            if p == self.path(name, key) or not re.fullmatch(r"[0-9a-f]{12}", p.name[len(name) + 1:-3]):
                continue  # its own file, or another name that starts with this one
            try:
                fmt = torch.load(p, map_location="cpu", weights_only=True, mmap=True).get("format", 1)
            except Exception:  # unreadable: not ours to judge here (load reports a bad file of its own key)
                continue
            if fmt < CACHE_FORMAT:
                out.append(p)
        return out

    def _report_stale(self, name: str, key: str) -> None:
        new = [p for p in self.stale(name, key) if p not in self._reported]
        if new:
            self._reported.update(new)
            print(f"{name}: stale cache entr{'y' if len(new) == 1 else 'ies'} {', '.join(p.name for p in new)} "
                  f"(an older cache format; now format {CACHE_FORMAT}): retraining under the new key")
