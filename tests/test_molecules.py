"""Offline molecules (chapter 6): the NCI filter, the dense encoding, properties against RDKit,
graph -> molecule round trips, and the messages when RDKit or QM9 are missing."""
import builtins
import os
import subprocess
import sys

import pytest
import torch

import tvae_experiments.data.molecules as mol_mod
from tvae_experiments.data.molecules import (EDGE_TYPES, NODE_TYPES, graph_to_mol, graph_to_smiles, load_molecules, mol_properties,
                                 mol_to_graph)

if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
    from rdkit import Chem  # CI installs the chem extra: a missing RDKit must fail, not skip
else:
    Chem = pytest.importorskip("rdkit.Chem")


@pytest.fixture(scope="module")
def nci():
    return load_molecules("nci", n_max=9)


def test_nci_molecules_pass_the_filter(nci):
    assert len(nci) > 300  # 412 with n_max = 9
    N, n = len(nci), 9
    assert nci.X.shape == (N, n, len(NODE_TYPES)) and nci.E.shape == (N, n, n, len(EDGE_TYPES))
    assert nci.mask.shape == (N, n) and nci.props.shape == (N, len(nci.prop_names))
    assert len(set(nci.smiles)) == N  # deduplicated
    for s in nci.smiles:
        m = Chem.MolFromSmiles(s)
        assert m.GetNumHeavyAtoms() <= 9 and len(Chem.GetMolFrags(m)) == 1
        assert {a.GetSymbol() for a in m.GetAtoms()} <= {"C", "N", "O", "F"}


def test_dense_encoding_is_consistent(nci):
    assert torch.equal(nci.X.sum(-1), torch.ones(len(nci), 9))               # one type per node (padding: none)
    assert torch.equal(nci.mask, (nci.X.argmax(-1) > 0).float())
    eye = torch.eye(9, dtype=torch.bool)
    assert nci.E[:, eye].abs().sum() == 0                                     # zero diagonal
    assert torch.equal(nci.E[:, ~eye].sum(-1), torch.ones(len(nci), 72))     # one class per off-diagonal pair
    assert torch.equal(nci.E, nci.E.transpose(1, 2))                          # undirected
    pad = nci.mask == 0
    assert (nci.E.argmax(-1)[pad] == 0).all()                                 # padding has no bonds
    assert (nci.E[..., 4:].numel() == 0)                                      # kekulized: no aromatic class


def test_every_nci_graph_decodes_back_to_its_molecule(nci):
    assert all(graph_to_smiles(nci.X[i], nci.E[i]) == nci.smiles[i] for i in range(len(nci)))


def test_properties_match_rdkit_for_ethanol():
    m = Chem.MolFromSmiles("CCO")
    wt, logp, tpsa, qed, rings = mol_properties(m)
    assert wt == pytest.approx(46.069, abs=0.01)
    assert tpsa == pytest.approx(20.23, abs=0.01)
    assert logp == pytest.approx(-0.0014, abs=1e-3)
    assert 0 < qed < 1 and rings == 0
    X, E, mask = mol_to_graph(m, 9)
    assert mask.tolist() == [1, 1, 1] + [0] * 6
    assert X.argmax(-1)[:3].tolist() == [1, 1, 3]  # C, C, O
    assert E.argmax(-1)[0, 1] == 1 and E.argmax(-1)[1, 2] == 1 and E.argmax(-1)[0, 2] == 0


def test_loaded_properties_equal_rdkit_directly(nci):
    from rdkit.Chem import Descriptors

    for i in (0, len(nci) // 2, len(nci) - 1):
        m = Chem.MolFromSmiles(nci.smiles[i])
        assert nci.prop("MolWt")[i].item() == pytest.approx(Descriptors.MolWt(m))
        assert nci.prop("RingCount")[i].item() == m.GetRingInfo().NumRings()


def test_benzene_is_kekulized_and_round_trips():
    X, E, _ = mol_to_graph(Chem.MolFromSmiles("c1ccccc1"), 9)
    bonds = E.argmax(-1)[:6, :6]
    assert sorted(bonds[bonds > 0].tolist()) == [1] * 6 + [2] * 6  # 3 single + 3 double, both triangles
    assert graph_to_smiles(X, E) == "c1ccccc1"


def test_invalid_graphs_give_none():
    X, E, _ = mol_to_graph(Chem.MolFromSmiles("CF"), 4)
    E2 = E.clone()
    E2[0, 1] = E2[1, 0] = torch.nn.functional.one_hot(torch.tensor(3), 4).float()  # C#F: fluorine valence 3
    assert graph_to_mol(X, E2) is None and graph_to_smiles(X, E2) is None
    assert graph_to_mol(torch.nn.functional.one_hot(torch.zeros(4, dtype=torch.long), 5).float(), E) is None
    assert graph_to_smiles(X, E) == "CF"


def test_split_subset_and_fingerprint(nci):
    tr, te = nci.split(0.25, seed=0)
    assert len(tr) + len(te) == len(nci) and not set(tr.smiles) & set(te.smiles)
    tr2, _ = nci.split(0.25, seed=0)
    assert tr2.smiles == tr.smiles and tr.fingerprint() != te.fingerprint()
    with pytest.raises(ValueError, match="test_frac"):
        nci.split(1.5, seed=0)
    assert len(load_molecules(limit=10)) == 10


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="source='zinc' is not allowed; choose one of: 'nci', 'qm9'"):
        load_molecules("zinc")
    with pytest.raises(ValueError, match="n_max"):
        load_molecules(n_max=1)


def test_qm9_without_data_says_what_is_missing(tmp_path):
    try:
        import torch_geometric  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="torch_geometric"):
            load_molecules("qm9", data_dir=tmp_path)
    else:
        with pytest.raises(FileNotFoundError, match="no QM9 data"):
            load_molecules("qm9", data_dir=tmp_path)


def test_missing_rdkit_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_rdkit(name, *args, **kwargs):
        if name == "rdkit" or name.startswith("rdkit."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_rdkit)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[chem\]"'):
        mol_mod.load_molecules()
    with pytest.raises(ImportError, match="make install"):
        mol_mod.graph_to_smiles(torch.zeros(2, 5), torch.zeros(2, 2, 4))


def test_importing_the_package_does_not_need_rdkit():
    code = ("import sys; sys.modules['rdkit'] = None\n"
            "import tvae_core, tvae_experiments.data.molecules, tvae_experiments.graphvae, tvae_experiments.graph_latents\n"
            "try:\n    tvae_experiments.data.molecules.require_rdkit()\nexcept ImportError as e:\n    print('MSG', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'MSG' in out.stdout and 'pip install -e ".[chem]"' in out.stdout


def test_a_dry_run_without_qm9_stands_in_nci_molecules_at_qm9_size(nci, monkeypatch, capsys):
    """The paper profile's chapter 6 reads QM9; a dry run (sizes and costs) without it repeats the NCI
    molecules to QM9's 133,885 graphs and says so; a normal run still raises."""
    from tvae_experiments.run import RunContext, using

    with using(RunContext(dry_run_steps=2)):
        qm9 = load_molecules("qm9", data_dir=None)
    assert len(qm9) == mol_mod.QM9_SIZE and "stand-in for qm9" in qm9.source
    assert "standing in" in capsys.readouterr().out
    assert torch.equal(qm9.X[: len(nci)], nci.X) and torch.equal(qm9.X[len(nci): 2 * len(nci)], nci.X)
    with using(RunContext()), pytest.raises((ImportError, ValueError)):
        load_molecules("qm9", data_dir=None)
