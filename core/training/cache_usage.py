"""What the activation caches hold on disk, and clearing them.

Each cache folder under a registry's `.cache/` is one backbone cut (weights, input size,
boundary block, arithmetic; and for augmented views the augmentation and seed) and grows
by about 0.3 MB an image view at 256 px: a few GB for the full dataset. Nothing removes
them on its own, since any later run with the same backbone reuses them; this lists them
and deletes the ones a user no longer wants. It reads only spec.json files and file
sizes, so the app and the command line can call it without loading TensorFlow.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from core.errors import PipelineError
from core.io import read_json
from core.registry import Registry

# cache_key's form: the audit's folder and anything else under .cache are not activations.
KEY = re.compile(r"^[0-9a-f]{24}$")
CLEARING = "clearing the activation cache"  # what the training lock says while we hold it


@dataclass(frozen=True)
class CacheFolder:
    """One cache folder: the settings its spec.json records, and what it occupies."""

    key: str
    path: Path
    views: str  # "plain" (the images as they are) or "augmented"
    weights: str
    input_size: int | None
    boundary: str | None
    precision: str
    seed: int | None  # augmented views only: the plain view does not depend on it
    files: int
    bytes: int
    modified: float  # newest file's mtime: when it was last added to

    def to_dict(self) -> dict:
        return asdict(self) | {"path": str(self.path)}


def cache_folders(root: Path) -> list[CacheFolder]:
    """The activation cache folders under `root`, largest first."""
    if not root.is_dir():
        return []
    folders = []
    for path in root.iterdir():
        if path.is_dir() and KEY.match(path.name):
            try:
                folders.append(_describe(path))
            except FileNotFoundError:  # cleared by another process while we looked
                continue
    return sorted(folders, key=lambda f: f.bytes, reverse=True)


def _describe(path: Path) -> CacheFolder:
    # A folder whose spec.json is missing or unreadable is still listed, so it can be cleared.
    spec = read_json(path / "spec.json", {}) or {}
    if not isinstance(spec, dict):
        spec = {}
    files, size, modified = 0, 0, 0.0
    for entry in path.iterdir():
        try:
            stat = entry.stat()
        except FileNotFoundError:  # a build in progress renamed its temporary file meanwhile
            continue
        files += entry.suffix == ".npy"
        size += stat.st_size
        modified = max(modified, stat.st_mtime)
    views = spec.get("views", "unknown")
    return CacheFolder(
        key=path.name,
        path=path,
        views=views,
        weights=str(spec.get("weights", "unknown")),
        input_size=spec.get("input_size"),
        boundary=spec.get("boundary"),
        # Folders written before there was a choice computed in float32.
        precision=spec.get("precision", "float32"),
        seed=spec.get("seed") if views == "augmented" else None,
        files=files,
        bytes=size,
        modified=modified,
    )


def clear_cache(registry: Registry, keys: list[str] | None = None) -> list[CacheFolder]:
    """Delete the cache folders named by `keys` (all of them when None) and return them.

    Held under the training lock, so no training can be reading or writing them
    meanwhile; raises TrainingBusyError when one runs. Runs and their models never read
    the cache after training, so clearing it costs only the time of the next build.
    """
    with registry.training_lock(CLEARING):
        present = {f.key: f for f in cache_folders(registry.cache_dir)}
        unknown = sorted(set(keys or []) - set(present))
        if unknown:
            raise PipelineError(
                f"no cache folder {', '.join(unknown)} in {registry.cache_dir} "
                "(list them with: python -m core cache)"
            )
        chosen = [present[k] for k in keys] if keys is not None else list(present.values())
        for folder in chosen:
            shutil.rmtree(folder.path)
        return chosen


def human_size(size: int) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"


def spec_summary(folder: CacheFolder) -> str:
    """One line a user can recognise a cache by."""
    views = "the plain view" if folder.views == "plain" else f"{folder.views} views"
    seed = f", seed {folder.seed}" if folder.seed is not None else ""
    return (
        f"{Path(folder.weights).name}, {folder.input_size} px, cut at {folder.boundary}, "
        f"{folder.precision}, {views}{seed}"
    )
