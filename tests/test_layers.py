"""The package's layering, read from the source: what each layer of core/ may import.

core/__init__.py lists the layers: the base modules at core's top level, then the
subpackages, then the command line. These tests parse imports (top-level and inside
functions) and follow them through core's own modules, so a forbidden import reached
through another core module fails too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "core"

# Each layer of core and the layers it may import besides its own. A module at core's
# top level is in "base", except the command line; a subpackage is its own layer.
MAY_IMPORT = {
    "base": set(),
    "data": {"base"},
    "model": {"base"},
    "evaluation": {"base", "data", "model"},
    "explanation": {"base", "data", "model"},
    "training": {"base", "data", "model", "evaluation", "explanation"},
    "serving": {"base", "data", "model", "evaluation", "explanation"},
    "cli": {"base", "data", "model", "evaluation", "explanation", "training", "serving"},
}
COMMAND_LINE = {"cli", "__main__"}


def module_name(path: Path) -> str:
    """core/data/images.py -> "data.images"; core/data/__init__.py -> "data"."""
    parts = path.relative_to(CORE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(module_name(p) for p in CORE.rglob("*.py") if p.name != "__init__.py")
PACKAGES = sorted(module_name(p) for p in CORE.glob("*/__init__.py"))


def source(module: str) -> Path:
    path = CORE / f"{module.replace('.', '/')}.py"
    return path if path.is_file() else CORE / module.replace(".", "/") / "__init__.py"


def direct_imports(module: str) -> set[str]:
    tree = ast.parse(source(module).read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"  # from core.serving import batch
                is_module = submodule.startswith("core.") and submodule.removeprefix("core.") in MODULES
                names.add(submodule if is_module else node.module)
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
            if name.startswith("core.") and name.removeprefix("core.") in MODULES:
                todo.append(name.removeprefix("core."))
    return seen


def top_level(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


def layer(module: str) -> str:
    if "." in module:
        return module.split(".")[0]
    return "cli" if module in COMMAND_LINE else "base"


@pytest.mark.parametrize("module", MODULES)
def test_core_never_imports_streamlit(module):
    assert "streamlit" not in top_level(all_imports(module))


@pytest.mark.parametrize("module", MODULES)
def test_a_layer_imports_only_itself_and_the_layers_below(module):
    assert layer(module) in MAY_IMPORT, f"core.{module} is in no layer: add its package to MAY_IMPORT"
    allowed = MAY_IMPORT[layer(module)] | {layer(module)}
    imported = {name.removeprefix("core.") for name in direct_imports(module) if name.startswith("core.")}
    unknown = imported - set(MODULES)
    assert not unknown, f"core.{module} imports {sorted(unknown)}, not modules: import full module paths"
    wrong = sorted(f"core.{name} ({layer(name)})" for name in imported if layer(name) not in allowed)
    assert not wrong, f"core.{module} ({layer(module)}) imports a layer above or beside it: {wrong}"


@pytest.mark.parametrize("package", PACKAGES)
def test_a_subpackage_says_what_it_holds_and_imports_nothing(package):
    tree = ast.parse(source(package).read_text())
    assert ast.get_docstring(tree), f"core/{package}/__init__.py needs a docstring"
    assert "May import" in ast.get_docstring(tree)
    assert not [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]


def test_every_subpackage_is_a_layer():
    assert set(PACKAGES) == set(MAY_IMPORT) - {"base", "cli"}


@pytest.mark.parametrize(
    "module",
    [
        "errors",
        "config",
        "io",
        "data.images",
        "data.dataset",
        "registry",
        "intervals",
        "data.audit",
        "data.split",
        "data.shortcut",
        "progress",
        "resolve",
        "calibration",
        "model.tta",
        "evaluation.interpret",
    ],
)
def test_bottom_layer_needs_neither_tensorflow_nor_keras(module):
    assert not top_level(all_imports(module)) & {"tensorflow", "keras"}


@pytest.mark.parametrize("module", ["model.augment", "model.network"])
def test_model_and_augmentation_need_keras_but_not_tensorflow(module):
    # bench/gpu_bench.py runs these on a machine with JAX and no TensorFlow.
    imports = top_level(all_imports(module))
    assert "keras" in imports
    assert "tensorflow" not in imports


SERVING = {f"core.{name}" for name in MODULES if layer(name) == "serving"}


@pytest.mark.parametrize(
    "module", [name for name in MODULES if layer(name) in {"training", "evaluation", "explanation"}]
)
def test_training_evaluation_and_explanation_never_import_the_serving_layer(module):
    # Test-time augmentation in evaluation uses core.model.tta and the model, not a Classifier.
    assert not all_imports(module) & SERVING


def test_serving_takes_the_temperature_from_calibration_not_from_analysis():
    imports = all_imports("serving.inference")
    assert "core.calibration" in imports
    assert "core.evaluation.interpret" not in imports
