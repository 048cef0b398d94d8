"""Resolving a training config: the concrete choices a run's config.json records.

A config may say precision "auto" and name no input size; a run records what these
stood for, so it re-runs the same on another machine. The resolution is pure: the
facts about the machine come in as arguments (core.training.distribute reads them).
"""

from __future__ import annotations

from dataclasses import replace

from core.config import AugmentConfig, TrainConfig, input_size_for


def auto_precision(cpu_has_bfloat16: bool, gpus: list[tuple[int, int]]) -> str:
    """What "auto" stands for: where GPUs train, their arithmetic decides, not the host
    CPU's (a GPU server's CPU may well have AMX). GPUs from Ampere (8.0) on multiply
    bfloat16 in their tensor cores; older ones emulate it, slower than float32.
    `gpus`: each GPU's CUDA compute capability."""
    if gpus:
        return "mixed_bfloat16" if min(gpus) >= (8, 0) else "float32"
    return "mixed_bfloat16" if cpu_has_bfloat16 else "float32"


def resolve_config(config: TrainConfig, auto: str) -> TrainConfig:
    """The config with its machine-dependent choices made: the precision, where `auto`
    is what "auto" stands for on the machine that trains, and the input size that
    precision trains at when the config names none. The augmentation is the one the
    run really applies."""
    precision = auto if config.precision == "auto" else config.precision
    size = input_size_for(precision) if config.input_size is None else config.input_size
    return replace(config, precision=precision, input_size=size, augment=applied_augmentation(config))


def applied_augmentation(config: TrainConfig) -> AugmentConfig:
    """The augmentation the run really applies: the cached mode with one stored view
    trains on each image as it is, so its config says augmentation is off."""
    if config.mode == "cached" and config.cache_views == 1:
        return replace(config.augment, enabled=False)
    return config.augment
