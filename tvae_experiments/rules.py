"""A claim's rule, declared as text and evaluated on the values a chapter computes.

A chapter spec (:mod:`tvae_experiments.chapters`) declares each claim's rule as one or more
comparisons written as Python expressions, for example::

    "traversal < cfg.right_pose_factor * opposite"
    "capcorr - untrained >= cfg.capcorr_margin"
    "decreasing(r)"

A bare name (``traversal``) is a value the notebook computes and passes to
:meth:`~tvae_experiments.claims.ClaimReport.check` by keyword; ``cfg.<field>`` is a field of the
chapter's config (a bound is read from the config, never typed in a notebook); a number is a
mathematical constant of the rule (``0`` for "positive").  Allowed: ``+ - * /``, unary ``-``,
``abs``, ``min``, ``max``, ``decreasing`` (strictly, along the sequence), ``finite`` (every argument),
numbers and ``True``.  An expression without a comparison must be true (``decreasing(r)`` means
``decreasing(r) == True``; its text is the expression's alone: "r strictly decreasing").

:class:`Rule` parses a rule once, when the spec is built, and :meth:`Rule.evaluate` turns it into a
:class:`Comparison` whose text -- the rule a reader sees -- is written from the expression itself:
names by their labels, config fields by their values, e.g. ``traversal BCE < 1.5 x opposite-pose
BCE (312.4)``.
"""
from __future__ import annotations

import ast
import math
import numbers
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["OPS", "Comparison", "Rule", "RuleError", "fmt", "fill_config"]

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
       "==": operator.eq, "!=": operator.ne}
"""The comparison operators a rule can use."""

_AST_OPS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
_BIN = {ast.Add: ("+", operator.add, 1), ast.Sub: ("-", operator.sub, 1),
        ast.Mult: ("x", operator.mul, 2), ast.Div: ("/", operator.truediv, 2)}


def _decreasing(xs: Any) -> bool:
    xs = [_scalar(x) for x in xs]
    return len(xs) >= 2 and all(a > b for a, b in zip(xs[:-1], xs[1:]))


def _finite(*xs: Any) -> bool:
    return all(math.isfinite(float(_scalar(x))) for x in xs)


_FUNCS: dict[str, Callable[..., Any]] = {"abs": abs, "min": min, "max": max, "decreasing": _decreasing,
                                         "finite": _finite}


class RuleError(ValueError):
    """A rule that cannot be parsed, or values that do not fit it."""


def _scalar(x: Any) -> Any:
    """A 0-d array or tensor as its Python number; anything else unchanged."""
    return x.item() if hasattr(x, "item") and getattr(x, "ndim", None) == 0 else x


def fmt(x: Any) -> str:
    """A number for rule text: bools as true/false, integers as they are, floats to 4 significant digits."""
    x = _scalar(x)
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, numbers.Integral):
        return str(int(x))
    if isinstance(x, numbers.Real):
        return f"{float(x):.4g}"
    return str(x)


def _is_number(x: Any) -> bool:
    x = _scalar(x)
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


@dataclass(frozen=True)
class Comparison:
    """``value op bound``: one evaluated comparison of a claim.

    ``what`` names the compared quantity and ``bound_text`` the bound in words (e.g. ``"1.25 x
    direct BCE"``); both only shape the rule text, ``value op bound`` decides."""

    value: Any
    op: str
    bound: Any
    what: str | None = None
    bound_text: str | None = None
    bare: bool = False          # a boolean rule ("r strictly decreasing"): the text is ``bound_text`` alone

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"op={self.op!r} is not allowed; choose one of: {', '.join(map(repr, OPS))}")

    @property
    def passed(self) -> bool:
        """Whether ``value op bound`` holds (a NaN fails every op but ``!=``)."""
        return bool(OPS[self.op](self.value, self.bound))

    @property
    def text(self) -> str:
        """The rule in words: ``[what] op bound`` or ``[what] op bound_text (bound)``."""
        if self.bare:
            return str(self.bound_text)
        bound = fmt(self.bound)
        if self.bound_text is not None:
            bound = f"{self.bound_text} ({bound})" if _is_number(self.bound) and self.bound_text != bound \
                else self.bound_text
        return f"{self.what} {self.op} {bound}" if self.what else f"{self.op} {bound}"


def _cfg_path(node: ast.AST) -> str | None:
    """``"a.b"`` for the expression ``cfg.a.b``; None for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join(reversed(parts)) if isinstance(node, ast.Name) and node.id == "cfg" and parts else None


class _Expr:
    """One side of a rule: a checked expression tree that evaluates and renders itself."""

    def __init__(self, node: ast.AST, source: str) -> None:
        self.node, self.source = node, source
        self.names: list[str] = []
        self.fields: list[str] = []
        self._scan(node)

    def _scan(self, node: ast.AST) -> None:
        if (path := _cfg_path(node)) is not None:
            self.fields.append(path)
        elif isinstance(node, ast.Name):
            if node.id == "cfg":
                raise RuleError(f"rule {self.source!r}: 'cfg' alone is not a value; name a field, cfg.<field>")
            if node.id not in self.names:
                self.names.append(node.id)
        elif isinstance(node, ast.Constant) and (type(node.value) in (int, float) or node.value is True):
            pass
        elif isinstance(node, ast.BinOp) and type(node.op) in _BIN:
            self._scan(node.left)
            self._scan(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            self._scan(node.operand)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS \
                and node.args and not node.keywords:
            for a in node.args:
                self._scan(a)
        else:
            raise RuleError(f"rule {self.source!r}: {ast.unparse(node)!r} is not allowed; a rule uses names, "
                            f"cfg.<field>, numbers, + - * /, unary -, and {', '.join(_FUNCS)}")

    def value(self, values: Mapping[str, Any], cfg: Any) -> Any:
        return self._eval(self.node, values, cfg)

    def _eval(self, node: ast.AST, values: Mapping[str, Any], cfg: Any) -> Any:
        if (path := _cfg_path(node)) is not None:
            return _field(cfg, path, self.source)
        if isinstance(node, ast.Name):
            return values[node.id]
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.BinOp):
            return _BIN[type(node.op)][1](self._eval(node.left, values, cfg), self._eval(node.right, values, cfg))
        if isinstance(node, ast.UnaryOp):
            return -self._eval(node.operand, values, cfg)
        return _FUNCS[node.func.id](*(self._eval(a, values, cfg) for a in node.args))  # a call _scan admitted

    def text(self, labels: Mapping[str, str], cfg: Any) -> str:
        """The expression in words: names by their labels, config fields by their values."""
        return self._text(self.node, labels, cfg, 0)

    def _text(self, node: ast.AST, labels: Mapping[str, str], cfg: Any, outer: int) -> str:
        if (path := _cfg_path(node)) is not None:
            return fmt(_field(cfg, path, self.source))
        if isinstance(node, ast.Name):
            return labels.get(node.id, node.id.replace("_", " "))
        if isinstance(node, ast.Constant):
            return fmt(node.value)
        if isinstance(node, ast.BinOp):
            sym, _, prec = _BIN[type(node.op)]
            s = f"{self._text(node.left, labels, cfg, prec)} {sym} {self._text(node.right, labels, cfg, prec + 1)}"
            return f"({s})" if prec < outer else s
        if isinstance(node, ast.UnaryOp):
            operand = self._text(node.operand, labels, cfg, 0)
            return f"-({operand})" if isinstance(node.operand, ast.BinOp) else f"-{operand}"
        args = [self._text(a, labels, cfg, 0) for a in node.args]
        if node.func.id == "abs":
            return f"|{args[0]}|"
        if node.func.id == "decreasing":
            return f"{args[0]} strictly decreasing"
        if node.func.id == "finite":
            return f"{', '.join(args)} finite"
        return f"{node.func.id}({', '.join(args)})"


def fill_config(text: str, cfg: Any) -> str:
    """``text`` with its ``{cfg.<field>}`` fields filled from ``cfg``: attributes and integer indices,
    negative ones too (``{cfg.nus[-1]}``), with an optional format spec (``{cfg.n_samples:,}``)."""
    def one(m: re.Match) -> str:
        obj = cfg
        for attr, index in re.findall(r"\.(\w+)|\[(-?\d+)\]", m[1]):
            if attr and not hasattr(obj, attr):
                raise RuleError(f"text {text!r}: the chapter config {type(cfg).__name__} has no field {m[0]}")
            obj = getattr(obj, attr) if attr else obj[int(index)]
        return format(obj, m[2] or "")
    return re.sub(r"\{cfg((?:\.\w+|\[-?\d+\])+)(?::([^{}]*))?\}", one, text)


def _field(cfg: Any, path: str, source: str) -> Any:
    if cfg is None:
        raise RuleError(f"rule {source!r} reads cfg.{path}, but the claim report has no config: pass config= "
                        "to ClaimReport")
    obj = cfg
    for part in path.split("."):
        if not hasattr(obj, part):
            raise RuleError(f"rule {source!r}: the chapter config {type(cfg).__name__} has no field cfg.{path}")
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True, init=False)
class Rule:
    """One comparison of a claim, ``left op right`` (or a boolean expression that must be true),
    parsed from its text; see the module docstring for what a rule may contain."""

    source: str

    def __init__(self, source: str) -> None:
        object.__setattr__(self, "source", source)
        try:
            tree = ast.parse(source.strip(), mode="eval").body
        except SyntaxError as e:
            raise RuleError(f"rule {source!r} is not an expression: {e.msg}") from None
        if isinstance(tree, ast.Compare):
            if len(tree.ops) != 1 or type(tree.ops[0]) not in _AST_OPS:
                raise RuleError(f"rule {source!r}: one comparison per rule, with one of {', '.join(OPS)}")
            sides = (_Expr(tree.left, source), _AST_OPS[type(tree.ops[0])], _Expr(tree.comparators[0], source))
        else:  # a boolean expression: no right side
            sides = (_Expr(tree, source), "==", None)
        for attr, side in zip(("_left", "op", "_right"), sides):
            object.__setattr__(self, attr, side)

    @property
    def _sides(self) -> list[_Expr]:
        return [self._left] if self._right is None else [self._left, self._right]

    @property
    def names(self) -> list[str]:
        """The values the notebook passes for this rule, in order of appearance."""
        return list(dict.fromkeys(n for side in self._sides for n in side.names))

    @property
    def fields(self) -> list[str]:
        """The config fields the rule reads (``"a.b"`` for ``cfg.a.b``)."""
        return [f for side in self._sides for f in side.fields]

    def evaluate(self, values: Mapping[str, Any], cfg: Any, labels: Mapping[str, str]) -> Comparison:
        """The :class:`Comparison` this rule makes of ``values`` (by name) and ``cfg``; its text names
        values by ``labels`` and shows config fields by their values."""
        left, left_text = self._left.value(values, cfg), self._left.text(labels, cfg)
        if self._right is None:  # a boolean expression: its words are the rule
            return Comparison(bool(left), "==", True, None, left_text, bare=True)
        return Comparison(left, self.op, self._right.value(values, cfg), left_text, self._right.text(labels, cfg))
