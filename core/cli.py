"""Command line: python -m core COMMAND --help, for the commands train, audit, evaluate,
ensemble, predict, export, card, runs, stop, delete, cache and fetch-data."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from core.config import (
    FLAG_BELOW,
    SECTIONS,
    Setting,
    TrainConfig,
    describe,
    framing_of,
    preset_config,
    preset_values,
    settings,
)
from core.data.audit import describe_left_out
from core.data.dataset import scan_dataset
from core.errors import PipelineError
from core.model.tta import DEFAULT_VIEWS, VIEWS, views
from core.progress import ProgressLog, TrainingLog
from core.registry import DEFAULT_MODELS_DIR, Registry

DEFAULT_DATA = os.environ.get("BTMRI_DATA", "data/brain-tumor-mri")


def _train_parser(sub) -> None:
    """The train command: one option per TrainConfig setting, generated from its metadata."""
    p = sub.add_parser("train", help="fine-tune InceptionV3 on a dataset folder")
    p.add_argument("data", nargs="?", help=TrainConfig.__dataclass_fields__["data_dir"].metadata["help"])
    groups = {section: p.add_argument_group(section.lower()) for section in SECTIONS}
    for s in settings():
        # No default here: an option given on the command line is told apart from one
        # left out, which takes the preset's value.
        groups[s.section].add_argument(
            s.flag, dest=s.path, default=argparse.SUPPRESS, help=_option_help(s), **_argument_kind(s)
        )
    p.add_argument("--run-id", help="name of the new run (default: timestamp)")
    p.add_argument("--prepared-run", help=argparse.SUPPRESS)  # used by the app's launcher


def _argument_kind(s: Setting) -> dict:
    if s.kind is bool:
        return {"action": argparse.BooleanOptionalAction}
    if s.choices:
        return {"choices": s.choices}
    metavar = {int: "N", float: "X"}.get(s.kind, s.flag[2:].upper())
    return {"type": s.kind, "metavar": metavar}


def _option_help(s: Setting) -> str:
    values = [f"default: {describe(s, s.default)}"]
    values += [f"{name}: {describe(s, v)}" for name, v in preset_values(s).items()]
    return f"{s.help} ({'; '.join(values)})".replace("%", "%%")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m core", description="Brain-tumour MRI classifier (InceptionV3)."
    )
    parser.add_argument(
        "--models",
        default=os.environ.get("BTMRI_MODELS", str(DEFAULT_MODELS_DIR)),
        help="registry folder holding the runs (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    p = sub.add_parser(
        "audit", help="duplicates, train/test leakage, the clean test set, and the shortcut score"
    )
    p.add_argument("data", help="dataset root with Training/ and Testing/")
    p.add_argument("--json", action="store_true", help="the full audit (groups, pairs) as JSON")
    p = sub.add_parser(
        "evaluate", help="evaluate a run on its dataset's Testing split, or on another dataset (--data)"
    )
    p.add_argument("run")
    p.add_argument(
        "--data",
        help="another dataset to score the run on, laid out as ROOT/<class>/* or ROOT/Testing/<class>/* "
        "(saved under the run's external/; the run's own dataset root: its official figures)",
    )
    _tta_arguments(p, "also evaluate with test-time augmentation (saved as tta.json)")
    p = sub.add_parser("ensemble", help="average several runs into an ensemble run, and evaluate it")
    p.add_argument("runs", nargs="+", help="two or more runs with the same classes and input size")
    p.add_argument("--member-weights", help="comma-separated weights, one per run (default: equal)")
    p.add_argument("--run-id", help="name of the ensemble run (default: timestamp)")
    p.add_argument("--data", help="dataset root (default: the first member's)")
    p = sub.add_parser("predict", help="classify image or DICOM files, folders and zips with a run")
    p.add_argument("run")
    p.add_argument("images", nargs="+", type=Path, help="files, folders (recursive) or .zip archives")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--csv", type=Path, help="write the table (one row per slice) to this CSV file")
    p.add_argument(
        "--flag-below",
        type=float,
        default=FLAG_BELOW,
        help=f"flag predictions whose top probability is below this (default {FLAG_BELOW})",
    )
    p.add_argument("--calibrated", action="store_true", help="temperature-scaled probabilities")
    _tta_arguments(p, "average the probabilities over test-time augmentation views")
    p = sub.add_parser("export", help="export a run as a TensorFlow SavedModel (TF Serving)")
    p.add_argument("run")
    p.add_argument("--out", type=Path, help="target folder (default: models/<run>/saved_model/1)")
    p = sub.add_parser("card", help="write a run's model card (Markdown and HTML)")
    p.add_argument("run")
    p.add_argument("--out", type=Path, help="target folder (default: the run's folder)")
    p.add_argument("--format", choices=("md", "html", "both"), default="both")
    p = sub.add_parser("runs", help="list the runs in the registry")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("stop", help="stop a running training (it keeps its checkpoint)")
    p.add_argument("run")
    p = sub.add_parser("delete", help="delete a finished run")
    p.add_argument("run")
    p = sub.add_parser("cache", help="list the activation caches on disk, or clear them")
    p.add_argument("--clear", nargs="*", metavar="KEY", help="delete these cache folders (none named: all)")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser(
        "fetch-data",
        help="download the Kaggle dataset with kagglehub, or unpack a local zip, and check its layout",
    )
    p.add_argument(
        "--archive", type=Path, metavar="FILE", help="a local .zip of the dataset, or its unpacked folder"
    )
    p.add_argument(
        "--to",
        type=Path,
        metavar="FOLDER",
        default=Path(DEFAULT_DATA),
        help="folder for the dataset (default: %(default)s)",
    )
    return parser


def cmd_train(args, registry: Registry) -> int:
    # Everything that can be wrong with the request is checked before TensorFlow loads.
    if args.prepared_run:
        run = registry.get(args.prepared_run)
    else:
        if not args.data:
            raise PipelineError("give the dataset folder: python -m core train DATA")
        config = _config_from_args(args).validate()
        if config.strategy == "multi_worker":
            from core.training.distribute import cluster_from_env

            cluster_from_env()  # a missing or wrong TF_CONFIG fails before a run is created
        scan_dataset(config.data_dir)  # a wrong folder fails here, before a run is created
        if holder := registry.lock_holder():
            raise PipelineError(f"a training is already running: {holder}")

    from core.training.lifecycle import StopFlag
    from core.training.train import prepare_run, train_run

    stop_flag = StopFlag()
    stop_flag.install_signal_handlers()  # Ctrl-C or the app's Stop button: stop, keep the best
    verbose = 1 if sys.stdout.isatty() else 2
    if not args.prepared_run:
        run = prepare_run(registry, config, args.run_id)
    # Off a terminal (a log file, CI, nohup) Keras prints only whole epochs: the stages
    # before and between them (the audit, the cache build) come from progress.json.
    log = None if sys.stdout.isatty() else TrainingLog(run.file("progress.json"))
    if log:
        log.start()
    try:
        train_run(registry, run, verbose=verbose, stop=stop_flag)
    finally:
        if log:
            log.stop()
    _print_summary(run)
    return 0


def _config_from_args(args) -> TrainConfig:
    """The preset's configuration, with the options given on the command line on top."""
    given = vars(args)
    changes = {s.path: given[s.path] for s in settings() if s.path in given and s.path != "preset"}
    data_dir = str(Path(args.data).expanduser().resolve())
    return preset_config(data_dir, given.get("preset", "default"), changes)


def _print_summary(run) -> None:
    print(f"run {run.id}: {run.state}")
    if metrics := run.metrics:
        print(
            f"Testing accuracy {metrics['accuracy']:.4f}  macro F1 {metrics['macro_f1']:.4f}"
            f"  (n={metrics['n']}; 95% intervals: {_intervals(metrics)})"
        )
        if clean := metrics.get("clean"):
            reasons = clean.get("left_out")
            why = describe_left_out(reasons) if reasons else f"{clean['excluded']} images"
            print(
                f"clean test set accuracy {clean['accuracy']:.4f}  macro F1 {clean['macro_f1']:.4f}"
                f"  (n={clean['n']}; 95% intervals: {_intervals(clean)}; {why} left out)"
            )


def _intervals(metrics: dict) -> str:
    ci = metrics.get("intervals") or {}
    if not ci.get("accuracy"):
        return "not computed, re-run evaluate"
    (a_low, a_high), (f_low, f_high) = ci["accuracy"], ci["macro_f1"]
    return f"accuracy {a_low:.4f}-{a_high:.4f}, macro F1 {f_low:.4f}-{f_high:.4f}"


def _run_with_model(registry: Registry, run_id: str):
    run = registry.get(run_id)
    if not run.model_path.is_file():
        raise PipelineError(f"run {run.id} has no saved model (state: {run.state})")
    return run


def _tta_arguments(p, help_text: str) -> None:
    p.add_argument("--tta", action="store_true", help=help_text)
    p.add_argument(
        "--tta-views",
        default=",".join(DEFAULT_VIEWS),
        help=f"comma-separated views (default {','.join(DEFAULT_VIEWS)}; all: {','.join(VIEWS)})",
    )


def _tta_views(args) -> list:
    return views(args.tta_views.split(",")) if args.tta else []


def cmd_evaluate(args, registry: Registry) -> int:
    run = _run_with_model(registry, args.run)
    chosen = _tta_views(args)
    if _is_external(args.data, run):
        if chosen:
            raise PipelineError("--tta applies to the run's own Testing split, not to --data")
        return _evaluate_external(run, args.data)
    index = scan_dataset(args.data or run.config.get("data_dir", ""))
    from core.evaluation.evaluate import evaluate_run, evaluate_tta

    evaluate_run(run, index, verbose=1)
    _print_summary(run)
    _fit_ood(run, index)
    if chosen:
        tta = evaluate_tta(run, index, chosen)
        print(
            f"with TTA ({', '.join(tta['views'])}): Testing accuracy {tta['accuracy']:.4f}  macro F1 "
            f"{tta['macro_f1']:.4f}; clean {tta['clean']['accuracy']:.4f} / {tta['clean']['macro_f1']:.4f}"
        )
    return 0


def _fit_ood(run, index) -> None:
    """Fit the run's out-of-distribution check on its training and validation images."""
    from core.model.ood import describe_check

    if run.config.get("kind") == "ensemble":
        member = run.config["members"][0]
        print(f"out-of-distribution check: the first member's (python -m core evaluate {member} fits it)")
        return
    from core.model.network import load_model
    from core.training.ood_fit import fit_run

    fit_run(run, index, load_model(run.model_path))
    print(describe_check(run))


def _is_external(data: str | None, run) -> bool:
    own = run.config.get("data_dir")
    return bool(data) and (not own or Path(data).expanduser().resolve() != Path(own).expanduser().resolve())


def _evaluate_external(run, root: str) -> int:
    from core.evaluation.external import describe, evaluate_external

    m = evaluate_external(run, root, verbose=1)
    print(f"run {run.id} on {m['name']} ({m['root']}): {m['n']} images (95% intervals)")
    print("\n".join(describe(m)))
    print(f"written to {run.file('external') / m['slug']}")
    return 0


def cmd_ensemble(args, registry: Registry) -> int:
    weights = None
    if args.member_weights:
        try:
            weights = [float(w) for w in args.member_weights.split(",")]
        except ValueError:
            raise PipelineError(f"--member-weights must be numbers: {args.member_weights!r}") from None
    from core.training.ensemble import create_ensemble  # checks the members before loading a model

    index = scan_dataset(args.data) if args.data else None
    run = create_ensemble(registry, args.runs, weights, args.run_id, index, verbose=1)
    _print_summary(run)
    return 0


def _predict_sources(paths: list[Path]):
    from core.serving import batch

    sources = []
    for path in paths:
        if path.is_dir():
            sources += [(str(path / name), file) for name, file in batch.folder_sources(path)]
        elif path.suffix.lower() == ".zip" and path.is_file():
            sources += [(f"{path}:{name}", data) for name, data in batch.zip_sources(path.read_bytes())]
        else:
            sources.append((str(path), path))  # a missing file gets its own error row
    return sources


def cmd_predict(args, registry: Registry) -> int:
    run = _run_with_model(registry, args.run)
    _tta_views(args)  # a wrong view name fails before TensorFlow loads
    sources = _predict_sources(args.images)
    from core.serving import batch
    from core.serving.inference import Classifier

    classifier = Classifier(run)

    progress = ProgressLog("classifying") if len(sources) > 1 else None
    results = batch.classify(classifier, sources, args.calibrated, tta=_tta_views(args), progress=progress)
    rows = batch.table(results, classifier.classes, args.flag_below)
    if classifier.ood is None:
        print(f"note: {classifier.ood_note}", file=sys.stderr)
    if args.csv:
        _write_text(args.csv, batch.to_csv(rows))
    if args.json:
        # Without a check each answer carries the reason beside its empty score.
        note = {"ood_note": classifier.ood_note} if classifier.ood is None else {}
        print(json.dumps([r.to_dict() | note for r in results], indent=2))
    else:
        for r in results:
            if r.error:
                print(f"{r.name}: error: {r.error}")
            else:
                probs = "  ".join(f"{c} {p:.3f}" for c, p in r.probabilities.items())
                flag = "  FLAGGED: low confidence" if (r.confidence or 0.0) < args.flag_below else ""
                if r.unusual:
                    flag += f"  UNUSUAL: not like the training MRI slices (score {r.ood_score:,.1f})"
                print(f"{r.name}: {r.label} ({r.confidence:.1%})  [{probs}]{flag}")
    return 1 if all(r.error for r in results) else 0


def _write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as exc:
        raise PipelineError(f"cannot write {path}: {exc.strerror or exc}") from None


def cmd_audit(args, registry: Registry) -> int:
    from core.data.audit import cached_audit
    from core.data.shortcut import cached_shortcut_score
    from core.data.shortcut import describe as describe_shortcut

    index = scan_dataset(args.data)

    audit = cached_audit(index, registry.cache_dir, ProgressLog("auditing: reading images"))
    shortcut = cached_shortcut_score(
        index, audit, registry.cache_dir, ProgressLog("shortcut score: reading image properties")
    )
    if args.json:
        print(json.dumps({"summary": audit.summary(), "shortcut": shortcut, **audit.to_json()}))
        return 0
    summary = audit.summary()
    print(
        f"{summary['images']} images; thresholds r32 >= {summary['thresholds']['r32']}, "
        f"r128 >= {summary['thresholds']['r128']}"
    )
    for key in (
        "exact_duplicate_groups",
        "exact_redundant_files",
        "near_duplicate_pairs",
        "mirrored_near_pairs",
        "redundant_within_training",
        "redundant_within_testing",
        "testing_with_copy_in_training",
        "label_conflict_groups",
        "unreadable",
    ):
        print(f"  {key.replace('_', ' '):32s} {summary[key]}")
    print(
        f"clean test set: {summary['clean_test_size']} of {len(index.testing)} Testing images "
        f"({describe_left_out(summary['clean_test_left_out'])} left out; copy-free, not patient-disjoint)"
    )
    for name, row in summary["per_class"].items():
        print(
            f"  {name:12s} Testing {row['testing']:4d}  with a copy in Training {row['leaked']:4d}"
            f"  clean {row['clean']:4d}"
        )
    print(describe_shortcut(shortcut))
    return 0


def cmd_export(args, registry: Registry) -> int:
    run = _run_with_model(registry, args.run)
    target = args.out or run.file("saved_model") / "1"  # TF Serving wants a version folder
    if target.exists():
        raise PipelineError(f"{target} already exists; remove it or pass --out")
    from core.model.network import load_model

    load_model(run.model_path).export(str(target), format="tf_saved_model", verbose=False)
    print(
        f"SavedModel written to {target} (input: float32 RGB in [0, 255], "
        f"shape (batch, {run.config['input_size']}, {run.config['input_size']}, 3), framed "
        f"'{framing_of(run.config)}' as core.data.images.load_rgb does; "
        f"output: probabilities of {', '.join(run.classes)})"
    )
    return 0


def cmd_card(args, registry: Registry) -> int:
    from core.evaluation.card import write_card

    run = registry.get(args.run)
    written, gaps = write_card(run, args.out or run.path, args.format)
    for path in written:
        print(f"model card written to {path}")
    if gaps:
        print(f"not available for this card: {'; '.join(gaps)}")
    return 0


def cmd_runs(args, registry: Registry) -> int:
    rows = []
    for run in registry.list():
        metrics = run.metrics or {}
        rows.append(
            {
                "id": run.id,
                "state": run.state,
                "accuracy": metrics.get("accuracy"),
                "macro_f1": metrics.get("macro_f1"),
                "error": run.status.get("error"),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(f"no runs in {registry.root}")
    else:
        for row in rows:
            acc = "-" if row["accuracy"] is None else f"{row['accuracy']:.4f}"
            f1 = "-" if row["macro_f1"] is None else f"{row['macro_f1']:.4f}"
            print(f"{row['id']:40s} {row['state']:10s} acc {acc:7s} macroF1 {f1}")
    return 0


def cmd_stop(args, registry: Registry) -> int:
    from core.training.launcher import stop

    if not stop(registry.get(args.run)):
        raise PipelineError(f"run {args.run} is not running")
    print(f"stop requested for {args.run}")
    return 0


def cmd_delete(args, registry: Registry) -> int:
    registry.delete(args.run)
    print(f"deleted {args.run}")
    return 0


def cmd_cache(args, registry: Registry) -> int:
    from core.training.cache_usage import cache_folders, clear_cache, human_size, spec_summary

    if args.clear is not None:
        cleared = clear_cache(registry, args.clear or None)
        freed = sum(f.bytes for f in cleared)
        print(f"cleared {len(cleared)} cache folder(s), {human_size(freed)} freed")
        return 0
    folders = cache_folders(registry.cache_dir)
    if args.json:
        print(json.dumps([f.to_dict() for f in folders], indent=2))
    elif not folders:
        print(f"no activation cache in {registry.cache_dir}")
    else:
        for f in folders:
            print(f"{f.key}  {human_size(f.bytes):>9s}  {f.files:6d} files  {spec_summary(f)}")
        total = sum(f.bytes for f in folders)
        print(f"{len(folders)} folder(s), {human_size(total)}; clear: python -m core cache --clear [KEY ...]")
    return 0


def cmd_fetch_data(args, registry: Registry) -> int:
    from core.data.fetch import download, from_local

    fetched = from_local(args.archive, args.to) if args.archive else download(args.to)
    print(fetched.describe())
    print(f"train on it: python -m core train {fetched.root}  (the app: BTMRI_DATA={fetched.root} make app)")
    return 0


COMMANDS = {
    "train": cmd_train,
    "audit": cmd_audit,
    "evaluate": cmd_evaluate,
    "ensemble": cmd_ensemble,
    "predict": cmd_predict,
    "export": cmd_export,
    "card": cmd_card,
    "runs": cmd_runs,
    "stop": cmd_stop,
    "delete": cmd_delete,
    "cache": cmd_cache,
    "fetch-data": cmd_fetch_data,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args, Registry(args.models))
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
