"""`make run`: convert the bundled MiniLM, embed example sentences, print similarities."""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from bert_tf.embed import Embedder  # noqa: E402
from pipelines.minilm import ensure_minilm  # noqa: E402

EXAMPLES = ["A man is eating food.", "A man is eating a piece of bread.",
            "The girl is carrying a baby.", "A woman is playing violin."]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default=os.environ.get("BERT_TF_DATA", "../shared/data"))
    parser.parse_args(argv)
    model_dir = ensure_minilm()
    for pooling in ("mean", "pooled_output"):
        v = Embedder(model_dir, pooling=pooling).embed(EXAMPLES)
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        sims = v @ v.T
        print(f"\ncosine similarities, pooling={pooling}:")
        for i, text in enumerate(EXAMPLES):
            print(f"  {text:<36}" + " ".join(f"{s:5.2f}" for s in sims[i]))


if __name__ == "__main__":
    main()
