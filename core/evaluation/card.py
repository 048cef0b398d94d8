"""A run's model card: what the model is for, what it learnt and was tested on, how well
it does (with 95% intervals), how it fails, and where its figures stop holding.

Assembled only from what the run folder holds (config, data, meta, metrics, calibration,
predictions, external entries) and, when the dataset is still on disk, its audit and
example images. One content, two renderings: Markdown, and an HTML page that embeds
everything it shows and so opens offline. No TensorFlow: a card is written in a second.
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.config import FLAG_BELOW, KEEP_WHEN_MISSING
from core.data.audit import cached_audit, describe_left_out
from core.data.dataset import DatasetIndex, scan_dataset
from core.data.images import decode
from core.errors import PipelineError
from core.evaluation.external import external_entries
from core.evaluation.interpret import Interpretation
from core.intervals import format_interval
from core.io import atomic_write_bytes
from core.registry import Run

NOT_A_DEVICE = (
    "Not a diagnostic device: a research and teaching model. It must not be used to diagnose, "
    "triage or treat anyone."
)
CLEAN_SET = (
    "The clean test set is Testing minus every image with an exact, near or mirrored copy in "
    "Training, keeping one image of each group of twins within Testing: copy-free, not "
    "patient-disjoint (other slices of one patient can still sit on both sides)."
)
# The published Testing split of the Kaggle set; a dataset with these counts is taken to be it.
KAGGLE_TESTING = {"glioma": 300, "meningioma": 306, "notumor": 405, "pituitary": 300}
KAGGLE_SOURCES = (
    'the Kaggle "Brain Tumor MRI Dataset" (Masoud Nickparvar; 7,023 MRI slices in 4 classes, '
    "split by its author into Training and Testing). Its author assembled it from three sets: "
    "figshare (Cheng et al., doi:10.6084/m9.figshare.1512427: glioma, meningioma and pituitary "
    "slices of 233 patients, T1-weighted contrast-enhanced), SARTAJ (Brain Tumor Classification "
    "(MRI)) and Br35H (tumour and no-tumour slices); he replaced the SARTAJ glioma images with "
    "figshare ones, judging their labels unreliable. Licences: CC0 for the Kaggle listing; "
    "figshare CC BY 4.0 (cite Cheng et al. 2015/2017); SARTAJ MIT; Br35H not stated."
)
PER_CLASS_FIGURES = ("precision", "recall", "specificity", "f1")
EXAMPLES_PER_PAIR = 3
THUMBNAIL_PX = 96
FORMATS = ("md", "html", "both")


# -- the content ------------------------------------------------------------------------------
@dataclass
class Heading:
    text: str


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Examples:
    """A confusion pair's example images: names in Markdown, thumbnails too in HTML."""

    caption: str
    names: list[str]
    thumbnails: list[str | None]  # base64 PNG, None where the file cannot be read


@dataclass
class Gallery:
    pairs: list[Examples]


# A paragraph (str), a bullet list (list[str]), or one of the blocks above. Text may hold
# `code` and **bold**, the only inline markup both renderings understand.
Block = str | list[str] | Heading | Table | Gallery


@dataclass
class Section:
    title: str
    blocks: list[Block]


@dataclass
class Card:
    title: str
    lead: list[str]
    sections: list[Section]
    gaps: list[str] = field(default_factory=list)  # what the run or the dataset could not supply

    def markdown(self) -> str:
        parts = [f"# {self.title}", *self.lead]
        for section in self.sections:
            parts.append(f"## {section.title}")
            parts += [_markdown_block(block) for block in section.blocks]
        return "\n\n".join(parts) + "\n"

    def html(self) -> str:
        body = [f"<h1>{_inline(self.title)}</h1>", *(f"<p>{_inline(t)}</p>" for t in self.lead)]
        for section in self.sections:
            body.append(f"<h2>{_inline(section.title)}</h2>")
            body += [_html_block(block) for block in section.blocks]
        return HTML_PAGE.format(title=html.escape(self.title), body="\n".join(body))


# -- what the run folder and the dataset supply ------------------------------------------------
@dataclass
class Sources:
    run: Run
    config: dict[str, Any]
    data: dict[str, Any]
    meta: dict[str, Any]
    metrics: dict[str, Any]
    calibration: dict[str, Any] | None
    interp: Interpretation | None
    externals: list[dict[str, Any]]
    index: DatasetIndex | None
    dataset_problem: str | None  # why the dataset is not available, when it is not
    audit: dict[str, Any] | None  # Audit.summary()

    @property
    def root(self) -> str:
        return str(self.data.get("root") or self.config.get("data_dir") or "")


def read_sources(run: Run) -> Sources:
    rows = run.predictions()
    index, problem, audit = _dataset(run)
    return Sources(
        run=run,
        config=run.config,
        data=run.read("data.json") or {},
        meta=run.read("meta.json") or {},
        metrics=run.metrics or {},
        calibration=run.read("calibration.json"),
        interp=Interpretation.from_rows(rows, run.classes) if rows and run.classes else None,
        externals=external_entries(run),
        index=index,
        dataset_problem=problem,
        audit=audit,
    )


def _dataset(run: Run) -> tuple[DatasetIndex | None, str | None, dict | None]:
    """The run's dataset and its audit summary, or why they are not available."""
    root = (run.read("data.json") or {}).get("root") or run.config.get("data_dir")
    if not root:
        return None, "the run names no dataset folder", None
    try:
        index = scan_dataset(root)
        return index, None, cached_audit(index, run.cache_dir).summary()
    except (PipelineError, OSError) as exc:  # OSError: an audit cache that cannot be written
        return None, str(exc), None


def _ood_limit(run: Run) -> str:
    if run.file("ood.json").is_file():
        return (
            "An out-of-distribution check (the Mahalanobis distance of the pooled features, its "
            "threshold letting 95% of the validation images pass) warns on scans unlike the "
            "training images; rotated slices and other MR sequences often pass it, and the model "
            "still names one of its classes for them."
        )
    return (
        "No out-of-distribution check is fitted for this run (`python -m core evaluate RUN` fits "
        "one): the model names one of its classes for any image, a photo or a CT slice included; "
        f"the low-confidence flag (top probability below {FLAG_BELOW}) is no such check."
    )


# -- the card ---------------------------------------------------------------------------------
def build_card(run: Run) -> Card:
    s = read_sources(run)
    card = Card(
        title=f"Model card: run {run.id}",
        lead=[f"**{NOT_A_DEVICE}**", _identity(s)],
        sections=[],
    )
    for builder in (
        _intended_use,
        _data_section,
        _recipe,
        _figures_section,
        _calibration_section,
        _failure_modes,
        _limits,
    ):
        card.sections.append(builder(s, card.gaps))
    return card


def card_markdown(run: Run) -> str:
    return build_card(run).markdown()


def card_html(run: Run) -> str:
    return build_card(run).html()


def write_card(run: Run, out: Path, fmt: str = "both") -> tuple[list[Path], list[str]]:
    """Write the card into `out` as Markdown and/or HTML; returns the files and the gaps."""
    if fmt not in FORMATS:
        raise PipelineError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    card = build_card(run)
    texts = {"md": card.markdown, "html": card.html}
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for suffix in ("md", "html") if fmt == "both" else (fmt,):
            path = out / f"{run.id}-model-card.{suffix}"
            atomic_write_bytes(path, texts[suffix]().encode())
            written.append(path)
    except OSError as exc:
        raise PipelineError(f"cannot write the model card to {out}: {exc.strerror or exc}") from None
    return written, card.gaps


def _identity(s: Sources) -> str:
    classes = ", ".join(s.run.classes) or "unknown"
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"Run `{s.run.id}` ({s.run.state}); classes: {classes}. Card written {made}."


def _intended_use(s: Sources, gaps: list[str]) -> Section:
    classes = ", ".join(s.run.classes)
    return Section(
        "Intended use",
        [
            f"Classifies one 2D brain MRI slice image into one of {len(s.run.classes)} classes "
            f"({classes}): an InceptionV3 fine-tuned on the run's dataset.",
            [
                "For research and teaching: transfer learning, evaluation against leakage, "
                "calibration and error analysis on a public dataset.",
                NOT_A_DEVICE,
                "Out of scope: any clinical decision, whole scans or patients, other organs, "
                "modalities or image types (the model answers for any image it is given).",
            ],
        ],
    )


# -- data -------------------------------------------------------------------------------------
def _data_section(s: Sources, gaps: list[str]) -> Section:
    blocks: list[Block] = [f"Dataset root: `{s.root or 'unknown'}`" + _fingerprint(s.data), _provenance(s)]
    blocks += _counts(s, gaps)
    blocks += [Heading("Duplicate audit"), *_audit(s, gaps), CLEAN_SET]
    return Section("Data", blocks)


def _fingerprint(data: dict) -> str:
    return f" (content fingerprint sha256 `{data['sha256'][:16]}`)." if data.get("sha256") else "."


def _provenance(s: Sources) -> str:
    test = (s.data.get("counts") or {}).get("test")
    if test == KAGGLE_TESTING:
        return f"Source (its Testing counts match the published ones): {KAGGLE_SOURCES}"
    shown = ", ".join(f"{c} {n}" for c, n in (test or {}).items()) or "unknown"
    return (
        f"Source: not the published Kaggle set (its Testing counts, {shown}, differ from the "
        f"published 1,311 images), so this card cannot name where its images come from. The "
        f"product is built for the Kaggle set: {KAGGLE_SOURCES}"
    )


def _counts(s: Sources, gaps: list[str]) -> list[Block]:
    counts = s.data.get("counts") or {}
    if not counts:
        gaps.append("data.json counts")
        return ["The run's data.json holds no counts per split."]
    splits = [name for name in ("train", "validation", "test") if name in counts]
    labels = {"train": "train part", "validation": "validation", "test": "Testing"}
    classes = list(next(iter(counts.values())))
    rows = [[c, *(str(counts[split].get(c, 0)) for split in splits)] for c in classes]
    rows.append(["total", *(str(sum(counts[split].values())) for split in splits)])
    return [Table(["class", *(labels[split] for split in splits)], rows), *_split_notes(s)]


def _split_notes(s: Sources) -> list[str]:
    split = s.data.get("split")
    if split:
        notes = [
            f"Validation: {split['validation_share']:.1%} of the Training pool, drawn with "
            f"{split['method']}, so that no validation image has a copy in the train part "
            f"({_n(split['copy_groups_in_training'], 'copy group')} of two or more images in the pool)."
        ]
    else:
        notes = [
            "Validation was drawn per file (this run predates the grouped split): a validation "
            "image may have a copy in the train part, so validation figures (early stopping, the "
            "calibration temperature) lean optimistic."
        ]
    if dropped := s.data.get("dropped_duplicates"):
        notes.append(f"{len(dropped)} Training images dropped as copies (one image of each copy group kept).")
    if per_class := s.config.get("max_per_class"):
        notes.append(f"Training subsampled to at most {per_class} images per class.")
    return notes


def _audit(s: Sources, gaps: list[str]) -> list[Block]:
    if s.audit is None:
        gaps.append("dataset audit (dataset not available)")
        return [
            f"The dataset is not available here ({s.dataset_problem}), so its audit cannot be "
            f"read; the figures below come from metrics.json as evaluated.",
            _clean_from_metrics(s.metrics),
        ]
    a = s.audit
    testing = sum(row["testing"] for row in a["per_class"].values())
    return [
        [
            f"{a['images']} images compared by content hash and by thumbnail correlation "
            f"(r32 >= {a['thresholds']['r32']}, r128 >= {a['thresholds']['r128']}, mirrored too).",
            f"Exact copies: {_n(a['exact_duplicate_groups'], 'group')} "
            f"({_n(a['exact_redundant_files'], 'redundant file')}); near-copy pairs: "
            f"{a['near_duplicate_pairs']} ({a['mirrored_near_pairs']} mirrored).",
            f"Redundant within Training: {a['redundant_within_training']}; within Testing: "
            f"{a['redundant_within_testing']}.",
            f"Testing images with a copy in Training: {a['testing_with_copy_in_training']} of {testing}.",
            f"Copy groups with conflicting labels: {a['label_conflict_groups']}; unreadable files: "
            f"{a['unreadable']}.",
            f"Clean test set: {a['clean_test_size']} of {testing} Testing images "
            f"({describe_left_out(a['clean_test_left_out'])} left out).",
        ],
        Table(
            ["class", "Testing", "with a copy in Training", "clean"],
            [[c, str(r["testing"]), str(r["leaked"]), str(r["clean"])] for c, r in a["per_class"].items()],
        ),
    ]


def _clean_from_metrics(metrics: dict) -> str:
    clean = metrics.get("clean")
    if not clean:
        return "metrics.json holds no clean-set figures either."
    reasons = clean.get("left_out")
    why = describe_left_out(reasons) if reasons else f"{clean.get('excluded', '?')} images"
    return f"Clean test set at evaluation: {clean['n']} images ({why} left out)."


# -- recipe -----------------------------------------------------------------------------------
def _recipe(s: Sources, gaps: list[str]) -> Section:
    c = s.config
    blocks: list[Block] = [_recipe_summary(c)]
    if kept := _kept_epoch(s):
        blocks.append(kept)
    if timings := s.meta.get("timings"):
        spent = ", ".join(f"{k.removesuffix('_s')} {_duration(v)}" for k, v in timings.items())
        blocks.append(f"Timings: {spent}.")
    if versions := s.meta.get("versions"):
        blocks.append("Software: " + "; ".join(f"{k} {v}" for k, v in versions.items()) + ".")
    blocks.append(Table(["setting (config.json, resolved)", "value"], [[k, f"`{v}`"] for k, v in _flat(c)]))
    return Section("Training recipe", blocks)


def _recipe_summary(c: dict) -> str:
    if c.get("kind") == "ensemble":
        members = ", ".join(
            f"`{m}` ({w:.2f})" for m, w in zip(c.get("members", []), c.get("member_weights", []))
        )
        return (
            f"An ensemble: the weighted mean of the probabilities of {members}; input {c['input_size']} px."
        )
    return (
        f"InceptionV3 from weights `{c.get('weights')}`, input {c.get('input_size')} px, "
        f"precision {c.get('precision')} (the saved model is float32), {c.get('mode')} mode; "
        f"head {_n(c.get('head_epochs', 0), 'epoch')} at {c.get('head_lr')}, then fine-tuning from "
        f"{c.get('unfreeze_from')} for {_n(c.get('finetune_epochs', 0), 'epoch')} at {c.get('finetune_lr')} "
        f"({c.get('finetune_schedule')}), batch {c.get('batch_size')}, seed {c.get('seed')}. "
        f"{_augmentation(c)}"
    )


def _augmentation(c: dict) -> str:
    augment = c.get("augment") or {}
    if augment.get("enabled"):
        return (
            f"Augmentation applied to training images: rotation {augment['rotation']} of a turn, "
            f"zoom {augment['zoom']}, horizontal flip {augment['horizontal_flip']}, contrast "
            f"{augment['contrast']}, brightness {augment['brightness']}."
        )
    if c.get("mode") == "cached" and c.get("cache_views") == 1:
        return "No augmentation: the cached mode with one stored view trains on each image as it is."
    return "No augmentation (switched off)."


def _kept_epoch(s: Sources) -> str | None:
    kept = s.meta.get("kept_epoch")
    if not kept:
        return None
    epochs = len(s.run.history)
    if s.config.get("keep", KEEP_WHEN_MISSING) == "best":
        rule = "the lowest validation loss"
    else:
        rule = "the last epoch with a finite validation loss"
    return f"The model holds the weights of epoch {kept} of {epochs}: {rule}."


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _flat(data: dict, prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            items += _flat(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items


# -- figures ----------------------------------------------------------------------------------
def _figures_section(s: Sources, gaps: list[str]) -> Section:
    sets = _test_sets(s)
    if not sets:
        gaps.append("test figures (no metrics.json)")
        command = f"`python -m core evaluate {s.run.id}`"
        return Section("Figures", [f"No test figures: this run has no metrics.json ({command} makes it)."])
    summary = Table(["test set", "images", "accuracy", "macro F1"], [_summary_row(n, m) for n, m in sets])
    blocks: list[Block] = [_interval_note(s, sets), summary]
    for name, m in sets:
        blocks += [Heading(f"Per class: {name}"), _per_class(m), *_set_notes(m)]
    return Section("Figures", blocks)


def _summary_row(name: str, m: dict) -> list[str]:
    ci = m.get("intervals") or {}
    accuracy = _figure(m["accuracy"], ci.get("accuracy"))
    return [name, str(m["n"]), accuracy, _figure(m["macro_f1"], ci.get("macro_f1"), percent=False)]


def _test_sets(s: Sources) -> list[tuple[str, dict]]:
    if not s.metrics:
        return []
    sets = [("official Testing", s.metrics)]
    if clean := s.metrics.get("clean"):
        sets.append(("clean test set", clean))
    sets += [(f"external: {e.get('name', e.get('slug', '?'))}", e) for e in s.externals]
    return sets


def _interval_note(s: Sources, sets: list[tuple[str, dict]]) -> str:
    missing = [name for name, m in sets if not (m.get("intervals") or {}).get("accuracy")]
    note = (
        "In brackets: 95% intervals (stratified percentile bootstrap over the test images); "
        "figures whose intervals overlap widely may not differ at all."
    )
    if missing:
        note += f" For {', '.join(missing)}: interval not computed: run `python -m core evaluate {s.run.id}`."
    return note


def _figure(value: float, interval: list[float] | None, percent: bool = True) -> str:
    text = format_interval(value, interval, percent)
    return text if interval else f"{text} (interval not computed)"


def _per_class(m: dict) -> Table:
    intervals = (m.get("intervals") or {}).get("per_class") or {}
    rows = []
    for name, row in m["per_class"].items():
        if not row.get("support"):
            continue
        ci = intervals.get(name, {})
        cells = [_figure(row[f], ci.get(f), False) if f in row else "-" for f in PER_CLASS_FIGURES]
        rows.append([name, *cells, str(row["support"])])
    return Table(["class", *PER_CLASS_FIGURES, "images"], rows)


def _set_notes(m: dict) -> list[Block]:
    notes: list[Block] = []
    if "chance" in m:
        notes.append(
            f"Chance accuracy: {m['chance']:.0%}; evaluated {m.get('evaluated', '?')} from `{m.get('root')}`."
        )
    if m.get("missing_classes"):
        notes.append(f"No images of {', '.join(m['missing_classes'])}: answers in them count as errors.")
    if m.get("skipped"):
        notes.append(f"{len(m['skipped'])} unreadable file(s) left out.")
    groups = (m.get("sequences") or {}).get("groups") or {}
    if groups:
        notes.append(
            Table(
                ["MR sequence", "images", "accuracy", "recall per class"],
                [_sequence_row(n, g) for n, g in groups.items()],
            )
        )
    return notes


def _sequence_row(name: str, group: dict) -> list[str]:
    recall = ", ".join(
        f"{c} {format_interval(r['value'], r.get('interval'))}" for c, r in group["recall"].items()
    )
    return [name, str(group["n"]), _figure(group["accuracy"], group.get("accuracy_interval")), recall]


# -- calibration ------------------------------------------------------------------------------
def _calibration_section(s: Sources, gaps: list[str]) -> Section:
    cal = s.calibration
    if not cal:
        gaps.append("calibration (no calibration.json)")
        text = (
            "No temperature fitted: the run has no calibration.json (`python -m core evaluate "
            f"{s.run.id}` fits one on the validation images). Probabilities are the model's raw softmax."
        )
        if s.interp is not None and len(s.interp.y_true):
            text += f" ECE on official Testing, uncalibrated: {s.interp.ece():.4f}."
        return Section("Calibration", [text])
    val = cal.get("validation") or {}
    errors = val.get("errors")
    if errors is None:
        gaps.append("number of validation errors (not recorded)")
        errors_text = f"their errors not recorded (`python -m core evaluate {s.run.id}` records them)"
    else:
        errors_text = f"{errors} of them misclassified"
    source = cal.get("validation_from", "images")
    rows = [
        _calibration_row(name, cal.get(key))
        for name, key in (("validation", "validation"), ("official Testing", "test"))
    ]
    return Section(
        "Calibration",
        [
            f"Temperature T = {cal['temperature']:.3f}, fitted on {val.get('n', '?')} validation "
            f"images ({errors_text}; predicted from {source}). Temperature scaling changes the "
            "probabilities, never the predicted class.",
            Table(
                ["set", "images", "errors", "ECE before", "ECE after", "NLL before", "NLL after"],
                [r for r in rows if r],
            ),
        ],
    )


def _calibration_row(name: str, f: dict | None) -> list[str] | None:
    if not f:
        return None
    values = [f.get(k) for k in ("ece_before", "ece_after", "nll_before", "nll_after")]
    errors = f.get("errors")
    return [
        name,
        str(f.get("n", "?")),
        "?" if errors is None else str(errors),
        *(f"{v:.4f}" if v is not None else "-" for v in values),
    ]


# -- failure modes ----------------------------------------------------------------------------
def _failure_modes(s: Sources, gaps: list[str]) -> Section:
    title = "Known failure modes"
    if s.interp is None:
        gaps.append("failure modes (no predictions.csv)")
        return Section(title, ["No predictions.csv: the run's per-image predictions are not available."])
    pairs = s.interp.most_confused()
    if not pairs:
        return Section(title, ["No misclassified image on official Testing."])
    support = {c: int((s.interp.y_true == i).sum()) for i, c in enumerate(s.interp.classes)}
    blocks: list[Block] = [
        "The most confused pairs on official Testing (off-diagonal confusion cells, largest first), "
        f"with up to {EXAMPLES_PER_PAIR} example images each, the most confident mistakes first.",
        Table(
            ["true", "predicted", "images", "share of the true class"],
            [[t, p, str(n), f"{n / support[t]:.1%}"] for t, p, n in pairs],
        ),
    ]
    root = s.index.root if s.index is not None else None
    blocks.append(Gallery([_examples(s.interp, t, p, n, root) for t, p, n in pairs]))
    if root is None:
        blocks.append("Thumbnails left out: the dataset is not available here.")
    return Section(title, blocks)


def _examples(interp: Interpretation, true: str, predicted: str, count: int, root: Path | None) -> Examples:
    files = [interp.files[i] for i in interp.cell(true, predicted)[:EXAMPLES_PER_PAIR]]
    thumbnails = [thumbnail(root / f) if root is not None else None for f in files]
    return Examples(f"true {true}, predicted {predicted} ({count})", files, thumbnails)


def thumbnail(path: Path, size: int = THUMBNAIL_PX) -> str | None:
    """The image as a base64 PNG of at most size x size pixels, or None if unreadable."""
    try:
        image = decode(path)
    except PipelineError:
        return None
    image.thumbnail((size, size))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode("ascii")


# -- limits -----------------------------------------------------------------------------------
def _limits(s: Sources, gaps: list[str]) -> Section:
    return Section(
        "Limits",
        [
            [
                "Single 2D slices: no volume, no neighbouring slices, no patient-level answer.",
                "One modality: MRI. The figshare part (glioma, meningioma, pituitary) is "
                "T1-weighted contrast-enhanced; SARTAJ and Br35H do not state their sequences. "
                "Other sequences (T2, FLAIR) and other modalities are untested.",
                "No patient-level split: the dataset has no patient IDs, and the figshare slices "
                "are consecutive slices of 233 patients, so one patient's slices can sit in "
                "Training and Testing. Even the clean test set is not patient-disjoint: every "
                "figure here leans optimistic.",
                _carry_over(s),
                _ood_limit(s.run),
                _weights(s.config.get("weights")),
            ]
        ],
    )


def _carry_over(s: Sources) -> str:
    text = (
        "Figures measured on the dataset's own Testing split do not carry to scans from "
        "elsewhere (other scanners, protocols, hospitals, populations)."
    )
    if not s.externals:
        return text + f" No external set scored yet (`python -m core evaluate {s.run.id} --data FOLDER`)."
    official = s.metrics.get("accuracy")
    scored = "; ".join(
        f"{e.get('name')}: accuracy {_figure(e['accuracy'], (e.get('intervals') or {}).get('accuracy'))}"
        for e in s.externals
    )
    base = f" against {format_interval(official, None)} on official Testing" if official is not None else ""
    return f"{text} On external sets: {scored}{base}."


def _weights(weights: str | None) -> str:
    if weights == "imagenet":
        return "Starting weights: Keras' ImageNet InceptionV3; the figures hold for this run only."
    if weights == "none":
        return "Starting weights: none (random initialisation): a pipeline test, not a useful model."
    if weights and weights.startswith("ensemble of"):
        return f"Starting weights: those of its members ({weights.removeprefix('ensemble of ')})."
    return (
        f"Starting weights: the file `{weights}`, not Keras' ImageNet download. Where it is the "
        "project's stand-in for the ImageNet weights (ImageNet stem, upper blocks trained on "
        "another task), the figures are for that stand-in, not for real ImageNet weights."
    )


# -- rendering --------------------------------------------------------------------------------
def _markdown_block(block: Block) -> str:
    if isinstance(block, str):
        return block
    if isinstance(block, list):
        return "\n".join(f"- {item}" for item in block)
    if isinstance(block, Heading):
        return f"### {block.text}"
    if isinstance(block, Table):
        lines = [_markdown_row(block.header), "|" + "---|" * len(block.header)]
        return "\n".join(lines + [_markdown_row(row) for row in block.rows])
    return "\n".join(
        f"- {pair.caption}: {', '.join(f'`{name}`' for name in pair.names)}" for pair in block.pairs
    )


def _markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _inline(text: str) -> str:
    """Escaped text with `code` and **bold** as HTML."""
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)


def _html_block(block: Block) -> str:
    if isinstance(block, str):
        return f"<p>{_inline(block)}</p>"
    if isinstance(block, list):
        return "<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block) + "</ul>"
    if isinstance(block, Heading):
        return f"<h3>{_inline(block.text)}</h3>"
    if isinstance(block, Table):
        head = "".join(f"<th>{_inline(cell)}</th>" for cell in block.header)
        body = "".join(
            "<tr>" + "".join(f"<td>{_inline(cell)}</td>" for cell in row) + "</tr>" for row in block.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return "".join(_html_examples(pair) for pair in block.pairs)


def _html_examples(block: Examples) -> str:
    figures = []
    for name, data in zip(block.names, block.thumbnails):
        image = f'<img src="data:image/png;base64,{data}" alt="{html.escape(name)}">' if data else ""
        figures.append(f"<figure>{image}<figcaption>{html.escape(name)}</figcaption></figure>")
    return f'<div class="pair"><p>{_inline(block.caption)}</p>{"".join(figures)}</div>'


HTML_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; max-width: 980px; margin: 2em auto; padding: 0 1em; line-height: 1.45 }}
table {{ border-collapse: collapse; margin: .5em 0 1em }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top }}
code {{ background: #f3f3f3; padding: 0 3px; word-break: break-all }}
.pair figure {{ display: inline-block; vertical-align: top; margin: 0 8px 8px 0; max-width: 140px }}
.pair figcaption {{ font-size: 11px; word-break: break-all }}
.pair img {{ display: block }}
</style></head><body>
{body}
</body></html>
"""
