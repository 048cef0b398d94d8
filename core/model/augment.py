"""Training-time augmentation as Keras preprocessing layers.

Two kinds of change. Geometric and photometric ones (flip, rotation, zoom, contrast,
brightness) vary the pose and exposure of a slice. Scanner ones (resolution, gamma, bias
field, blur, Rician noise, JPEG re-encoding) vary what differs between MR machines,
sequences and the collections the dataset merges, so that a model leans less on how a
source's images look (docs/benchmarks.md, "Scanner augmentation", measures them). Every
scanner change acts on all three channels alike, so a grayscale slice stays grayscale.

Keras only (no TensorFlow import), with static shapes, so the same augmentation runs on
any Keras backend: bench/gpu_bench.py uses it on a GPU machine whose Python has JAX but
no TensorFlow.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from core.config import AugmentConfig

SCANNER_CHANGES = ("resolution", "blur", "bias_field", "gamma", "noise", "jpeg")  # AugmentConfig fields
RESOLUTION_STEPS = 4  # sizes between the smallest and the full side, geometrically spaced
JPEG_HIGHEST_QUALITY = 95.0  # RandomJpeg draws each image's quality up to this
# The luminance quantisation table of the JPEG standard (ITU-T T.81, Annex K), which
# libjpeg, and so PIL, scales by the quality setting.
JPEG_LUMINANCE_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)


class _PerImage(keras.layers.Layer):
    """A random change drawn independently for every image of a batch (b, h, w, c) in
    [0, 255]; the identity outside training."""

    def __init__(self, seed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def uniform(self, images, shape: tuple, low: float, high: float):
        """Uniform draws of shape (batch, *shape)."""
        size = (ops.shape(images)[0], *shape)
        return keras.random.uniform(size, low, high, seed=self.seed_generator)

    def call(self, images, training: bool = True):
        images = ops.cast(images, "float32")
        return ops.clip(self.change(images), 0.0, 255.0) if training else images

    def compute_output_shape(self, input_shape):
        return input_shape


class RandomResolution(_PerImage):
    """Shrinks each image to one of a few sides between `smallest` and its own and
    enlarges it back: the detail a coarser acquisition or a small file would keep."""

    def __init__(self, smallest: int, seed: int | None = None, **kwargs) -> None:
        super().__init__(seed, **kwargs)
        self.smallest = smallest

    def change(self, images):
        height, width = images.shape[1], images.shape[2]
        ratio = min(1.0, self.smallest / max(height, width))
        versions = [images]
        for step in range(1, RESOLUTION_STEPS):
            scale = ratio ** (step / (RESOLUTION_STEPS - 1))
            small = (max(1, round(height * scale)), max(1, round(width * scale)))
            shrunk = ops.image.resize(images, small, interpolation="bilinear", antialias=True)
            versions.append(ops.image.resize(shrunk, (height, width), interpolation="bilinear"))
        pick = ops.floor(self.uniform(images, (), 0.0, float(RESOLUTION_STEPS)))
        choice = ops.one_hot(ops.cast(pick, "int32"), RESOLUTION_STEPS)  # (b, steps)
        stacked = ops.stack(versions, axis=1)  # (b, steps, h, w, c)
        return ops.sum(stacked * choice[:, :, None, None, None], axis=1)


class RandomGamma(_PerImage):
    """Intensity curve 255 (x / 255) ** g, with log g uniform within plus or minus
    log(1 + factor): how sequences and windowing map tissue to grey levels."""

    def __init__(self, factor: float, seed: int | None = None, **kwargs) -> None:
        super().__init__(seed, **kwargs)
        self.factor = factor

    def change(self, images):
        bound = math.log1p(self.factor)
        gamma = ops.exp(self.uniform(images, (1, 1, 1), -bound, bound))
        return 255.0 * ops.power(images / 255.0, gamma)


class RandomBiasField(_PerImage):
    """A smooth multiplicative field, exp of a random second-order polynomial in the
    image's coordinates: the intensity non-uniformity of receive coils. `strength`
    bounds each term's coefficient (0.3: up to about 35% brighter or darker per term)."""

    def __init__(self, strength: float, seed: int | None = None, **kwargs) -> None:
        super().__init__(seed, **kwargs)
        self.strength = strength

    def change(self, images):
        height, width = images.shape[1], images.shape[2]
        y = ops.reshape(ops.linspace(-1.0, 1.0, height), (height, 1))
        x = ops.reshape(ops.linspace(-1.0, 1.0, width), (1, width))
        ones = ops.ones((height, width))
        # x*x - 1/3 and y*y - 1/3 average zero over the image, as x, y and x*y do.
        basis = ops.stack([x * ones, y * ones, x * y, x * x * ones - 1 / 3, y * y * ones - 1 / 3])
        coefficients = self.uniform(images, (5,), -self.strength, self.strength)
        log_field = ops.einsum("bk,khw->bhw", coefficients, basis)
        return images * ops.exp(log_field)[..., None]


class RicianNoise(_PerImage):
    """Magnitude-image noise: sqrt((x + n1)^2 + n2^2) with Gaussian n1, n2 whose standard
    deviation is drawn per image up to `level` of the value range."""

    def __init__(self, level: float, seed: int | None = None, **kwargs) -> None:
        super().__init__(seed, **kwargs)
        self.level = level

    def change(self, images):
        sigma = self.uniform(images, (1, 1, 1), 0.0, 255.0 * self.level)
        shape = (ops.shape(images)[0], images.shape[1], images.shape[2], 1)
        real = keras.random.normal(shape, seed=self.seed_generator)
        imaginary = keras.random.normal(shape, seed=self.seed_generator)
        return ops.sqrt(ops.square(images + sigma * real) + ops.square(sigma * imaginary))


def _dct_matrix() -> list[list[float]]:
    """The orthonormal 8-point DCT-II, D[u][x]: D X D^T is JPEG's forward transform."""
    return [
        [math.sqrt((1 if u == 0 else 2) / 8) * math.cos((2 * x + 1) * u * math.pi / 16) for x in range(8)]
        for u in range(8)
    ]


def jpeg_round_trip(images, quality):
    """Images (b, h, w, c) in [0, 255] as a grayscale JPEG at `quality` (b,) would decode
    them: 8 x 8 block DCTs quantised with the standard luminance table scaled as libjpeg
    scales it. Each channel is coded alike, which for a grayscale slice in RGB is exactly
    JPEG's luminance channel (its chroma channels are flat)."""
    height, width = images.shape[1], images.shape[2]
    padded = ops.pad(images, [[0, 0], [0, -height % 8], [0, -width % 8], [0, 0]], mode="symmetric")
    b, h, w, c = ops.shape(padded)[0], padded.shape[1], padded.shape[2], padded.shape[3]
    # Blocks as (b, c * h/8 * w/8, 8, 8): TensorFlow broadcasts up to rank 5 only.
    blocks = ops.transpose(ops.reshape(padded - 128.0, (b, h // 8, 8, w // 8, 8, c)), (0, 5, 1, 3, 2, 4))
    blocks = ops.reshape(blocks, (b, c * (h // 8) * (w // 8), 8, 8))
    dct = ops.convert_to_tensor(_dct_matrix(), "float32")
    coefficients = ops.einsum("uy,bnyx,vx->bnuv", dct, blocks, dct)
    quality = ops.clip(ops.cast(quality, "float32"), 1.0, 100.0)
    scale = ops.where(quality < 50.0, 5000.0 / quality, 200.0 - 2.0 * quality)
    base = ops.convert_to_tensor(JPEG_LUMINANCE_TABLE, "float32")
    table = ops.clip(ops.floor((base[None] * scale[:, None, None] + 50.0) / 100.0), 1.0, 255.0)[:, None]
    quantised = ops.round(coefficients / table) * table
    decoded = ops.einsum("uy,bnuv,vx->bnyx", dct, quantised, dct) + 128.0
    decoded = ops.transpose(ops.reshape(decoded, (b, c, h // 8, w // 8, 8, 8)), (0, 2, 4, 3, 5, 1))
    return ops.reshape(decoded, (b, h, w, c))[:, :height, :width, :]


class RandomJpeg(_PerImage):
    """Re-encodes each image as a JPEG of a quality drawn between `lowest` and 95: the
    blocking and lost fine detail of images that were saved, shared and downloaded as
    JPEGs, as many of the dataset's and most scans from elsewhere were."""

    def __init__(self, lowest: int, seed: int | None = None, **kwargs) -> None:
        super().__init__(seed, **kwargs)
        self.lowest = lowest

    def change(self, images):
        quality = self.uniform(images, (), float(self.lowest), JPEG_HIGHEST_QUALITY)
        return jpeg_round_trip(images, ops.round(quality))


def build_augmenter(config: AugmentConfig, seed: int) -> keras.Sequential | None:
    """Keras preprocessing layers for training images, or None when switched off."""
    if not config.enabled:
        return None
    layers: list[keras.layers.Layer] = []
    if config.horizontal_flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if config.rotation > 0:
        layers.append(keras.layers.RandomRotation(config.rotation, fill_mode="constant", seed=seed + 1))
    if config.zoom > 0:
        layers.append(keras.layers.RandomZoom(config.zoom, fill_mode="constant", seed=seed + 2))
    if config.contrast > 0:
        layers.append(keras.layers.RandomContrast(config.contrast, value_range=(0, 255), seed=seed + 3))
    if config.brightness > 0:
        layers.append(keras.layers.RandomBrightness(config.brightness, value_range=(0, 255), seed=seed + 4))
    layers += scanner_layers(config, seed + 10)
    return keras.Sequential(layers, name="augment") if layers else None


def scanner_layers(config: AugmentConfig, seed: int) -> list[keras.layers.Layer]:
    """The scanner changes the config asks for, coarsest first: resolution and blur
    (detail), then the bias field and gamma (intensity), then noise, which a scanner
    adds last, and JPEG coding, which comes after the scanner, when the image is saved."""
    layers: list[keras.layers.Layer] = []
    if config.resolution > 0:
        layers.append(RandomResolution(config.resolution, seed=seed))
    if config.blur > 0:
        layers.append(
            keras.layers.RandomGaussianBlur(
                1.0, kernel_size=2 * math.ceil(2 * config.blur) + 1, sigma=(0.0, config.blur), seed=seed + 1
            )
        )
    if config.bias_field > 0:
        layers.append(RandomBiasField(config.bias_field, seed=seed + 2))
    if config.gamma > 0:
        layers.append(RandomGamma(config.gamma, seed=seed + 3))
    if config.noise > 0:
        layers.append(RicianNoise(config.noise, seed=seed + 4))
    if config.jpeg > 0:
        layers.append(RandomJpeg(config.jpeg, seed=seed + 5))
    return layers
