"""Reasons for not enforcing a claim that several chapters share (chapters 4, 5 and 8 use chapter 4's models)."""
from __future__ import annotations

CPU_ORIENTATION = ("the cpu recipe does not learn dSprites orientation capsules in its 3,000 steps (chapter 4's "
                   "CapCorr_orientation, shown in its claims table); the paper trains ~630,000 steps: enforced on "
                   "paper")

RAW_EEQ = ("not informative: raw E_eq is dominated by the constant offset -mu/sqrt(W u^2) that trained and untrained "
           "codes share, and the untrained code is closer to constant (chapter 4's offset control shows the size "
           "of that offset). The centred form (capsule means removed) is the enforced check")


def smoke_untrained(what: str, enforced_from: str = "enforced from the cpu profile on") -> str:
    """Why smoke only reports a claim that needs a trained model: ``what`` needs it."""
    return f"smoke trains each model for seconds: {what}; {enforced_from}"
