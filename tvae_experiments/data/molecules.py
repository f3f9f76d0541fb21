r"""Small molecules as padded dense graphs, offline (chapter 6; "Interpreting Equivariant
Representations", Sec 5.1).

A molecule with at most ``n_max`` heavy atoms becomes a graph ``(V, E)`` as in Sec 5.1:

* node types ``X: (N, n, A)`` one-hot over :data:`NODE_TYPES` = (none, C, N, O, F): index 0 is
  the paper's *not-a-node* padding class;
* edge types ``E: (N, n, n, B)`` one-hot over :data:`EDGE_TYPES` = (none, single, double,
  triple) for every pair ``i != j`` (index 0: *not-an-edge*, also between padding nodes), the
  diagonal all zero;
* ``mask: (N, n)`` -- 1 for real atoms.

**Bond types are kekulized**: aromatic rings are written with alternating single/double bonds
(``Chem.Kekulize``).  Four edge classes instead of five, and a decoded graph is turned back
into a molecule by plain valence rules -- RDKit re-perceives aromaticity when it sanitizes.

A permutation ``g`` acts as Eq 4: ``g(V, E) = (P_g V, P_g E P_g^T)``.  Graphs are stored in
the order RDKit reads the SMILES; chapter 6 permutes them at random (Sec 5.1, footnote 1).

Data sources (``source``):

* ``"nci"`` (default, offline): ``first_5K.smi``, the NCI subset that ships inside the RDKit
  wheel (``RDConfig.RDDataDir/NCI``), filtered to sanitizable, single-component, uncharged,
  radical-free molecules of C, N, O, F with at most ``n_max`` heavy atoms, deduplicated by
  canonical SMILES (412 molecules for ``n_max = 9``).
* ``"qm9"``: QM9 through ``torch_geometric.datasets.QM9`` -- only when torch_geometric is
  installed and the data already lie in ``data_dir/QM9`` (nothing is downloaded).

Properties come from RDKit descriptors (:data:`PROPERTIES`), computed the same way for both.
RDKit is optional (the ``chem`` extra); every function that needs it raises an ``ImportError``
naming the install command.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from tvae_core.checks import check_choice, check_int

__all__ = ["NODE_TYPES", "EDGE_TYPES", "PROPERTIES", "SOURCES", "MoleculeGraphs", "require_rdkit", "nci_smiles_path",
           "load_molecules", "mol_to_graph", "graph_to_mol", "graph_to_smiles", "mol_properties", "molecule_grid"]

NODE_TYPES = ("none", "C", "N", "O", "F")          # index 0: not-a-node (padding)
EDGE_TYPES = ("none", "single", "double", "triple")  # index 0: not-an-edge
PROPERTIES = ("MolWt", "MolLogP", "TPSA", "QED", "RingCount")
SOURCES = ("nci", "qm9")
INSTALL_HINT = 'pip install -e ".[chem]"  (or `make install`)'


def require_rdkit():
    """Import RDKit or raise an ``ImportError`` that says how to install it."""
    try:
        from rdkit import Chem, RDLogger
    except ImportError as e:
        raise ImportError(f"chapter 6's molecules need RDKit, which is not installed: {INSTALL_HINT}") from e
    RDLogger.DisableLog("rdApp.*")  # unparsable SMILES are filtered, not shouted about
    return Chem


@dataclass
class MoleculeGraphs:
    """Padded dense molecule graphs and their properties (module docstring for the encoding)."""

    X: Tensor            # (N, n, A) node-type one-hot, A = len(NODE_TYPES)
    E: Tensor            # (N, n, n, B) edge-type one-hot, B = len(EDGE_TYPES); zero diagonal
    mask: Tensor         # (N, n) 1 for real atoms
    smiles: list[str]    # canonical SMILES
    props: Tensor        # (N, P) float64, columns as prop_names
    prop_names: tuple[str, ...]
    source: str

    def __len__(self) -> int:
        return len(self.smiles)

    @property
    def n_max(self) -> int:
        return self.X.shape[1]

    def subset(self, idx) -> "MoleculeGraphs":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return MoleculeGraphs(self.X[idx], self.E[idx], self.mask[idx], [self.smiles[i] for i in idx.tolist()],
                              self.props[idx], self.prop_names, self.source)

    def split(self, test_frac: float, seed: int) -> tuple["MoleculeGraphs", "MoleculeGraphs"]:
        """Seeded random train/test split."""
        if not 0 < test_frac < 1:
            raise ValueError(f"test_frac must be in (0, 1), got {test_frac}")
        perm = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        n_test = max(1, round(test_frac * len(self)))
        return self.subset(perm[n_test:]), self.subset(perm[:n_test])

    def fingerprint(self) -> str:
        """Identity of the data for cache keys: source, size and a hash of the SMILES."""
        h = hashlib.sha256("\n".join(self.smiles).encode()).hexdigest()[:16]
        return f"{self.source}|n{self.n_max}|{len(self)}|{h}"

    def prop(self, name: str) -> Tensor:
        """One property column ``(N,)``."""
        check_choice("name", name, self.prop_names)
        return self.props[:, self.prop_names.index(name)]


def nci_smiles_path() -> Path:
    """``first_5K.smi`` inside the installed RDKit (raises if RDKit or the file is missing)."""
    require_rdkit()
    from rdkit import RDConfig

    path = Path(RDConfig.RDDataDir) / "NCI" / "first_5K.smi"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from this RDKit installation; reinstall it: {INSTALL_HINT}")
    return path


def _keep(mol, n_max: int) -> bool:
    """C, N, O, F only, uncharged, no radicals, one component, 2..n_max heavy atoms."""
    Chem = require_rdkit()
    if mol is None or not 2 <= mol.GetNumHeavyAtoms() <= n_max or len(Chem.GetMolFrags(mol)) != 1:
        return False
    return all(a.GetSymbol() in NODE_TYPES[1:] and a.GetFormalCharge() == 0 and a.GetNumRadicalElectrons() == 0
               for a in mol.GetAtoms())


def mol_to_graph(mol, n_max: int) -> tuple[Tensor, Tensor, Tensor]:
    """One molecule -> ``X (n, A)``, ``E (n, n, B)``, ``mask (n,)`` (kekulized bonds, atom order
    of ``mol``, padded to ``n_max``)."""
    Chem = require_rdkit()
    mol = Chem.Mol(mol)
    Chem.Kekulize(mol, clearAromaticFlags=True)
    n = mol.GetNumAtoms()
    if n > n_max:
        raise ValueError(f"the molecule has {n} heavy atoms, more than n_max={n_max}")
    node = torch.zeros(n_max, dtype=torch.long)  # 0 = not-a-node
    for a in mol.GetAtoms():
        node[a.GetIdx()] = NODE_TYPES.index(a.GetSymbol())
    edge = torch.zeros(n_max, n_max, dtype=torch.long)  # 0 = not-an-edge
    order = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3}
    for b in mol.GetBonds():
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        edge[i, j] = edge[j, i] = order[b.GetBondType()]
    X = torch.nn.functional.one_hot(node, len(NODE_TYPES)).float()
    E = torch.nn.functional.one_hot(edge, len(EDGE_TYPES)).float()
    E[torch.arange(n_max), torch.arange(n_max)] = 0.0
    return X, E, (node > 0).float()


def graph_to_mol(X: Tensor, E: Tensor):
    """A decoded graph -> RDKit ``Mol`` (sanitized), or ``None`` if it is not a valid molecule.

    ``X: (n, A)`` and ``E: (n, n, B)`` are one-hot or logits/probabilities (argmax is taken);
    nodes of class *none* are dropped, bonds are read from the upper triangle.  A graph that
    breaks valence rules or has no atom gives ``None``; disconnected graphs give a
    multi-component molecule (``'.'`` in its SMILES)."""
    Chem = require_rdkit()
    node = X.argmax(-1).tolist()
    edge = E.argmax(-1)
    keep = [i for i, t in enumerate(node) if t > 0]
    if not keep:
        return None
    rw = Chem.RWMol()
    new = {i: rw.AddAtom(Chem.Atom(NODE_TYPES[node[i]])) for i in keep}
    bond = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
    for a, i in enumerate(keep):
        for j in keep[a + 1:]:
            t = int(edge[i, j])
            if t > 0:
                rw.AddBond(new[i], new[j], bond[t])
    mol = rw.GetMol()
    try:
        Chem.SanitizeMol(mol)
    except Exception:  # valence or kekulization errors: not a molecule
        return None
    return mol


def graph_to_smiles(X: Tensor, E: Tensor) -> str | None:
    """Canonical SMILES of :func:`graph_to_mol`, or ``None``."""
    mol = graph_to_mol(X, E)
    return None if mol is None else require_rdkit().MolToSmiles(mol)


def mol_properties(mol, names=PROPERTIES) -> list[float]:
    """RDKit descriptors of one molecule: MolWt (g/mol), MolLogP (Crippen), TPSA (A^2), QED,
    RingCount."""
    require_rdkit()
    from rdkit.Chem import QED, Crippen, Descriptors, rdMolDescriptors

    fns = {"MolWt": Descriptors.MolWt, "MolLogP": Crippen.MolLogP, "TPSA": rdMolDescriptors.CalcTPSA,
           "QED": QED.qed, "RingCount": rdMolDescriptors.CalcNumRings}
    for n in names:
        check_choice("property", n, tuple(fns))
    return [float(fns[n](mol)) for n in names]


def _qm9_smiles(data_dir: str | os.PathLike | None) -> list[str]:
    """SMILES of QM9 from torch_geometric's processed copy in ``data_dir/QM9`` (no download)."""
    try:
        from torch_geometric.datasets import QM9
    except ImportError as e:
        raise ImportError("source='qm9' needs torch_geometric (pip install torch_geometric) and QM9 in "
                          "data_dir/QM9; the default source='nci' needs neither") from e
    if data_dir is None:
        raise ValueError("source='qm9' needs data_dir: a folder holding QM9/ as torch_geometric stores it")
    root = Path(data_dir) / "QM9"
    if not (root / "processed").is_dir() and not (root / "raw").is_dir():
        raise FileNotFoundError(f"no QM9 data under {root} (expected raw/ or processed/ from "
                                "torch_geometric.datasets.QM9); nothing is downloaded here -- use source='nci'")
    return [d.smiles for d in QM9(str(root))]


def load_molecules(source: str = "nci", n_max: int = 9, data_dir: str | os.PathLike | None = None,
                   limit: int | None = None, properties=PROPERTIES) -> MoleculeGraphs:
    """Read, filter and encode molecules (module docstring); ``limit`` keeps the first ones."""
    check_choice("source", source, SOURCES)
    check_int("n_max", n_max, minimum=2)
    if limit is not None:
        check_int("limit", limit, minimum=1)
    Chem = require_rdkit()
    if source == "nci":
        raw = [line.split()[0] for line in nci_smiles_path().read_text().splitlines() if line.strip()]
    else:
        try:
            raw = _qm9_smiles(data_dir)
        except (ImportError, ValueError, FileNotFoundError) as err:
            from tvae_experiments.run import current

            if not current().dry_run_steps:
                raise
            return _qm9_stand_in(n_max, properties, err)
    seen, Xs, Es, Ms, smiles, props = set(), [], [], [], [], []
    for s in raw:
        mol = Chem.MolFromSmiles(s)
        if not _keep(mol, n_max):
            continue
        can = Chem.MolToSmiles(mol)
        if can in seen:
            continue
        seen.add(can)
        mol = Chem.MolFromSmiles(can)  # atom order of the canonical SMILES
        X, E, m = mol_to_graph(mol, n_max)
        Xs.append(X), Es.append(E), Ms.append(m), smiles.append(can)
        props.append(mol_properties(mol, properties))
        if limit is not None and len(smiles) >= limit:
            break
    if not smiles:
        raise ValueError(f"no molecule of source={source!r} passed the filter (n_max={n_max})")
    return MoleculeGraphs(torch.stack(Xs), torch.stack(Es), torch.stack(Ms), smiles,
                          torch.tensor(props, dtype=torch.float64), tuple(properties), source)


QM9_SIZE = 133_885
"""Molecules in QM9 (all have at most 9 heavy atoms of C, N, O, F)."""


def _qm9_stand_in(n_max: int, properties, err: Exception) -> MoleculeGraphs:
    """A dry run without QM9: RDKit's NCI molecules repeated to QM9's size (sizes and costs only, said so)."""
    nci = load_molecules("nci", n_max, properties=properties)
    reps = -(-QM9_SIZE // len(nci))
    idx = torch.arange(reps * len(nci)) % len(nci)
    idx = idx[:QM9_SIZE]
    print(f"dry run: QM9 is not available ({err}); standing in: the {len(nci)} NCI molecules repeated to "
          f"QM9's {QM9_SIZE:,} graphs -- the sizes and costs of the paper profile, not its data")
    return MoleculeGraphs(nci.X[idx], nci.E[idx], nci.mask[idx], [nci.smiles[i] for i in idx.tolist()],
                          nci.props[idx], nci.prop_names, f"{nci.source} x{reps} (dry-run stand-in for qm9)")


def molecule_grid(mols, legends=None, per_row: int = 5, size: int = 120):
    """RDKit drawing of ``mols`` (``None`` -> an empty cell, e.g. an invalid decoded graph) as an
    RGB array ``(H, W, 3)`` for ``matplotlib.pyplot.imshow`` (drawn with ``MolDraw2DCairo``, so
    the result is the same inside and outside Jupyter)."""
    import io

    import numpy as np
    from PIL import Image

    Chem = require_rdkit()
    from rdkit.Chem.Draw import rdMolDraw2D

    mols = [Chem.Mol() if m is None else m for m in mols]
    rows = -(-len(mols) // per_row)
    canvas = rdMolDraw2D.MolDraw2DCairo(per_row * size, rows * size, size, size)
    canvas.DrawMolecules(mols, legends=list(legends) if legends is not None else None)
    canvas.FinishDrawing()
    return np.asarray(Image.open(io.BytesIO(canvas.GetDrawingText())).convert("RGB"))
