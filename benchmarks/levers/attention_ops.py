"""Attention pieces at B=32, L=50, 12 heads of 32 (one layer), ms per call:

    for v in 1 0; do TF_ENABLE_ONEDNN_OPTS=$v .venv/bin/python benchmarks/levers/attention_ops.py; done

Showed that without oneDNN TensorFlow's CPU batch matmul for these small matrices runs
at ~7 GFLOP/s (QK^T 9 ms), with oneDNN 4x faster.
"""
import time, numpy as np, tensorflow as tf
B,L,H,nh=32,50,384,12; d=H//nh
xp=tf.random.normal([B*L,H]); q4=tf.random.normal([B,nh,L,d]); s4=tf.random.normal([B,nh,L,L])
bias=tf.random.normal([B,1,1,L])
def bench(name,f,*a):
    f=tf.function(f); f(*a)
    n=100; t=time.perf_counter()
    for _ in range(n): r=f(*a)
    _=r.numpy()
    print(f"{name}: {(time.perf_counter()-t)/n*1e3:.2f} ms")
sp=lambda t: tf.transpose(tf.reshape(t,[B,L,nh,d]),[0,2,1,3])
bench("split heads (1 transpose)", sp, xp)
bench("QK^T batch matmul", lambda q: tf.matmul(q,q,transpose_b=True), q4)
bench("QK^T einsum", lambda q: tf.einsum("bhqd,bhkd->bhqk",q,q), q4)
bench("softmax + bias", lambda s: tf.nn.softmax(s+bias), s4)
bench("PV batch matmul", lambda s: tf.matmul(s,q4), s4)
bench("merge heads", lambda c: tf.reshape(tf.transpose(c,[0,2,1,3]),[-1,H]), q4)
# alt: heads folded into batch via einsum on [B,L,nh,d] directly
x4=tf.reshape(xp,[B,L,nh,d])
bench("einsum QK from [B,L,nh,d]", lambda x: tf.einsum("bqhd,bkhd->bhqk",x,x), x4)
bench("softmax only", lambda s: tf.nn.softmax(s), s4)
bench("exp only", lambda s: tf.exp(s), s4)
kT=tf.random.normal([B,nh,d,L])
bench("QK with pre-transposed K", lambda q: tf.matmul(q,kT), q4)
bench("split K to [B,nh,d,L]", lambda t: tf.transpose(tf.reshape(t,[B,L,nh,d]),[0,2,3,1]), xp)
q3=tf.reshape(q4,[B*nh,L,d]); k3=tf.reshape(kT,[B*nh,d,L])
bench("3-D matmul [B*nh,L,d]x[B*nh,d,L]", lambda q: tf.matmul(q,k3), q3)
