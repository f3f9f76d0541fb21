"""The GitHub workflows (parsed with PyYAML: actionlint is not installable offline), the release workflow's
steps, the one setting of the repository URL (``_config.yml``'s ``repository.url``), ``--weights latest`` and
``python -m tvae_book.publish`` (the HTML check, the downloadable notebooks, the pin)."""
from __future__ import annotations

import functools
import http.server
import json
import re
import shlex
import subprocess
import threading
import zipfile
from pathlib import Path

import pytest
import yaml

from tvae_book import cli, publish
from tvae_book.chapters import REPO_ROOT, toc_files
from tvae_experiments import bundles
from tvae_experiments.bundles import BundleError, bundle_name

WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.y*ml"))
RELEASE = REPO_ROOT / ".github" / "workflows" / "release.yml"
EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.S)


def _load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if isinstance(doc, dict) and True in doc:  # YAML 1.1 reads the key `on` as the boolean true
        doc["on"] = doc.pop(True)
    return doc


def _make_targets() -> set[str]:
    text = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    return {t for line in re.findall(r"^([A-Za-z0-9_.-][^:=\n]*):(?!=)", text, re.M) for t in line.split()}


def _commands(run: str) -> list[list[str]]:
    """The simple commands of a ``run`` script, split like a shell (continuations joined; ``;``, ``&&``,
    ``||`` and ``|`` separate)."""
    text = run.replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            words = line.split()
        cmd: list[str] = []
        for w in words:
            if w in (";", "&&", "||", "|", "then", "do", "else", "if", "for", "!"):
                out.append(cmd)
                cmd = []
            else:
                cmd.append(w.rstrip(";"))
        out.append(cmd)
    return [c for c in out if c]


def _steps(doc: dict):
    for job_name, job in doc["jobs"].items():
        for step in job.get("steps", []):
            yield job_name, step


@pytest.fixture(scope="module")
def release() -> dict:
    return _load(RELEASE)


# --------------------------------------------------------------------------- every workflow


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_workflow_structure(path):
    doc = _load(path)
    assert isinstance(doc, dict) and doc.get("name") and doc.get("on") and doc.get("jobs"), (
        f"{path.name}: needs name, on and jobs")
    jobs = doc["jobs"]
    for name, job in jobs.items():
        assert re.fullmatch(r"[A-Za-z_][\w-]*", name), f"{path.name}: job id {name!r}"
        assert "runs-on" in job, f"{path.name}: job {name} has no runs-on"
        needs = job.get("needs", [])
        for need in [needs] if isinstance(needs, str) else needs:
            assert need in jobs, f"{path.name}: job {name} needs unknown job {need!r}"
        steps = job.get("steps")
        assert isinstance(steps, list) and steps, f"{path.name}: job {name} has no steps"
        ids = [s["id"] for s in steps if "id" in s]
        assert len(ids) == len(set(ids)), f"{path.name}: job {name} repeats a step id"
        for i, step in enumerate(steps):
            where = f"{path.name}: job {name}, step {i + 1} ({step.get('name', '')!r})"
            assert ("run" in step) != ("uses" in step), f"{where}: needs exactly one of run and uses"
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w./-]+@[\w.-]+|\./[\w./-]+|docker://\S+", step["uses"]), (
                    f"{where}: uses {step['uses']!r} without a version")
            else:
                assert isinstance(step["run"], str) and step["run"].strip(), f"{where}: empty run"
        text = yaml.safe_dump(job)
        for expr in EXPR.findall(text):
            for ref in re.findall(r"\bsteps\.([\w-]+)\.", expr):
                assert ref in ids, f"{path.name}: job {name} refers to unknown step id {ref!r}"
            for ref in re.findall(r"\bneeds\.([\w-]+)\.", expr):
                assert ref in (needs if isinstance(needs, list) else [needs]), (
                    f"{path.name}: job {name} refers to needs.{ref} it does not need")
        assert text.count("${{") == text.count("}}"), f"{path.name}: job {name}: unbalanced ${{{{ }}}}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_workflow_commands_exist(path):
    """``make`` targets are the Makefile's; scripts and ``python -m`` modules of this repository exist; the
    subcommands given to ``python -m tvae_book`` and ``tvae_book.publish`` are theirs."""
    targets = _make_targets()
    for job, step in _steps(_load(path)):
        for cmd in _commands(step.get("run", "")):
            where = f"{path.name}: job {job}: {' '.join(cmd)}"
            if cmd[0] == "make":
                named = [w for w in cmd[1:] if not w.startswith("-") and "=" not in w]
                assert named, f"{where}: name the make target"
                for target in named:
                    assert target in targets, f"{where}: the Makefile has no target {target!r}"
            for word in cmd:
                if re.match(r"(\./)?(\.ci|benchmarks|tests|tests_paper|tools|scripts)/[\w./-]+$", word):
                    assert (REPO_ROOT / word).exists(), f"{where}: {word} does not exist"
            if "-m" in cmd[:-1]:
                module = cmd[cmd.index("-m") + 1]
                if module.split(".")[0].startswith("tvae_"):
                    base = REPO_ROOT / Path(*module.split("."))
                    assert base.with_suffix(".py").is_file() or (base / "__main__.py").is_file(), (
                        f"{where}: no module {module}")
                    args = cmd[cmd.index("-m") + 2:]
                    parse = {"tvae_book": cli.parse_args, "tvae_book.publish": publish.parser().parse_args}.get(module)
                    if parse is not None:  # the flags and subcommands are the module's own ($VARS stand in)
                        try:
                            parse([re.sub(r"\$\{?\w+\}?", "x", a) for a in args])
                        except SystemExit:
                            pytest.fail(f"{where}: {module} does not accept {' '.join(args)}")


# --------------------------------------------------------------------------- the release workflow


def test_release_runs_on_a_version_tag_with_the_permissions_it_needs(release):
    assert release["on"] == {"push": {"tags": ["v*"]}}
    assert release.get("permissions") == {"contents": "read"}, "least privilege by default"
    book, pages = release["jobs"]["book"], release["jobs"]["pages"]
    assert book["permissions"] == {"contents": "write"}          # release assets, the pin commit
    assert pages["permissions"] == {"pages": "write", "id-token": "write"}
    assert pages["needs"] == "book" and pages["environment"]["name"] == "github-pages"
    assert [s["uses"].split("@")[0] for s in pages["steps"]] == ["actions/deploy-pages"]


def test_release_book_job_steps_in_order(release):
    """Install, check the URL, (the previous bundle), make book, the HTML check, pack, release, pin, Pages."""
    steps = release["jobs"]["book"]["steps"]
    runs = [s.get("run", "") for s in steps]

    def at(pattern: str) -> int:
        hits = [i for i, r in enumerate(runs) if re.search(pattern, r)]
        assert hits, f"release.yml: no step runs {pattern!r}"
        return hits[0]

    upload = [i for i, s in enumerate(steps) if s.get("uses", "").startswith("actions/upload-pages-artifact@")]
    assert len(upload) == 1 and steps[upload[0]]["with"]["path"] == "_build/html"
    order = [at(r"^make install"), at(r"publish check-url"), at(r"weights install latest --profile cpu"),
             at(r"^make book PROFILE=cpu"), at(r"publish site _build/html _results/cpu"),
             at(r"^make weights-pack PROFILE=cpu"), at(r"gh release upload"), at(r"publish lock"), upload[0]]
    assert order == sorted(order), f"release.yml steps out of order: {order}"
    # the previous bundle is optional (its failure only warns); the HTML check is not
    assert "||" in runs[order[2]] and "||" not in runs[order[4]] and not steps[order[4]].get("continue-on-error")
    env = release["jobs"]["book"]["env"]
    assert env["BUNDLE"] == f"_build/{bundle_name('cpu')}" and "$BUNDLE" in runs[order[6]]
    assert '--tag "$TAG"' in runs[order[7]] and env["TAG"] == "${{ github.ref_name }}"
    assert "bundles.lock.json" in runs[order[7]]


def test_the_html_check_fails_the_release_without_html(tmp_path):
    """The command release.yml runs after `make book` exits non-zero when no HTML was produced."""
    results = tmp_path / "results"
    results.mkdir()
    (results / "01_pot.ipynb").write_text("{}")
    html = tmp_path / "html"
    run = [str(Path(__import__("sys").executable)), "-m", "tvae_book.publish", "site", str(html), str(results)]
    done = subprocess.run(run, capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 1 and "no HTML" in done.stderr
    html.mkdir()
    (html / "index.html").write_text("<html></html>")
    with pytest.raises(publish.PublishError, match="page\\(s\\) of _toc.yml not built"):
        publish.check_html(html)
    for entry in toc_files(REPO_ROOT):
        (html / f"{entry}.html").parent.mkdir(parents=True, exist_ok=True)
        (html / f"{entry}.html").write_text("<html>page</html>")
    assert len(publish.check_html(html)) == len(toc_files(REPO_ROOT))
    (html / "book" / "performance.html").write_text("")
    with pytest.raises(publish.PublishError, match="book/performance.html"):
        publish.check_html(html)


def test_the_executed_notebooks_become_downloadable(tmp_path):
    results, html = tmp_path / "results", tmp_path / "html"
    results.mkdir()
    html.mkdir()
    for name in ("01_pot.ipynb", "02_tpot.ipynb", "03_x.failed.ipynb"):
        (results / name).write_text(json.dumps({"name": name}))
    (results / "01_pot.json").write_text("{}")
    copied = publish.add_notebooks(html, results)
    assert [p.name for p in copied] == ["01_pot.ipynb", "02_tpot.ipynb"]
    assert (html / "notebooks" / "01_pot.ipynb").read_text() == json.dumps({"name": "01_pot.ipynb"})
    with zipfile.ZipFile(html / "notebooks" / "notebooks.zip") as zf:
        assert sorted(zf.namelist()) == ["01_pot.ipynb", "02_tpot.ipynb"]
    index = (html / "notebooks" / "index.html").read_text()
    assert 'href="01_pot.ipynb"' in index and "failed" not in index and (html / ".nojekyll").is_file()
    with pytest.raises(publish.PublishError, match="no executed notebooks"):
        publish.add_notebooks(html, tmp_path / "empty")


# --------------------------------------------------------------------------- the repository URL: one setting


def _config_url() -> str:
    return yaml.safe_load((REPO_ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]["url"]


def _repo_text_files() -> list[Path]:
    """Every file of the repository git would commit (tracked or not ignored), text only."""
    done = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                          capture_output=True, text=True, check=True)
    files = []
    for rel in done.stdout.splitlines():
        path = REPO_ROOT / rel
        if path.is_file() and path.suffix not in (".png", ".jpg", ".gif", ".pt", ".tar", ".zip", ".npz", ".gz"):
            files.append(path)
    return files


def test_nothing_but_config_spells_out_the_repository_url():
    url = _config_url()
    owner_repo = re.sub(r"^https?://[^/]+/", "", url).strip("/")
    owner, _, repo = owner_repo.partition("/")
    patterns = [re.escape(owner_repo), re.escape(f"{owner}.github.io/{repo}")]
    offenders = []
    for path in _repo_text_files():
        if path == REPO_ROOT / "_config.yml":
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for pattern in patterns:
            if re.search(pattern, text, re.I):
                offenders.append(f"{path.relative_to(REPO_ROOT)}: {pattern}")
    assert offenders == [], ("the repository URL is set once, in _config.yml's repository.url; read it from "
                             f"there: {offenders}")


def test_the_code_reads_the_url_from_the_config(tmp_path, monkeypatch):
    assert bundles.repository_url() == _config_url().rstrip("/")
    assert publish.check_repository_url(_config_url() + "/") == _config_url().rstrip("/")
    with pytest.raises(publish.PublishError, match="set repository.url"):
        publish.check_repository_url("https://example.org/someone/else")
    (tmp_path / "_config.yml").write_text("repository:\n  url: https://git.example/o/r/\n")
    (tmp_path / "bundles.lock.json").write_text(json.dumps({bundle_name("cpu"): {"sha256": "0" * 64, "tag": "v2"}}))
    assert bundles.resolve_source("latest", root=tmp_path) == (
        "https://git.example/o/r/releases/download/v2/tvae-weights-cpu.tar")
    assert bundles.resolve_source("latest", profile="cpu", root=tmp_path) == bundles.resolve_source(
        "latest:cpu", profile="smoke", root=tmp_path)
    assert bundles.resolve_source("some/path.tar", root=tmp_path) == "some/path.tar"
    with pytest.raises(BundleError, match="pins no released tvae-weights-smoke.tar"):
        bundles.resolve_source("latest", profile="smoke", root=tmp_path)
    (tmp_path / "_config.yml").write_text("title: t\n")
    with pytest.raises(BundleError, match="sets no repository.url"):
        bundles.repository_url(tmp_path)


def test_weights_latest_downloads_the_pinned_release_and_refuses_another_file(tmp_path, monkeypatch):
    """``--weights latest``: <repository.url>/releases/download/<tag>/<bundle>, checked against the pin that
    :func:`~tvae_experiments.bundles.pin_bundle` (the release workflow) wrote."""
    from tvae_core.models import ModelConfig
    from tvae_experiments.bundles import open_bundle, pack_bundle, pin_bundle
    from tvae_experiments.run import RunContext
    from tvae_experiments.train import TrainConfig, fit
    from tvae_experiments.weights import WeightCache, cache_key

    cfg = ModelConfig(kind="vae", weight_norm=False, in_dim=16, enc_hidden=(8,), dec_hidden=(8,), side=2, K=1)
    train = TrainConfig(steps=3, batch_size=8, optimizer="adam", lr=1e-2)
    import torch

    cache = WeightCache(tmp_path / "trained")
    fit(cfg, torch.rand(16, 16), train, data_id="d", name="m", progress=False, ctx=RunContext(cache=cache))
    served = tmp_path / "srv" / "o" / "r" / "releases" / "download" / "v9"
    served.mkdir(parents=True)
    bundle = pack_bundle([("m", cache_key(cfg, train, "d"), cfg, train, "d")], served / bundle_name("smoke"),
                         profile="smoke", cache=cache)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "srv"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        root = tmp_path / "repo"
        root.mkdir()
        (root / "_config.yml").write_text(f"repository:\n  url: http://127.0.0.1:{httpd.server_address[1]}/o/r\n")
        monkeypatch.setattr(bundles, "repo_root", lambda: root)
        assert pin_bundle(bundle, "v9")["tag"] == "v9"
        assert json.loads((root / "bundles.lock.json").read_text())[bundle_name("smoke")]["tag"] == "v9"
        got = open_bundle("latest", profile="smoke", download_dir=tmp_path / "dl", progress=False)
        assert got.path.read_bytes() == bundle.read_bytes()
        pins = json.loads((root / "bundles.lock.json").read_text())
        pins[bundle_name("smoke")]["sha256"] = "f" * 64
        (root / "bundles.lock.json").write_text(json.dumps(pins))
        with pytest.raises(BundleError, match="expected the pinned f{64}"):
            open_bundle("latest", profile="smoke", download_dir=tmp_path / "dl2", progress=False)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_publish_lock_keeps_other_pins(tmp_path):
    lock = tmp_path / "bundles.lock.json"
    lock.write_text(json.dumps({"tvae-weights-paper.tar": {"sha256": "a" * 64, "tag": "v1"}}))
    bundle = tmp_path / bundle_name("cpu")
    bundle.write_bytes(b"x")
    assert publish.main(["lock", str(bundle), "--tag", "v3", "--lock", str(lock)]) == 0
    pins = json.loads(lock.read_text())
    assert pins["tvae-weights-paper.tar"] == {"sha256": "a" * 64, "tag": "v1"}
    assert pins[bundle_name("cpu")] == {"sha256": bundles.sha256_of(bundle), "tag": "v3"}
