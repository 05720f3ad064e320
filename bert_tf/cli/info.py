"""`bert-tf info`: a model dir's config and parameter counts per part."""
from __future__ import annotations

import json
import os

import numpy as np

from bert_tf.io.checkpoint import CKPT_NAME, checkpoint_shapes, read_meta
from bert_tf.models.loading import check_model_dir

PARTS = (("embeddings", "bert/embeddings/"), ("encoder", "bert/encoder/"),
         ("pooler", "bert/pooler/"), ("mlm head", "cls/predictions/"),
         ("nsp head", "cls/seq_relationship/"),
         ("task head", ("output_weights", "output_bias", "pooling/")))


def parameter_counts(model_dir: str) -> dict[str, int]:
    shapes = checkpoint_shapes(os.path.join(model_dir, CKPT_NAME))
    counts = {part: 0 for part, _ in PARTS}
    for name, shape in shapes.items():
        for part, prefix in PARTS:
            if name.startswith(prefix):
                counts[part] += int(np.prod(shape))
    return counts


def model_info(model_dir: str) -> str:
    """The report of `bert-tf info`, once the whole model dir is known to load
    (`check_model_dir`: a checkpoint that does not fit its config is an error)."""
    config = check_model_dir(model_dir)
    meta = read_meta(model_dir)
    counts = parameter_counts(model_dir)
    lines = [f"model dir: {os.path.abspath(model_dir)}", "config:"]
    lines += [f"  {k}: {v}" for k, v in vars(config).items()]
    lines.append("metadata: " + json.dumps(meta, sort_keys=True))
    lines.append("parameters:")
    width = max(len(p) for p in counts)
    lines += [f"  {part:<{width}}  {n:>12,}" for part, n in counts.items() if n]
    lines.append(f"  {'total':<{width}}  {sum(counts.values()):>12,}")
    return "\n".join(lines)
