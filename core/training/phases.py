"""The training plan: which phases run, from which block each unfreezes, for how many
epochs, and with which optimizer.

Phase "head" trains the pooling + dense head on a frozen backbone; phase "finetune"
unfreezes the backbone from a chosen block with a lower learning rate. Each phase uses
Adam; a phase with 0 epochs is left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from core.config import TrainConfig
from core.errors import ConfigError


@dataclass
class Phase:
    name: str
    unfreeze_from: str
    epochs: int
    learning_rate: float
    schedule: str = "constant"

    def optimizer(self, batches: int) -> keras.optimizers.Optimizer:
        """Adam at the phase's rate; "cosine" decays it to 0 over the phase's steps
        (`batches` per epoch)."""
        rate = self.learning_rate
        if self.schedule == "cosine":
            rate = keras.optimizers.schedules.CosineDecay(rate, decay_steps=self.epochs * batches)
        return keras.optimizers.Adam(rate)


def plan_phases(config: TrainConfig) -> list[Phase]:
    phases = [Phase("head", "none", config.head_epochs, config.head_lr)]
    if config.unfreeze_from != "none":
        epochs, rate, schedule = config.finetune_epochs, config.finetune_lr, config.finetune_schedule
        phases.append(Phase("finetune", config.unfreeze_from, epochs, rate, schedule))
    phases = [p for p in phases if p.epochs > 0]
    if not phases:
        raise ConfigError("nothing to train: every phase has 0 epochs")
    return phases
