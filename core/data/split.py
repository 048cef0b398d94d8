"""The images a run trains and validates on: the Training pool (subsampled and, on
request, with one image of each copy group) and its validation split, grouped by the
audit's copy groups so that no validation image has a copy in the training part."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from core.config import TrainConfig
from core.data.audit import Audit, cached_audit
from core.data.dataset import DatasetIndex, Sample, split_validation, subsample


@dataclass
class RunSplit:
    train: list[Sample]
    validation: list[Sample]
    dropped_duplicates: list[str] = field(default_factory=list)
    copy_groups: int = 0  # audit groups with two or more members in the pool
    fold: int = 0  # which fold of StratifiedGroupKFold validates

    def describe(self) -> dict:
        """What data.json records about the split."""
        total = len(self.train) + len(self.validation)
        return {
            "method": "StratifiedGroupKFold over the audit's copy groups",
            "validation_share": round(len(self.validation) / total, 4) if total else 0.0,
            "validation_fold": self.fold,
            "copy_groups_in_training": self.copy_groups,
        }


def run_split(
    index: DatasetIndex, config: TrainConfig, cache_root: Path, audit: Audit | None = None
) -> RunSplit:
    """The split a run with `config` uses (the audit is read from, or stored in, cache_root)."""
    audit = audit or cached_audit(index, cache_root)
    pool, dropped = index.training, []
    if config.drop_duplicates:
        copies = audit.training_copies_to_drop()
        dropped = sorted(copies)
        pool = [s for s in pool if index.relative(s) not in copies]
    pool = subsample(pool, config.max_per_class, config.seed)
    groups = audit.group_ids([index.relative(s) for s in pool])
    train, validation = split_validation(pool, config.val_fraction, config.seed, groups, config.val_fold)
    sizes = Counter(g for g in groups if g < len(audit.groups))
    copy_groups = sum(1 for n in sizes.values() if n > 1)
    return RunSplit(train, validation, dropped, copy_groups, config.val_fold)
