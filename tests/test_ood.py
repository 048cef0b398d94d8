"""The out-of-distribution check: the estimator, its files, the tiny run's scores, the CLI."""

from __future__ import annotations

import html
import json
import shutil

import numpy as np
import pytest
from datagen import slice_image
from PIL import Image

from core.cli import main
from core.explanation.explain import Explainer
from core.model.ood import (
    ARRAYS_FILE,
    INFO_FILE,
    WARNING,
    MahalanobisScore,
    describe_check,
    energy_score,
    fit_check,
    load_check,
    save_check,
)
from core.registry import Registry, Run
from core.serving import batch
from core.serving.inference import Classifier
from core.serving.scan_report import scan_report_html
from core.training.ood_fit import stratified_subsample


def gaussian_classes(
    rng: np.random.Generator, n: int, axes: tuple[int, ...] = (0, 1, 2), scaled: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """One class per axis in `axes` of 16, its mean 6 along that axis, all with one
    shared, correlated covariance; with `scaled`, each point times a factor in (0.5, 2),
    as the norms of real pooled features vary."""
    means = 6.0 * np.eye(16)[list(axes)]
    mixing = np.random.default_rng(99).normal(size=(16, 16)) / 4.0  # the same for every call
    labels = rng.integers(0, len(axes), n)
    points = means[labels] + rng.normal(size=(n, 16)) @ mixing
    return points * (rng.uniform(0.5, 2.0, (n, 1)) if scaled else 1.0), labels


@pytest.mark.parametrize("normalize", [False, True])
def test_mahalanobis_score_is_the_distance_to_the_nearest_class_mean(normalize):
    from sklearn.covariance import LedoitWolf

    rng = np.random.default_rng(0)
    x, y = gaussian_classes(rng, 600, scaled=True)
    scorer = MahalanobisScore(normalize).fit(x, y)
    assert scorer.means_.shape == (3, 16) and scorer.n_samples_ == 600 and 0 <= scorer.shrinkage_ <= 1
    # The same figure written out: min over classes of (x - m)' P (x - m).
    unit = (lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)) if normalize else (lambda v: v)
    means = np.stack([unit(x)[y == c].mean(axis=0) for c in range(3)])
    precision = LedoitWolf(assume_centered=True).fit(unit(x) - means[y]).precision_
    queries = rng.normal(size=(5, 16)) * 4
    expected = [min((q - m) @ precision @ (q - m) for m in means) for q in unit(queries)]
    assert np.allclose(scorer.score(queries), expected, rtol=1e-4)
    # Unit length: a scan's score does not depend on its features' scale.
    assert np.allclose(scorer.score(3 * queries), scorer.score(queries)) == normalize


@pytest.mark.parametrize("normalize", [False, True])
def test_far_points_score_higher_and_the_threshold_passes_95_percent_of_validation(normalize):
    rng = np.random.default_rng(1)
    x, y = gaussian_classes(rng, 800)
    validation, _ = gaussian_classes(rng, 400)
    check = fit_check(x, y, validation, normalize=normalize)
    near, _ = gaussian_classes(rng, 200)
    far, _ = gaussian_classes(rng, 200, axes=(8, 9))  # the same spread, other directions
    near_scores, far_scores = check.score(near), check.score(far)
    assert far_scores.mean() > 5 * near_scores.mean()
    assert check.unusual(far_scores).mean() > 0.95
    assert 0.9 < 1 - check.unusual(near_scores).mean() <= 1.0
    passed = (check.score(validation) <= check.threshold).mean()
    assert passed == pytest.approx(0.95, abs=1 / len(validation))
    assert check.info["validation_images"] == 400 and check.info["train_images"] == 800
    assert check.info["normalize"] == normalize


def test_unit_length_copes_with_varying_feature_norms_where_raw_features_do_not():
    def flagged_far(normalize: bool) -> float:
        rng = np.random.default_rng(1)
        x, y = gaussian_classes(rng, 800, scaled=True)
        check = fit_check(x, y, gaussian_classes(rng, 400, scaled=True)[0], normalize=normalize)
        return check.unusual(check.score(gaussian_classes(rng, 200, (8, 9), scaled=True)[0])).mean()

    assert flagged_far(True) > 0.95 and flagged_far(False) < 0.9


def test_energy_score_is_minus_logsumexp_of_the_logits():
    features = np.array([[1.0, 0.0], [0.0, 0.0]])
    kernel, bias = np.array([[2.0, 0.0], [0.0, 1.0]]), np.zeros(2)
    expected = [-np.log(np.exp(2.0) + 1.0), -np.log(2.0)]
    assert np.allclose(energy_score(features, kernel, bias), expected)


def test_a_saved_check_reads_back_with_the_same_scores(tmp_path):
    rng = np.random.default_rng(2)
    x, y = gaussian_classes(rng, 300)
    check = fit_check(x, y, gaussian_classes(rng, 60)[0], source="test")
    run = Run(tmp_path)
    save_check(run, check)
    loaded = load_check(run)
    queries = rng.normal(size=(20, 16)) * 3
    assert loaded is not None and loaded.threshold == check.threshold
    assert np.array_equal(loaded.score(queries), check.score(queries))
    info = json.loads((tmp_path / INFO_FILE).read_text())
    assert info["source"] == "test" and info["method"] == "mahalanobis" and "95th percentile" in info["rule"]
    # A threshold never pairs with another fit's arrays, and a missing file means no check.
    other = fit_check(x[:100], y[:100], x[100:140])
    np.savez(tmp_path / ARRAYS_FILE, **other.scorer.arrays())
    assert load_check(run) is None
    (tmp_path / ARRAYS_FILE).unlink()
    assert load_check(run) is None


def test_stratified_subsample_keeps_each_class_share():
    from core.data.dataset import Sample

    samples = [Sample(f"{i}.jpg", 0 if i < 300 else 1) for i in range(400)]
    kept = stratified_subsample(samples, 100, seed=3)
    assert len(kept) == 100 and sum(s.label == 0 for s in kept) == 75
    assert kept == stratified_subsample(samples, 100, seed=3) != stratified_subsample(samples, 100, seed=4)
    assert stratified_subsample(samples[:50], 100, seed=3) == samples[:50]


# --- the tiny run trained through the command line --------------------------------------
def out_of_distribution_images(size: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:size, 0:size] / size
    checker = ((np.floor(x * 8) + np.floor(y * 8)) % 2 * 255).astype(np.uint8)
    gradient = np.stack([x, y, 1 - x], axis=-1) * 255
    one_pixel = np.asarray(Image.new("RGB", (1, 1), (200, 30, 30)).resize((size, size)))
    return {
        "noise": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "checkerboard": np.repeat(checker[..., None], 3, axis=-1),
        "colour gradient": gradient.astype(np.uint8),
        "1x1": one_pixel,
    }


def mri_like(n: int, size: int, seed: int = 11) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack(
        [np.asarray(slice_image(i % 4, rng, size=size).convert("RGB").resize((size, size))) for i in range(n)]
    )


@pytest.fixture(scope="module")
def tiny(trained) -> Classifier:
    models, run_id = trained
    return Classifier(Registry(models).get(run_id))


def test_training_fits_the_check_on_the_runs_own_images(tiny):
    info = tiny.run.read(INFO_FILE)
    data = tiny.run.read("data.json")
    assert info["train_of"] == len(data["files"]["train"]) and info["train_images"] <= info["train_of"]
    readable = [f for f in data["files"]["validation"] if "corrupt" not in f]  # datagen's broken file
    assert info["validation_images"] == len(readable)
    assert info["features"] == 2048 and info["quantile"] == 0.95
    assert tiny.ood is not None and tiny.ood.threshold == info["threshold"]
    assert tiny.run.read("meta.json")["timings"]["ood_s"] > 0
    sentence = describe_check(tiny.run)
    assert f"fitted on {info['train_images']} training images" in sentence and "95th percentile" in sentence
    assert "check unavailable" in describe_check(Run(tiny.run.path.parent / "no-such-run"))
    from app_pages.report import report_html
    from core.evaluation.interpret import Interpretation

    interp = Interpretation.from_rows(tiny.run.predictions(), tiny.classes)
    assert html.escape(sentence) in report_html(tiny.run, interp)  # the run's one-page report


def test_unlike_images_score_higher_than_generated_slices(tiny):
    size = tiny.input_size
    odd = out_of_distribution_images(size)
    slices = tiny.outputs(mri_like(12, size))
    others = tiny.outputs(np.stack(list(odd.values())))
    assert slices.ood_scores.shape == (12,) and others.ood_scores.shape == (len(odd),)
    assert others.ood_scores.mean() > slices.ood_scores.mean()
    for name in ("noise", "1x1"):
        assert others.ood_scores[list(odd).index(name)] > np.median(slices.ood_scores), name
    # The flag is exactly the comparison with the run's threshold.
    for out in (slices, others):
        assert np.array_equal(out.unusual, out.ood_scores > tiny.ood.threshold)
    # The features come from the same pass as the probabilities.
    assert np.allclose(tiny.ood.score(others.features), others.ood_scores)
    assert np.allclose(others.probabilities, tiny.probabilities(np.stack(list(odd.values()))), atol=1e-6)


def test_tta_averages_the_score_over_the_views(tiny):
    from core.model.tta import views

    image = mri_like(1, tiny.input_size)[0]
    chosen = views(["original", "flip"])
    both = tiny.outputs(np.stack([image, image[:, ::-1]]))
    with_tta = tiny.outputs(image, tta=chosen)
    assert with_tta.ood_scores[0] == pytest.approx(both.ood_scores.mean(), rel=1e-5)
    assert with_tta.unusual[0] == (with_tta.ood_scores[0] > tiny.ood.threshold)


def test_gradcam_from_the_prediction_pass_is_the_same_map(tiny):
    image = mri_like(1, tiny.input_size)[0]
    out = tiny.outputs(image, activations=True)
    assert out.activations.shape[0] == 1 and out.activations.shape[-1] == 2048
    cam = Explainer(tiny.model)
    label = int(out.probabilities[0].argmax())
    assert np.allclose(cam.heatmap(image, label, activations=out.activations[0]), cam.heatmap(image, label))


def test_batch_rows_and_the_scan_report_carry_the_verdict(tiny):
    size = tiny.input_size
    sources = [
        ("noise.png", _png(out_of_distribution_images(size)["noise"])),
        ("slice.png", _png(mri_like(1, size)[0])),
    ]
    results = batch.classify(tiny, sources)
    rows = batch.table(results, tiny.classes, flag_below=0.0)
    for result, row in zip(results, rows):
        assert row["ood_score"] == pytest.approx(result.ood_score, abs=0.01)
        assert row["unusual"] == result.unusual == (result.ood_score > tiny.ood.threshold)
        assert row["flagged"] == result.unusual
    probs = results[0].probabilities
    image = mri_like(1, size)[0]
    high = scan_report_html("x", image, None, probs, tiny.run, ood_score=1e9, ood_threshold=1.0)
    low = scan_report_html("x", image, None, probs, tiny.run, ood_score=0.5, ood_threshold=1.0)
    none = scan_report_html("x", image, None, probs, tiny.run)
    assert WARNING in high and "class='warn'>This" in high and "<h2>Prediction:" not in high
    assert WARNING not in low and "<h2>Prediction:" in low and "Within the training distribution" in low
    assert WARNING not in none and "check unavailable for this run" in none


def _png(image: np.ndarray) -> bytes:
    import io

    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def test_predict_json_carries_the_score_and_without_the_files_says_unavailable(trained, tmp_path, capsys):
    models, run_id = trained
    registry = tmp_path / "models"
    shutil.copytree(models / run_id, registry / run_id)
    noise = tmp_path / "noise.png"
    noise.write_bytes(_png(out_of_distribution_images(90)["noise"]))

    def predict() -> tuple[list[dict], str]:
        assert main(["--models", str(registry), "predict", run_id, str(noise), "--json"]) == 0
        captured = capsys.readouterr()
        return json.loads(captured.out), captured.err

    (answer,), _ = predict()
    fitted = json.loads((registry / run_id / INFO_FILE).read_text())
    threshold = fitted["threshold"]
    assert fitted["source"] == "cached activations"
    assert answer["ood_score"] > 0 and answer["unusual"] == (answer["ood_score"] > threshold)
    assert "ood_note" not in answer
    for name in (ARRAYS_FILE, INFO_FILE):
        (registry / run_id / name).unlink()
    (bare,), err = predict()
    assert bare["label"] == answer["label"] and bare["ood_score"] is None and bare["unusual"] is None
    note = f"out-of-distribution check unavailable for this run: python -m core evaluate {run_id} fits it"
    assert bare["ood_note"] == note and note in err
    # evaluate fits it again, from the run's own images, to the same threshold.
    assert main(["--models", str(registry), "evaluate", run_id]) == 0
    assert "Out-of-distribution check" in capsys.readouterr().out
    refitted = json.loads((registry / run_id / INFO_FILE).read_text())
    assert refitted["source"] == "images" and refitted["threshold"] == pytest.approx(threshold, rel=0.02)
    (again,), _ = predict()
    # Training fitted from float16 cached activations (bfloat16 arithmetic on a machine
    # that resolves to it), the refit from the images: the noise image lies so far out
    # that its distance magnifies that rounding to a few percent; the verdict must hold.
    assert again["unusual"] == answer["unusual"]
    assert again["ood_score"] == pytest.approx(answer["ood_score"], rel=0.1)


def test_an_ensemble_scores_with_its_first_members_check(trained, tmp_path):
    from core.training.ensemble import create_ensemble

    models, run_id = trained
    registry = Registry(tmp_path / "models")
    shutil.copytree(models / run_id, registry.root / run_id)
    shutil.copytree(models / run_id, registry.root / "twin")
    (registry.root / "twin" / INFO_FILE).unlink()  # only the first member's check counts
    create_ensemble(registry, [run_id, "twin"], run_id="ens")
    ensemble, member = Classifier(registry.get("ens")), Classifier(registry.get(run_id))
    assert ensemble.ood is not None and run_id in ensemble.ood_note
    noise = out_of_distribution_images(member.input_size)["noise"][None]
    images = np.concatenate([mri_like(3, member.input_size), noise])
    assert np.allclose(ensemble.outputs(images).ood_scores, member.outputs(images).ood_scores, rtol=1e-5)
    assert np.allclose(ensemble.probabilities(images), member.probabilities(images), atol=1e-5)
    (registry.root / run_id / INFO_FILE).unlink()
    without = Classifier(registry.get("ens"))
    assert without.ood is None and f"python -m core evaluate {run_id} fits it" in without.ood_note
    assert without.outputs(images).ood_scores is None
