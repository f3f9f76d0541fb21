"""What a chapter spec declares: the models it trains and the claims it checks.

A chapter of the book is known in one place, its module in :mod:`tvae_experiments.chapters`:

* :class:`ModelSpec` -- one trained model: cache name, model config, training config, and which
  data it trains on.  The chapter's notebook trains or loads it with :meth:`ModelSpec.fit`; the
  training plan behind ``make train`` (:mod:`tvae_experiments.plan`) lists the same objects.
* :class:`ClaimSpec` -- one claim: its name, the paper item it stands for, its statement, the rule
  that decides it (comparisons over the values the notebook computes and the chapter config's
  fields, :mod:`tvae_experiments.rules`), the paper's value, its kind, and per profile whether it
  is enforced (and if not, why).  The notebook computes the values and calls
  :meth:`~tvae_experiments.claims.ClaimReport.check` with the name and the values; an undeclared
  name, or values that do not fit the rule, raise.  :func:`claim` declares one (or one per
  combination of ``each``).
* :class:`ChapterSpec` -- a chapter: title, paper, its claims and the function listing its models.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
import re
from fnmatch import fnmatchcase
from functools import partial
from itertools import product
from typing import Any

from tvae_experiments.profiles import PROFILES, config_for
from tvae_experiments.rules import Rule

__all__ = ["ModelSpec", "ClaimSpec", "ChapterSpec", "UndeclaredClaim", "CLAIM_KINDS", "EVERY_PROFILE", "claim"]

CLAIM_KINDS = ("paper", "control", "known-answer", "sanity")
"""What a claim is: a claim of a paper (``"paper"``), a control that a paper claim needs to mean
something (an untrained model, a baseline, a broken variant: ``"control"``), a property that holds
by construction and checks the code (``"known-answer"``), or a sanity check (``"sanity"``)."""

EVERY_PROFILE = "*"
"""Key of :attr:`ClaimSpec.not_enforced` for a claim reported, not enforced, on every profile."""


class UndeclaredClaim(KeyError):
    """A chapter checked a claim its spec does not declare."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


@dataclass(frozen=True)
class ModelSpec:
    """One model a chapter trains (or loads from the weight cache).

    ``data`` names how the training plan builds its training set (a kind of
    :class:`~tvae_experiments.plan.DataSpec`, sized by ``data_cfg``) and ``part`` which part of it
    is the training set; a notebook that has the data already passes the tensors to :meth:`fit`."""

    name: str             # cache-file prefix: <name>-<key[:12]>.pt
    model: Any            # model config: build(), to_dict()
    train: Any            # TrainConfig
    data: str             # DataSpec kind of the training data ("capsules", "mnist", ...)
    data_cfg: Any         # the config whose fields size that data
    part: str             # which part of the built data is the training set

    def fit(self, data: Any, data_id: str, *, device: str = "auto", progress: bool = True):
        """Train (or load) this model on ``data`` (a tensor or a tuple of tensors) identified by ``data_id``;
        returns :class:`~tvae_experiments.train.FitResult`."""
        from tvae_experiments.train import fit

        return fit(self.model, data, self.train, data_id=data_id, device=device, name=self.name, progress=progress)


@dataclass(frozen=True)
class ClaimSpec:
    """One declared claim of a chapter: what it says, the rule that decides it, and where it is enforced.

    ``rules`` are comparisons over the values the notebook computes and the chapter config's fields
    (:class:`~tvae_experiments.rules.Rule`; all must hold), ``labels`` name those values in the rule
    text.  ``not_enforced`` maps a profile of :data:`~tvae_experiments.profiles.PROFILES` (or
    :data:`EVERY_PROFILE`) to the reason the claim is only reported there; a profile not listed
    enforces it.  A reason names the evidence the run shows (a value on the page or in the report),
    not numbers typed from one run."""

    name: str
    item: str                                  # the paper item: "Fig 4: capsule traversals of held-out frames"
    kind: str = "paper"                        # one of CLAIM_KINDS
    not_enforced: Mapping[str, str] = field(default_factory=dict)
    profiles: tuple[str, ...] = PROFILES       # the profiles whose run checks it (chapter 1's extra nu: paper)
    statement: str = ""                        # what the claim says, in a sentence
    rules: tuple[Rule, ...] = ()               # e.g. Rule("traversal < cfg.right_pose_factor * opposite")
    labels: Mapping[str, str] = field(default_factory=dict)  # value name -> its words in the rule text
    paper: str | None = None                   # the paper's value or statement

    def __post_init__(self) -> None:
        if set(self.profiles) - set(PROFILES):
            raise ValueError(f"claim {self.name!r}: profiles={self.profiles!r}; allowed: {', '.join(PROFILES)}")
        if self.kind not in CLAIM_KINDS:
            raise ValueError(f"claim {self.name!r}: kind={self.kind!r} is not one of {', '.join(CLAIM_KINDS)}")
        bad = set(self.not_enforced) - {*PROFILES, EVERY_PROFILE}
        if bad:
            raise ValueError(f"claim {self.name!r}: not_enforced names unknown profile(s) {sorted(bad)}; "
                             f"allowed: {', '.join(PROFILES)}, {EVERY_PROFILE!r}")
        empty = [p for p, r in self.not_enforced.items() if not (isinstance(r, str) and r.strip())]
        if empty:
            raise ValueError(f"claim {self.name!r}: no reason given for not enforcing it on {empty}")
        object.__setattr__(self, "rules", tuple(r if isinstance(r, Rule) else Rule(r) for r in self.rules))
        if not self.rules or not self.statement.strip():
            raise ValueError(f"claim {self.name!r}: a claim declares its statement and at least one rule")
        stray = set(self.labels) - set(self.names)
        if stray:
            raise ValueError(f"claim {self.name!r}: labels name {sorted(stray)}, which no rule uses "
                             f"(its values: {self.names})")

    @property
    def names(self) -> list[str]:
        """The values a notebook passes to check this claim, in the order its rules use them."""
        return list(dict.fromkeys(n for r in self.rules for n in r.names))

    def reason(self, profile: str) -> str | None:
        """Why the claim is not enforced on ``profile``; None when it is enforced."""
        return self.not_enforced.get(profile, self.not_enforced.get(EVERY_PROFILE))


@dataclass(frozen=True)
class ChapterSpec:
    """A chapter: its notebook ``book/<name>.md``, the paper it checks, its claims and its models.

    ``models(profile, seed, **params)`` lists every model the chapter trains on ``profile``
    (``params``: the chapter parameters that change what is trained, e.g. chapter 5's ``n_seeds``);
    None for a chapter that trains nothing cached.  ``config(profile)`` is the config whose fields
    the claims' rules read (``cfg.<field>``); None: :func:`~tvae_experiments.profiles.config_for`
    of the chapter."""

    name: str
    title: str
    paper: str
    claims: tuple[ClaimSpec, ...]
    models: Callable[..., list[ModelSpec]] | None = None
    config: Callable[[str], Any] | None = None

    def __post_init__(self) -> None:
        names = [c.name for c in self.claims]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"chapter {self.name}: claim(s) declared twice: {dup}")

    def claim(self, name: str) -> ClaimSpec:
        """The declared claim ``name``; :class:`UndeclaredClaim` naming the chapter's spec if there is none."""
        for c in self.claims:
            if c.name == name:
                return c
        raise UndeclaredClaim(f"chapter {self.name} checks claim {name!r}, which its spec does not declare: add a "
                              f"ClaimSpec to tvae_experiments/chapters/ch{self.name}.py")

    def config_of(self, profile: str) -> Any:
        """The config the claims' rules read on ``profile``."""
        return config_for(self.name, profile) if self.config is None else self.config(profile)

    def checked_on(self, profile: str) -> list[str]:
        """The names of the claims a run on ``profile`` checks."""
        return [c.name for c in self.claims if profile in c.profiles]

    def items(self) -> list[str]:
        """The paper items of the chapter's claims, in order of first declaration."""
        return list(dict.fromkeys(c.item for c in self.claims))


def _fill(text: str, sub: Mapping[str, Any]) -> str:
    """``text`` with the ``{key}`` / ``{key:spec}`` fields of ``sub`` filled in; other fields (``{cfg.n}``,
    filled when the claim is checked) left as they are."""
    def one(m: re.Match) -> str:
        return format(sub[m[1]], m[2] or "") if m[1] in sub else m[0]
    return re.sub(r"\{(\w+)(?::([^{}]*))?\}", one, text)


def claim(name: str, item: str, statement: str, *rules: str, kind: str = "paper",
          labels: Mapping[str, str] | None = None, paper: str | None = None,
          not_enforced: Mapping[str, Mapping[str, str]] | None = None, profiles: tuple[str, ...] = PROFILES,
          each: Mapping[str, Iterable[Any]] | None = None) -> tuple[ClaimSpec, ...]:
    """Declare a claim: ``name``, the paper ``item`` it stands for, its ``statement`` and ``rules``.

    ``each`` declares one claim per combination of its values: ``{"ds": ("mnist", "dsprites")}``
    fills ``{ds}`` in the name, statement, rules, labels and paper text.  The statement may also name
    config fields, ``{cfg.n_samples:,}``, filled in when the claim is checked.  ``not_enforced``: profile
    -> ``{glob: reason}`` (:func:`fnmatch.fnmatchcase` on the claim's name; the first matching glob of
    the profile wins), so a chapter's whole table can be passed to each of its declarations."""
    keys = list(each or {})
    out = []
    for combo in product(*(tuple(v) for v in (each or {}).values())):
        sub = dict(zip(keys, combo))
        full = _fill(name, sub)
        reasons = {}
        for profile, table in (not_enforced or {}).items():
            hit = next((r for pattern, r in table.items() if fnmatchcase(full, pattern)), None)
            if hit is not None:
                reasons[profile] = hit
        fill = partial(_fill, sub=sub)
        out.append(ClaimSpec(full, fill(item), kind, reasons, profiles, fill(statement), tuple(Rule(fill(r)) for r in rules),
                             {fill(k): fill(v) for k, v in (labels or {}).items()}, None if paper is None else fill(paper)))
    return tuple(out)

