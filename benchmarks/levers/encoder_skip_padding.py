"""A/B of skip_padding on the encoder alone, in one process: SST-2 dev in batches of 32
padded to each batch's longest, the same weights with and without skip_padding; prints
the max |diff| (pooled, and sequence over real tokens) and sentences/s, two rounds each
(the first round includes tracing):

    .venv/bin/python benchmarks/levers/encoder_skip_padding.py
"""
import time, json, numpy as np, tensorflow as tf
from bert_tf.models import load_encoder, load_tokenizer
m="saved_models/minilm"
a=load_encoder(m); b=load_encoder(m, skip_padding=True)
tok=load_tokenizer(m)
texts=[l.split("\t")[0] for l in open("../shared/data/SST-2/dev.tsv").read().splitlines()[1:]]
batches=[tok.preprocess(tf.constant(texts[i:i+32]),128,pad_to_longest=True) for i in range(0,len(texts),32)]
fa=tf.function(lambda x: a(x,training=False)); fb=tf.function(lambda x: b(x,training=False))
d=0
for x in batches[:5]:
    oa,ob=fa(x),fb(x); m_=x["input_mask"].numpy()[...,None]
    d=max(d,np.abs(oa["pooled_output"]-ob["pooled_output"]).max(), np.abs((oa["sequence_output"].numpy()-ob["sequence_output"].numpy())*m_).max())
print("maxdiff",d)
for f,n in ((fa,"padded"),(fb,"skip"),(fa,"padded"),(fb,"skip")):
    t=time.perf_counter()
    for x in batches: f(x)["pooled_output"].numpy()
    print(n, len(texts)/(time.perf_counter()-t))
