"""The names a user chooses among (`--task`, `--pooling`, `--strategy`, ...) and the few
defaults that the command line shows in its help, each defined here once.

This module imports nothing, so `bert-tf --help` builds its parser without loading
TensorFlow; the library modules that check these names import them from here
(`bert_tf.layers.pooling.STRATEGIES` is `POOLINGS`, and so on).
"""

# Fine-tuning (`bert_tf.training.finetune`): the GLUE tasks read from --data-dir, or any TSV;
# named entities from any CoNLL files, or WNUT-17 from --data-dir.
TASKS = ("sst2", "mrpc", "tsv", "ner", "wnut17")
# A classifier's head (`bert_tf.models.classifier`): one label per text, any number of
# labels (a sigmoid per label), or a number.
PROBLEMS = ("single_label", "multi_label", "regression")
# A classifier's serving outputs by problem (`bert_tf.models.serving.head_outputs`): its
# export's `serving_default` and Beam `predict`'s rows.
HEAD_OUTPUTS = {"single_label": ("label", "probabilities", "logits"),
                "multi_label": ("labels", "probabilities", "logits"),
                "regression": ("predictions",)}
# How a head turns the encoder's outputs into one vector (`bert_tf.layers.pooling`).
POOLINGS = ("pooled_output", "cls", "mean", "max", "mean_sqrt_len", "attention")
# `bert-tf pooling-report`'s head beside the poolings: `pooled_output` with the pooler's
# dense layer drawn afresh before fine-tuning (`finetune --reinit-pooler`); fine-tune only.
POOLED_OUTPUT_REINIT = "pooled_output_reinit"
# `bert-tf embed`: the poolings without weights of their own (`bert_tf.inference.embed`).
EMBED_POOLINGS = ("pooled_output", "cls", "mean", "max", "mean_sqrt_len")
# LoRA (`bert_tf.models.lora`): the dense layers of each Transformer block it can adapt
# (their Keras names), and the ones it adapts unless told (as LoRA's paper and keras-hub).
LORA_TARGETS = ("query", "key", "value", "attention_output", "intermediate", "output")
DEFAULT_LORA_TARGETS = ("query", "value")

# Where training runs and in what precision (`bert_tf.training.strategy`).
STRATEGIES = ("auto", "cpu", "gpu", "mirrored", "multi_worker", "tpu")
MIXED_PRECISIONS = ("none", "bfloat16", "float16")
# SQuAD's default --micro-batches (`bert_tf.training.squad.SquadConfig` says why).
SQUAD_MICRO_BATCHES = 16

# export --precision -> the Keras dtype policy the encoder export computes under (its
# variables stay float32: TF Hub users fine-tune them) (`bert_tf.export`).
EXPORT_PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16"}

# `bert-tf bench` (`bert_tf.experiments.bench`): its cases, the peers beside bert-tf, the
# train case's examples, and how keras-hub is installed for it.
BENCH_CASES = ("encoder", "e2e", "latency", "train", "tokenize")
BENCH_PEERS = ("model-garden", "keras-hub", "hf", "tfhub", "hf-bf16", "st-onnx", "st-onnx-int8",
               "st-openvino")
BENCH_TRAIN_EXAMPLES = 1600
KERAS_HUB_INSTALL = ("pip install --no-deps --target .venv/keras-hub "
                     "-r benchmarks/requirements-keras-hub.txt")
