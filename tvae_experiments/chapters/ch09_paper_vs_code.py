"""Chapter 9 -- what the papers' code does differently from their text, measured.  Trains nothing.

Every claim is a known answer.  The chapter has no profile config (its notebook reads chapter 4's
data sizes); the bounds its rules read are :class:`PaperVsCodeConfig`, the same on every profile.
"""
from __future__ import annotations

from dataclasses import dataclass

from tvae_experiments.chapters.base import ChapterSpec, claim

EQ9 = "Eq 9: the shifting roll and its sign"
EQ13 = "Eq 13-14: E_eq and CapCorr conventions"
EQ8 = "Eq 8: the TPoT offset mu"
WINDOWS = "Eq 7-9: windows in time and within capsules"
EQ12 = "Eq 12: the loss scale (per sequence or per frame)"


@dataclass(frozen=True)
class PaperVsCodeConfig:
    """The bounds of chapter 9's claims (the same on every profile)."""

    exact_tol: float = 1e-12      # float64 identities of a few operations (CapCorr - 1, the code's TPoT vs the text's)
    sum_tol: float = 1e-9         # float64 sums of many terms: fast vs brute force, E_eq of capsules that roll exactly
    eeq_vector_min: float = 0.1   # whole-vector E_eq of capsules that roll but rescale: clearly above 0
    grad_ratio_tol: float = 1e-5  # |(|g_seq| / |g_frame|) / S - 1|: the two loss scales' gradients differ by S


# The rows of the claims over tables (the notebook's loops): a value per row, named <row>_<quantity>.
_K_ROWS = {f"{ds}_{v}": f"{ds} {v}" for ds in ("mnist", "dsprites") for v in ("tvae_l0", "bubble")}
_BAND_ROWS = {f"{w}_L{tag}": f"{w}, L={L}" for tag, L in (("9", 9), ("2_5", 2.5)) for w in ("code", "forward")}
_TIME_ROWS = {f"{w}_L{tag}": f"L={L}, {w}" for tag, L, ws in (("2_5", 2.5, ("forward", "code")),
                                                               ("3", 3, ("forward", "code", "centered"))) for w in ws}
_WINDOW_DEFINED = {"forward": "frames 0..2L-1", "code": "2L frames centred", "centered": "2L+1 frames centred"}

SPEC = ChapterSpec(
    "09_paper_vs_code", "Paper vs code: measured differences", "Keller & Welling 2021 and its code",
    claims=(*claim("eq9_sign", EQ9,
                   "the implemented shifting prior aligns a code rolling +1 per frame; the sign as printed aligns the "
                   "mirror image (-1 per frame)",
                   "err_impl == 0", "peak_printed == 1", "err_mirror == 0", kind="known-answer",
                   labels={"err_impl": "implemented: max |W v - T Roll_l(v_0)|",
                           "peak_printed": "printed sign: peak of W v",
                           "err_mirror": "printed sign on a -1/frame code: max error"},
                   paper="the text prints Roll_{+delta}"),
            *claim("authors_kernel_sign", EQ9,
                   "the authors' ConvTranspose3d kernel equals TemporalTopography(window='code', band='code')",
                   "equal", kind="known-answer", labels={"equal": "dense matrices equal"}),
            *claim("observed_roll_direction", EQ9,
                   "the text's ObservedRoll returns the roll t_0 -> t_Omega; the code's periodic_corr the roll "
                   "t_Omega -> t_0",
                   "text_share == 1", "code_share == 1", kind="known-answer",
                   labels={"text_share": "share of k recovered by the text's",
                           "code_share": "share of -k mod D from the code's"}),
            *claim("capcorr_conventions", EQ13,
                   "each convention gives CapCorr = 1 on an equivariant code; mixing them flips the sign",
                   "book < cfg.exact_tol", "code < cfg.exact_tol", "mixed < 0", kind="known-answer",
                   labels={"book": "|book CapCorr - 1|", "code": "|code CapCorr - 1|", "mixed": "mixed conventions"}),
            *claim("eeq_normalisation", EQ13,
                   "capsules that roll correctly but change their relative scale: 0 per capsule (the code), "
                   "> 0 with the text's whole-vector normalisation",
                   "capsule < cfg.sum_tol", "vector > cfg.eeq_vector_min", "eq13_err < cfg.sum_tol",
                   kind="known-answer",
                   labels={"capsule": "per-capsule E_eq", "vector": "whole-vector E_eq",
                           "eq13_err": "rel. |vector - brute-force Eq 13|"}),
            *claim("tpot_offset", EQ8,
                   "the code's (z + beta)/sqrt(Wu² + 1e-6) is the text's form with mu_i = -beta for every unit "
                   "(a mirror image of mu = +beta)",
                   "tpot_diff < cfg.exact_tol", "mirror_diff < cfg.exact_tol", kind="known-answer",
                   labels={"tpot_diff": "|code - tpot(mu=-beta)|", "mirror_diff": "|code + tpot(-z, mu=+beta)|"}),
            *claim("window_K_row_sums", WINDOWS,
                   "each T divides by K·T U's: the text's K (9/10 at L=0, 2L for the BubbleVAE) vs the code's 3",
                   *(f"{r}_book == {r}_book_K * {r}_T" for r in _K_ROWS),
                   *(f"{r}_code == {r}_code_K * {r}_T" for r in _K_ROWS), kind="known-answer",
                   labels={**{f"{r}_{side}": f"{text} {side}" for r, text in _K_ROWS.items()
                              for side in ("book", "code")},
                           **{f"{r}_{k}": k[-1] for r in _K_ROWS for k in ("book_K", "code_K", "T")}},
                   paper="A.5"),
            *claim("band_code_terms", WINDOWS,
                   "the code's K=3 shifting band has 3T-2 terms (3(2L+1)-2 in the text's centred window) "
                   "instead of 3T",
                   *(f"{r}_terms == 3 * {r}_T - 2" for r in _BAND_ROWS),
                   *(f"{r}_rows_min == {r}_rows_max" for r in _BAND_ROWS),
                   *(f"{r}_rows_max == {r}_terms" for r in _BAND_ROWS), kind="known-answer",
                   labels={**{f"{r}_terms": f"terms ({text})" for r, text in _BAND_ROWS.items()},
                           **{f"{r}_rows_min": f"min row sum ({text})" for r, text in _BAND_ROWS.items()},
                           **{f"{r}_rows_max": f"max row sum ({text})" for r, text in _BAND_ROWS.items()},
                           **{f"{r}_T": "T" for r in _BAND_ROWS}}),
            *claim("band_code_brute_force", WINDOWS, "band='code' equals a brute-force sum of its 3T-2 terms",
                   "err < cfg.sum_tol", kind="known-answer", labels={"err": "max |fast - brute force|"}),
            *claim("band_code_is_authors", WINDOWS,
                   "with the code's window, band='code' equals the authors' kernel at the MNIST TVAEs' 2L = 18 and 5",
                   "equal", kind="known-answer", labels={"equal": "dense matrices equal"}),
            *claim("time_windows", WINDOWS,
                   "forward: frames 0..2L-1; the code: 2L frames centred; the text: 2L+1 frames centred",
                   *(f"{r} == {r}_defined" for r in _TIME_ROWS), kind="known-answer",
                   labels={**{r: f"frames t_0 sees ({text})" for r, text in _TIME_ROWS.items()},
                           **{f"{r}_defined": _WINDOW_DEFINED[r.split("_")[0]] for r in _TIME_ROWS}}),
            *claim("loss_scale_gradient_ratio", EQ12,
                   "per-sequence (the text's sum over frames) and per-frame (the code's) losses differ in gradient "
                   "by exactly S",
                   "abs(ratio / S - 1) < cfg.grad_ratio_tol", kind="known-answer",
                   labels={"ratio": "(|g_seq| / |g_frame|)"}),
            *claim("paper_profile_loss", EQ12,
                   "the paper profile trains chapter 4's models with the code's loss scale (lr 1e-4 was set for it)",
                   "per_frame", kind="known-answer", labels={"per_frame": "paper profile's loss is 'frame'"})),
    config=lambda profile: PaperVsCodeConfig())
