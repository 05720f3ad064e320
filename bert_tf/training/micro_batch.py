"""Gradient accumulation (micro-batches): one training step's batch computed in
slices, one after another (`bert-tf finetune/squad --gradient-accumulation-steps N`,
also spelled `--micro-batches N`).

A step at batch B keeps every layer's activations of all B examples alive until the
backward pass has used them: for BERT at length 384 that is the attention
probabilities, `[B, heads, 384, 384]` per layer, several times over (softmax output,
dropout mask, dropped probabilities). `use_micro_batches(model, n)` makes `fit` run
each batch as `n` slices, each forward and backward before the next starts, sums their
gradients (each slice's loss weighted by its share of the batch) and applies them
once: the same optimizer step on the same examples, with about 1/n of the activation
memory. Only the dropout draws differ (each slice draws its own). Embedding gradients
stay sparse, one row per token as in a whole batch, so global-norm clipping (which, in
Keras as in Google's BERT, sums the squares of those rows) clips exactly as it would.

Why not the Keras optimizers' own `gradient_accumulation_steps` (checked with Keras
3.13.2 on 2026-12-07, commit e95f551)? It makes `fit` see each slice as a step of its
own: N times the steps per epoch, the checkpoints and the history counted in slices,
and its learning-rate schedule is called with the slice count (`_iterations`), not
the update count its docstring promises, so BERT's warm-up and decay run N times too
fast. On the tiny model without dropout, SST-2 at batch 32, 8 updates: with 4 × 8 it
moved the weights 3.0e-3 away from the whole batches' (as far as the whole batches
moved them at all), against 1.2e-7 for `use_micro_batches(model, 4)`; it also keeps
a float32 copy of every trainable weight (MiniLM: 91 MB) where this keeps none.

Example (no dropout, so both compute one function):
    >>> import keras, numpy as np
    >>> def model():
    ...     keras.utils.set_random_seed(0)
    ...     m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    ...     m.compile(keras.optimizers.SGD(0.5),  # plain SGD: a mis-weighted sum shows
    ...               keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    ...               metrics=["accuracy"])
    ...     return m
    >>> x = np.random.default_rng(0).normal(size=(10, 4)).astype("float32")
    >>> y = np.arange(10) % 3
    >>> whole, sliced = model(), model()
    >>> use_micro_batches(sliced, 4)
    >>> a = whole.fit(x, y, batch_size=10, epochs=2, verbose=0).history
    >>> b = sliced.fit(x, y, batch_size=10, epochs=2, verbose=0).history
    >>> np.allclose(a["loss"], b["loss"], atol=1e-6), a["accuracy"] == b["accuracy"]
    (True, True)
    >>> max(float(np.abs(u - v).max()) for u, v in zip(whole.get_weights(),
    ...                                              sliced.get_weights())) < 1e-6
    True
"""
from __future__ import annotations

import keras
import tensorflow as tf
from keras.src.losses.loss import unscale_loss_for_distribution

from bert_tf.errors import ConfigError


def check_micro_batches(n: int, jit_compile: bool) -> None:
    """Raises ConfigError unless `n` micro-batches can run (`jit_compile`: under XLA)."""
    if n < 1:
        raise ConfigError(f"gradient accumulation steps (--gradient-accumulation-steps, "
                          f"--micro-batches) must be at least 1, not {n}")
    if n > 1 and jit_compile:
        raise ConfigError(
            f"--gradient-accumulation-steps {n} (--micro-batches {n}) cannot run under XLA "
            "(--jit-compile): the summed embedding gradients change shape from slice to "
            "slice; pass --gradient-accumulation-steps 1 with --jit-compile")


def use_micro_batches(model: keras.Model, n: int) -> None:
    """Makes `model.fit` (after `compile`) compute each batch in `n` slices, one after
    another, and apply the sum of their gradients once (see the module docstring).
    `n=1` leaves the model as it is. A batch smaller than `n` runs in as many slices
    as it has examples. For losses averaged over the batch, without sample weights (the
    fine-tuning and SQuAD jobs; not pre-training, whose loss is weighted by the masked
    positions).

    The slices run in a `tf.while_loop`, so the traced step holds one copy of the
    forward and backward pass whatever `n` is (unrolled, the graph and its tracing grew
    with `n` and cost more memory than the slices saved). Sparse gradients grow by
    their rows each slice, a dynamic shape that XLA cannot compile: with
    `jit_compile` the model is refused."""
    check_micro_batches(n, model.jit_compile)
    if n == 1:
        return

    def add(a, b):
        """Sparse gradients (embedding lookups) are joined, not densified: their rows stay
        one per token, as in a whole batch, so clipping sees the same global norm."""
        if isinstance(a, tf.IndexedSlices):
            return tf.IndexedSlices(tf.concat([a.values, b.values], 0),
                                    tf.concat([a.indices, b.indices], 0), a.dense_shape)
        return a + b

    def pack(grads):
        """Gradients -> flat tensors (an IndexedSlices gives its values and indices)."""
        return [t for g in grads for t in
                ((g.values, g.indices) if isinstance(g, tf.IndexedSlices) else (g,))]

    def unpack(flat, like):
        flat, out = list(flat), []
        for g in like:
            if isinstance(g, tf.IndexedSlices):
                out.append(tf.IndexedSlices(flat.pop(0), flat.pop(0), g.dense_shape))
            else:
                out.append(flat.pop(0))
        return out

    def invariants(grads):
        """Loop shapes: sparse gradients gain rows each slice, dense ones keep theirs."""
        return [s for g in grads for s in
                ((tf.TensorShape([None, *g.values.shape[1:]]), tf.TensorShape([None]))
                 if isinstance(g, tf.IndexedSlices) else (g.shape,))]

    def slice_grads(x, y, lo, hi, batch, after):
        """The gradients of slice [lo, hi), its loss weighted by its share."""
        variables = model.trainable_weights
        with tf.control_dependencies(after):  # after the previous slice's backward
            xs, ys = (tf.nest.map_structure(lambda t: t[lo:hi], d) for d in (x, y))
            count = hi - lo
            with tf.GradientTape() as tape:
                y_pred = model(xs, training=True)
                loss = model._compute_loss(x=xs, y=ys, y_pred=y_pred, training=True)
                model._loss_tracker.update_state(unscale_loss_for_distribution(loss),
                                                 sample_weight=count)
                share = tf.cast(count, loss.dtype) / tf.cast(batch, loss.dtype)
                scaled = model.optimizer.scale_loss(loss * share)
            grads = [tf.zeros_like(v) if g is None else g
                     for g, v in zip(tape.gradient(scaled, variables), variables)]
            model.compute_metrics(xs, ys, y_pred, sample_weight=None)
        return grads

    def train_step(data):
        if len(data) > 2 and data[2] is not None:
            raise ValueError("micro-batches: batches with sample weights are not supported "
                             "(each slice's loss would need its share of the weights)")
        x, y = data[0], data[1]
        batch = tf.shape(tf.nest.flatten(y)[0])[0]
        slices = tf.minimum(n, batch)  # every slice holds at least one example

        def bounds(i):
            return i * batch // slices, (i + 1) * batch // slices

        # The first slice outside the loop gives the gradients' kinds (dense or sparse).
        first = slice_grads(x, y, *bounds(0), batch, [])

        def body(i, *flat):
            grads = slice_grads(x, y, *bounds(i), batch, list(flat))
            return (i + 1, *pack([add(a, b) for a, b in zip(unpack(flat, first), grads)]))

        _, *flat = tf.while_loop(
            lambda i, *_: i < slices, body, (tf.constant(1), *pack(first)),
            shape_invariants=(tf.TensorShape([]), *invariants(first)),
            parallel_iterations=1)
        model.optimizer.apply_gradients(zip(unpack(flat, first), model.trainable_weights))
        return model.get_metrics_result()

    model.train_step = train_step
