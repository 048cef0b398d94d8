"""bench/select_recipe.py: its choice says "no detectable difference" when candidates differ
within the noise, picks a clear winner, respects the cost budget; its score comes from a
real run's validation files and needs nothing about Testing."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import select_recipe as sr  # noqa: E402

N = 286  # the real dataset's grouped validation set


def result(name: str, accuracies: list[float], ratio: float = 3.0, seeds=(1, 2, 3)) -> sr.Result:
    r = sr.Result(sr.Candidate(name, []))
    for seed, accuracy in zip(seeds, accuracies):
        correct = round(accuracy * N)
        r.scores[seed] = sr.Score(N, correct, 9, 9, "last", 256, correct / N, [f"v{seed}"], "test")
        r.costs[seed] = sr.Cost(wall_s=600 * ratio, cpu_s=1000 * ratio)
    r.wall_ratio = r.cpu_ratio = ratio
    return r


def test_differences_within_the_noise_keep_the_first_candidate():
    reference = result("default", [0.955, 0.941, 0.962])
    other = result("ft3", [0.962, 0.937, 0.969])  # +2, -1, +2 images: higher mean, not detectably
    assert other.mean > reference.mean
    choice = sr.choose([reference, other])
    assert choice.chosen == "default"
    assert choice.reason.startswith("no detectable difference")
    comparison = sr.paired(other, reference)
    assert not comparison.above and not comparison.below
    mean, low, high = comparison.interval
    assert low < 0 < high and mean == pytest.approx((2 - 1 + 2) / 3 / N, abs=1e-9)


def test_a_consistent_gain_is_chosen():
    reference = result("default", [0.955, 0.941, 0.962])
    winner = result("ft3-views2", [0.976, 0.962, 0.983])  # +6 images on every seed
    level = result("ft3", [0.958, 0.937, 0.965])
    choice = sr.choose([reference, level, winner])
    assert choice.chosen == "ft3-views2"
    assert "beats default" in choice.reason
    assert sr.paired(winner, reference).above


def test_a_winner_over_budget_cannot_be_chosen():
    reference = result("default", [0.955, 0.941, 0.962], ratio=3.2)
    dear = result("views3", [0.990, 0.980, 0.990], ratio=4.1)
    assert sr.choose([reference, dear]).chosen == "default"
    assert sr.choose([reference, dear], budget=5).chosen == "views3"
    # CPU time is the other reading of the budget
    dear.wall_ratio = 3.0
    assert sr.choose([reference, dear], on="wall").chosen == "views3"
    assert sr.choose([reference, dear], on="cpu").chosen == "default"


def test_a_reference_over_budget_gives_way_to_the_cheapest_candidate_not_detectably_worse():
    reference = result("default", [0.960, 0.950, 0.965], ratio=4.4)
    ft3 = result("ft3", [0.958, 0.951, 0.962], ratio=3.3)
    ft4 = result("ft4", [0.962, 0.948, 0.966], ratio=3.45)
    poor = result("tiny", [0.90, 0.89, 0.91], ratio=1.5)  # cheapest, but clearly worse
    choice = sr.choose([reference, ft3, ft4, poor])
    assert choice.chosen == "ft3"
    assert choice.reason.startswith("no detectable difference: default is over budget")
    only = sr.choose([reference, poor])  # the only one within budget, at a measured price
    assert only.chosen == "tiny"
    assert only.reason.startswith(
        "a trade: default is over budget and every candidate within it is detectably worse"
    )
    assert sr.choose([reference]).chosen is None  # nothing within budget


def test_one_seed_gives_no_interval_and_no_change():
    reference = result("default", [0.94], seeds=(1,))
    other = result("ft3", [0.99], seeds=(1,))
    assert sr.paired(other, reference).interval is None
    assert sr.choose([reference, other]).chosen == "default"


def test_pairs_only_the_seeds_both_candidates_finished():
    reference = result("default", [0.95, 0.94, 0.96])
    other = result("ft3", [0.97, 0.96], seeds=(1, 3))
    assert list(sr.paired(other, reference).differences) == [1, 3]


def test_image_by_image_evidence_pools_the_images_both_runs_validated_on():
    reference, other = result("default", [0.9, 0.9]), result("views2", [0.9, 0.9])
    files = [f"Training/glioma/{i}.jpg" for i in range(40)]
    for seed in (1, 2):
        # The same accuracy, but on other images: 8 right only here, 8 only in the reference.
        reference.scores[seed].right = {f: i >= 8 for i, f in enumerate(files)}
        other.scores[seed].right = {f: not 8 <= i < 16 for i, f in enumerate(files[:-1])}  # one missing
    images = sr.paired(other, reference).images
    assert images["n"] == 2 * 39
    assert (images["only_a_right"], images["only_b_right"]) == (16, 16)
    assert images["verdict"] == "no detectable difference"
    for seed in (1, 2):  # right where the reference is wrong, and nowhere else
        other.scores[seed].right = {f: True for f in files}
    images = sr.paired(other, reference).images
    assert (images["only_a_right"], images["only_b_right"]) == (16, 0) and images["mcnemar_p"] < 0.05
    assert sr.paired(result("a", [0.9]), result("b", [0.9])).images is None  # no csv: no test


def test_folds_of_a_seed_score_together_and_train_with_their_fold(dataset, tmp_path, capsys):
    a = sr.Score(40, 36, 5, 5, "last", 128, 0.9, ["x", "y"], "csv", {"x": True, "y": False})
    b = sr.Score(60, 48, 5, 5, "last", 128, 0.8, ["z"], "csv", {"z": True})
    merged = sr.merge_folds([a, b])
    assert (merged.n, merged.correct, merged.accuracy) == (100, 84, 0.84)
    assert merged.history_accuracy == pytest.approx(0.84)
    assert merged.validation_files == ["x", "y", "z"] and merged.right == {"x": True, "y": False, "z": True}
    argv = ["--dry-run", "--data", str(dataset), "--models", str(tmp_path), "--weights", "none"]
    assert sr.main([*argv, "--seeds", "4", "--folds", "3", "--candidate", "a="]) == 0
    commands = [line for line in capsys.readouterr().out.splitlines() if " train " in line]
    assert [c.count("--val-fold") for c in commands] == [1, 1, 1]
    assert [f"--val-fold {f} --run-id a-s4-f{f}" in c for f, c in enumerate(commands)] == [True] * 3
    with pytest.raises(argparse.ArgumentTypeError):
        sr.parse_candidate("x=--val-fold 2")  # the bench sets the fold


def test_intervals():
    low, high = sr.wilson(50, 100)
    assert (low, high) == (pytest.approx(0.4038, abs=1e-4), pytest.approx(0.5962, abs=1e-4))
    assert sr.wilson(0, 10)[0] == 0.0 and sr.wilson(10, 10)[1] == 1.0
    mean, low, high = sr.t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and high - mean == pytest.approx(4.3027 / 3**0.5, abs=1e-3)
    assert sr.t_interval([1.0]) is None


def test_candidates_parse_and_refuse_the_options_the_bench_sets():
    c = sr.parse_candidate('crop=--preset quick --input-size 160 --augment-zoom "0.2"')
    assert (c.name, c.options) == (
        "crop",
        ["--preset", "quick", "--input-size", "160", "--augment-zoom", "0.2"],
    )
    assert sr.parse_candidate("base=").options == []
    for bad in ("base", "a b=--preset quick", "x=--seed 3", "x=--run-id=r"):
        with pytest.raises(argparse.ArgumentTypeError):
            sr.parse_candidate(bad)


def test_the_score_of_a_real_run_needs_nothing_about_testing(trained, tmp_path):
    models, run_id = trained
    run = tmp_path / run_id
    shutil.copytree(models / run_id, run)
    for name in ("metrics.json", "predictions.csv", "model.keras"):
        (run / name).unlink(missing_ok=True)
    calibration = json.loads((run / "calibration.json").read_text())
    (run / "calibration.json").write_text(json.dumps({"validation": calibration["validation"]}))

    score = sr.read_score(run)
    meta = json.loads((run / "meta.json").read_text())
    history = json.loads((run / "history.json").read_text())
    files = json.loads((run / "data.json").read_text())["files"]["validation"]
    assert score.kept_epoch == meta["kept_epoch"] == len(history)  # keep last, the default
    assert score.n == calibration["validation"]["n"] and 0 < score.n <= len(files)
    assert score.validation_files == sorted(files)
    at_kept = history[score.kept_epoch - 1]["val_accuracy"]
    assert abs(at_kept * score.n - score.correct) <= 1
    assert len(score.right) == score.n and sum(score.right.values()) == score.correct

    (run / "calibration.json").unlink()  # history.json alone gives the same figure
    fallback = sr.read_score(run)
    assert fallback.n == score.n and abs(fallback.correct - score.correct) <= 1

    a, b = sr.Result(sr.Candidate("a", [])), sr.Result(sr.Candidate("b", []))
    a.scores[1] = b.scores[1] = score
    assert sr.shared_validation([a, b]) == {1: True}
    b.scores[1] = sr.Score(**{**vars(score), "validation_files": score.validation_files[1:]})
    assert sr.shared_validation([a, b]) == {1: False}


def test_dry_run_prints_one_training_per_candidate_and_seed(dataset, tmp_path, capsys):
    argv = ["--dry-run", "--data", str(dataset), "--models", str(tmp_path), "--weights", "none"]
    argv += ["--seeds", "4", "5", "--candidate", "a=", "--candidate", "b=--finetune-epochs 2"]
    assert sr.main(argv) == 0
    out = capsys.readouterr().out
    commands = [line for line in out.splitlines() if line.startswith("$") and " train " in line]
    assert len(commands) == 4
    assert all("--weights none" in c and "--run-id" in c for c in commands)
    assert sum("--finetune-epochs 2 --seed 5 --run-id b-s5" in c for c in commands) == 1
    assert not any(tmp_path.iterdir())  # a dry run writes nothing


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_the_forward_pass_computes_in_the_precision_asked(dataset, precision):
    files = sr.dataset_files(dataset)
    measured = sr.measure_pass(dataset, 75, "none", 0, precision)
    assert measured["precision"] == precision
    assert measured["output_dtype"] == {"float32": "float32", "mixed_bfloat16": "bfloat16"}[precision]
    assert measured["images_total"] == measured["images_timed"] == len(files)
    assert measured["wall_s"] > 0 and measured["cpu_s"] > 0
