"""The verdicts of the report's Claims section (ilgnet.paper.claims) on evaluations of known values: a verdict rests
only on runs that learned, needs two runs a side, and follows Welch's t test."""
from __future__ import annotations

from ilgnet.paper import claims
from ilgnet.paper.differences import DIFFERENCES


def evaluation(accuracy: float, baseline: float = 0.5) -> dict:
    return {"accuracy": accuracy, "majority_baseline": {"class": 1, "accuracy": baseline}}


def test_a_claim_holds_only_on_runs_that_learned_and_enough_of_them():
    better = ("A", [evaluation(0.80), evaluation(0.82), evaluation(0.81)])
    worse = ("B", [evaluation(0.70), evaluation(0.71), evaluation(0.69)])
    held = claims.compare("A beats B", "paper", better, [worse])
    assert held.verdict == claims.HOLDS and "p = " in held.test and "(N = 3)" in held.ours
    assert claims.compare("B beats A", "paper", worse, [better]).verdict == claims.DOES_NOT_HOLD
    at_baseline = ("B", [evaluation(0.60, baseline=0.60), evaluation(0.61, baseline=0.62)])
    assert claims.compare("A beats B", "paper", better, [at_baseline]).verdict.startswith(claims.NOT_TESTABLE)
    assert claims.compare("A beats B", "paper", better, [("B", [evaluation(0.7)])]).verdict == claims.NOT_ENOUGH
    assert claims.compare("A beats B", "paper", better, [("B", [])]).verdict == claims.NOT_ENOUGH
    # No spread on either side (two seeds with the same accuracy each): no t test; behind the other group is enough
    # to contradict the claim, ahead of it is not enough to support it.
    flat_a, flat_b = ("A", [evaluation(0.90)] * 2), ("B", [evaluation(1.00)] * 2)
    contradicted = claims.compare("A beats B", "paper", flat_a, [flat_b, worse])
    assert contradicted.verdict == claims.DOES_NOT_HOLD and "A's mean is not above B's" in contradicted.test
    assert claims.compare("B beats A", "paper", flat_b, [flat_a]).verdict == claims.NOT_ENOUGH


def test_one_side_without_spread_is_tested_without_a_warning(recwarn):
    p = claims.welch_greater([0.9, 0.9], [0.8333333333333334, 1.0])
    assert 0.5 < p < 1 and not recwarn.list


def test_convergence_is_where_the_smoothed_loss_reaches_its_final_value():
    iterations = list(range(0, 100, 5))
    fast = [1.0, 0.5] + [0.2] * 18
    slow = [1.0 - 0.06 * i for i in range(12)] + [0.34] * 8
    assert claims.converged_at(iterations, fast) < claims.converged_at(iterations, slow)
    # Within 1 % of the end only by chance on the way (0.34 at 30), then out again: settled where it stays.
    assert claims.converged_at(iterations, slow[:5] + [0.34] + slow[6:]) == claims.converged_at(iterations, slow)
    runs = {"ILGNet-Inc.V1-BN": [(iterations, fast, evaluation(0.8))], "full": [(iterations, slow, evaluation(0.8))]}
    assert claims.convergence("paper", runs).verdict == claims.HOLDS
    runs["full"] = [(iterations, slow, evaluation(0.5))]
    assert claims.convergence("paper", runs).verdict.startswith(claims.NOT_TESTABLE)
    # A loss still falling when the run stopped (a toy run): its length is no convergence time.
    falling = [1.0 - 0.04 * i for i in range(20)]
    assert claims.converged_at(iterations, falling) is None
    runs["full"] = [(iterations, falling, evaluation(0.8))]
    verdict = claims.convergence("paper", runs)
    assert verdict.verdict == f"{claims.NOT_TESTABLE}: the loss of full had not settled when the run stopped"
    assert "full not settled (N = 1)" in verdict.ours


def test_the_density_claim_is_not_testable_on_a_run_that_scores_every_photo_the_same():
    result = {"holds": True, "p_value": 0.000144, "median_high": 0.6, "median_low": 0.4, "high": 10, "low": 10}
    same = claims.density("paper", result, evaluation(0.9), [1.0] * 20)
    assert same.verdict.startswith(claims.NOT_TESTABLE)
    assert claims.density("paper", result, evaluation(0.9), [0.1 * i for i in range(20)]).verdict == claims.HOLDS
    assert claims.density("paper", result, evaluation(0.5), [0.1 * i for i in range(20)]).verdict.startswith(
        claims.NOT_TESTABLE)


def test_nearly_binary_maps_need_nine_in_ten_units_at_zero_or_near_the_maximum():
    spread = [0.1 * i for i in range(20)]
    layers = {"temp": {"binary": 0.95}, "temp_cjy": {"binary": 0.97}}
    assert claims.binary("paper", layers, evaluation(0.9), spread).verdict == claims.HOLDS
    layers["temp"]["binary"] = 0.6
    assert claims.binary("paper", layers, evaluation(0.9), spread).verdict == claims.DOES_NOT_HOLD
    assert claims.binary("paper", layers, evaluation(0.4), spread).verdict.startswith(claims.NOT_TESTABLE)
    assert claims.binary("paper", {}, None, None).verdict == claims.NOT_ENOUGH


def test_the_differences_name_each_known_one():
    topics = {d.topic for d in DIFFERENCES}
    assert {"input size", "AVA1 sizes", "evaluation", "fine-tuning recipe", "Inception-v3/v4 cut points",
            "Fig. 5's layers (1)-(7)", "Fig. 4's x axis"} <= topics
    evaluation_row = next(d for d in DIFFERENCES if d.topic == "evaluation")
    assert "published logs' protocol" in evaluation_row.toolkit
    assert "234,599" in next(d.paper for d in DIFFERENCES if d.topic == "AVA1 sizes")


def test_reproducing_md_shows_the_reports_differences_table():
    from pathlib import Path

    from ilgnet.paper import differences

    text = (Path(__file__).resolve().parents[1] / "docs" / "REPRODUCING.md").read_text()
    for row in differences.rows():
        assert "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" in text, row[0]


def test_the_recipes_section_says_which_recipe_comes_closest_to_the_paper(tmp_path):
    from types import SimpleNamespace

    from ilgnet.paper import findings
    from ilgnet.paper.tables import PAPER_NAMES, PROFILE_COLUMNS, paper_accuracy

    def run(recipe: str, accuracy: float):
        spec = SimpleNamespace(variant="ilgnet-bn", profile="ava2", recipe=recipe)
        return SimpleNamespace(spec=spec, state="finished", evaluation=evaluation(accuracy), run_dir=tmp_path)

    runs = [run("released", 0.80), run("paper", 0.85), run("paper-sec5", 0.83)]
    blocks = findings.recipes_section(runs, PAPER_NAMES, paper_accuracy, PROFILE_COLUMNS, False, tmp_path)
    assert "ILGNet-Inc.V1-BN, AVA2: paper (0.50 points)" in blocks[1].text
    assert [row[2] for row in blocks[2].rows] == ["paper", "paper-sec5", "released"]
    synthetic = findings.recipes_section(runs, PAPER_NAMES, paper_accuracy, PROFILE_COLUMNS, True, tmp_path)
    assert "not said (synthetic data" in synthetic[1].text
    assert findings.recipes_section(runs[:1], PAPER_NAMES, paper_accuracy, PROFILE_COLUMNS, False, tmp_path) == []


def test_the_summary_says_which_recipe_comes_closest_or_that_none_was_compared(tmp_path):
    from types import SimpleNamespace

    from ilgnet.paper import findings
    from ilgnet.paper.tables import PAPER_NAMES, PROFILE_COLUMNS, paper_accuracy

    def run(recipe: str, profile: str, accuracy: float):
        spec = SimpleNamespace(variant="ilgnet-bn", profile=profile, recipe=recipe)
        return SimpleNamespace(spec=spec, state="finished", evaluation=evaluation(accuracy), run_dir=tmp_path)

    def line(runs, synthetic=False) -> str:
        said = findings.closest_recipe(runs, PAPER_NAMES, paper_accuracy, PROFILE_COLUMNS, synthetic)
        items = findings.summary([], [], synthetic, said)[-1].items
        return next(item for item in items if item.startswith("Fine-tuning recipe"))

    # The paper prints 85.50 % on AVA2 and 81.68 % on AVA1 (delta 0) for ILGNet-Inc.V1-BN.
    recipes = [run("released", "ava2", 0.80), run("paper", "ava2", 0.86), run("paper-sec5", "ava2", 0.84),
               run("released", "ava1-delta0", 0.815), run("paper", "ava1-delta0", 0.79)]
    said = line(recipes)
    assert "ILGNet-Inc.V1-BN, AVA2: paper (0.50 points)" in said
    assert "ILGNet-Inc.V1-BN, AVA1, delta 0: released (0.18 points)" in said
    assert line(recipes[:1]).endswith("not run (the finished runs have one recipe; plan `recipes` trains each).")
    assert findings.NOT_SAID in line(recipes, synthetic=True)
    assert findings.NOT_SAID in line([run("released", "ava2", 0.4), run("paper", "ava2", 0.45)])
