"""A/B of skip_padding in fine-tuning (1,600 SST-2 examples, batch 32, length-bucketed):

    for v in 0 1; do TF_ENABLE_ONEDNN_OPTS=$v .venv/bin/python benchmarks/levers/train_skip_padding.py; done
"""
import sys, time, keras, numpy as np, tensorflow as tf
from bert_tf.data import Examples, encode, read_task, make_dataset
from bert_tf.models import load_encoder, load_tokenizer
from bert_tf.classifier import build_classifier
from bert_tf.training import bert_optimizer
m = "saved_models/minilm"
ex = read_task("sst2", "../shared/data", "train")
ex = Examples(ex.texts_a[:1600], None, ex.labels[:1600], ex.source)
feats, labels, _ = encode(load_tokenizer(m), ex, 128, ["0", "1"])
ds = make_dataset(feats, labels, 32, training=True)
steps = sum(1 for _ in ds)
models = {}
for skip in (False, True):
    keras.utils.set_random_seed(0)
    model, _ = build_classifier(load_encoder(m, skip_padding=skip), 2)
    model.compile(bert_optimizer(5e-5, steps * 4, steps // 2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(ds, verbose=0)  # warm-up
    models[skip] = model
for rep in range(2):
    for skip, model in models.items():
        t = time.perf_counter(); h = model.fit(ds, verbose=0)
        print(f"skip_padding={skip}: {1600 / (time.perf_counter() - t):.1f} ex/s loss {h.history['loss'][0]:.4f}", flush=True)
