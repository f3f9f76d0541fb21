"""Claim rules (tvae_experiments.rules): parsed once, evaluated on named values and config fields, and
written as the rule text a reader sees."""
from __future__ import annotations

from dataclasses import dataclass, field

import re

import numpy as np
import pytest
import torch

from tvae_experiments.rules import Comparison, Rule, RuleError, fill_config


@dataclass
class Inner:
    factor: float = 1.5


@dataclass
class Cfg:
    tol: float = 0.05
    margin: float = 0.5
    nus: tuple = (1, 3, 10)
    n: int = 20000
    inner: Inner = field(default_factory=Inner)


CFG = Cfg()


def ev(rule: str, labels=None, **values) -> Comparison:
    return Rule(rule).evaluate(values, CFG, labels or {})


def test_a_rule_compares_named_values_with_config_fields():
    c = ev("traversal < cfg.inner.factor * opposite", traversal=300.0, opposite=250.0)
    assert (c.value, c.op, c.bound, c.passed) == (300.0, "<", 375.0, True)
    assert ev("traversal < cfg.inner.factor * opposite", traversal=380.0, opposite=250.0).passed is False
    assert ev("capcorr - untrained >= cfg.margin", capcorr=0.9, untrained=0.39).passed is True
    assert ev("capcorr - untrained >= cfg.margin", capcorr=0.9, untrained=0.41).passed is False
    assert ev("r > 0", r=1e-9).passed and not ev("r > 0", r=0.0).passed
    assert ev("abs(r) < cfg.tol", r=-0.04).passed and not ev("abs(r) < cfg.tol", r=-0.06).passed
    assert ev("min(a, b) >= -x / 2", a=-1.0, b=3.0, x=2.0).passed and not ev("min(a, b) >= -x / 2", a=-1.1, b=3.0, x=2.0).passed
    assert ev("max(a, b) == b", a=np.float32(1.0), b=torch.tensor(2.0)).passed


def test_a_bare_expression_must_be_true_and_decreasing_is_strict():
    assert ev("decreasing(r)", r=[0.3, 0.2, 0.1]).passed
    assert not ev("decreasing(r)", r=[0.3, 0.3, 0.1]).passed
    assert not ev("decreasing(r)", r=[0.3]).passed  # one point shows no trend
    assert ev("finite", finite=True).passed and not ev("finite", finite=False).passed
    assert ev("finite(a, b)", a=1.0, b=torch.tensor(-2.0)).passed
    assert not ev("finite(a, b)", a=1.0, b=float("inf")).passed and not ev("finite(a)", a=np.nan).passed
    assert not ev("nan_value < 1", nan_value=float("nan")).passed


def test_the_rule_text_is_written_from_the_rule():
    labels = {"traversal": "traversal BCE", "opposite": "opposite-pose BCE"}
    assert ev("traversal < cfg.inner.factor * opposite", labels, traversal=300.0, opposite=250.0).text \
        == "traversal BCE < 1.5 x opposite-pose BCE (375)"
    assert ev("p > cfg.tol", {"p": "KS p"}, p=0.3).text == "KS p > 0.05"          # a config bound shows its value
    assert ev("lo > 0", lo=0.1).text == "lo > 0"
    assert ev("max_r < cfg.tol", max_r=0.0).text == "max r < 0.05"                # unlabelled: the name in words
    assert ev("capcorr - untrained >= cfg.margin", capcorr=0.9, untrained=0.3).text == "capcorr - untrained >= 0.5"
    assert ev("a < (b + c) * cfg.margin", a=1, b=2, c=3).text == "a < (b + c) x 0.5 (2.5)"
    assert ev("a < b + c * cfg.margin", a=1, b=2, c=3).text == "a < b + c x 0.5 (3.5)"
    assert ev("a - (b - c) > 0", a=1, b=2, c=3).text == "a - (b - c) > 0"
    assert ev("abs(r) < cfg.tol", {"r": "r"}, r=0.01).text == "|r| < 0.05"
    assert ev("decreasing(r)", {"r": "r(d)"}, r=[2, 1]).text == "r(d) strictly decreasing"
    assert ev("finite(elbo)", {"elbo": "test ELBO"}, elbo=-3.0).text == "test ELBO finite"
    assert ev("a > -b", a=1, b=2).text == "a > -b (-2)"


def test_what_a_rule_may_contain():
    assert Rule("a < cfg.inner.factor * b").names == ["a", "b"]
    assert Rule("a < cfg.inner.factor * b").fields == ["inner.factor"]
    assert Rule("decreasing(r)").names == ["r"]
    for bad, why in [("a <", "not an expression"), ("a < b < c", "one comparison"), ("a in b", "one comparison"),
                     ("a < 1.25 ** b", "not allowed"), ("a < b[0]", "not allowed"), ("a < f(b)", "not allowed"),
                     ("a < 'x'", "not allowed"), ("a < cfg", "'cfg' alone"), ("a < abs(b, key=c)", "not allowed"),
                     ("a < __import__('os')", "not allowed"), ("a < b.real", "not allowed")]:
        with pytest.raises(RuleError, match=why):
            Rule(bad)


def test_a_missing_config_or_field_is_named():
    with pytest.raises(RuleError, match="has no config"):
        Rule("a < cfg.tol").evaluate({"a": 1}, None, {})
    with pytest.raises(RuleError, match="has no field cfg.inner.nope"):
        Rule("a < cfg.inner.nope").evaluate({"a": 1}, CFG, {})


def test_config_fields_fill_declared_text():
    assert fill_config("KS test, N={cfg.n:,}", CFG) == "KS test, N=20,000"
    assert fill_config("ν={cfg.nus[0]} vs ν={cfg.nus[-1]}; {other}", CFG) == "ν=1 vs ν=10; {other}"
    assert fill_config("x {cfg.inner.factor}", CFG) == "x 1.5"
    with pytest.raises(RuleError, match="no field"):
        fill_config("{cfg.nope}", CFG)


def test_every_part_of_a_rule_reads_the_config_and_writes_its_words():
    """Config fields and constants anywhere in a rule: left side, unary minus, function arguments."""
    c = ev("a - cfg.margin > -cfg.tol", a=0.4)
    assert (c.value, c.bound, c.passed, c.text) == (pytest.approx(-0.1), -0.05, False, "a - 0.5 > -0.05")
    c = ev("abs(a) < max(cfg.tol, b)", a=-0.06, b=0.01)
    assert (c.bound, c.passed, c.text) == (0.05, False, "|a| < max(0.05, b) (0.05)")
    assert ev("a > -(b + c)", a=0, b=1, c=2).text == "a > -(b + c) (-3)"
    assert ev("a > -b", a=0, b=1).text == "a > -b (-1)"
    assert ev("a < 2 * b", a=1, b=3).text == "a < 2 x b (6)"
    assert ev("finite(a, b)", a=1.0, b=2.0).text == "a, b finite"
    assert ev("x == True", x=True).passed and ev("x == True", x=True).text == "x == true"
    with pytest.raises(RuleError, match="not allowed"):
        Rule("x == False")  # a rule states what must hold; False is no bound


def test_decreasing_compares_every_neighbouring_pair():
    assert ev("decreasing(r)", r=[2, 1]).passed            # two points are a trend
    assert not ev("decreasing(r)", r=[3, 2, 2.5]).passed   # the last pair
    assert not ev("decreasing(r)", r=[4, 3, 2, 2.5]).passed
    assert not ev("decreasing(r)", r=[2, 3, 1]).passed     # the first pair


def test_errors_name_the_rule_the_config_and_the_fix():
    assert Rule("a < b").source == "a < b" and Rule("decreasing(r)").op == "=="
    for bad in ("a[0] < b", "a < b[0]", "a[0]"):
        with pytest.raises(RuleError, match=re.escape(f"rule {bad!r}: 'a[0]'") if bad != "a < b[0]"
                           else re.escape("rule 'a < b[0]': 'b[0]'")):
            Rule(bad)
    with pytest.raises(RuleError, match="one of <, <=, >, >=, ==, !="):
        Rule("a is b")
    with pytest.raises(RuleError, match=r"rule 'a < cfg.nope': the chapter config Cfg has no field cfg.nope"):
        Rule("a < cfg.nope").evaluate({"a": 1}, CFG, {})
    with pytest.raises(RuleError, match="pass config= to ClaimReport"):
        Rule("a < cfg.tol").evaluate({"a": 1}, None, {})
    with pytest.raises(RuleError, match=re.escape("the chapter config Cfg has no field {cfg.nope}")):
        fill_config("{cfg.nope}", CFG)
    with pytest.raises(RuleError, match="abs, min, max, decreasing, finite"):
        Rule("a < f(b)")
    assert max(1, 2) == ev("max(a, b) > 0", a=1, b=2).value and ev("max(a, b) > 0", a=1, b=2).text == "max(a, b) > 0"


def test_a_comparison_names_the_allowed_operators():
    with pytest.raises(ValueError, match=re.escape("op='=<' is not allowed; choose one of: '<', '<=', '>', '>=', '==', '!='")):
        Comparison(1, "=<", 2)
