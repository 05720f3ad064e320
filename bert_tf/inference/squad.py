"""Answers from an exported SQuAD model (`BertSpanModel`'s serving SavedModel).

Example (the export of an untrained `BertSpanModel`, so the answer is just some span
of the context; `bert-tf squad` writes a trained one to `RUN_DIR/export/serving/1`,
which answers 'Anton Chekhov'):
    >>> import bert_tf
    >>> model = bert_tf.BertSpanModel(bert_tf.load_encoder(model_dir),
    ...                               bert_tf.load_preprocessor(model_dir, seq_length=96),
    ...                               max_query_length=32)
    >>> export_dir = bert_tf.export_model(model, f"{tmp}/squad")["serving"]
    >>> context = "The play was written by Anton Chekhov in 1895."
    >>> result = answer(export_dir, "Who wrote the play?", context)
    >>> sorted(result), result["text"] in context, result["truncated"]
    (['score', 'text', 'truncated'], True, False)
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from bert_tf.data.squad import SquadError, basic_tokenize, best_spans, final_text, split_context
from bert_tf.errors import ConfigError


def answer_from_outputs(context: str, outputs: dict, row: int = 0, n_best_size: int = 20,
                        max_answer_length: int = 30, lower_case: bool = True) -> dict:
    """One row of the serving outputs -> `{"text", "score", "truncated"}`: the best
    span as `postprocess` chooses it, cut from the original context."""
    def get(key):
        value = outputs[key]
        return np.asarray(value.numpy() if hasattr(value, "numpy") else value)[row]

    start = get("token_start")
    valid = start >= 0
    spans = best_spans(get("start_logits"), get("end_logits"), valid, valid, n_best_size,
                       max_answer_length)
    truncated = bool(get("context_truncated"))
    if not spans:
        return {"text": "", "score": None, "truncated": truncated}
    sl, el, s, e = max(spans, key=lambda x: x[0] + x[1])
    words, _, char_to_word = split_context(context)
    first, last = char_to_word[start[s]], char_to_word[start[e]]
    tokens = [t.decode() if isinstance(t, bytes) else str(t) for t in get("tokens")[s:e + 1]]
    tok_text = " ".join(" ".join(tokens).replace(" ##", "").replace("##", "").strip().split())
    orig_text = " ".join(words[first:last + 1])
    text = final_text(tok_text, orig_text, basic_tokenize([orig_text], lower_case)[0])
    return {"text": text, "score": sl + el, "truncated": truncated}


def answer(export_dir: str, question: str, context: str, n_best_size: int = 20) -> dict:
    """Asks an exported SQuAD serving SavedModel: `answer(dir, "Who?", "...")["text"]`.
    An empty (or blank) question is refused: the model would still point at a span."""
    if not question.strip():
        raise ConfigError("the question (--question) is empty; ask one")
    if not tf.saved_model.contains_saved_model(export_dir):
        raise SquadError(f"{export_dir}: no SavedModel here (pass export/serving/N of a "
                         "`bert-tf squad` run)")
    loaded = tf.saved_model.load(export_dir)
    serve = loaded.signatures["serving_default"]
    if "context" not in serve.structured_input_signature[1]:
        raise SquadError(f"{export_dir}: not a SQuAD export (its inputs are "
                         f"{sorted(serve.structured_input_signature[1])})")
    outputs = serve(question=tf.constant([question]), context=tf.constant([context]))
    return answer_from_outputs(context, outputs, n_best_size=n_best_size,
                               max_answer_length=int(loaded.max_answer_length.numpy()),
                               lower_case=bool(loaded.do_lower_case.numpy()))
