"""The paper's claims, each tested on a campaign's runs: the paper's evidence, ours, the test and a verdict.

A verdict is one of HOLDS, DOES_NOT_HOLD, NOT_ENOUGH (fewer than two finished runs on a side of a comparison, no run
at all, or no spread across seeds on either side while the claim's side is ahead) and NOT_TESTABLE (a run the claim
rests on did not learn: its accuracy is not above its val set's majority baseline, or it gives every record the same
score). Comparisons of accuracy use Welch's t test, one-sided in the claim's direction, across seeds
(scipy.stats.ttest_ind, equal_var False), at SIGNIFICANCE. The density claim of Fig. 5 uses the one-sided
Mann-Whitney U test over the val records (ilgnet.paper.figures.density_test).

Convergence (Fig. 4): the iterations a run takes until its training loss, smoothed by a moving mean over a tenth
of its logged points, comes within CONVERGED (1 %) of its final smoothed value and stays there; a run whose loss
settles only at its last point had not converged when it stopped, and the claim is then not testable.
"""
from __future__ import annotations

import statistics
import warnings
from dataclasses import dataclass

import numpy as np

SIGNIFICANCE = 0.05
CONVERGED = 0.01
HOLDS, DOES_NOT_HOLD, NOT_ENOUGH, NOT_TESTABLE = "holds", "does not hold", "not enough runs", "not testable"


@dataclass(frozen=True)
class Claim:
    """One row of the Claims section."""
    claim: str
    paper: str
    ours: str
    test: str
    verdict: str


def learned(evaluation: dict) -> bool:
    """Whether a run learned: its accuracy on every val record is above the majority baseline of its val set."""
    return evaluation["accuracy"] > evaluation["majority_baseline"]["accuracy"]


def _summary(values: list[float], unit: str = "%") -> str:
    if not values:
        return "no run"
    scale = 100 if unit == "%" else 1
    mean = statistics.fmean(values) * scale
    spread = f" ± {statistics.stdev(values) * scale:.2f}" if len(values) > 1 else ""
    return f"{mean:.2f}{' %' if unit == '%' else ' ' + unit}{spread} (N = {len(values)})"


def welch_greater(better: list[float], worse: list[float]) -> float | None:
    """One-sided p-value of Welch's t test that `better` has the larger mean; None with fewer than two values on a
    side, or no spread at all. One side without spread is fine (its variance is 0), so SciPy's warning about
    nearly identical data is not passed on."""
    from scipy.stats import ttest_ind

    if len(better) < 2 or len(worse) < 2 or (np.ptp(better) == 0 and np.ptp(worse) == 0):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(ttest_ind(better, worse, equal_var=False, alternative="greater").pvalue)


def compare(claim: str, paper: str, better: tuple[str, list[dict]], worse: list[tuple[str, list[dict]]]) -> Claim:
    """The claim that the group `better` (name, evaluations) is more accurate than each group of `worse`."""
    groups = [better, *worse]
    ours = "; ".join(f"{name} {_summary([e['accuracy'] for e in runs])}" for name, runs in groups)
    if any(not runs for _, runs in groups):
        return Claim(claim, paper, ours, "Welch's t, one-sided", NOT_ENOUGH)
    if not all(learned(e) for _, runs in groups for e in runs):
        return Claim(claim, paper, ours, "Welch's t, one-sided", NOT_TESTABLE + ": runs at or below their majority "
                     "baseline")
    values = [e["accuracy"] for e in better[1]]
    p_values = [welch_greater(values, [e["accuracy"] for e in runs]) for _, runs in worse]
    # Two runs or more a side, none with any spread: no t, but a mean not above the other's contradicts the claim.
    behind = [name for (name, runs), p in zip(worse, p_values) if p is None and min(len(runs), len(values)) >= 2
              and statistics.fmean(e["accuracy"] for e in runs) >= statistics.fmean(values)]
    if behind:
        return Claim(claim, paper, ours, f"Welch's t, one-sided: no spread across seeds, and {better[0]}'s mean is "
                     f"not above {', '.join(behind)}'s", DOES_NOT_HOLD)
    if any(p is None for p in p_values):
        return Claim(claim, paper, ours, "Welch's t, one-sided", NOT_ENOUGH)
    worst = max(p_values)
    verdict = HOLDS if worst < SIGNIFICANCE else DOES_NOT_HOLD
    return Claim(claim, paper, ours, f"Welch's t, one-sided: largest p = {worst:.3g}", verdict)


def converged_at(iterations: list[int], losses: list[float]) -> int | None:
    """The iteration from which the smoothed loss stays within CONVERGED of its final value (module docstring);
    None without logged losses, or where it settles only at its last point: a run stopped before its loss settled
    (its convergence would read as its length, max_iter)."""
    if not losses:
        return None
    window = max(1, len(losses) // 10)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    final = smooth[-1]
    outside = np.flatnonzero(np.abs(smooth - final) > CONVERGED * max(abs(final), 1e-12))
    settled = int(outside[-1]) + 1 if outside.size else 0
    return None if settled == len(smooth) - 1 and len(smooth) > 1 else int(iterations[settled + window - 1])


def _settled(values: list[int | None]) -> str:
    """A net's convergence iterations over its runs (None: not settled), in a few words."""
    done = [a for a in values if a is not None]
    if not done:
        return f"not settled (N = {len(values)})"
    return _summary(done, "iterations") + (f", {len(values) - len(done)} more not settled" if None in values else "")


def convergence(paper: str, curves: dict[str, list[tuple[list[int], list[float], dict]]]) -> Claim:
    """Fig. 4's claim that ILGNet-Inc.V1-BN converges fastest: `curves` maps each net's name (ILGNet-Inc.V1-BN
    first) to its runs' (iterations, losses, evaluation)."""
    claim = "ILGNet-Inc.V1-BN converges fastest (Fig. 4)"
    test = f"iterations until the smoothed loss comes within {CONVERGED:.0%} of its final value and stays there"
    at = {name: [converged_at(i, loss) for i, loss, _ in runs] for name, runs in curves.items()}
    ours = "; ".join(f"{name} {_settled(values)}" for name, values in at.items())
    if len(curves) < 2 or any(not runs for runs in curves.values()):
        return Claim(claim, paper, ours, test, NOT_ENOUGH)
    if not all(learned(e) for runs in curves.values() for _, _, e in runs):
        return Claim(claim, paper, ours, test, NOT_TESTABLE + ": runs at or below their majority baseline")
    unsettled = [name for name, values in at.items() if None in values]
    if unsettled:
        return Claim(claim, paper, ours, test, NOT_TESTABLE + f": the loss of {', '.join(unsettled)} had not settled "
                     "when the run stopped")
    means = {name: statistics.fmean(values) for name, values in at.items()}
    first = next(iter(means))
    verdict = HOLDS if means[first] <= min(means.values()) else DOES_NOT_HOLD
    return Claim(claim, paper, ours, test + " (mean over seeds, lowest wins)", verdict)


def _did_not_learn(evaluation: dict, scores: list[float] | None) -> bool:
    return not learned(evaluation) or (scores is not None and len(set(np.round(scores, 3))) <= 1)


def density(paper: str, result: dict | None, evaluation: dict | None, scores: list[float] | None,
            layer: str = "temp_cjy") -> Claim:
    """Fig. 5's density claim on `layer` from ilgnet.paper.figures.density_test's `result` on a run with
    `evaluation` and val-record p_high `scores`."""
    claim = f"the last layer's active features are denser for high-quality photos (Fig. 5, `{layer}`)"
    if result is None or evaluation is None:
        return Claim(claim, paper, "no run with feature maps", "Mann-Whitney U, one-sided", NOT_ENOUGH)
    ours = (f"median active fraction {result['median_high']:.3f} (high) vs {result['median_low']:.3f} (low), "
            f"{result['high'] + result['low']:,} val records" if result["holds"] is not None else "a class is empty")
    test = "Mann-Whitney U, one-sided" + (f": p = {result['p_value']:.3g}" if result["holds"] is not None else "")
    if _did_not_learn(evaluation, scores):
        return Claim(claim, paper, ours, test, NOT_TESTABLE + ": the run did not learn (at or below its majority "
                     "baseline, or one score for every photo)")
    if result["holds"] is None:
        return Claim(claim, paper, ours, test, NOT_ENOUGH)
    return Claim(claim, paper, ours, test, HOLDS if result["holds"] else DOES_NOT_HOLD)


NEARLY_BINARY = 0.9


def binary(paper: str, results: dict[str, dict], evaluation: dict | None, scores: list[float] | None) -> Claim:
    """Fig. 5's "nearly binary" claim: on each layer of `results` (density_test results with `binary`, the mean
    share of units at 0 or within 5 % of the record's maximum), at least NEARLY_BINARY of the units."""
    claim = "the last feature maps are nearly binary (Fig. 5)"
    test = f"share of units at 0 or within 5 % of the record's maximum, at least {NEARLY_BINARY:.0%}"
    measured = {layer: r["binary"] for layer, r in results.items() if r.get("binary") is not None}
    if not measured or evaluation is None:
        return Claim(claim, paper, "not measured (no run with these layers' values)", test, NOT_ENOUGH)
    ours = ", ".join(f"`{layer}` {share:.1%}" for layer, share in measured.items())
    if _did_not_learn(evaluation, scores):
        return Claim(claim, paper, ours, test, NOT_TESTABLE + ": the run did not learn")
    return Claim(claim, paper, ours, test, HOLDS if min(measured.values()) >= NEARLY_BINARY else DOES_NOT_HOLD)


def _evaluations(runs, variant: str, profile: str) -> list[dict]:
    return [r.evaluation for r in runs if r.state == "finished" and r.tables and r.spec.variant == variant
            and r.spec.profile == profile]


def paper_claims(runs, names: dict[str, str], table4: list[dict], fig5: tuple | None) -> list[Claim]:
    """Every claim of the paper tested on `runs` (the report's RunResults: spec, state, evaluation, tables, run_dir),
    with the report's display `names` per variant, its Table 4 rows (ilgnet.paper.report.time_rows) and Fig. 5's
    (layer -> density_test result, run, p_high scores) or None."""
    from ilgnet.bvlc.logs import parse_train_log
    from ilgnet.zoo.runfolder import RunFolder

    def group(variant: str, profile: str) -> tuple[str, list[dict]]:
        return names[variant], _evaluations(runs, variant, profile)

    others = ("ilgnet-noinc", "googlenet-bn-third", "ilgnet-bn", "ilgnet-inc3")
    claims = [
        compare("ILGNet-Inc.V4 is the most accurate on AVA1 (delta 0)", "82.66 % against 81.71 % (Inc.V3), "
                "81.68 % (Inc.V1-BN), Table 2", group("ilgnet-inc4", "ava1-delta0"),
                [group(v, "ava1-delta0") for v in others]),
        compare("ILGNet-Inc.V4 is the most accurate on AVA2", "85.53 % against 85.51 % (Inc.V3), 85.50 % "
                "(Inc.V1-BN), Table 3", group("ilgnet-inc4", "ava2"), [group(v, "ava2") for v in others]),
        compare("inception modules help: ILGNet-without-Inc. < ILGNet-Inc.V1-BN (AVA1, delta 0)",
                "75.29 % against 81.68 %, Table 2 and Sec. 4.2", group("ilgnet-bn", "ava1-delta0"),
                [group("ilgnet-noinc", "ava1-delta0")]),
        compare("the connected layer helps: 1/3 GoogLeNetV1-BN < ILGNet-Inc.V1-BN (AVA1, delta 0)",
                "80.74 % against 81.68 %, Table 2 and Sec. 4.2", group("ilgnet-bn", "ava1-delta0"),
                [group("googlenet-bn-third", "ava1-delta0")]),
        compare("delta 1 costs accuracy on the delta-0 test set (ILGNet-Inc.V1-BN)",
                "81.68 % (delta 0) against 80.71 % (delta 1), Table 2", group("ilgnet-bn", "ava1-delta0"),
                [("delta 1", _evaluations(runs, "ilgnet-bn", "ava1-delta1"))]),
        _nearly(table4, runs, names),
    ]
    curves = {}
    for variant in ("ilgnet-bn", "googlenet-bn-third", "googlenet-bn-two-thirds", "googlenet-bn-full"):
        chosen = [r for r in runs if r.state == "finished" and "table4" in r.tables and r.spec.variant == variant]
        curves[names[variant]] = []
        for run in chosen:
            frame = parse_train_log(RunFolder(run.run_dir).train_log).dropna(subset=["loss"])
            curves[names[variant]].append((list(frame["iteration"]), list(frame["loss"]), run.evaluation))
    claims.append(convergence("\"Our ILGNet-Inc.V1-BN achieve the fastest convergence speed\" (Sec. 4.3, Fig. 4)",
                              curves))
    results, run, scores = fig5 if fig5 else ({}, None, None)
    evaluation = run.evaluation if run else None
    for layer in ("temp", "temp_cjy"):
        claims.append(density("\"in the last layer, the density of the active features are often higher in the "
                              "ones with high aesthetic quality\" (Sec. 4.4)", results.get(layer), evaluation,
                              scores, layer))
    claims.append(binary("\"the last feature maps are nearly binary pattens\" (Sec. 4.4)", results, evaluation,
                         scores))
    return claims


def _nearly(table4: list[dict], runs, names: dict[str, str]) -> Claim:
    """Sec. 4.3: ILGNet-Inc.V1-BN nearly as accurate as 2/3 GoogLeNetV1-BN (within 1 point) at much less training
    and test time (less than half of each)."""
    claim = "ILGNet-Inc.V1-BN is nearly as accurate as 2/3 GoogLeNetV1-BN at much less training and test time"
    paper = "81.68 % against 81.72 %; 4 against 11 days, 0.31 against 0.57 s per image (Table 4)"
    test = "accuracy within 1 point; training and test time each under half"
    rows = {row["variant"]: row for row in table4}
    ours_bn, ours_two = (_evaluations(runs, v, "ava1-delta0") for v in ("ilgnet-bn", "googlenet-bn-two-thirds"))
    bn, two = rows.get("ilgnet-bn", {}), rows.get("googlenet-bn-two-thirds", {})
    times = [(r.get("seconds"), (r.get("test") or {}).get("ms_per_image")) for r in (bn, two)]
    ours = (f"{names['ilgnet-bn']} {_summary([e['accuracy'] for e in ours_bn])}, "
            f"{names['googlenet-bn-two-thirds']} {_summary([e['accuracy'] for e in ours_two])}")
    if not ours_bn or not ours_two or any(t is None for pair in times for t in pair):
        return Claim(claim, paper, ours, test, NOT_ENOUGH)
    ours += (f"; training {times[0][0]:.0f} s against {times[1][0]:.0f} s, test {times[0][1]:.1f} against "
             f"{times[1][1]:.1f} ms per image")
    if not all(learned(e) for e in ours_bn + ours_two):
        return Claim(claim, paper, ours, test, NOT_TESTABLE + ": runs at or below their majority baseline")
    gap = statistics.fmean(e["accuracy"] for e in ours_two) - statistics.fmean(e["accuracy"] for e in ours_bn)
    holds = gap <= 0.01 and times[0][0] < times[1][0] / 2 and times[0][1] < times[1][1] / 2
    return Claim(claim, paper, ours, test, HOLDS if holds else DOES_NOT_HOLD)
