"""The classifier: InceptionV3 + global average pooling + dropout + dense softmax.

Built as one flat functional graph from the raw RGB image to the softmax, because
tf-keras-vis can only follow a flat graph. Preprocessing (inception_v3.preprocess_input,
x / 127.5 - 1) is the graph's first layer, so training, evaluation and inference cannot
disagree about it, and a saved model needs no code beside it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import keras

from core.config import BLOCKS
from core.errors import ConfigError, PipelineError

LAST_CONV = "mixed10"  # the backbone's last block: Grad-CAM's target layer
IMAGENET_HINT = (
    "could not fetch the ImageNet weights (no internet?). Download "
    "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5 into ~/.keras/models/ "
    "($KERAS_HOME/models/ if set) "
    "or pass a local weights file"
)


def preprocessing_layer() -> keras.layers.Layer:
    # Same arithmetic as keras.applications.inception_v3.preprocess_input ("tf" mode),
    # as a built-in layer so that safe-mode loading needs no Lambda.
    return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")


def _pretrained_weights(weights: str, input_size: int) -> list:
    """Weights of a stand-alone InceptionV3 loaded from Keras' cache or a local file."""
    source = "imagenet" if weights == "imagenet" else str(Path(weights))
    try:
        with warnings.catch_warnings():
            # Keras only warns when a file matches part of the model; we refuse it.
            warnings.filterwarnings("error", message=".*(Skipping|mismatch|not found).*")
            reference = keras.applications.InceptionV3(
                include_top=False, weights=source, input_shape=(input_size, input_size, 3)
            )
    except Exception as exc:
        if weights == "imagenet":
            raise ConfigError(f"{IMAGENET_HINT} ({type(exc).__name__}: {exc})") from None
        raise ConfigError(
            f"{weights} is not an InceptionV3 (include_top=False) weights file: {exc}"
        ) from None
    return reference.get_weights()


def build_model(
    num_classes: int, input_size: int = 299, weights: str = "imagenet", dropout: float = 0.2
) -> keras.Model:
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = preprocessing_layer()(inputs)
    base = keras.applications.InceptionV3(include_top=False, weights=None, input_tensor=x)
    if weights != "none":
        # Loaded into a twin and copied, because the pretrained file does not know
        # about the preprocessing layer in front of our backbone.
        base.set_weights(_pretrained_weights(weights, input_size))
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(base.output)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="inception_v3_classifier")


HEAD_LAYERS = ("avg_pool", "head_dropout", "predictions")


def _first_trainable_index(model: keras.Model, unfreeze_from: str) -> int:
    names = [layer.name for layer in model.layers]
    if unfreeze_from == "all":
        return names.index("preprocess") + 1
    if unfreeze_from == "none":
        return names.index("avg_pool")
    block = BLOCKS.index(unfreeze_from)
    if block > 0:
        return names.index(BLOCKS[block - 1]) + 1
    # mixed0 starts right after the stem's last max pooling.
    pools = [
        i
        for i, layer in enumerate(model.layers[: names.index("mixed0")])
        if isinstance(layer, keras.layers.MaxPooling2D)
    ]
    return pools[-1] + 1


def set_trainable(model: keras.Model, unfreeze_from: str, train_batchnorm: bool = False) -> int:
    """Freeze the backbone below `unfreeze_from` ("none": head only). Returns #trainable layers.

    A frozen BatchNormalization layer runs in inference mode in Keras 3. With
    `train_batchnorm`, those of the unfrozen blocks train (and update their statistics
    on these images): on this dataset with the stand-in weights, whose upper blocks were
    trained on other images, that gained about a point (docs/benchmarks.md).
    """
    start = _first_trainable_index(model, unfreeze_from)
    count = 0
    for index, layer in enumerate(model.layers):
        trainable = index >= start
        if isinstance(layer, keras.layers.BatchNormalization) and not train_batchnorm:
            trainable = False
        layer.trainable = trainable
        count += trainable and bool(layer.weights)
    return count


def set_precision(model: keras.Model, unfreeze_from: str, precision: str) -> None:
    """Compute the layers from `unfreeze_from` up in `precision` ("float32" or
    "mixed_bfloat16"); the weights stay float32, and so does the softmax, whose
    probabilities need the range. Layers below keep float32 (the activation cache sets
    its own precision, core.training.cache). Functions Keras traced before
    keep their precision until the model is compiled again, as training does at each
    phase."""
    _set_policy(model.layers[_first_trainable_index(model, unfreeze_from) :], precision)


def _set_policy(layers: list[keras.layers.Layer], precision: str) -> None:
    for layer in layers:
        if layer.name != "predictions":  # the softmax stays float32: probabilities need the range
            layer.dtype_policy = precision


@contextmanager
def computing_in(model: keras.Model, precision: str) -> Iterator[None]:
    """Every layer but the softmax computes in `precision` inside the block, in what it
    traces there; each layer's own policy comes back afterwards."""
    policies = {layer.name: layer.dtype_policy for layer in model.layers}
    try:
        _set_policy(model.layers, precision)
        yield
    finally:
        for layer in model.layers:
            layer.dtype_policy = policies[layer.name]


def load_model(path: Path) -> keras.Model:
    """Load a saved classifier with Keras' safe mode (no code deserialisation)."""
    return keras.models.load_model(path, compile=False, safe_mode=True)


def save_model(model: keras.Model, path: Path) -> None:
    """Write the model beside `path`, then rename: a crash or a full disk mid-write
    leaves the previous file whole. The file computes in float32 whatever precision the
    model trains in, so inference and Grad-CAM are the same for every run."""
    from core.io import atomic_path

    try:
        with atomic_path(path, suffix=".keras") as tmp, computing_in(model, "float32"):
            model.save(tmp)
    except OSError as exc:
        raise PipelineError(
            f"cannot save the model to {path.parent}: {exc.strerror or exc} "
            "(free some disk space; the previous checkpoint, if any, is kept)"
        ) from None


# --- ensembles: several classifiers averaged, saved as one model ----------------------
MEMBER = "member_{}"
WEIGHT = "weight_{}"


def build_ensemble(models: list[keras.Model], weights: list[float]) -> keras.Model:
    """One model whose output is the weighted mean of the members' softmax outputs.

    Each member stays a whole sub-model (so Grad-CAM can run on it alone) and each weight
    is a built-in Rescaling layer, so the ensemble saves and loads in safe mode."""
    inputs = keras.Input(models[0].input_shape[1:], name="image")
    scaled = []
    for i, (model, weight) in enumerate(zip(models, weights)):
        member = keras.Model(model.input, model.output, name=MEMBER.format(i))
        scaled.append(keras.layers.Rescaling(float(weight), name=WEIGHT.format(i))(member(inputs)))
    mean = keras.layers.Add(name="ensemble_mean")(scaled)
    return keras.Model(inputs, mean, name="ensemble")


def ensemble_members(model: keras.Model) -> list[tuple[str, keras.Model, float]]:
    """(name, sub-model, weight) of an ensemble built by build_ensemble; [] otherwise."""
    members = []
    for i in range(len(model.layers)):
        try:
            member = model.get_layer(MEMBER.format(i))
            weight = float(model.get_layer(WEIGHT.format(i)).scale)
        except ValueError:
            break
        members.append((member.name, member, weight))
    return members
