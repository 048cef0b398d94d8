"""Dataset audit: exact and near duplicates, train/test leakage, label conflicts, and the
clean test set (Testing minus every image with a copy in Training).

Near-duplicates are found as the dataset's PROVENANCE.md defines them, so that figures
can be compared: two images are near copies when the correlation of their z-normalised
grayscale thumbnails is at least 0.99 at 32x32 and at least 0.97 at 128x128.
z-normalisation makes the measure blind to brightness and contrast changes, and
thumbnails to re-encoding and rescaling; neighbouring MRI slices of one patient correlate
at about 0.91-0.94 at 128x128, safely below the 0.97 threshold, so they are not merged.
Each thumbnail is also compared with the mirror image of every other, so a left-right
flipped copy counts as a copy too.

Copy groups are connected components of the copy pairs: a copy of a copy is in the same
group. The clean test set is copy-free (no image with a copy in Training, one image per
group of twins within Testing), not patient-disjoint: other slices of the same patient
can still be on both sides.
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
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from core.data.dataset import DatasetIndex, file_digest
from core.data.images import decode
from core.errors import ImageDecodeError
from core.io import atomic_write_json, read_json

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
    # i, j, r32, r128, mirrored (1 when j matches the mirror image of i)
    near_pairs: list[tuple[int, int, float, float, int]] = field(default_factory=list)
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

    def clean_test_exclusions(self) -> dict[str, int]:
        """Why Testing images are left out of the clean test set, each reason counted
        apart: a copy in Training, a twin of another Testing image kept in its place, or
        a file that cannot be decoded."""
        leaked = self.leaked_test_files()
        clean = set(self.clean_test_files())
        testing = [f for f, split in zip(self.files, self.splits) if split == "Testing"]
        unreadable = [f for f in testing if f in self.unreadable and f not in leaked]
        twins = [f for f in testing if f not in leaked and f not in self.unreadable and f not in clean]
        return {
            "copy_in_training": len(leaked),
            "twin_within_testing": len(twins),
            "unreadable": len(unreadable),
        }

    def group_ids(self, files: list[str]) -> list[int]:
        """A copy-group id for each of `files` (relative paths): members of one audit
        group share an id, every other file has one of its own."""
        group_of, position = self.group_of(), {f: i for i, f in enumerate(self.files)}
        ids = []
        for n, file in enumerate(files):
            member = position.get(file)
            group = group_of.get(member) if member is not None else None
            ids.append(group if group is not None else len(self.groups) + n)
        return ids

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
            "clean_test_left_out": self.clean_test_exclusions(),
            "mirrored_near_pairs": sum(1 for p in self.near_pairs if len(p) > 4 and p[4]),
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


def describe_left_out(left_out: dict[str, int]) -> str:
    """'3 with a copy in Training, 1 twin within Testing, 0 unreadable'."""
    twins = left_out["twin_within_testing"]
    return (
        f"{left_out['copy_in_training']} with a copy in Training, "
        f"{twins} twin{'s' if twins != 1 else ''} within Testing, {left_out['unreadable']} unreadable"
    )


def _thumbnails(path: Path) -> tuple[np.ndarray, np.ndarray]:
    image = decode(path).convert("L")
    return tuple(
        np.asarray(image.resize((s, s), Image.Resampling.BILINEAR), np.float32) for s in (COARSE, FINE)
    )


def _flat(thumbnails: np.ndarray, mirrored: bool) -> np.ndarray:
    """(n, s, s) thumbnails as z-normalised rows, left-right mirrored when asked."""
    if mirrored:
        thumbnails = thumbnails[:, :, ::-1]
    return np.stack([_znorm(t) for t in thumbnails]) if len(thumbnails) else thumbnails.reshape(0, 0)


def _znorm(values: np.ndarray) -> np.ndarray:
    flat = values.ravel() - values.mean()
    norm = np.linalg.norm(flat)
    return flat / norm if norm > 0 else flat  # a flat image correlates with nothing


def _components(n: int, pairs: list[tuple[int, int]]) -> list[list[int]]:
    """Copy groups: the connected components (two or more members) of the copy pairs."""
    if not pairs:
        return []
    rows, cols = np.array(pairs, dtype=int).T
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    members: dict[int, list[int]] = defaultdict(list)
    for i, c in enumerate(component):
        members[int(c)].append(i)
    return [g for g in members.values() if len(g) > 1]


def run_audit(index: DatasetIndex, progress: Progress | None = None, chunk: int = 512) -> Audit:
    samples = [("Training", s) for s in index.training] + [("Testing", s) for s in index.testing]
    audit = Audit(
        files=[index.relative(s) for _, s in samples],
        splits=[sp for sp, _ in samples],
        labels=[index.classes[s.label] for _, s in samples],
    )
    n = len(samples)
    coarse = np.zeros((n, COARSE, COARSE), np.float32)
    fine = np.zeros((n, FINE, FINE), np.float32)
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
    audit.near_pairs = _near_pairs(coarse, fine, chunk)
    audit.groups = _components(n, audit.exact_pairs + [(i, j) for i, j, *_ in audit.near_pairs])
    return audit


def _near_pairs(coarse: np.ndarray, fine: np.ndarray, chunk: int) -> list[tuple[int, int, float, float, int]]:
    """Pairs that correlate at both sizes, as they are or one of them mirrored: all
    pairs at 32x32 in row chunks (a matrix product), then confirmed at 128x128."""
    c, f = _flat(coarse, False), _flat(fine, False)
    pairs: dict[tuple[int, int], tuple[int, int, float, float, int]] = {}
    for mirrored in (0, 1):
        other_c, other_f = (_flat(coarse, True), _flat(fine, True)) if mirrored else (c, f)
        for start in range(0, len(c), chunk):
            block = c[start : start + chunk] @ other_c.T
            rows, cols = np.nonzero(block >= COARSE_MIN)
            for r, j in zip(rows, cols):
                i, j = start + int(r), int(j)
                if j <= i or (i, j) in pairs:
                    continue
                r128 = float(f[i] @ other_f[j])
                if r128 >= FINE_MIN:
                    pairs[(i, j)] = (i, j, round(float(block[r, j]), 4), round(r128, 4), mirrored)
    return sorted(pairs.values())


def audit_key(index: DatasetIndex) -> str:
    """Changes when any file name, size or modification time changes (cheap to compute)."""
    digest = hashlib.sha256()
    for split, samples in (("Training", index.training), ("Testing", index.testing)):
        for s in samples:
            stat = s.path.stat()
            digest.update(f"{split}/{index.relative(s)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    digest.update(f"{COARSE}:{FINE}:{COARSE_MIN}:{FINE_MIN}:mirrored".encode())
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
