"""The training loop for training across machines (MultiWorkerMirroredStrategy).

Keras 3.15's Model.fit cannot run under that strategy (keras-team/keras#20585: its
symbolic build reduces a nested per-replica batch), so multi-worker runs train here.
Every step runs on each worker's replica; the optimizer sums the gradients over all of
them, so every worker holds the same weights after every step. The loop drives the
same Keras callbacks as fit (the run recorder, early stopping) with losses and
accuracies reduced over all workers, so each worker takes the same decisions (best
checkpoint, early stop, stop request) at the same step; a worker that decided alone
would leave the others waiting in a collective forever.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import keras
import tensorflow as tf

# A function of a tf.distribute.InputContext giving that worker's share of the batches.
InputFunction = Callable[[tf.distribute.InputContext], tf.data.Dataset]


class Flag(Protocol):
    @property
    def requested(self) -> bool: ...

    def set(self) -> None: ...


@dataclass
class Totals:
    """Sums over all workers since the start of the epoch; their ratios are the logs."""

    loss: float = 0.0
    correct: float = 0.0
    count: float = 0.0

    def add(self, loss: tf.Tensor, correct: tf.Tensor, count: tf.Tensor) -> None:
        self.loss += float(loss)
        self.correct += float(correct)
        self.count += float(count)

    def logs(self, prefix: str = "") -> dict[str, float]:
        n = max(self.count, 1.0)
        return {f"{prefix}loss": self.loss / n, f"{prefix}accuracy": self.correct / n}


def use_synchronized_batchnorm(model: keras.Model) -> None:
    """Batch norm layers that train use the statistics of the global batch, so that the
    moving averages (not trained by gradients) stay the same on every worker too."""
    for layer in model.layers:  # the model is flat (core.model.network.build_model)
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True


def is_empty(batch: tf.Tensor) -> tf.Tensor:
    """1.0 for a batch without examples, else 0.0."""
    return tf.cast(tf.equal(tf.shape(batch)[0], 0), tf.float32)


def pad_rows(tensor: tf.Tensor, rows: tf.Tensor) -> tf.Tensor:
    """`tensor` with `rows` rows of zeros added along the batch axis."""
    return tf.pad(tensor, [[0, rows]] + [[0, 0]] * (tensor.shape.rank - 1))


def _steps(model: keras.Model, strategy: tf.distribute.Strategy):
    def sums(y: tf.Tensor, probs: tf.Tensor, weight: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        # The compiled loss before its reduction: the sum is taken over the global batch below.
        per_example = model.loss.call(y, probs) * weight
        hits = tf.cast(tf.equal(tf.argmax(y, -1), tf.argmax(probs, -1)), tf.float32) * weight
        return tf.reduce_sum(per_example), tf.reduce_sum(hits), tf.reduce_sum(weight)

    def reduce(*values: tf.Tensor) -> list[tf.Tensor]:
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in values]

    def replica_train(x, y, stop_here):
        context = tf.distribute.get_replica_context()
        # The mean over the global batch, whose last one may be split unevenly.
        global_count = context.all_reduce("SUM", tf.cast(tf.shape(y)[0], tf.float32))
        with tf.GradientTape() as tape:
            probs = model(x, training=True)
            loss_sum, correct, count = sums(y, probs, tf.ones_like(y[:, 0]))
            loss = loss_sum / tf.maximum(global_count, 1.0)
        grads = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss_sum, correct, count, stop_here

    @tf.function(reduce_retracing=True)
    def train_step(x, y, stop_here):
        loss_sum, correct, count, stop = strategy.run(replica_train, args=(x, y, stop_here))
        anyone_stops = strategy.reduce(tf.distribute.ReduceOp.SUM, stop, axis=None)  # > 0: someone
        return (*reduce(loss_sum, correct, count), anyone_stops)

    def replica_test(x, y):
        # A worker whose share ran out gets an empty batch, and TensorFlow's oneDNN
        # convolutions fail on those: it predicts one blank image instead, weighted 0.
        blank = tf.cast(is_empty(y), tf.int32)
        weight = pad_rows(tf.ones_like(y[:, 0]), blank)
        return sums(pad_rows(y, blank), model(pad_rows(x, blank), training=False), weight)

    @tf.function(reduce_retracing=True)
    def test_step(x, y):
        return reduce(*strategy.run(replica_test, args=(x, y)))

    @tf.function(reduce_retracing=True)
    def empty_replicas(y):
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(is_empty, args=(y,)), axis=None)

    return train_step, test_step, empty_replicas


def fit_distributed(
    model: keras.Model,
    strategy: tf.distribute.Strategy,
    train_fn: InputFunction,
    val_fn: InputFunction,
    epochs: int,
    callbacks: list[keras.callbacks.Callback],
    stop: Flag,
    agreed: Flag,
    verbose: int = 2,
) -> None:
    """Like model.fit(train, validation_data=val, epochs, callbacks) for a compiled model.

    `stop` is this worker's stop request (a signal); once any worker has asked, every
    worker sets `agreed` after the same step, and the callbacks (which watch `agreed`)
    end training everywhere together.
    """
    train = strategy.distribute_datasets_from_function(train_fn)
    val = strategy.distribute_datasets_from_function(val_fn)
    with strategy.scope():
        model.optimizer.build(model.trainable_variables)
    train_step, test_step, empty_replicas = _steps(model, strategy)
    hooks = keras.callbacks.CallbackList(callbacks, model=model, epochs=epochs)
    model.stop_training = False
    hooks.on_train_begin()
    for epoch in range(epochs):
        hooks.on_epoch_begin(epoch)
        totals, mine = Totals(), 0
        # A worker whose share ran out gets empty batches until all have: every worker
        # takes the same number of steps (the iterator agrees on it through a collective).
        for step, (x, y) in enumerate(train):
            if float(empty_replicas(y)) > 0:
                # TensorFlow's oneDNN convolutions fail on an empty batch, and a blank
                # image would enter the batch norm statistics: every worker leaves this
                # last, uneven step out (fewer images than one global batch).
                continue
            *sums, anyone_stops = train_step(x, y, tf.constant(float(stop.requested)))
            totals.add(*sums)
            mine += sum(int(part.shape[0]) for part in strategy.experimental_local_results(y))
            if float(anyone_stops) > 0:
                stop.set()
                agreed.set()
            hooks.on_train_batch_end(step, totals.logs())
        # How many training images all workers, and this one, went through.
        logs = totals.logs() | {"examples": totals.count, "worker_examples": float(mine)}
        val_totals = Totals()
        for step, (x, y) in enumerate(val):
            val_totals.add(*test_step(x, y))
            hooks.on_test_batch_end(step, val_totals.logs("val_"))
        logs |= val_totals.logs("val_")
        if verbose:
            print(f"epoch {epoch + 1}/{epochs} " + " ".join(f"{k} {v:.4f}" for k, v in logs.items()))
        hooks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    hooks.on_train_end()
