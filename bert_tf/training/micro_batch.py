"""Gradient accumulation (micro-batches): one training step's batch computed in
slices, one after another (`bert-tf finetune/squad/pretrain
--gradient-accumulation-steps N`, also spelled `--micro-batches N`).

A step at batch B keeps every layer's activations of all B examples alive until the
backward pass has used them: for BERT at length 384 that is the attention
probabilities, `[B, heads, 384, 384]` per layer, several times over (softmax output,
dropout mask, dropped probabilities). `use_micro_batches(model, n)` makes `fit` run
each batch as `n` slices, each forward and backward before the next starts, sums their
gradients and applies them once: the same optimizer step on the same examples, with
about 1/n of the activation memory. Only the dropout draws differ (each slice draws
its own). Embedding gradients stay sparse, one row per token as in a whole batch, so
global-norm clipping (which, in Keras as in Google's BERT, sums the squares of those
rows) clips exactly as it would.

A slice's loss counts by its share of what Keras divides the batch's loss by, output
by output (`loss_divisor`): the examples for a plain mean (a classifier, SQuAD's
spans, NSP); the sum of the sample weights for `mean_with_sample_weight` (BERT's
masked-LM loss, sum(w * loss) / sum(w) over the batch: a slice's share is its masked
positions over the batch's); the targets not ignored for a loss with `ignore_class`
(the tagger's labelled word-pieces). So the slices' terms add up to the batch's loss,
and the step's reported loss, each output's loss and the metrics are the batch's.
Before 2026-12-08 every slice counted by its share of the examples, exact for the first
kind only: pre-training refused micro-batches, and a tagger's slices with more or
fewer labelled pieces than their share trained another step.

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
    as it has examples. For a model trained with the losses given to `compile` (not
    an overridden `compute_loss`): each output's loss in a slice is weighted by the
    slice's share of what Keras divides that output's batch loss by (`slice_share`).

    The slices run in a `tf.while_loop`, so the traced step holds one copy of the
    forward and backward pass whatever `n` is (unrolled, the graph and its tracing grew
    with `n` and cost more memory than the slices saved). Sparse gradients grow by
    their rows each slice, a dynamic shape that XLA cannot compile: with
    `jit_compile` the model is refused."""
    check_micro_batches(n, model.jit_compile)
    if n == 1:
        return
    if model._compile_loss is None or type(model).compute_loss is not keras.Model.compute_loss:
        raise ValueError("micro-batches need the model's loss given to compile (each "
                         "slice weighs each output's loss by its share of the batch)")

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

    def slice_loss(y, y_pred, sample_weight, whole):
        """The slice's term of the batch's loss: each output's loss over the slice times
        the slice's share of the batch `whole` (its targets and sample weights). The
        loss trackers (the total's and, with several outputs, each output's) get the
        term as the batch's loss would be, weighted by the slice's examples, so that
        the step reports the whole batch's values."""
        compiled = model._compile_loss
        if not compiled.built:  # as Keras' first `compute_loss` builds it
            compiled.build(y, y_pred)
        outputs = compiled._flat_losses  # (path, loss, loss weight, output name)
        trackers = compiled.metrics or [None] * len(outputs)
        examples = tf.cast(tf.shape(tf.nest.flatten(y)[0])[0], "float32")
        to_batch = tf.cast(tf.shape(tf.nest.flatten(whole[0])[0])[0], "float32") / examples
        total = tf.add_n(model.losses) / to_batch if model.losses else 0.0
        for (path, loss, weight, _), tracker in zip(outputs, trackers):
            y_true, pred, weights = (at(t, path) for t in (y, y_pred, sample_weight))
            term = tf.cast(loss(y_true, pred, weights), "float32") * slice_share(
                loss, (y_true, weights), (at(whole[0], path), at(whole[1], path)))
            if tracker is not None:
                tracker.update_state(unscale_loss_for_distribution(term) * to_batch,
                                     sample_weight=examples)
            total += term if weight is None else term * weight
        model._loss_tracker.update_state(unscale_loss_for_distribution(total) * to_batch,
                                         sample_weight=examples)
        return total

    def slice_grads(x, y, sample_weight, lo, hi, after):
        """The gradients of slice [lo, hi)."""
        variables = model.trainable_weights
        with tf.control_dependencies(after):  # after the previous slice's backward
            xs, ys, ws = (tf.nest.map_structure(lambda t: t[lo:hi], d) if d is not None
                          else None for d in (x, y, sample_weight))
            with tf.GradientTape() as tape:
                y_pred = model(xs, training=True)
                loss = slice_loss(ys, y_pred, ws, (y, sample_weight))
                scaled = model.optimizer.scale_loss(loss)
            grads = [tf.zeros_like(v) if g is None else g
                     for g, v in zip(tape.gradient(scaled, variables), variables)]
            model.compute_metrics(xs, ys, y_pred, sample_weight=ws)
        return grads

    def train_step(data):
        x, y = data[0], data[1]
        sample_weight = data[2] if len(data) > 2 else None
        batch = tf.shape(tf.nest.flatten(y)[0])[0]
        slices = tf.minimum(n, batch)  # every slice holds at least one example

        def bounds(i):
            return i * batch // slices, (i + 1) * batch // slices

        # The first slice outside the loop gives the gradients' kinds (dense or sparse).
        first = slice_grads(x, y, sample_weight, *bounds(0), [])

        def body(i, *flat):
            grads = slice_grads(x, y, sample_weight, *bounds(i), list(flat))
            return (i + 1, *pack([add(a, b) for a, b in zip(unpack(flat, first), grads)]))

        _, *flat = tf.while_loop(
            lambda i, *_: i < slices, body, (tf.constant(1), *pack(first)),
            shape_invariants=(tf.TensorShape([]), *invariants(first)),
            parallel_iterations=1)
        model.optimizer.apply_gradients(zip(unpack(flat, first), model.trainable_weights))
        return model.get_metrics_result()

    model.train_step = train_step


def loss_divisor(loss: keras.losses.Loss, y_true, sample_weight):
    """What `loss` (a Keras loss, by its `reduction`) divides the summed loss of these
    examples by: the sum of the sample weights for `mean_with_sample_weight` (BERT's
    masked-LM loss: the real masked positions), the targets it does not ignore for a
    loss with `ignore_class` (a tagger's labelled pieces), else the examples (the
    elements, in proportion). None for `sum`, which divides by nothing."""
    if loss.reduction == "sum":
        return None
    ignore = getattr(loss, "ignore_class", None)
    mask = None if ignore is None else tf.cast(tf.not_equal(y_true, ignore), "float32")
    if loss.reduction == "mean_with_sample_weight" and sample_weight is not None:
        weights = tf.cast(sample_weight, "float32")
        return tf.reduce_sum(weights if mask is None else weights * mask)
    if mask is not None:
        return tf.reduce_sum(mask)
    return tf.cast(tf.shape(y_true)[0], "float32")


def slice_share(loss: keras.losses.Loss, part: tuple, whole: tuple):
    """A slice's share of the batch's loss for one output: the `loss_divisor` of the
    slice's `(targets, sample weights)` over the batch's, 0 where the batch's is 0
    (Keras' loss is then 0 too); 1 for a `sum`. The slices' losses times their
    shares add up to the batch's loss."""
    if loss.reduction == "sum":
        return 1.0
    return tf.math.divide_no_nan(loss_divisor(loss, *part), loss_divisor(loss, *whole))


def at(structure, path: tuple):
    """The part of targets, predictions or sample weights at a compiled loss's `path`
    (output names or indices); a structure that is not nested serves every output."""
    for key in path:
        if not isinstance(structure, (dict, list, tuple)):
            break
        structure = structure[key]
    return structure
