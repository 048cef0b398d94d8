"""The package's layering, read from the source: what each layer of core/ may import.

core/__init__.py lists the layers. These tests parse imports (top-level and inside
functions) and follow them through core's own modules, so a forbidden import reached
through another core module fails too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "core"


def direct_imports(module: str) -> set[str]:
    tree = ast.parse((CORE / f"{module}.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "core" and node.level == 0:
            names.update(f"core.{alias.name}" for alias in node.names)  # from core import batch
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def all_imports(module: str) -> set[str]:
    """Every module imported by `module`, through core's own modules too."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        for name in direct_imports(todo.pop()):
            if name in seen:
                continue
            seen.add(name)
            if name.startswith("core."):
                todo.append(name.removeprefix("core."))
    return seen


def top_level(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


@pytest.mark.parametrize("module", sorted(p.stem for p in CORE.glob("*.py")))
def test_core_never_imports_streamlit(module):
    assert "streamlit" not in top_level(all_imports(module))


@pytest.mark.parametrize(
    "module",
    [
        "errors",
        "config",
        "io",
        "images",
        "dataset",
        "registry",
        "intervals",
        "audit",
        "split",
        "shortcut",
        "progress",
        "resolve",
        "calibration",
        "tta",
        "interpret",
    ],
)
def test_bottom_layer_needs_neither_tensorflow_nor_keras(module):
    assert not top_level(all_imports(module)) & {"tensorflow", "keras"}


@pytest.mark.parametrize("module", ["augment", "model"])
def test_model_and_augmentation_need_keras_but_not_tensorflow(module):
    # bench/gpu_bench.py runs these on a machine with JAX and no TensorFlow.
    imports = top_level(all_imports(module))
    assert "keras" in imports
    assert "tensorflow" not in imports


SERVING = {"core.batch", "core.inference"}


@pytest.mark.parametrize(
    "module",
    [
        "evaluate",
        "external",
        "train",
        "feeds",
        "recorder",
        "lifecycle",
        "phases",
        "ood_fit",
        "interpret",
        "card",
    ],
)
def test_training_evaluation_and_analysis_never_import_the_serving_layer(module):
    # Test-time augmentation in evaluation uses core.tta and the model, not a Classifier.
    assert not all_imports(module) & SERVING


def test_serving_takes_the_temperature_from_calibration_not_from_analysis():
    imports = all_imports("inference")
    assert "core.calibration" in imports
    assert "core.interpret" not in imports
