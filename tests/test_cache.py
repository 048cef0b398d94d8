"""The activation cache: same numbers as the uncached path, reuse, keys, and both modes."""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import replace

import keras
import numpy as np
import pytest
from conftest import TINY_TRAIN_ARGS, run_cli

from core.config import TrainConfig, input_size_for
from core.data.dataset import scan_dataset
from core.data.images import load_rgb
from core.data.pipeline import SkippedFiles
from core.errors import ConfigError, PipelineError, TrainingBusyError
from core.model.network import build_model, set_precision
from core.registry import Registry
from core.training.cache import ActivationCache, cache_key
from core.training.cache_usage import cache_folders, clear_cache
from core.training.distribute import machine_precision


@pytest.fixture(scope="module")
def setup(dataset, tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = build_model(4, 75, "none")
    # A weights file, as a user's runs have: the cache keys it by content, whatever the seed.
    weights = tmp_path_factory.mktemp("weights") / "backbone.weights.h5"
    model.save_weights(weights)
    config = TrainConfig(
        data_dir=str(dataset),
        weights=str(weights),
        input_size=75,
        unfreeze_from="mixed9",
        cache_views=2,
        precision="float32",  # compared with the float32 model below
    )
    samples = scan_dataset(dataset).testing[:6]
    cache = ActivationCache(tmp_path_factory.mktemp("cache"), config)
    digests = cache.build(model, samples, 2, SkippedFiles())
    return config, model, samples, cache, digests


def test_cached_activations_and_predictions_match_the_uncached_path(setup):
    config, model, samples, cache, digests = setup
    images = np.stack([load_rgb(s.path, 75, "pad") for s in samples]).astype(np.float32)
    direct = keras.Model(model.input, model.get_layer("mixed8").output).predict(images, verbose=0)
    cached = np.stack([np.load(cache.path(digests[s], 0)) for s in samples]).astype(np.float32)
    assert cached.shape == direct.shape
    np.testing.assert_allclose(cached, direct, rtol=1e-2, atol=1e-2)  # float16 storage
    upper = keras.Model(model.get_layer("mixed8").output, model.output)
    np.testing.assert_allclose(upper.predict(cached, verbose=0), model.predict(images, verbose=0), atol=1e-3)
    pooled, labels = cache.pooled(samples, digests, 1)
    direct_pooled = keras.Model(model.input, model.get_layer("avg_pool").output).predict(images, verbose=0)
    np.testing.assert_allclose(pooled, direct_pooled, rtol=1e-2, atol=1e-2)
    assert labels.tolist() == [s.label for s in samples]


def test_augmented_views_differ_from_the_plain_view(setup):
    _, _, samples, cache, digests = setup
    plain = np.load(cache.path(digests[samples[0]], 0))
    augmented = np.load(cache.path(digests[samples[0]], 1))
    assert plain.shape == augmented.shape and not np.allclose(plain, augmented)


def stamps(cache: ActivationCache) -> dict:
    return {p: p.stat().st_mtime_ns for p in cache.files()}


def test_second_build_reuses_every_file(setup):
    config, model, samples, cache, digests = setup
    before = stamps(cache)
    assert len(before) == 6 * 2 * 2  # samples x views x (boundary, pooled)
    again = ActivationCache(cache.folder.parent, replace(config, finetune_lr=1e-5, head_lr=0.1))
    assert (again.plain_folder, again.folder) == (cache.plain_folder, cache.folder)
    assert again.build(model, samples, 2, SkippedFiles()) == digests
    assert stamps(cache) == before


def test_another_seed_shares_the_plain_view_and_augments_its_own(setup):
    config, model, samples, cache, digests = setup
    before = stamps(cache)
    other = ActivationCache(cache.folder.parent, replace(config, seed=1))
    assert other.plain_folder == cache.plain_folder and other.folder != cache.folder
    other.build(model, samples, 1, SkippedFiles())
    assert stamps(cache) == before and not other.folder.exists()  # nothing computed
    other.build(model, samples, 2, SkippedFiles())
    assert stamps(cache) == before
    assert sorted(p.name for p in other.folder.glob("*.npy")) == sorted(
        p.name for p in cache.folder.glob("*.npy")
    )
    mine, theirs = (np.load(c.path(digests[samples[0]], 1)) for c in (other, cache))
    assert not np.allclose(mine, theirs)  # another seed, other augmented views


def test_a_cache_with_the_older_layout_is_kept(setup, tmp_path):
    """Caches written before the plain view had a folder of its own held it beside the
    augmented views: a new cache object moves those files instead of recomputing them."""
    config, model, samples, cache, digests = setup
    old = tmp_path / "cache"
    shutil.copytree(cache.folder.parent, old)
    moved = ActivationCache(old, config)
    for path in moved.plain_folder.glob("*.npy"):
        path.rename(moved.folder / path.name)
    before = {p.name: p.stat().st_mtime_ns for p in moved.folder.glob("*.npy")}
    adopted = ActivationCache(old, config)
    assert adopted.build(model, samples, 2, SkippedFiles()) == digests
    assert adopted.derived == {}
    assert {p.name: p.stat().st_mtime_ns for p in adopted.files()} == before
    assert all("_v0_" in p.name for p in adopted.plain_folder.glob("*.npy"))


def test_cache_key_follows_what_the_activations_depend_on(setup):
    config = setup[0]
    same = [
        replace(config, finetune_lr=1e-5),
        replace(config, unfreeze_from="mixed10", cache_boundary="mixed8"),
        replace(config, batch_size=3, head_epochs=9),
    ]
    assert {cache_key(c) for c in same} == {cache_key(config)}
    different = [
        replace(config, input_size=80),
        replace(config, seed=1),
        replace(config, unfreeze_from="mixed8"),
        replace(config, augment=replace(config.augment, zoom=0.3)),
        replace(config, precision="mixed_bfloat16"),
        replace(config, framing="pad" if config.framing == "head" else "head"),
        replace(config, augment=replace(config.augment, gamma=0.3)),
    ]
    assert len({cache_key(c) for c in different} | {cache_key(config)}) == 8
    auto = replace(config, precision="auto")  # keyed by what it stands for on this machine
    assert cache_key(auto) == cache_key(replace(config, precision=machine_precision()))
    unsized = replace(config, input_size=None)  # keyed by the size it stands for
    assert cache_key(unsized) == cache_key(replace(config, input_size=input_size_for("float32")))
    # The plain view is the image as it is: neither the augmentation nor its seed matters.
    size, seed, cut, augment, _, framing, _ = different
    plain = {cache_key(c, plain=True) for c in (config, *same, seed, augment)}
    assert plain == {cache_key(config, plain=True)} != {cache_key(config)}
    assert len({cache_key(c, plain=True) for c in (config, size, cut, framing)}) == 4
    random_init = replace(config, weights="none")  # another seed, other random weights
    assert cache_key(random_init, plain=True) != cache_key(replace(random_init, seed=1), plain=True)


def test_invalid_cache_settings_are_refused(dataset):
    with pytest.raises(ConfigError, match="stem frozen"):
        TrainConfig(data_dir=str(dataset), unfreeze_from="all").validate()
    with pytest.raises(ConfigError, match="below unfreeze_from"):
        TrainConfig(data_dir=str(dataset), unfreeze_from="mixed8", cache_boundary="mixed9").validate()
    TrainConfig(data_dir=str(dataset), unfreeze_from="all", mode="end_to_end").validate()


def test_end_to_end_mode_trains_the_same_kind_of_run(dataset, tmp_path):
    result = run_cli(
        "train", str(dataset), *TINY_TRAIN_ARGS, "--mode", "end_to_end", "--run-id", "e2e", models=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    meta = json.loads((tmp_path / "e2e" / "meta.json").read_text())
    assert meta["feed"] == {"mode": "end_to_end"}
    assert json.loads((tmp_path / "e2e" / "config.json").read_text())["mode"] == "end_to_end"
    assert (tmp_path / "e2e" / "model.keras").is_file()


def test_cached_run_records_its_cache_and_reuses_it(trained, dataset, tmp_path):
    shared_models, run_id = trained
    models = tmp_path / "models"
    shutil.copytree(shared_models, models)  # the cache folder comes along
    meta = json.loads((models / run_id / "meta.json").read_text())
    assert meta["feed"]["mode"] == "cached" and meta["feed"]["boundary"] == "mixed8"
    result = run_cli(
        "train",
        str(dataset),
        *TINY_TRAIN_ARGS,
        "--finetune-lr",
        "0.001",
        "--unfreeze-from",
        "mixed10",
        "--cache-boundary",
        "mixed8",
        "--run-id",
        "again",
        models=models,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    again = json.loads((models / "again" / "meta.json").read_text())
    assert again["feed"]["cache_key"] == meta["feed"]["cache_key"]
    assert again["feed"]["cache_reused"] is True


def test_a_higher_cut_is_derived_from_a_lower_cache(setup, tmp_path):
    config, model, samples, cache, digests = setup  # cut at mixed8, two views
    higher = replace(config, unfreeze_from="mixed10")  # cut at mixed9, same backbone and views
    derived = ActivationCache(cache.folder.parent, higher)
    assert derived.build(model, samples, 2, SkippedFiles()) == digests
    assert derived.derived == {"mixed8": 2 * len(samples)}  # no image was decoded again
    # The same numbers as from the images, up to the float16 rounding of mixed8.
    direct = ActivationCache(tmp_path, higher)
    direct.build(model, samples, 2, SkippedFiles())
    assert direct.derived == {}
    for sample in samples:
        for view in range(2):
            a, b = (np.load(c.path(digests[sample], view)).astype(np.float32) for c in (derived, direct))
            np.testing.assert_allclose(a, b, rtol=2e-2, atol=2e-2)
            pooled = [np.load(c.path(digests[sample], view, "pooled")) for c in (derived, direct, cache)]
            assert np.array_equal(pooled[0], pooled[2])
            np.testing.assert_allclose(pooled[0], pooled[1], rtol=1e-2, atol=1e-2)


def test_cached_run_calibrates_on_cached_validation_activations(trained, dataset):
    """Calibration of a cached run uses the validation images' cached activations; the
    temperature and figures match a calibration from the images themselves."""
    from core.evaluation.evaluate import calibrate, predict_samples, validation_predictions
    from core.model.network import load_model
    from core.registry import Registry

    models, run_id = trained
    run = Registry(models).get(run_id)
    saved = run.read("calibration.json")
    index = scan_dataset(dataset)
    model = load_model(run.model_path)
    test = predict_samples(model, index, index.testing, 75, framing="pad")
    from_images = calibrate(validation_predictions(run, index, model), test)
    assert saved["validation_from"] == "cached activations" and from_images["validation_from"] == "images"
    assert saved["validation"]["n"] == from_images["validation"]["n"] > 0
    assert saved["temperature"] == pytest.approx(from_images["temperature"], rel=2e-2)
    for key in ("ece_before", "nll_before", "nll_after"):
        assert saved["validation"][key] == pytest.approx(from_images["validation"][key], abs=5e-3)
    # The predictions calibration used are saved, one row per readable validation image.
    rows = list(csv.DictReader(io.StringIO(run.file("predictions-validation.csv").read_text())))
    files = {r["file"] for r in rows}
    assert len(files) == len(rows) == saved["validation"]["n"]
    assert files < set(run.read("data.json")["files"]["validation"])  # the corrupt one left out
    errors = sum(r["correct"] == "0" for r in rows)
    assert errors == saved["validation"]["errors"]


def test_the_cache_computes_in_the_runs_precision_and_keys_it(setup, tmp_path):
    """A mixed bfloat16 run's cache is computed in bfloat16, under a key of its own and
    close to float32's; a float32 run's is float32's whatever the model's layers were set to."""
    config, model, samples, cache, digests = setup
    mixed = build_model(4, 75, "none")
    mixed.load_weights(config.weights)
    set_precision(mixed, "mixed6", "mixed_bfloat16")  # the pooled features pass through these
    again = ActivationCache(tmp_path, config)
    np.testing.assert_array_equal(
        again.pooled(samples, again.build(mixed, samples, 1, SkippedFiles()), 1)[0],
        cache.pooled(samples, digests, 1)[0],
    )
    low = ActivationCache(tmp_path, replace(config, precision="mixed_bfloat16"))
    assert low.plain_folder != again.plain_folder
    low_digests = low.build(model, samples, 1, SkippedFiles())
    assert json.loads((low.plain_folder / "spec.json").read_text())["precision"] == "mixed_bfloat16"
    for kind in ("boundary", "pooled"):
        a, b = (
            np.stack([np.load(c.path(d[s], 0, kind)) for s in samples])
            for c, d in ((low, low_digests), (cache, digests))
        )
        assert not np.array_equal(a, b)
        np.testing.assert_allclose(a, b, rtol=5e-2, atol=5e-2 * float(np.abs(b).max()))
    # Each model keeps its own precision.
    assert mixed.get_layer("mixed10").compute_dtype == "bfloat16"
    assert model.get_layer("mixed10").compute_dtype == "float32"


def test_the_cache_folders_are_listed_and_cleared_under_the_training_lock(setup, tmp_path):
    config, _, _, cache, _ = setup  # cut at mixed8: a plain-view folder and an augmented one
    registry = Registry(tmp_path / "models")
    for folder in (cache.plain_folder, cache.folder):
        shutil.copytree(folder, registry.cache_dir / folder.name)
    (registry.cache_dir / "audit").mkdir()
    (registry.cache_dir / "audit" / "dataset.json").write_text("{}")  # not an activation cache
    folders = {f.key: f for f in cache_folders(registry.cache_dir)}
    plain, augmented = folders[cache.plain_folder.name], folders[cache.folder.name]
    assert set(folders) == {plain.key, augmented.key}
    assert (plain.views, plain.seed, augmented.views, augmented.seed) == ("plain", None, "augmented", 42)
    for f, source in ((plain, cache.plain_folder), (augmented, cache.folder)):
        assert (f.boundary, f.input_size, f.precision) == ("mixed8", 75, "float32")
        assert f.files == len(list(source.glob("*.npy"))) > 0
        assert f.bytes == sum(p.stat().st_size for p in source.iterdir())
    # A training holds the lock (another open file, as another process would): nothing goes.
    with registry.training_lock("a-run"), pytest.raises(TrainingBusyError, match="a-run"):
        clear_cache(registry)
    with pytest.raises(PipelineError, match="no cache folder 0123"):
        clear_cache(registry, [plain.key, "0123"])
    assert len(cache_folders(registry.cache_dir)) == 2
    assert [f.key for f in clear_cache(registry, [plain.key])] == [plain.key]
    assert [f.key for f in cache_folders(registry.cache_dir)] == [augmented.key]
    assert [f.key for f in clear_cache(registry)] == [augmented.key]
    assert cache_folders(registry.cache_dir) == []
    assert (registry.cache_dir / "audit" / "dataset.json").is_file()
    assert registry.lock_holder() is None
