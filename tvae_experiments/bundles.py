"""Weight bundles: every trained model of a profile in one file, verified before anything is used.

A bundle is an uncompressed tar (the weights are float tensors: gzip saves ~4%) holding
``manifest.json`` and one ``models/<name>-<key[:12]>.pt`` per cache entry, stored exactly as the
weight cache holds it (:mod:`tvae_experiments.weights`: no casting; the claims were checked on these
numbers).  The manifest lists per entry the cache key, sha256, size, model and training config and the
package version that trained it::

    {"bundle_format": 1, "profile": "cpu", "cache_format": 2, "package_version": "0.1.0",
     "entries": [{"file": "models/ch3-tvae-cpu-1a2b3c4d5e6f.pt", "name": "ch3-tvae-cpu", "key": "<64 hex>",
                  "sha256": "<64 hex>", "size": 1234, "model": {...}, "train": {...}, "data_id": "..."}]}

:func:`open_bundle` reads a bundle from a path or URL (downloaded once into ``_cache/bundles/``, with
progress) and, when a sha256 is pinned for it (:func:`pinned_sha256`, the repository's
``bundles.lock.json``) or given, refuses a file whose checksum differs: a changed or substituted
bundle is never read.  :meth:`Bundle.verify` checks every entry's size and sha256 against the manifest
(a corrupt or truncated bundle raises :class:`BundleError` naming the file and the expected checksum);
:meth:`Bundle.install` then writes the entries whose key is one of ``keys`` -- the keys the current
code would train under, so a bundle from other code is never used -- into the weight cache, each file
through a temporary file and ``os.replace``, and only after every entry verified: an error leaves the
cache as it was.  The weights keep loading with ``torch.load(weights_only=True)``.

``latest`` (``--weights latest``, ``TVAE_WEIGHTS=latest[:<profile>]``) is the profile's bundle of the release
pinned in the lock file, downloaded from ``<repository.url>/releases/download/<tag>/`` (:func:`resolve_source`;
the URL is read from ``_config.yml``, its one setting); the release workflow pins it (:func:`pin_bundle`).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tvae_experiments.files import atomic_file, repo_root
from tvae_experiments.weights import CACHE_FORMAT, WeightCache

__all__ = ["BUNDLE_FORMAT", "LOCK_FILE", "LATEST", "BundleError", "BundleEntry", "Bundle", "pack_bundle", "open_bundle",
           "pinned_sha256", "pin_bundle", "sha256_of", "bundle_name", "repository_url", "release_url", "resolve_source"]

BUNDLE_FORMAT = 1
LOCK_FILE = "bundles.lock.json"
"""In the repository root: ``{bundle file name: {"sha256": ..., "tag": ...}}``, the published bundles' checksums
and the release each is attached to (written by the release workflow, :func:`pin_bundle`; committed, so a clone
carries the pins and a file changed on the server is refused)."""
LATEST = "latest"
"""``--weights latest`` / ``TVAE_WEIGHTS=latest[:<profile>]``: the pinned release's bundle (:func:`resolve_source`)."""
_CHUNK = 1 << 20


class BundleError(RuntimeError):
    """A bundle that cannot be used: unreadable, truncated, corrupt, not the pinned file, or from another format."""


@dataclass(frozen=True)
class BundleEntry:
    """One cache entry of a bundle (a row of its manifest)."""

    file: str        # member name in the tar: models/<name>-<key[:12]>.pt
    name: str
    key: str
    sha256: str
    size: int
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    data_id: str = ""


def bundle_name(profile: str) -> str:
    """The file name of ``profile``'s bundle: ``tvae-weights-<profile>.tar``."""
    return f"tvae-weights-{profile}.tar"


def sha256_of(path: str | os.PathLike) -> str:
    """The sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def pinned_sha256(file_name: str, lock: str | os.PathLike | None = None) -> str | None:
    """The sha256 pinned for a bundle ``file_name`` in the lock file (default ``<repo>/bundles.lock.json``), or None."""
    path = Path(lock) if lock is not None else repo_root() / LOCK_FILE
    if not path.is_file():
        return None
    return (json.loads(path.read_text(encoding="utf-8")).get(file_name) or {}).get("sha256")


def pin_bundle(bundle: str | os.PathLike, tag: str, lock: str | os.PathLike | None = None) -> dict[str, str]:
    """Pin ``bundle``'s sha256 under its file name in the lock file (default ``<repo>/bundles.lock.json``), with
    ``tag``, the release it is attached to; other pins are kept.  Returns the pin."""
    from tvae_experiments.files import atomic_write_text

    path = Path(lock) if lock is not None else repo_root() / LOCK_FILE
    pins = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    pin = {"sha256": sha256_of(bundle), "tag": str(tag)}
    pins[Path(bundle).name] = pin
    atomic_write_text(path, json.dumps(pins, indent=2, sort_keys=True) + "\n")
    return pin


def repository_url(root: str | os.PathLike | None = None) -> str:
    """The repository's URL: ``repository.url`` in ``<root>/_config.yml`` (default: this repository), the one
    setting the launch buttons, the bundle downloads and the release workflow read."""
    import yaml

    path = Path(root or repo_root()) / "_config.yml"
    try:
        url = ((yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("repository") or {}).get("url")
    except (OSError, yaml.YAMLError) as e:
        raise BundleError(f"cannot read repository.url from {path} ({type(e).__name__}: {e})") from e
    if not url:
        raise BundleError(f"{path} sets no repository.url: the release downloads are found under it")
    return str(url).rstrip("/")


def release_url(file_name: str, tag: str, root: str | os.PathLike | None = None) -> str:
    """Where a release ``tag``'s asset ``file_name`` is downloaded from (GitHub's release download URL)."""
    return f"{repository_url(root)}/releases/download/{urllib.parse.quote(tag)}/{file_name}"


def resolve_source(source: str, profile: str | None = None, lock: str | os.PathLike | None = None,
                   root: str | os.PathLike | None = None) -> str:
    """``source`` itself, or for ``latest`` (``latest:<profile>``) the download URL of the profile's bundle
    (``profile``, default ``cpu``) of the release pinned in the lock file."""
    if source != LATEST and not source.startswith(LATEST + ":"):
        return source
    profile = source.partition(":")[2] or profile or "cpu"
    name = bundle_name(profile)
    path = Path(lock) if lock is not None else Path(root or repo_root()) / LOCK_FILE
    pins = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    tag = (pins.get(name) or {}).get("tag")
    if not tag:
        raise BundleError(f"--weights {source}: {path} pins no released {name} (the release workflow pins one "
                          f"when it publishes a release); give a path or URL instead")
    return release_url(name, tag, root)


def pack_bundle(entries: Iterable[tuple[str, str, Any, Any, str]], out: str | os.PathLike, *, profile: str,
                cache: WeightCache | None = None) -> Path:
    """Write a bundle of the cached weights of ``entries`` -- ``(name, key, model_cfg, train_cfg, data_id)``, e.g.
    from a training plan -- to ``out`` (atomically).  Every entry must be in ``cache``; a missing one raises
    :class:`BundleError` naming it (train it first: ``make train``)."""
    from importlib.metadata import PackageNotFoundError, version

    cache = cache or WeightCache()
    rows, paths = [], []
    for name, key, model_cfg, train_cfg, data_id in entries:
        path = cache.path(name, key)
        if not path.is_file():
            raise BundleError(f"cannot pack {name}: {path} is not in the weight cache; train it first (make train)")
        rows.append(BundleEntry(f"models/{path.name}", name, key, sha256_of(path), path.stat().st_size,
                                model_cfg.to_dict(), train_cfg.to_dict(), data_id))
        paths.append(path)
    try:
        package = version("tvae-book")
    except PackageNotFoundError:
        package = "unknown"
    manifest = {"bundle_format": BUNDLE_FORMAT, "profile": profile, "cache_format": CACHE_FORMAT,
                "package_version": package, "entries": [r.__dict__ for r in rows]}
    blob = json.dumps(manifest, indent=1, default=str).encode()
    with atomic_file(out, "wb") as fh, tarfile.open(fileobj=fh, mode="w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
        for row, path in zip(rows, paths):
            tar.add(path, arcname=row.file)
    return Path(out)


class Bundle:
    """A bundle file on disk, its manifest read (use :func:`open_bundle`)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            with tarfile.open(self.path, mode="r:") as tar:
                manifest = json.load(tar.extractfile("manifest.json"))
        except (tarfile.TarError, KeyError, OSError, json.JSONDecodeError, TypeError) as e:
            raise BundleError(f"{self.path} is not a readable weight bundle ({type(e).__name__}: {e})") from e
        if manifest.get("bundle_format") != BUNDLE_FORMAT:
            raise BundleError(f"{self.path}: bundle_format={manifest.get('bundle_format')!r}; this code reads "
                              f"format {BUNDLE_FORMAT}")
        self.manifest = manifest
        self.entries = {e["key"]: BundleEntry(**e) for e in manifest["entries"]}

    def verify(self) -> None:
        """Every entry's size and sha256 as the manifest says; :class:`BundleError` naming the first that is not."""
        seen = set()
        try:
            with tarfile.open(self.path, mode="r:") as tar:
                for member in tar:
                    if member.name == "manifest.json":
                        continue
                    entry = next((e for e in self.entries.values() if e.file == member.name), None)
                    if entry is None:
                        raise BundleError(f"{self.path}: {member.name} is not in the manifest")
                    h, n = hashlib.sha256(), 0
                    fh = tar.extractfile(member)
                    while chunk := fh.read(_CHUNK):
                        h.update(chunk)
                        n += len(chunk)
                    if n != entry.size or h.hexdigest() != entry.sha256:
                        raise BundleError(f"{self.path}: {entry.file} is corrupt: sha256 {h.hexdigest()} ({n:,} bytes), "
                                          f"expected {entry.sha256} ({entry.size:,} bytes)")
                    seen.add(entry.file)
        except (tarfile.TarError, OSError, EOFError) as e:
            raise BundleError(f"{self.path} is truncated or unreadable ({type(e).__name__}: {e}); "
                              f"expected the entries of its manifest") from e
        missing = sorted({e.file for e in self.entries.values()} - seen)
        if missing:
            raise BundleError(f"{self.path} is truncated: {len(missing)} entr(ies) of its manifest missing, first "
                              f"{missing[0]} (expected sha256 {next(e.sha256 for e in self.entries.values() if e.file == missing[0])})")

    def install(self, cache: WeightCache, keys: Iterable[str] | None = None) -> dict[str, list[str]]:
        """Verify the bundle, then write into ``cache`` its entries whose key is in ``keys`` (all when None) and
        that the cache lacks.  Returns ``{"installed", "cached", "unused"}`` lists of names (``unused``: entries no
        key asks for -- trained by other code; ``missing`` keys are the caller's to train)."""
        self.verify()
        wanted = set(self.entries) if keys is None else set(keys)
        out: dict[str, list[str]] = {"installed": [], "cached": [], "unused": []}
        todo = []
        for key, e in self.entries.items():
            if key not in wanted:
                out["unused"].append(e.name)
            elif cache.path(e.name, key).is_file():
                out["cached"].append(e.name)
            else:
                todo.append(e)
        if not todo:
            return out
        cache.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache.root, prefix=".bundle-") as tmp, \
                tarfile.open(self.path, mode="r:") as tar:
            staged = []
            for e in todo:  # every file verified again as it is staged: the archive could change in between
                dest = Path(tmp) / Path(e.file).name
                with tar.extractfile(e.file) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
                if sha256_of(dest) != e.sha256:
                    raise BundleError(f"{self.path}: {e.file} changed while installing; expected sha256 {e.sha256}")
                staged.append((dest, cache.path(e.name, e.key), e.name))
            for dest, final, name in staged:
                os.replace(dest, final)
                out["installed"].append(name)
        return out

    def fetch_entry(self, cache: WeightCache, name: str, key: str) -> bool:
        """Install the one entry ``(name, key)`` into ``cache`` if the bundle has it (verified); whether it did."""
        e = self.entries.get(key)
        if e is None or e.name != name:
            return False
        with tarfile.open(self.path, mode="r:") as tar, atomic_file(cache.path(name, key), "wb") as dst:
            h = hashlib.sha256()
            src = tar.extractfile(e.file)
            while chunk := src.read(_CHUNK):
                h.update(chunk)
                dst.write(chunk)
            if h.hexdigest() != e.sha256:  # atomic_file discards the temporary file
                raise BundleError(f"{self.path}: {e.file} is corrupt: sha256 {h.hexdigest()}, expected {e.sha256}")
        return True


def open_bundle(source: str | os.PathLike, *, sha256: str | None = None, download_dir: str | os.PathLike | None = None,
                lock: str | os.PathLike | None = None, progress: bool = True, profile: str | None = None) -> Bundle:
    """The bundle at ``source`` (a path, or an ``http(s)://`` / ``file://`` URL downloaded once into
    ``download_dir``, default ``<repo>/_cache/bundles``).  Its sha256 must be ``sha256`` when given, else the
    lock file's pin for its file name when there is one; a URL with neither pin is refused (a file on a server
    can change); a local path without a pin is read after its entries verify.  ``latest``: the pinned release's
    bundle of ``profile`` (:func:`resolve_source`)."""
    src = resolve_source(str(source), profile, lock)
    is_url = urllib.parse.urlparse(src).scheme in ("http", "https", "file")
    name = Path(urllib.parse.urlparse(src).path).name if is_url else Path(src).name
    expected = sha256 or pinned_sha256(name, lock)
    if is_url and expected is None:
        raise BundleError(f"no sha256 pinned for {name} in {LOCK_FILE} and none given: refusing to download {src}")
    path = _download(src, Path(download_dir or repo_root() / "_cache" / "bundles") / name, expected,
                     progress) if is_url else Path(src)
    if not path.is_file():
        raise BundleError(f"weight bundle {path} does not exist")
    if expected is not None and (got := sha256_of(path)) != expected:
        raise BundleError(f"{path} has sha256 {got}, expected the pinned {expected}: refusing a changed or "
                          f"substituted bundle")
    return Bundle(path)


def _download(url: str, dest: Path, expected: str, progress: bool) -> Path:
    """``url`` into ``dest`` (atomically, with a progress bar), unless ``dest`` already has checksum ``expected``."""
    from tqdm.auto import tqdm

    if dest.is_file() and sha256_of(dest) == expected:
        return dest
    try:
        with urllib.request.urlopen(url) as resp, atomic_file(dest, "wb") as fh:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {dest.name}", disable=not progress) as bar:
                while chunk := resp.read(_CHUNK):
                    fh.write(chunk)
                    bar.update(len(chunk))
    except OSError as e:
        raise BundleError(f"could not download {url} ({type(e).__name__}: {e})") from e
    return dest
