"""A/B of skip_padding and oneDNN on the encoder alone, SST-2 dev in batches of 32 padded to
each batch's longest (what the serving export runs), one process per setting:

    for v in 1 0; do TF_ENABLE_ONEDNN_OPTS=$v .venv/bin/python benchmarks/levers/encoder_padded.py; done

Prints the preprocessing, encoder and end-to-end seconds per pass (best of 3) and the
encoder's dense-layer GFLOP/s over real tokens.
"""
import time, numpy as np, tensorflow as tf
from bert_tf.models import load_encoder, load_tokenizer
m="saved_models/minilm"
enc=load_encoder(m, skip_padding=True); tok=load_tokenizer(m)
texts=[l.split("\t")[0] for l in open("../shared/data/SST-2/dev.tsv").read().splitlines()[1:]]
batches=[tf.constant(texts[i:i+32]) for i in range(0,len(texts),32)]
spec=tf.TensorSpec([None],tf.string)
pre=tf.function(lambda t: tok.preprocess(t,128,pad_to_longest=True), input_signature=[spec])
ispec={k:tf.TensorSpec([None,None],tf.int32) for k in ("input_word_ids","input_mask","input_type_ids")}
run=tf.function(lambda x: enc(x,training=False)["pooled_output"], input_signature=[ispec])
full=tf.function(lambda t: enc(tok.preprocess(t,128,pad_to_longest=True),training=False)["pooled_output"], input_signature=[spec])
inputs=[pre(b) for b in batches]
T=sum(int(x["input_mask"].numpy().sum()) for x in inputs)
def timeit(f, xs, n=3):
    f(xs[0]); best=1e9
    for _ in range(n):
        t=time.perf_counter()
        for x in xs: f(x).numpy() if not isinstance(f(x),dict) else None
        best=min(best,time.perf_counter()-t)
    return best
def t2(f,xs,n=3):
    for x in xs: f(x)
    best=1e9
    for _ in range(n):
        t=time.perf_counter()
        for x in xs:
            o=f(x); (o if not isinstance(o,dict) else o["input_mask"]).numpy()
        best=min(best,time.perf_counter()-t)
    return best
tp=t2(pre,batches); te=t2(run,inputs); tf_=t2(full,batches)
H,I,Lr=384,1536,6
fl=2*T*Lr*(4*H*H+2*H*I)
print(f"preprocess {tp:.3f}s encoder {te:.3f}s full {tf_:.3f}s; real tokens {T}; dense GFLOP {fl/1e9:.1f} -> {fl/te/1e9:.1f} GFLOP/s")
# matmul rate at this shape
a=tf.random.normal([T//28,H]); w=tf.random.normal([H,I])
mm=tf.function(lambda a: tf.matmul(a,w))
mm(a); t=time.perf_counter()
for _ in range(200): mm(a).numpy()
dt=(time.perf_counter()-t)/200
print(f"matmul [{T//28},{H}]x[{H},{I}]: {2*(T//28)*H*I/dt/1e9:.1f} GFLOP/s")
