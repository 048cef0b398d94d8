"""The headline: one recipe's figures over seeds that no selection used.

    .venv/bin/python bench/headline.py                                   # the default recipe, seeds 2029-2033
    .venv/bin/python bench/headline.py --options "--preset quick" --name quick --seeds 2034 2035

Trains the recipe once per seed through `python -m core train` in one registry (--models),
so the first run builds the activation cache and the others reuse it. A completed run is
reused when its config.json is exactly the config that command would write: what a run's
config says it did is what it did, whoever started it.

Each run is then scored, once, on official Testing and the clean test set (its own
metrics.json, written by the run) and on the external set (--external, Radiopaedia by
default; never trained or chosen on). Prints each seed's figures with their 95% bootstrap
intervals, then the mean and standard deviation over seeds and their range, and the machine;
writes headline.json under --models.

Cost: after the runs, one bare forward pass over all the dataset's images at the runs' input
size is timed as bench/select_recipe.py times it (in float32, and also in the runs'
arithmetic when that differs), and each run's time is given in such passes. The first run
in an empty registry builds the activation cache; the others reuse it.

Pick seeds that no selection used (bench/select_recipe.py uses 1 2 3 by default; the
framing and scanner comparisons used 2027 and 2028).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import DATASET, OUT, SHARED, machine, standin_weights  # noqa: E402
from bench.select_recipe import measure_pass  # noqa: E402
from core.cli import _config_from_args, build_parser  # noqa: E402
from core.evaluation.external import evaluate_external  # noqa: E402
from core.intervals import format_interval  # noqa: E402
from core.registry import Registry  # noqa: E402
from core.resolve import resolve_config  # noqa: E402
from core.training.distribute import machine_precision  # noqa: E402

EXTERNAL = SHARED / "datasets" / "external-radiopaedia-dev"
SEEDS = (2029, 2030, 2031, 2032, 2033)


def train_arguments(data: Path, weights: str, options: list[str], seed: int, run_id: str) -> list[str]:
    return ["train", str(data), "--weights", weights, *options, "--seed", str(seed), "--run-id", run_id]


def expected_config(arguments: list[str]) -> dict:
    """The config.json that `python -m core train` with these arguments writes."""
    config = _config_from_args(build_parser().parse_args(arguments)).validate()
    return json.loads(json.dumps(resolve_config(config, machine_precision()).to_dict()))


def ensure_run(registry: Registry, arguments: list[str], log: Path) -> str:
    """'reused' or 'trained': the run named in `arguments`, completed with their config."""
    run_id = arguments[arguments.index("--run-id") + 1]
    expected = expected_config(arguments)
    if (registry.root / run_id).exists():
        run = registry.get(run_id)
        if run.state == "completed" and run.config == expected:
            return "reused"
        raise SystemExit(
            f"{run.path} exists but is not a completed run of this recipe; delete it or pick another --name"
        )
    command = [sys.executable, "-m", "core", "--models", str(registry.root), *arguments]
    print(f"  training {run_id} (log: {log})", flush=True)
    with log.open("w") as handle:
        code = subprocess.run(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT).returncode
    if code:
        raise SystemExit(f"training {run_id} failed (exit {code}); see {log}")
    return "trained"


def row(seed: int, run, external: dict) -> dict:
    metrics = run.metrics
    meta = run.read("meta.json", {})
    timings = meta.get("timings", {})
    return {
        "seed": seed,
        "run": run.id,
        "minutes": timings.get("total_s", float("nan")) / 60,
        "timings": timings,
        "input_size": run.config["input_size"],
        "precision": run.config["precision"],
        "kept_epoch": meta.get("kept_epoch"),
        "official": _figure(metrics),
        "clean": _figure(metrics["clean"]),
        "external": _figure(external),
        "external_macro_recall": external["macro_recall"],
        "external_recall": {c: v["recall"] for c, v in external["per_class"].items() if v["support"]},
    }


def _figure(metrics: dict) -> dict:
    return {
        "n": metrics["n"],
        "accuracy": metrics["accuracy"],
        "interval": (metrics.get("intervals") or {}).get("accuracy"),
    }


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.2f}% ± {100 * sd:.2f} (range {100 * min(values):.2f}-{100 * max(values):.2f}%)"


def report(rows: list[dict]) -> None:
    print(f"\n{'seed':>5s}  {'minutes':>7s}  {'official Testing':22s}  {'clean test set':22s}  external")
    for r in rows:
        print(
            f"{r['seed']:5d}  {r['minutes']:7.1f}  "
            + "  ".join(
                f"{format_interval(r[k]['accuracy'], r[k]['interval']):22s}"
                for k in ("official", "clean", "external")
            )
        )
    print(f"\nover {len(rows)} seeds (mean ± standard deviation):")
    sets = (("official", "official Testing"), ("clean", "clean test set"), ("external", "external"))
    for key, name in sets:
        n = rows[0][key]["n"]
        print(f"  {name:18s} n={n:5d}  {spread([r[key]['accuracy'] for r in rows])}")
    print(f"  {'external macro recall':24s}  {spread([r['external_macro_recall'] for r in rows])}")
    for c in rows[0]["external_recall"]:
        print(f"  {'external recall ' + c:24s}  {spread([r['external_recall'][c] for r in rows])}")


def costs(rows: list[dict], passes: dict[str, dict]) -> None:
    """Each run's time in bare forward passes, per arithmetic of the pass."""
    for precision, p in passes.items():
        print(
            f"\none bare forward pass at {p['input_size']} px in {precision} over "
            f"{p['images_total']:,} images ({p['images_timed']} timed, extrapolated): "
            f"{p['wall_s']:,.0f} s wall"
        )
        for r in rows:
            total = r["timings"].get("total_s", float("nan"))
            cache = r["timings"].get("cache_s")
            built = f" (of it {cache:,.0f} s building the cache)" if cache and cache > 60 else ""
            print(f"  seed {r['seed']}: {total:,.0f} s = {total / p['wall_s']:.2f} passes{built}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--options", default="", help="the recipe's train options (default: none)")
    parser.add_argument("--name", default="default", help="run names: NAME-sSEED (default: default)")
    parser.add_argument("--models", type=Path, default=OUT / "headline", help="the registry of the runs")
    parser.add_argument("--data", type=Path, default=DATASET)
    parser.add_argument("--weights", default="standin", help="standin (default), imagenet or a weights file")
    parser.add_argument("--external", type=Path, default=EXTERNAL)
    parser.add_argument("--pass-images", type=int, default=640, help="images timed in the pass (0: all)")
    args = parser.parse_args(argv)
    if len(args.seeds) < 2 or len(set(args.seeds)) != len(args.seeds):
        parser.error("give at least two different seeds")
    weights = str(standin_weights()) if args.weights == "standin" else args.weights
    data = args.data.expanduser().resolve()
    options = shlex.split(args.options)
    print("=== bench/headline.py ===")
    print("machine:", machine())
    print(f"recipe: {args.options or '(the default preset)'}; weights {args.weights}; seeds {args.seeds}")

    args.models.mkdir(parents=True, exist_ok=True)
    registry = Registry(args.models)
    rows = []
    for seed in args.seeds:
        run_id = f"{args.name}-s{seed}"
        arguments = train_arguments(data, weights, options, seed, run_id)
        how = ensure_run(registry, arguments, args.models / f"{run_id}.log")
        run = registry.get(run_id)
        start = time.monotonic()
        external = evaluate_external(run, args.external)
        print(f"  {run_id}: {how}; external set scored in {time.monotonic() - start:.0f} s", flush=True)
        rows.append(row(seed, run, external))
    report(rows)
    size = rows[0]["input_size"]
    precisions = dict.fromkeys(["float32", *(r["precision"] for r in rows)])
    passes = {p: measure_pass(data, size, weights, args.pass_images, p) for p in precisions}
    costs(rows, passes)
    print("\nmachine:", machine())
    summary = {
        "machine": machine(),
        "recipe": args.options,
        "weights": args.weights,
        "runs": rows,
        "forward_pass": passes,
    }
    (args.models / "headline.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
