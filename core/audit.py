"""Dataset audit: exact and near duplicates, train/test leakage, label conflicts, and the
clean test set (Testing minus every image with a copy in Training).

Near-duplicates are found as the dataset's PROVENANCE.md defines them, so that figures
can be compared: two images are near copies when the correlation of their z-normalised
grayscale thumbnails is at least 0.99 at 32x32 and at least 0.97 at 128x128.
z-normalisation makes the measure blind to brightness and contrast changes, and
thumbnails to re-encoding and rescaling; neighbouring MRI slices of one patient correlate
at about 0.91-0.94 at 128x128, safely below the 0.97 threshold, so they are not merged.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from core.dataset import DatasetIndex, file_digest
from core.errors import ImageDecodeError
from core.images import decode
from core.registry import atomic_write_json, read_json

COARSE, FINE = 32, 128
COARSE_MIN, FINE_MIN = 0.99, 0.97
Progress = Callable[[int, int], None]


@dataclass
class Audit:
    """Everything the audit found; plain lists so it saves to JSON and back."""

    files: list[str]  # relative paths, Training first then Testing
    splits: list[str]
    labels: list[str]
    groups: list[list[int]] = field(default_factory=list)  # exact or near copies, size >= 2
    exact_pairs: list[tuple[int, int]] = field(default_factory=list)
    near_pairs: list[tuple[int, int, float, float]] = field(default_factory=list)  # i, j, r32, r128
    unreadable: dict[str, str] = field(default_factory=dict)

    # -- questions a teacher asks ---------------------------------------------------------
    def group_of(self) -> dict[int, int]:
        return {member: g for g, members in enumerate(self.groups) for member in members}

    def leaked_test_files(self) -> set[str]:
        """Testing files with an exact or near copy in Training."""
        leaked = set()
        for members in self.groups:
            if any(self.splits[m] == "Training" for m in members):
                leaked |= {self.files[m] for m in members if self.splits[m] == "Testing"}
        return leaked

    def clean_test_files(self) -> list[str]:
        """Testing minus leaked files, each within-Testing duplicate group counted once."""
        leaked, group_of, seen = self.leaked_test_files(), self.group_of(), set()
        clean = []
        for i, (file, split) in enumerate(zip(self.files, self.splits)):
            if split != "Testing" or file in leaked or file in self.unreadable:
                continue
            group = group_of.get(i)
            if group is not None:
                if group in seen:
                    continue
                seen.add(group)
            clean.append(file)
        return clean

    def training_copies_to_drop(self) -> set[str]:
        """All but the first Training member of every copy group: dropping them before the
        validation split keeps copies of training images out of the validation set."""
        drop = set()
        for members in self.groups:
            inside = [m for m in members if self.splits[m] == "Training"]
            drop |= {self.files[m] for m in inside[1:]}
        return drop

    def label_conflicts(self) -> list[list[int]]:
        return [g for g in self.groups if len({self.labels[m] for m in g}) > 1]

    def redundant(self, split: str) -> int:
        """Files that are a copy of another file of the same split (group size - 1)."""
        total = 0
        for members in self.groups:
            inside = [m for m in members if self.splits[m] == split]
            total += max(0, len(inside) - 1)
        return total

    def summary(self) -> dict:
        leaked = self.leaked_test_files()
        classes = sorted(set(self.labels))
        label_of = dict(zip(self.files, self.labels))
        test_counts = Counter(label for label, s in zip(self.labels, self.splits) if s == "Testing")
        leaked_counts = Counter(label_of[f] for f in leaked)
        clean_counts = Counter(label_of[f] for f in self.clean_test_files())
        exact_groups = _components(len(self.files), [(i, j) for i, j in self.exact_pairs])
        return {
            "images": len(self.files),
            "exact_duplicate_groups": len(exact_groups),
            "exact_redundant_files": sum(len(g) - 1 for g in exact_groups),
            "near_duplicate_pairs": len(self.near_pairs),
            "copy_groups": len(self.groups),
            "redundant_within_training": self.redundant("Training"),
            "redundant_within_testing": self.redundant("Testing"),
            "testing_with_copy_in_training": len(leaked),
            "label_conflict_groups": len(self.label_conflicts()),
            "unreadable": len(self.unreadable),
            "per_class": {
                c: {"testing": test_counts[c], "leaked": leaked_counts[c], "clean": clean_counts[c]}
                for c in classes
            },
            "clean_test_size": len(self.clean_test_files()),
            "thresholds": {"r32": COARSE_MIN, "r128": FINE_MIN},
        }

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Audit:
        data = dict(data)
        data["exact_pairs"] = [tuple(p) for p in data["exact_pairs"]]
        data["near_pairs"] = [tuple(p) for p in data["near_pairs"]]
        return cls(**data)


def _thumbnails(path: Path) -> tuple[np.ndarray, np.ndarray]:
    image = decode(path).convert("L")
    return tuple(
        _znorm(np.asarray(image.resize((s, s), Image.Resampling.BILINEAR), np.float32))
        for s in (COARSE, FINE)
    )


def _znorm(values: np.ndarray) -> np.ndarray:
    flat = values.ravel() - values.mean()
    norm = np.linalg.norm(flat)
    return flat / norm if norm > 0 else flat  # a flat image correlates with nothing


def _components(n: int, pairs: list[tuple[int, int]]) -> list[list[int]]:
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in pairs:
        parent[find(i)] = find(j)
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        members[find(i)].append(i)
    return [sorted(g) for g in members.values() if len(g) > 1]


def run_audit(index: DatasetIndex, progress: Progress | None = None, chunk: int = 512) -> Audit:
    samples = [("Training", s) for s in index.training] + [("Testing", s) for s in index.testing]
    audit = Audit(
        files=[index.relative(s) for _, s in samples],
        splits=[sp for sp, _ in samples],
        labels=[index.classes[s.label] for _, s in samples],
    )
    n = len(samples)
    coarse = np.zeros((n, COARSE * COARSE), np.float32)
    fine = np.zeros((n, FINE * FINE), np.float32)
    by_digest: dict[str, list[int]] = defaultdict(list)
    for i, (_, sample) in enumerate(samples):
        by_digest[file_digest(sample.path)].append(i)
        try:
            coarse[i], fine[i] = _thumbnails(sample.path)
        except ImageDecodeError as exc:
            audit.unreadable[audit.files[i]] = str(exc)
        if progress and (i % 50 == 0 or i == n - 1):
            progress(i + 1, n)
    audit.exact_pairs = [(g[0], j) for g in by_digest.values() if len(g) > 1 for j in g[1:]]
    # All pairs at 32x32 in row chunks (a matrix product), then confirm at 128x128.
    for start in range(0, n, chunk):
        block = coarse[start : start + chunk] @ coarse.T
        rows, cols = np.nonzero(block >= COARSE_MIN)
        for r, j in zip(rows, cols):
            i = start + int(r)
            if j > i:
                r128 = float(fine[i] @ fine[j])
                if r128 >= FINE_MIN:
                    audit.near_pairs.append((i, int(j), round(float(block[r, j]), 4), round(r128, 4)))
    audit.groups = _components(n, audit.exact_pairs + [(i, j) for i, j, *_ in audit.near_pairs])
    return audit


def audit_key(index: DatasetIndex) -> str:
    """Changes when any file name, size or modification time changes (cheap to compute)."""
    digest = hashlib.sha256()
    for split, samples in (("Training", index.training), ("Testing", index.testing)):
        for s in samples:
            stat = s.path.stat()
            digest.update(f"{split}/{index.relative(s)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    digest.update(f"{COARSE}:{FINE}:{COARSE_MIN}:{FINE_MIN}".encode())
    return digest.hexdigest()[:24]


def audit_file(index: DatasetIndex, cache_root: Path) -> Path:
    return Path(cache_root) / "audit" / f"{audit_key(index)}.json"


def cached_audit(index: DatasetIndex, cache_root: Path, progress: Progress | None = None) -> Audit:
    """The audit of this dataset, computed once and then read from `cache_root`."""
    path = audit_file(index, cache_root)
    data = read_json(path)
    if data is not None:
        return Audit.from_json(data)
    audit = run_audit(index, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, audit.to_json())
    return audit


def print_summary(audit: Audit) -> None:
    print(json.dumps(audit.summary(), indent=2))
