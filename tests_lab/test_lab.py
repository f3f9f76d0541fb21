"""Running the chapters live (``make lab``): JupyterLab with the jupytext extension opens a chapter's
``book/NN_name.md`` as a notebook, and a chapter runs in plain Jupyter as it does under the runner.

Not part of ``make test`` (installing JupyterLab and starting a server would push it over its
5-minute budget): ``make test-lab`` installs the ``lab`` extra and runs this file.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHAPTER = "01_pot"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def _smoke(nb) -> None:
    """What a reader does in the first cell: switch the profile to smoke."""
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert 'profile = "cpu"' in cell.source and '"smoke"' in cell.source   # the comment names the options
    cell.source = cell.source.replace('profile = "cpu"', 'profile = "smoke"', 1)


def _check_executed(nb, results: Path) -> None:
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
    metrics = json.loads((results / f"{CHAPTER}.json").read_text())
    assert metrics["profile"] == "smoke" and metrics["all_passed"] is True


def test_jupyterlab_serves_a_chapter_as_a_notebook_that_executes(tmp_path):
    pytest.importorskip("jupyterlab", reason="make test-lab installs the lab extra")
    port, token = _free_port(), "tvae-test"
    server = subprocess.Popen(
        [str(BIN / "jupyter"), "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={REPO}"]
        + (["--allow-root"] if os.geteuid() == 0 else []),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(f"{base}/api/status?token={token}")
                break
            except OSError:
                assert server.poll() is None, server.stderr.read()[-2000:]
                assert time.monotonic() < deadline, "JupyterLab did not start in 60 s"
                time.sleep(0.5)
        with urllib.request.urlopen(f"{base}/lab?token={token}", timeout=10) as r:
            assert r.status == 200 and b"JupyterLab" in r.read()
        model = _get(f"{base}/api/contents/book/{CHAPTER}.md?type=notebook&content=1&token={token}")
        assert model["type"] == "notebook"                       # jupytext: the .md opens as a notebook
        nb = nbformat.from_dict(model["content"])
        assert any(c.cell_type == "code" for c in nb.cells)
    finally:
        server.terminate()
        server.wait(timeout=30)
    from nbclient import NotebookClient

    _smoke(nb)
    env = {"TVAE_RESULTS_DIR": str(tmp_path)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(REPO / "book")}}).execute()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    _check_executed(nb, tmp_path)


def test_a_chapter_runs_under_plain_nbconvert(tmp_path):
    """jupytext -> .ipynb, the first cell switched to smoke, `jupyter nbconvert --execute`."""
    ipynb = tmp_path / f"{CHAPTER}.ipynb"
    subprocess.run([str(BIN / "jupytext"), "--to", "ipynb", "-o", str(ipynb), str(REPO / "book" / f"{CHAPTER}.md")],
                   check=True, capture_output=True)
    nb = nbformat.read(ipynb, as_version=4)
    _smoke(nb)
    nbformat.write(nb, ipynb)
    shutil.copy(ipynb, REPO / "book" / f".{CHAPTER}.nbconvert-test.ipynb")     # run from book/, as a reader would
    src = REPO / "book" / f".{CHAPTER}.nbconvert-test.ipynb"
    try:
        subprocess.run([str(BIN / "jupyter"), "nbconvert", "--to", "notebook", "--execute", "--output",
                        str(tmp_path / "executed.ipynb"), str(src)], check=True, capture_output=True,
                       env={**os.environ, "TVAE_RESULTS_DIR": str(tmp_path)}, timeout=600)
    finally:
        src.unlink(missing_ok=True)
    _check_executed(nbformat.read(tmp_path / "executed.ipynb", as_version=4), tmp_path)
