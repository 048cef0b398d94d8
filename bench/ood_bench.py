"""Benchmark: does the out-of-distribution check (core.model.ood) tell brain MRI slices from the rest?

    .venv/bin/python bench/ood_bench.py RUN_ID [--models models] [--data DATASET_ROOT]

In distribution: the dataset's Testing images. Out of distribution, all generated here
from installed packages: photographs (scikit-learn's and matplotlib's sample images,
and crops of them), logos, synthetic patterns (noise, checkerboards, gradients, text,
flat colours, a 1x1 image), rendered elevation maps, and CT and other non-MR DICOM
files from pydicom's test data. "Near" out of distribution: Testing slices rotated 90
degrees, inverted, or cropped to their centre; and, reported on their own, MR images
that are not axial brain slices of this dataset (pydicom's and matplotlib's).

Prints the AUROC of the run's check (squared Mahalanobis distance of unit-length
pooled features, core.model.ood), of the same on raw features, of the energy score and of the
max-softmax baseline against the non-MRI images and against the near ones; the share of
Testing images and of each group flagged at the validation 95th percentile (the check's
and the raw score's); and the cost of a scan with its score and closed-form Grad-CAM
against a bare prediction. The training and validation features are computed once, as
`python -m core evaluate RUN` computes them: the raw score is fitted on them in memory,
and so is the check when the run has no ood.json. Nothing is written into the run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageOps  # noqa: E402

from bench.common import DATASET, machine  # noqa: E402
from core.data.dataset import scan_dataset  # noqa: E402
from core.data.images import decode_frames, model_view  # noqa: E402
from core.explanation.explain import Explainer  # noqa: E402
from core.model.network import ensemble_members  # noqa: E402
from core.model.ood import OODCheck, energy_score, fit_check  # noqa: E402
from core.registry import Registry  # noqa: E402
from core.serving.inference import Classifier  # noqa: E402

Images = list[Image.Image]


# --- the out-of-distribution sets -------------------------------------------------------
def photographs(rng: np.random.Generator) -> Images:
    """scikit-learn's and matplotlib's photographs, whole and as random crops."""
    import matplotlib.cbook as cbook
    from sklearn.datasets import load_sample_images

    pictures = [Image.fromarray(a) for a in load_sample_images().images]
    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        pictures.append(Image.open(handle).convert("RGB"))
    crops = []
    for picture in pictures:
        width, height = picture.size
        for _ in range(10):
            side = int(rng.integers(min(width, height) // 4, min(width, height)))
            left, top = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
            crops.append(picture.crop((left, top, left + side, top + side)))
    return pictures + crops


def logos() -> Images:
    import matplotlib.cbook as cbook

    found = []
    for name in ("logo2.png", "Minduka_Present_Blue_Pack.png"):
        with cbook.get_sample_data(name) as handle:
            found.append(_flatten(Image.open(handle)))
    return found


def _flatten(image: Image.Image) -> Image.Image:
    """A transparent picture on white, as a viewer shows it."""
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        canvas = Image.new("RGB", image.size, (255, 255, 255))
        canvas.paste(image, mask=image.getchannel("A"))
        return canvas
    return image.convert("RGB")


def synthetic(rng: np.random.Generator, size: int = 256) -> Images:
    """Noise, checkerboards, gradients, text, flat colours and a 1x1 image."""
    y, x = np.mgrid[0:size, 0:size] / size
    arrays = [rng.integers(0, 256, (size, size, 3)) for _ in range(4)]
    arrays += [np.repeat(rng.integers(0, 256, (size, size, 1)), 3, axis=-1) for _ in range(2)]
    arrays += [np.clip(rng.normal(128, 40, (size, size, 3)), 0, 255) for _ in range(2)]
    for cells in (2, 4, 8, 16, 32):
        board = (np.floor(x * cells) + np.floor(y * cells)) % 2 * 255
        arrays.append(np.repeat(board[..., None], 3, axis=-1))
    arrays += [np.repeat((x * 255)[..., None], 3, axis=-1), np.stack([x, y, 1 - x], -1) * 255]
    radial = np.hypot(x - 0.5, y - 0.5)
    arrays += [np.repeat((255 * (1 - radial / radial.max()))[..., None], 3, axis=-1)]
    arrays += [np.stack([np.sin(12 * x) * 0.5 + 0.5, y, np.cos(9 * y) * 0.5 + 0.5], -1) * 255]
    arrays += [np.full((size, size, 3), value) for value in ((0, 0, 0), (255, 255, 255), (128, 128, 128))]
    images = [Image.fromarray(np.asarray(a, dtype=np.uint8)) for a in arrays]
    images += [text_image(words, dark) for words, dark in (("Invoice 2024", False), ("MRI?", True))]
    images.append(Image.new("RGB", (1, 1), (200, 40, 40)))
    return images


def text_image(words: str, dark: bool, size: int = 256) -> Image.Image:
    image = Image.new("RGB", (size, size), (0, 0, 0) if dark else (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for row in range(8):
        draw.text((10, 10 + 30 * row), f"{words} line {row}", fill=(255, 255, 255) if dark else (0, 0, 0))
    return image


def elevation_maps() -> Images:
    """matplotlib's elevation data rendered in grey and in a colour map."""
    import matplotlib.cbook as cbook
    from matplotlib import colormaps

    images = []
    for name, key in (("jacksboro_fault_dem.npz", "elevation"), ("topobathy.npz", "topo")):
        with np.load(cbook.get_sample_data(name, asfileobj=False)) as data:
            values = np.asarray(data[key], dtype=np.float64)
        scaled = (values - values.min()) / (np.ptp(values) or 1.0)
        images.append(Image.fromarray((scaled * 255).astype(np.uint8)).convert("RGB"))
        images.append(Image.fromarray((colormaps["terrain"](scaled)[..., :3] * 255).astype(np.uint8)))
    return images


def dicom_groups() -> dict[str, Images]:
    """pydicom's test files by Modality tag: CT, other non-MR, and MR (whose slices are
    not this dataset's axial brain images: reported apart)."""
    import pydicom
    import pydicom.data

    groups: dict[str, Images] = {"CT (pydicom)": [], "other non-MR DICOM (pydicom)": [], "MR (pydicom)": []}
    warnings.filterwarnings("ignore", module="pydicom")  # its test files are odd on purpose
    for path in sorted(pydicom.data.get_testdata_files("*.dcm")):
        try:
            modality = str(pydicom.dcmread(path, stop_before_pixels=True).get("Modality", ""))
            frames = decode_frames(Path(path))[:3]
        except Exception:  # pydicom's deliberately odd test files fail in many ways
            continue
        group = "MR (pydicom)" if modality == "MR" else "CT (pydicom)" if modality == "CT" else None
        groups[group or "other non-MR DICOM (pydicom)"] += frames
    return groups


def matplotlib_mri() -> Images:
    """matplotlib's sample MRI (s1045.ima: a 256x256 16-bit head slice)."""
    import matplotlib.cbook as cbook

    with cbook.get_sample_data("s1045.ima.gz") as handle:  # a GzipFile
        raw = handle.read()
    values = np.frombuffer(raw, np.uint16).reshape(256, 256).astype(np.float64)
    return [Image.fromarray((values / values.max() * 255).astype(np.uint8)).convert("RGB")]


def near(slices: Images) -> dict[str, Images]:
    """Testing slices altered: rotated 90 degrees, inverted, cropped to their centre third."""

    def centre(image: Image.Image) -> Image.Image:
        width, height = image.size
        return image.crop((width // 3, height // 3, 2 * width // 3, 2 * height // 3))

    return {
        "Testing rotated 90 degrees": [image.rotate(90, expand=True) for image in slices],
        "Testing inverted": [ImageOps.invert(image.convert("RGB")) for image in slices],
        "Testing centre-cropped to 1/3": [centre(image) for image in slices],
    }


# --- scoring ----------------------------------------------------------------------------
CHECK = "the check"  # the run's: Mahalanobis on unit-length features


def score(classifier: Classifier, images: Images | np.ndarray, raw: OODCheck) -> dict[str, np.ndarray]:
    """The run's check, Mahalanobis on the raw features (`raw`), energy and max-softmax
    scores: higher, more unusual."""
    size = classifier.input_size
    if not isinstance(images, np.ndarray):
        images = np.stack([model_view(image.convert("RGB"), size, classifier.framing) for image in images])
    out = classifier.outputs(images)
    head = (ensemble_members(classifier.model) or [("", classifier.model, 1.0)])[0][1].get_layer(
        "predictions"
    )
    return {
        CHECK: out.ood_scores,
        "raw Mahalanobis": raw.score(out.features),
        "energy": energy_score(out.features, head.kernel.numpy(), head.bias.numpy()),
        "max softmax": -out.probabilities.max(axis=1),
    }


def auroc(inside: dict[str, np.ndarray], outside: dict[str, np.ndarray], method: str) -> float:
    from sklearn.metrics import roc_auc_score

    values = np.concatenate([inside[method], outside[method]])
    labels = np.r_[np.zeros(len(inside[method])), np.ones(len(outside[method]))]
    return float(roc_auc_score(labels, values))


def joined(groups: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    methods = next(iter(groups.values()))
    return {m: np.concatenate([g[m] for g in groups.values()]) for m in methods}


# --- timing -----------------------------------------------------------------------------
def timings(classifier: Classifier, image: np.ndarray, repeats: int) -> dict[str, list[float]]:
    """Milliseconds per call for one scan, warm: a bare prediction (the model's softmax
    alone, compiled), the app's one pass with score and closed-form Grad-CAM, and the
    same with Grad-CAM's own forward pass. The three take turns in each repeat, so a
    busy machine slows them alike."""
    import tensorflow as tf

    model, explainer = classifier.model, Explainer(classifier.model)
    bare = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    x = tf.constant(np.asarray(image, dtype=np.float32)[None])

    def one_pass() -> None:
        out = classifier.outputs(image, activations=True)
        explainer.heatmap(image, int(out.probabilities[0].argmax()), activations=out.activations[0])

    def two_passes() -> None:
        out = classifier.outputs(image)
        explainer.heatmap(image, int(out.probabilities[0].argmax()))

    variants = {
        "bare prediction": lambda: bare(x).numpy(),
        "prediction + score + Grad-CAM, one pass": one_pass,
        "prediction + score + Grad-CAM, own pass for the map": two_passes,
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():
        fn()  # warm: traces and builds
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(1000 * (time.perf_counter() - start))
    return times


# --- the report ---------------------------------------------------------------------------
def checks(classifier: Classifier, run, index) -> tuple[str, OODCheck]:
    """The run's saved check (or, when it has none, one fitted in memory as `python -m
    core evaluate` would fit it), and Mahalanobis on the raw features fitted in memory on
    the same images to compare; nothing is written into the run."""
    from core.training.ood_fit import run_features

    started = time.monotonic()
    x_train, y_train, x_val, info = run_features(run, index, classifier.model)
    raw = fit_check(x_train, y_train, x_val, normalize=False, **info)
    if classifier.ood is not None:
        saved = classifier.ood.info
        return f"the run's ood.json ({saved.get('train_images')} training images)", raw
    classifier.ood = fit_check(x_train, y_train, x_val, **info)
    return (
        f"fitted in memory, not saved: {len(x_train)} of {info['train_of']} training images "
        f"({info['source']}), threshold on {len(x_val)} validation images, "
        f"{time.monotonic() - started:.0f} s"
    ), raw


def testing_images(classifier: Classifier, paths: list[Path], every: int) -> tuple[np.ndarray, Images]:
    """The model's view of every Testing image, and every `every`-th one decoded (shrunk
    to twice the input size: altered versions are made from these)."""
    views, kept = [], []
    for i, path in enumerate(paths):
        image = decode_frames(path)[0]
        views.append(model_view(image, classifier.input_size, classifier.framing))
        if i % every == 0:
            image.thumbnail((2 * classifier.input_size, 2 * classifier.input_size))
            kept.append(image)
    return np.stack(views), kept


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run")
    p.add_argument("--models", default=None, help="registry folder (default: models/)")
    p.add_argument("--data", default=str(DATASET), help="dataset root (default: %(default)s)")
    p.add_argument("--near", type=int, default=200, help="Testing slices altered for each near group")
    p.add_argument("--repeats", type=int, default=30, help="timing repeats")
    args = p.parse_args()
    registry = Registry(args.models) if args.models else Registry()
    run = registry.get(args.run)
    index = scan_dataset(args.data)
    classifier = Classifier(run)
    fitted, raw = checks(classifier, run, index)
    rng = np.random.default_rng(0)

    start = time.monotonic()
    step = max(1, len(index.testing) // args.near)
    testing, originals = testing_images(classifier, [s.path for s in index.testing], step)
    inside = score(classifier, testing, raw)
    far_groups = {"photographs": photographs(rng), "logos": logos(), "synthetic": synthetic(rng)}
    far_groups["elevation maps"] = elevation_maps()
    dicom = dicom_groups()
    far_groups["CT (pydicom)"] = dicom.pop("CT (pydicom)")
    far_groups["other non-MR DICOM (pydicom)"] = dicom.pop("other non-MR DICOM (pydicom)")
    near_groups = near(originals[: args.near])
    other_mr = {"MR (pydicom)": dicom.pop("MR (pydicom)"), "MRI (matplotlib s1045)": matplotlib_mri()}
    far = {name: score(classifier, images, raw) for name, images in far_groups.items() if images}
    close = {name: score(classifier, images, raw) for name, images in near_groups.items()}
    mr = {name: score(classifier, images, raw) for name, images in other_mr.items() if images}
    scoring_s = time.monotonic() - start
    costs = timings(classifier, testing[0], args.repeats)

    threshold = classifier.ood.threshold
    print("=== bench/ood_bench.py ===")
    print(f"machine: {machine()}")
    print(f"run: {run.id}, input {classifier.input_size}px; check: {fitted}; threshold {threshold:,.1f}")
    print(f"data: {index.root} ({len(testing)} Testing images); scoring took {scoring_s:.0f} s")
    print("AUROC (Testing against ...); the check: Mahalanobis on unit-length features")
    print(f"  {'':34s}" + "".join(f" {method:>15s}" for method in inside))
    for label, groups in (("non-MRI images", far), ("near: altered Testing", close)):
        outside = joined(groups)
        values = "".join(f" {auroc(inside, outside, method):>15.4f}" for method in inside)
        print(f"  {label + f' (n={len(outside[CHECK])})':34s}{values}")
    limits = {CHECK: threshold, "raw Mahalanobis": raw.threshold}
    flagged = ", ".join(f"{np.mean(inside[m] > t):.2%} ({m})" for m, t in limits.items())
    print(f"Testing flagged at the validation 95th percentile: {flagged}")
    print("share flagged per group at that threshold, and the group's median score (the check | raw):")
    rows = (*far.items(), *close.items(), *mr.items(), ("Testing", inside))
    for name, groups in rows:
        cells = [
            f"{np.mean(groups[m] > t):6.1%}  median {np.median(groups[m]):9,.1f}" for m, t in limits.items()
        ]
        print(f"  {name:34s} n={len(groups[CHECK]):4d}  {' | '.join(cells)}")
    bare = costs["bare prediction"]
    print(f"one scan, warm, {args.repeats} repeats taking turns (median and fastest; x: against bare):")
    for name, ms in costs.items():
        median, fastest = statistics.median(ms), min(ms)
        ratio = f"{median / statistics.median(bare):5.2f}x / {fastest / min(bare):5.2f}x"
        print(f"  {name:52s} {median:7.1f} / {fastest:7.1f} ms  {ratio}")


if __name__ == "__main__":
    main()
