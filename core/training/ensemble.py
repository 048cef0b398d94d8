"""Ensembles of runs, kept in the registry as runs of their own.

An ensemble is one saved model (core.model.network.build_ensemble: the members' weighted mean
softmax), so everything a run offers works on it unchanged: evaluation on the official
and clean test sets, calibration, the Classify page, export. Its config.json names the
members and their weights instead of training settings.
"""

from __future__ import annotations

import os
import time

import psutil

from core.config import framing_of
from core.data.dataset import DatasetIndex, scan_dataset
from core.errors import ConfigError
from core.evaluation.evaluate import evaluate_run
from core.model.network import build_ensemble, load_model, save_model
from core.registry import Registry, Run, now_iso


def check_members(members: list[Run]) -> None:
    """Raise ConfigError unless the runs can be averaged: two or more distinct trained
    runs (not ensembles) with the same classes, input size and framing."""
    ids = [m.id for m in members]
    if len(set(ids)) < 2:
        raise ConfigError(f"an ensemble needs at least two different runs; got {ids}")
    for member in members:
        if not member.model_path.is_file() or member.state not in ("completed", "stopped"):
            raise ConfigError(f"run {member.id} has no finished model (state: {member.state})")
        if member.config.get("kind") == "ensemble":
            raise ConfigError(f"run {member.id} is itself an ensemble; pick its members instead")
    first = members[0]
    for member in members[1:]:
        if member.classes != first.classes:
            raise ConfigError(
                f"runs {first.id} and {member.id} have different classes "
                f"({first.classes} vs {member.classes})"
            )
        if member.config.get("input_size") != first.config.get("input_size"):
            raise ConfigError(
                f"runs {first.id} and {member.id} have different input sizes "
                f"({first.config.get('input_size')} vs {member.config.get('input_size')} px)"
            )
        if framing_of(member.config) != framing_of(first.config):
            raise ConfigError(
                f"runs {first.id} and {member.id} frame their images differently "
                f"({framing_of(first.config)} vs {framing_of(member.config)})"
            )


def normalised(weights: list[float] | None, n: int) -> list[float]:
    weights = [1.0] * n if weights is None else [float(w) for w in weights]
    if len(weights) != n or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(f"give {n} non-negative weights, not all zero; got {weights}")
    total = sum(weights)
    return [w / total for w in weights]


def _shared_data(members: list[Run]) -> dict:
    """The members' data.json when they share their validation images (needed to fit
    the ensemble's calibration on images none of them trained on), else no files."""
    data = [m.read("data.json") or {} for m in members]
    validation = [d.get("files", {}).get("validation") for d in data]
    if validation[0] and all(v == validation[0] for v in validation):
        return data[0]
    return {"files": {}, "note": "members differ in validation images: no calibration"}


def create_ensemble(
    registry: Registry,
    member_ids: list[str],
    weights: list[float] | None = None,
    run_id: str | None = None,
    index: DatasetIndex | None = None,
    verbose: int = 0,
) -> Run:
    """Build, save and evaluate an ensemble run; it ends completed or failed."""
    members = [registry.get(i) for i in member_ids]
    check_members(members)
    weights = normalised(weights, len(members))
    index = index or scan_dataset(members[0].config["data_dir"])
    run = registry.create(run_id or registry.new_run_id("ensemble"))
    run.write(
        "config.json",
        {
            "kind": "ensemble",
            "members": member_ids,
            "member_weights": weights,
            "input_size": members[0].config["input_size"],
            "framing": framing_of(members[0].config),
            "data_dir": str(index.root),
            "weights": "ensemble of " + ", ".join(member_ids),
        },
    )
    run.write("classes.json", members[0].classes)
    run.write("data.json", _shared_data(members))
    run.set_status("running", pid=os.getpid(), pid_started=psutil.Process().create_time(), started=now_iso())
    start = time.monotonic()
    try:
        model = build_ensemble([load_model(m.model_path) for m in members], weights)
        save_model(model, run.model_path)
        evaluate_run(run, index, model=model, verbose=verbose)
    except BaseException as exc:
        run.set_status("failed", error=str(exc) or type(exc).__name__, ended=now_iso())
        raise
    run.write("meta.json", {"timings": {"total_s": round(time.monotonic() - start, 2)}})
    run.set_status("completed", ended=now_iso(), error=None)
    return run
