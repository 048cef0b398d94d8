"""The classifier graph: flat, preprocessing inside, weights sources, freezing."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from core.errors import ConfigError
from core.model.network import build_model, load_model, save_model, set_precision, set_trainable


@pytest.fixture(scope="module")
def model():
    return build_model(4, input_size=75, weights="none")


def test_graph_is_flat_from_image_to_softmax(model):
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    names = [layer.name for layer in model.layers]
    assert names[1] == "preprocess" and "mixed10" in names and names[-1] == "predictions"
    assert model.output_shape == (None, 4)
    out = model.predict(np.zeros((2, 75, 75, 3), np.float32), verbose=0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_preprocessing_layer_equals_inception_preprocess_input(model):
    images = np.random.default_rng(0).uniform(0, 255, (2, 75, 75, 3)).astype(np.float32)
    expected = keras.applications.inception_v3.preprocess_input(images.copy())
    np.testing.assert_allclose(model.get_layer("preprocess")(images), expected, atol=1e-6)


def trainable_names(model):
    return {layer.name for layer in model.layers if layer.trainable and layer.weights}


def test_head_phase_trains_only_the_head(model):
    set_trainable(model, "none")
    assert trainable_names(model) == {"predictions"}


def test_unfreeze_from_block_keeps_lower_blocks_and_batchnorm_frozen(model):
    set_trainable(model, "mixed9")
    layers = model.layers
    boundary = [layer.name for layer in layers].index("mixed8")
    assert not any(layer.trainable for layer in layers[: boundary + 1])
    above = layers[boundary + 1 :]
    assert any(isinstance(layer, keras.layers.Conv2D) and layer.trainable for layer in above)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) and layer.trainable for layer in layers)
    set_trainable(model, "mixed9", train_batchnorm=True)
    assert any(isinstance(layer, keras.layers.BatchNormalization) and layer.trainable for layer in above)


def test_unfreeze_mixed0_and_all(model):
    set_trainable(model, "mixed0")
    stem_conv = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)][0]
    assert not stem_conv.trainable
    set_trainable(model, "all")
    assert stem_conv.trainable


def test_local_weights_file_is_loaded(tmp_path):
    reference = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(75, 75, 3))
    path = tmp_path / "inception_v3_notop.weights.h5"
    reference.save_weights(path)
    model = build_model(3, input_size=75, weights=str(path))
    conv_weights = [
        w for layer in model.layers if isinstance(layer, keras.layers.Conv2D) for w in layer.get_weights()
    ]
    ref_weights = [
        w for layer in reference.layers if isinstance(layer, keras.layers.Conv2D) for w in layer.get_weights()
    ]
    assert len(conv_weights) == len(ref_weights)
    for ours, theirs in zip(conv_weights, ref_weights):
        np.testing.assert_array_equal(ours, theirs)


def test_weights_file_of_another_architecture_is_refused(tmp_path):
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    path = tmp_path / "other.weights.h5"
    other.save_weights(path)
    with pytest.raises(ConfigError, match="not an InceptionV3"):
        build_model(4, input_size=75, weights=str(path))


def test_imagenet_weights_go_through_keras_download_cache(tmp_path, monkeypatch):
    # This machine has no internet: Keras' own download path is tried and fails with
    # our hint (the real users' machines download once into $KERAS_HOME/models).
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="ImageNet weights") as info:
        build_model(4, input_size=75, weights="imagenet")
    assert "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5" in str(info.value)


def test_saved_model_reloads_in_safe_mode_with_identical_outputs(model, tmp_path):
    path = tmp_path / "m.keras"
    model.save(path)
    images = np.random.default_rng(1).uniform(0, 255, (3, 75, 75, 3)).astype(np.float32)
    np.testing.assert_allclose(
        load_model(path).predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6
    )


def test_mixed_bfloat16_computes_the_fine_tuned_blocks_and_saves_a_float32_model(tmp_path):
    model = build_model(4, input_size=75, weights="none")
    images = np.random.default_rng(2).uniform(0, 255, (3, 75, 75, 3)).astype(np.float32)
    float32 = np.asarray(model(images))
    set_precision(model, "mixed9", "mixed_bfloat16")
    names = [layer.name for layer in model.layers]
    boundary = names.index("mixed8")
    assert {layer.compute_dtype for layer in model.layers[: boundary + 1]} == {"float32"}
    assert {layer.compute_dtype for layer in model.layers[boundary + 1 : -1]} == {"bfloat16"}
    assert model.get_layer("predictions").compute_dtype == "float32"
    assert {w.dtype for w in model.weights} == {"float32"}  # only the arithmetic is rounded
    mixed = np.asarray(model(images))  # predict() would reuse its float32 trace
    assert mixed.dtype == np.float32 and not np.array_equal(mixed, float32)
    np.testing.assert_allclose(mixed, float32, atol=0.02)  # bfloat16 keeps ~3 digits

    path = tmp_path / "m.keras"
    save_model(model, path)
    loaded = load_model(path)
    assert {layer.compute_dtype for layer in loaded.layers} == {"float32"}
    np.testing.assert_allclose(loaded.predict(images, verbose=0), float32, atol=1e-6)
    assert model.get_layer("mixed10").compute_dtype == "bfloat16"  # saving left training's alone
