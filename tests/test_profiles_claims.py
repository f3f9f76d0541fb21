"""Profiles resolve, bad values raise naming the options; claims write metrics and fail loudly;
every claim is declared in its chapter's spec, which says why a claim is only reported."""
import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tvae_experiments import ClaimFailed, ClaimReport, config_for, resolve_device
from tvae_experiments.claims import OPS, Comparison
from tvae_experiments.chapters import CHAPTERS, ChapterSpec, ClaimSpec, UndeclaredClaim, chapter_spec
from tvae_experiments.chapters.base import claim
from tvae_experiments.rules import Rule, RuleError
from tvae_experiments.profiles import EXPERIMENTS, PROFILES

BOOK = Path(__file__).resolve().parents[1] / "book"
CFG = SimpleNamespace(low=0.1, rho_max=-0.3, ratio_min=3)
DEMO = ChapterSpec("99_demo", "Demo", "none", config=lambda profile: CFG, claims=(
    *claim("ok", "Fig 1", "a true claim", "v > cfg.low", paper="0.6"),
    *claim("bad", "Fig 1", "a false claim", "v > cfg.low", kind="control"),
    *claim("view{n}", "Fig 1", "T is large when its U's are small", "rho < cfg.rho_max", "ratio > cfg.ratio_min",
           each={"n": ("", "2")})))


def test_every_experiment_resolves_in_every_profile():
    for chapter in EXPERIMENTS:
        for p in PROFILES:
            config_for(chapter, p)
    assert config_for("01_pot", "cpu").n_samples == 20_000  # the issue's KS size
    assert config_for("01_pot", "smoke").n_samples < config_for("01_pot", "cpu").n_samples


def test_unknown_profile_and_device_raise():
    with pytest.raises(ValueError, match="profile='laptop' is not allowed; choose one of: 'smoke', 'cpu', 'paper'"):
        config_for("01_pot", "laptop")
    with pytest.raises(ValueError, match="device='gpu' is not allowed"):
        resolve_device("gpu")
    with pytest.raises(ValueError, match="unknown field"):
        config_for("01_pot", "cpu", n_sample=3)
    assert resolve_device("cpu").type == "cpu"


def test_claim_report_writes_and_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("TVAE_RESULTS_DIR", str(tmp_path))
    rep = ClaimReport("99_demo", "Demo", "smoke", 3, spec=DEMO)
    assert rep.check("ok", v=0.5) is True
    with pytest.raises(ClaimFailed, match="never checked: bad, view, view2"):
        rep.finish()
    assert rep.check("bad", v=0.0) is False
    with pytest.raises(ClaimFailed, match="claim\\(s\\) failed: bad"):
        rep.finish()
    data = json.loads((tmp_path / "99_demo.json").read_text())
    assert data["all_passed"] is False and data["profile"] == "smoke"
    assert data["claims"][0] == {"name": "ok", "statement": "a true claim", "value": 0.5, "threshold": "v > 0.1",
                                 "paper": "0.6", "passed": True, "enforced": True, "reason": None,
                                 "item": "Fig 1", "kind": "paper"}
    assert data["claims"][1]["kind"] == "control"
    # where and when, recorded by the code (the report's timings are read against it)
    assert data["machine"]["cpu_count"] >= 1 and data["machine"]["torch"] == torch.__version__
    assert data["machine"]["date"][:4].isdigit() and data["machine"]["date"].endswith("+00:00")


@pytest.mark.parametrize("value, op, bound, passed", [
    (1, "<", 2, True), (2, "<", 2, False), (2, "<=", 2, True), (3, "<=", 2, False),
    (3, ">", 2, True), (2, ">", 2, False), (2, ">=", 2, True), (1, ">=", 2, False),
    (0.0, "==", 0, True), (1e-9, "==", 0, False), ("vae", "!=", "tvae", True), (("tvae", 0.5), "==", ("tvae", 0.5), True),
    (math.nan, "<", 1, False), (math.nan, ">=", 0, False), (np.float32(0.3), "<", np.float64(0.5), True),
    (np.bool_(True), "==", True, True),
])
def test_comparison_ops(value, op, bound, passed):
    assert set(OPS) == {"<", "<=", ">", ">=", "==", "!="}
    assert Comparison(value, op, bound).passed is passed


def test_rule_text_is_generated_from_the_comparison():
    assert Comparison(0.95, ">=", 0.9).text == ">= 0.9"
    assert Comparison(0.3, "<", 1e-4, what="rel. error").text == "rel. error < 0.0001"
    assert Comparison(300.0, "<=", 1.25 * 269.12, bound_text="1.25 x direct BCE").text == "<= 1.25 x direct BCE (336.4)"
    assert Comparison(5, ">", 2.5, what="properties won", bound_text="half of 5").text == "properties won > half of 5 (2.5)"
    assert Comparison(("vae", 0.0), "==", ("tvae", 0.5), what="lowest E_eq", bound_text="TVAE L=S/2").text \
        == "lowest E_eq == TVAE L=S/2"
    assert Comparison(True, "==", True, what="every score finite").text == "every score finite == true"
    assert Comparison(3, ">", 2, bound_text="2").text == "> 2"
    with pytest.raises(ValueError, match="op='=<' is not allowed"):
        Comparison(1, "=<", 2)


def test_every_rule_of_a_claim_must_hold_and_the_values_must_fit_its_rules(tmp_path, monkeypatch):
    monkeypatch.setenv("TVAE_RESULTS_DIR", str(tmp_path))
    rep = ClaimReport("99_demo", "Demo", "cpu", 0, spec=DEMO)
    assert rep.check("view", rho=-0.5, ratio=4.0) is True
    for values, why in [({"rho": -0.5}, "missing: ratio"), ({"rho": -0.5, "ratio": 4, "x": 1}, "not in its rules: x")]:
        with pytest.raises(RuleError, match=f"takes the values rho, ratio .*; {why}"):
            rep.check("view2", **values)
    assert rep.check("view2", rho=-0.5, ratio=2.0, shown="rho=-0.5") is False
    first, second = rep.claims
    assert first.threshold == "rho < -0.3 and ratio > 3" and first.value == "rho -0.5; ratio 4"
    assert second.value == "rho=-0.5" and second.passed is False and second.enforced is True
    with pytest.raises(ClaimFailed, match="view2"):
        rep.finish()


def test_a_report_reads_its_config_from_the_spec_or_from_the_notebook(tmp_path, monkeypatch):
    monkeypatch.setenv("TVAE_RESULTS_DIR", str(tmp_path))
    assert ClaimReport("99_demo", "Demo", "cpu", 0, spec=DEMO).check("ok", v=0.2) is True
    assert ClaimReport("99_demo", "Demo", "cpu", 0, spec=DEMO, config=SimpleNamespace(low=0.3)).check("ok", v=0.2) is False
    spec = ChapterSpec("99_demo", "Demo", "none", claims=claim(
        "n", "Fig 1", "N={cfg.n:,} draws of ν={cfg.nus[-1]}", "v > 0", labels={"v": "share(ν={cfg.nus[0]})"}))
    rep = ClaimReport("99_demo", "Demo", "cpu", 0, spec=spec, config=SimpleNamespace(n=20000, nus=(1, 10)))
    rep.check("n", v=1)
    assert (rep.claims[0].statement, rep.claims[0].threshold) == ("N=20,000 draws of ν=10", "share(ν=1) > 0")


def test_a_listed_claim_is_reported_with_its_reason_and_does_not_fail(tmp_path, monkeypatch):
    monkeypatch.setenv("TVAE_RESULTS_DIR", str(tmp_path))
    spec = ChapterSpec("99_demo", "Demo", "none", config=lambda profile: CFG, claims=(
        *claim("weak", "Fig 1", "s", "v > cfg.low", not_enforced={"cpu": {"weak": "the cpu recipe is too short"}}),
        *claim("strong", "Fig 1", "s", "v > cfg.low")))
    rep = ClaimReport("99_demo", "Demo", "cpu", 0, spec=spec)
    rep.check("weak", v=0.0)
    rep.check("strong", v=1.0)
    rep.finish()  # the failed claim is not enforced on cpu
    claims = json.loads((tmp_path / "99_demo.json").read_text())["claims"]
    assert claims[0]["enforced"] is False and claims[0]["reason"] == "the cpu recipe is too short"
    assert "not enforced: the cpu recipe is too short" in rep.table()
    paper = ClaimReport("99_demo", "Demo", "paper", 0, spec=spec)
    paper.check("weak", v=0.0)
    paper.check("strong", v=1.0)
    with pytest.raises(ClaimFailed, match="failed: weak"):
        paper.finish()


# ------------------------------------------------------------------------- claim declarations (chapter specs)

def _reason(chapter: str, name: str, profile: str) -> str | None:
    return chapter_spec(chapter).claim(name).reason(profile)


def test_an_undeclared_claim_raises_and_a_declared_one_must_be_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("TVAE_RESULTS_DIR", str(tmp_path))
    rep = ClaimReport("99_demo", "Demo", "smoke", 0, spec=DEMO)
    with pytest.raises(UndeclaredClaim, match="'renamed', which its spec does not declare"):
        rep.check("renamed", v=1)
    rep.check("ok", v=1)
    with pytest.raises(ValueError, match="already checked"):
        rep.check("ok", v=1)
    with pytest.raises(ClaimFailed, match="declared in its spec but never checked: bad, view, view2"):
        rep.finish()
    with pytest.raises(UndeclaredClaim, match="04_capsules checks claim 'capcorr_colour'"):
        ClaimReport("04_capsules", "t", "cpu", 0).check("capcorr_colour", v=1)


def test_a_claim_declared_for_one_profile_is_checked_only_there():
    pot = chapter_spec("01_pot")
    nus = {p: {f"ks_nu{nu}" for nu in config_for("01_pot", p).nus} for p in PROFILES}
    for p in PROFILES:
        assert {n for n in pot.checked_on(p) if n.startswith("ks_nu")} == nus[p]


def test_declarations_are_well_formed():
    ok = dict(statement="s", rules=("v > 0",))
    with pytest.raises(ValueError, match="kind='claim' is not one of paper, control, known-answer, sanity"):
        ClaimSpec("x", "Fig 1", kind="claim", **ok)
    with pytest.raises(ValueError, match="unknown profile"):
        ClaimSpec("x", "Fig 1", not_enforced={"laptop": "because"}, **ok)
    with pytest.raises(ValueError, match="no reason"):
        ClaimSpec("x", "Fig 1", not_enforced={"cpu": " "}, **ok)
    with pytest.raises(ValueError, match="its statement and at least one rule"):
        ClaimSpec("x", "Fig 1", statement="s")
    with pytest.raises(ValueError, match="its statement and at least one rule"):
        ClaimSpec("x", "Fig 1", statement=" ", rules=("v > 0",))
    with pytest.raises(ValueError, match=r"labels name \['w'\], which no rule uses"):
        ClaimSpec("x", "Fig 1", labels={"w": "typo"}, **ok)
    with pytest.raises(RuleError, match="not allowed"):
        ClaimSpec("x", "Fig 1", statement="s", rules=("v > 1.25 ** w",))
    with pytest.raises(ValueError, match="declared twice"):
        ChapterSpec("99", "t", "p", claims=(ClaimSpec("a", "i", **ok), ClaimSpec("a", "i", **ok)))
    assert set(CHAPTERS) == {p.stem for p in BOOK.glob("[0-9][0-9]_*.md")}


def test_every_declared_rule_reads_fields_its_profiles_config_has():
    """A rule's bound is a config field: every field a claim reads exists in the config of every profile that
    checks it (a renamed field fails here, not in a paper run), and every claim declares its rule."""
    checked = 0
    for chapter, spec in CHAPTERS.items():
        for profile in PROFILES:
            cfg = spec.config_of(profile)
            for c in spec.claims:
                assert c.rules and c.statement, (chapter, c.name)
                if profile not in c.profiles:
                    continue
                for r in c.rules:
                    for path in r.fields:
                        obj = cfg
                        for part in path.split("."):
                            assert hasattr(obj, part), (chapter, profile, c.name, r.source)
                            obj = getattr(obj, part)
                        assert isinstance(obj, (int, float)) and not isinstance(obj, bool), (chapter, c.name, path)
                        checked += 1
    assert checked > 100


def test_reasons_point_at_evidence_not_at_typed_numbers():
    """A reason names what the run shows (a claim's value, a table on the page); a decimal number typed from one
    run would go stale when a recipe changes."""
    for chapter, spec in CHAPTERS.items():
        for c in spec.claims:
            for profile, reason in c.not_enforced.items():
                assert len(reason.strip()) > 20, (chapter, c.name, profile)
                assert not re.search(r"\d\.\d|\bseed 0\b|\bmeasured\b", reason), (chapter, c.name, profile, reason)


def test_enforcement_lookup():
    assert _reason("01_pot", "ks_power", "smoke") is None
    assert _reason("04_capsules", "mnist_traversal_ratio", "smoke")
    assert _reason("04_capsules", "mnist_traversal_ratio", "cpu") is None
    assert _reason("04_capsules", "mnist_untrained_S/2_low_eeq", "smoke") is None
    assert _reason("04_capsules", "capcorr_orientation_heart", "cpu")
    assert _reason("04_capsules", "capcorr_orientation", "paper") is None
    assert _reason("07_invariant_rotation", "pca_class_vs_full_z", "paper")
    assert _reason("07_invariant_rotation", "equivariance", "smoke") is None
    # chapters 1 and 2 check sampled priors: every claim on every profile
    assert not any(c.not_enforced for ch in ("01_pot", "02_tpot") for c in chapter_spec(ch).claims)


def test_paper_enforces_the_papers_forms_of_figs_2_to_6():
    """Chapters 6-7 check each claim as the paper states it; ``paper`` enforces every one of them."""
    papers_forms = {"06_invariant_graphs": ("pca_r2_sorted_above_equivariant", "interpolation_hamming",
                                            "knn_sorted_beats_equivariant", "knn_sorted_beats_pooling"),
                    "07_invariant_rotation": ("knn_projection_full_reference", "knn_projection_beats_equivariant")}
    for chapter, names in papers_forms.items():
        for name in names:
            assert _reason(chapter, name, "paper") is None, (chapter, name)
    assert config_for("06_invariant_graphs", "paper").n_interp_pairs == 10_000       # Fig 4: 10,000 interpolations
    assert _reason("06_invariant_graphs", "knn_sorted_beats_pooling", "cpu")
    assert _reason("07_invariant_rotation", "knn_projection_full_reference", "cpu")


def test_a_cpu_relaxation_names_the_weaker_claim_cpu_enforces():
    """Where cpu relaxes a paper claim, its reason names the weaker declared claim that cpu enforces instead
    (so the report shows both) and says that paper enforces the paper's form."""
    relaxed = [(chapter, c.name, c.not_enforced["cpu"]) for chapter, spec in CHAPTERS.items() for c in spec.claims
               if "cpu relaxes" in c.not_enforced.get("cpu", "")]
    assert {c for c, _, _ in relaxed} >= {"06_invariant_graphs", "07_invariant_rotation"}
    for chapter, name, reason in relaxed:
        declared = {c.name for c in chapter_spec(chapter).claims}
        weaker = [w for w in re.findall(r"[\w/]+", reason) if w in declared and w != name]
        assert weaker, (chapter, name)
        assert all(_reason(chapter, n, "cpu") is None for n in weaker), (chapter, name, weaker)
        assert reason.endswith("enforced on paper"), (chapter, name)


def test_every_paper_item_has_a_paper_claim_or_a_known_answer():
    """An item of the report stands on claims of the paper (or identities), not on controls alone."""
    for chapter, spec in CHAPTERS.items():
        for item in spec.items():
            kinds = {c.kind for c in spec.claims if c.item == item}
            assert kinds & {"paper", "known-answer"} or kinds == {"sanity"}, (chapter, item, kinds)


def test_square_symmetry_is_enforced_only_on_64_pixel_sprites():
    # the symmetry is a property of 64 x 64 dSprites frames (smoke renders 32 x 32): enforced there alone
    for p in PROFILES:
        enforced = _reason("04_capsules", "orientation_square_symmetry", p) is None
        assert enforced == (config_for("04_capsules", p).dsprites.image_size == 64), p


def test_no_chapter_decides_enforcement_itself():
    for path in sorted(BOOK.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\benforce\s*=", text), f"{path.name}: enforcement belongs in the chapter's spec"


def test_every_profile_override_takes_effect():
    """Each field PROFILE_OVERRIDES sets for a chapter and profile is what config_for returns."""
    from tvae_experiments.profiles import EXPERIMENTS, PROFILE_OVERRIDES

    checked = 0
    for chapter, by_profile in PROFILE_OVERRIDES.items():
        assert chapter in EXPERIMENTS, chapter
        for profile, fields in by_profile.items():
            cfg = config_for(chapter, profile)
            for name, value in fields.items():
                assert getattr(cfg, name) == value, (chapter, profile, name)
                checked += 1
    assert checked > 40


def test_L_of_and_the_bubble_K_rule():
    from tvae_experiments.profiles import CapsuleDataConfig

    m, d = CapsuleDataConfig(), CapsuleDataConfig(dataset="dsprites", S=15, n_caps=15, K=1, K_l0=10)
    assert [m.L_of(f) for f in (1 / 2, 1 / 3, 5 / 36, 0)] == [9, 6, 2.5, 0]
    assert [d.L_of(f) for f in (1 / 2, 1 / 3, 1 / 6)] == [7.5, 5, 2.5]  # 2L always whole frames (A.6)
    assert m.model("bubble", 6).K == 12 and d.model("bubble", 2.5).K == 5  # K = 2L (A.5)
    assert m.model("bubble", 9).K == 18 and m.model("tvae_l0").K == 9 and d.model("tvae_l0").K == 10
    assert m.model("bubble", 6).mode == "stationary" and m.model("tvae", 6).mode == "shifting"


def test_claim_gives_each_name_its_profiles_first_matching_reason():
    """``claim`` (called at run time here: the chapter specs call it at import) expands ``each``, maps each name to
    the first glob of each profile that matches it, keeps the item, kind and profiles, and leaves unmatched
    profiles enforced."""
    specs = claim("{f}_{ax}", "Fig 9", "{f} along {ax}: N={cfg.n}", "v_{ax} > cfg.low", kind="control",
                  labels={"v_{ax}": "{f} {ax}"}, paper="{f} is {ax}", profiles=("cpu", "paper"),
                  each={"f": ("a", "b"), "ax": ("x", "y")},
                  not_enforced={"cpu": {"a_*": "reason a", "*_x": "reason x"}, "*": {"b_y": "reason b"}})
    assert [s.name for s in specs] == ["a_x", "a_y", "b_x", "b_y"]
    assert all((s.item, s.kind, s.profiles) == ("Fig 9", "control", ("cpu", "paper")) for s in specs)
    assert [dict(s.not_enforced) for s in specs] == [{"cpu": "reason a"}, {"cpu": "reason a"}, {"cpu": "reason x"},
                                                     {"*": "reason b"}]
    b_x = specs[2]
    assert (b_x.statement, b_x.rules, dict(b_x.labels), b_x.paper) == \
        ("b along x: N={cfg.n}", (Rule("v_x > cfg.low"),), {"v_x": "b x"}, "b is x")
    assert specs[0].reason("cpu") == "reason a" and specs[0].reason("paper") is None
    assert specs[3].reason("smoke") == specs[3].reason("cpu") == "reason b"  # every profile
    assert claim("d", "Fig 9", "s", "v > 0") == (ClaimSpec("d", "Fig 9", "paper", {}, PROFILES, "s", ("v > 0",)),)
    assert ChapterSpec("99", "t", "p", claims=specs).items() == ["Fig 9"]
    assert ChapterSpec("99", "t", "p", claims=specs).checked_on("smoke") == []


# ------------------------------------------------------------------------- claim machinery, known answers

def test_numbers_in_rule_text_and_metrics_have_known_forms():
    """0-d arrays and tensors become their Python numbers; floats print to 4 significant digits, bools as
    true/false; the metrics file gets floats, "inf"/"nan" as strings and anything else as text."""
    from tvae_experiments.claims import _jsonable
    from tvae_experiments.rules import _scalar
    from tvae_experiments.rules import fmt as _fmt

    assert _scalar(torch.tensor(3.0)) == 3.0 and type(_scalar(torch.tensor(3.0))) is float
    assert type(_scalar(np.float32(0.5))) is float and _scalar(np.int64(4)) == 4
    vec = torch.tensor([1.0, 2.0])
    assert _scalar(vec) is vec and _scalar("x") == "x"
    assert [_fmt(v) for v in (torch.tensor(True), np.int64(3), 1 / 3, torch.tensor(2.0), "text", 1234567.0)] == \
        ["true", "3", "0.3333", "2", "text", "1.235e+06"]
    assert [_jsonable(v) for v in (np.float32(0.25), math.inf, math.nan, True, 7, torch.tensor(1.5), (1, 2))] == \
        [0.25, "inf", "nan", "True", 7.0, 1.5, "(1, 2)"]
    assert Comparison(torch.tensor(0.3), "<", torch.tensor(0.5), bound_text="half").text == "< half (0.5)"
    assert Comparison(0.3, "<", True, bound_text="yes").text == "< yes"  # a bool bound is not a number


def test_check_records_the_rule_the_value_and_prints_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TVAE_RESULTS_DIR", str(tmp_path))
    spec = ChapterSpec("99_demo", "Demo", "none", claims=(
        *claim("one", "Fig 1", "first", "error < cfg.half", labels={"error": "error"}, paper="0.1"),
        *claim("two", "Fig 2", "second", "a > cfg.four", "b == 1", kind="sanity",
               not_enforced={"smoke": {"two": "too small here"}})))
    rep = ClaimReport("99_demo", "Demo", "smoke", 0, spec=spec, config=SimpleNamespace(half=0.5, four=4))
    assert rep.check("one", error=0.25) is True
    assert capsys.readouterr().out == "[PASS] one: 0.25 (error < 0.5)\n"
    assert rep.check("two", a=3, b=1.0) is False
    out = capsys.readouterr().out
    assert out == "[not met (not enforced)] two: a 3; b 1 (a > 4 and b == 1) -- not enforced: too small here\n"
    one, two = rep.claims
    assert (one.value, one.threshold, one.paper, one.enforced, one.reason) == (0.25, "error < 0.5", "0.1", True, None)
    assert (two.value, two.threshold, two.passed, two.enforced, two.item, two.kind) == \
        ("a 3; b 1", "a > 4 and b == 1", False, False, "Fig 2", "sanity")
    assert rep.all_passed  # the failed claim is not enforced
    assert rep.table().splitlines() == [
        "| claim | this run | rule | paper | result |", "|---|---|---|---|---|",
        "| first | 0.25 | error < 0.5 | 0.1 | pass |",
        "| second | a 3; b 1 | a > 4 and b == 1 | - | not met (not enforced: too small here) |"]
    path = rep.finish()
    data = json.loads(path.read_text())
    assert path == tmp_path / "99_demo.json" and not list(tmp_path.glob(".*.tmp"))
    assert {k: data[k] for k in ("chapter", "title", "profile", "seed", "device", "all_passed")} == \
        {"chapter": "99_demo", "title": "Demo", "profile": "smoke", "seed": 0, "device": "cpu", "all_passed": True}
    assert data["elapsed_s"] >= 0 and "unchecked" not in data and "dry_run" not in data and "models" not in data
    assert [c["name"] for c in data["claims"]] == ["one", "two"]


def test_the_table_marks_failures_and_escapes_pipes(tmp_path, monkeypatch):
    monkeypatch.setenv("TVAE_RESULTS_DIR", str(tmp_path))
    spec = ChapterSpec("99_demo", "Demo", "none", claims=(
        *claim("x", "Fig 1", "x | y\nz", "v > 2"), *claim("y", "Fig 1", "kept", "v > 2", kind="control",
                                                          not_enforced={"*": {"y": "a|b"}})))
    rep = ClaimReport("99_demo", "Demo", "cpu", 0, spec=spec)
    rep.check("x", v=1.23456789)
    rep.check("y", v=5)
    assert rep.table().splitlines()[2:] == ["| x \\| y z | 1.235 | v > 2 | - | **FAIL** |",
                                            "| kept | 5 | v > 2 | - | met (not enforced: a\\|b) |"]
    assert not rep.all_passed



def test_the_metrics_file_its_default_folder_and_the_failure_message(tmp_path, monkeypatch, capsys):
    """Known answers for what a finished report writes and says: the default results folder, the indented
    record with its rounded clock and unchecked claims, the table handed to the notebook, the exact message."""
    import platform

    import IPython.display

    from tvae_experiments import claims as claims_mod
    from tvae_experiments.run import RunContext

    monkeypatch.delenv("TVAE_RESULTS_DIR", raising=False)
    monkeypatch.setattr(claims_mod, "repo_root", lambda: tmp_path)
    assert claims_mod.results_dir("cpu") == tmp_path / "_results" / "cpu"
    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    with pytest.raises(ClaimFailed, match="^99_demo: no claims were checked$"):
        ClaimReport("99_demo", "Demo", "smoke", 0, spec=DEMO).finish()
    rep = ClaimReport("99_demo", "Demo", "smoke", 0, spec=DEMO, ctx=RunContext(dry_run_steps=2))
    assert rep.dry_run_steps == 2 and "DRY RUN" in capsys.readouterr().out   # the context passed, not the process's
    rep = ClaimReport("99_demo", "Demo", "smoke", 0, spec=DEMO, ctx=RunContext())
    rep.check("ok", v=1.0)
    rep.check("bad", v=0.0)
    assert capsys.readouterr().out == "[PASS] ok: 1.0 (v > 0.1)\n[FAIL] bad: 0.0 (v > 0.1)\n"
    path = tmp_path / "_results" / "smoke" / "99_demo.json"
    with pytest.raises(ClaimFailed) as err:
        rep.finish()
    assert str(err.value) == (f"99_demo (smoke): claim(s) failed: bad; see {path}; "
                              "claim(s) declared in its spec but never checked: view, view2")
    text = path.read_text()
    assert text.startswith('{\n  "chapter": "99_demo",\n  "title"')   # indented by 2
    data = json.loads(text)
    assert data["unchecked"] == ["view", "view2"] and data["all_passed"] is False and "models" not in data
    assert isinstance(data["elapsed_s"], float) and 0 <= data["elapsed_s"] < 60
    assert data["elapsed_s"] == round(data["elapsed_s"], 3)
    assert [s.data for s in shown] == [rep.table()]
    machine = data["machine"]
    assert set(machine) == {"date", "platform", "processor", "cpu_count", "torch_threads", "python", "torch", "gpu"}
    assert (machine["platform"], machine["processor"], machine["python"], machine["torch_threads"]) == (
        platform.platform(), platform.processor() or platform.machine(), platform.python_version(),
        torch.get_num_threads())
    # every claim checked, one failed: not all passed
    full = ClaimReport("99_demo", "Demo", "smoke", 0, spec=DEMO, ctx=RunContext(used=[{"name": "m", "key": "k"}]))
    for name, values in (("ok", {"v": 1}), ("bad", {"v": 0}), ("view", {"rho": -1, "ratio": 4}),
                         ("view2", {"rho": -1, "ratio": 4})):
        full.check(name, **values)
    with pytest.raises(ClaimFailed, match="failed: bad; see"):
        full.finish()
    data = json.loads(path.read_text())
    assert data["all_passed"] is False and "unchecked" not in data and data["models"] == [{"name": "m", "key": "k"}]


def test_the_check_line_and_the_values_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TVAE_RESULTS_DIR", str(tmp_path))
    spec = ChapterSpec("99_demo", "Demo", "none", config=lambda p: CFG, claims=(
        *claim("a", "Fig 1", "s", "max_r < cfg.low", "trained > untrained",
               labels={"trained": "trained CapCorr"}, not_enforced={"*": {"a": "reported here"}}),))
    rep = ClaimReport("99_demo", "Demo", "cpu", 0, spec=spec)
    with pytest.raises(RuleError) as err:
        rep.check("a", max_r=0.0, trained=1.0, other=2, more=3)
    assert str(err.value) == ("claim 'a' of 99_demo takes the values max_r, trained, untrained (its rules: "
                              "max_r < cfg.low; trained > untrained); missing: untrained; not in its rules: more, other")
    with pytest.raises(RuleError) as err:
        rep.check("a", max_r=0.0, trained=1.0, untrained=0.0, other=2)
    assert str(err.value).endswith("(its rules: max_r < cfg.low; trained > untrained); not in its rules: other")
    assert rep.check("a", max_r=0.0, trained=1.0, untrained=0.5) is True
    assert rep.claims[0].value == "max r 0; trained CapCorr 1; untrained 0.5"
    assert capsys.readouterr().out.startswith("[ok (not enforced)] a: max r 0; trained CapCorr 1; untrained 0.5 (")


def test_declaration_errors_list_what_is_allowed_and_each_fills_only_its_own_fields():
    ok = dict(statement="s", rules=("v > 0",))
    with pytest.raises(ValueError, match=re.escape("claim 'x': profiles=('laptop',); allowed: smoke, cpu, paper")):
        ClaimSpec("x", "Fig 1", profiles=("laptop",), **ok)
    with pytest.raises(ValueError, match=re.escape("unknown profile(s) ['laptop']; allowed: smoke, cpu, paper, '*'")):
        ClaimSpec("x", "Fig 1", not_enforced={"laptop": "because"}, **ok)
    (c,) = claim("n{n}", "Fig 1", "{n:,} draws; {other} and {cfg.n:,} stay", "v > 0", each={"n": (20000,)})
    assert (c.name, c.statement) == ("n20000", "20,000 draws; {other} and {cfg.n:,} stay")


def test_without_ipython_the_table_is_printed(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setenv("TVAE_RESULTS_DIR", str(tmp_path))
    monkeypatch.setitem(sys.modules, "IPython.display", None)  # plain Python: the import fails
    spec = ChapterSpec("99_demo", "Demo", "none", claims=claim("x", "Fig 1", "s", "v > 0"))
    rep = ClaimReport("99_demo", "Demo", "cpu", 0, spec=spec)
    rep.check("x", v=1)
    capsys.readouterr()
    rep.finish()
    assert capsys.readouterr().out == rep.table() + "\n"


def test_value_and_failure_messages_list_every_name(tmp_path, monkeypatch):
    monkeypatch.setenv("TVAE_RESULTS_DIR", str(tmp_path))
    rep = ClaimReport("99_demo", "Demo", "smoke", 0, spec=DEMO)
    with pytest.raises(RuleError) as err:
        rep.check("view")
    assert str(err.value).endswith("(its rules: rho < cfg.rho_max; ratio > cfg.ratio_min); missing: rho, ratio")
    rep.check("bad", v=0)
    rep.check("ok", v=0)
    rep.check("view", rho=0, ratio=0)
    rep.check("view2", rho=-1, ratio=4)
    with pytest.raises(ClaimFailed, match=re.escape("99_demo (smoke): claim(s) failed: bad, ok, view; see ")):
        rep.finish()
