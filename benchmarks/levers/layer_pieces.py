"""One skip-padding layer's pieces at B=32, L=50 (927 real tokens), random weights, ms per
call (note: the three identical q/k/v matmuls get merged by grappler, so that row is low):

    .venv/bin/python benchmarks/levers/layer_pieces.py
"""
import time, math, numpy as np, tensorflow as tf, keras
from keras import ops
B,L,H,I,nh=32,50,384,1536,12
mask=np.zeros((B,L),np.int32)
lens=np.random.default_rng(0).integers(5,L+1,B); lens[0]=L
for i,l in enumerate(lens): mask[i,:l]=1
T=int(mask.sum()); print("T",T, "padded",B*L)
mask=tf.constant(mask)
x=tf.random.normal([T,H]); xp=tf.random.normal([B*L,H])
wq=tf.random.normal([H,H]); wi=tf.random.normal([H,I])
def bench(name,f,*a):
    f=tf.function(f); f(*a)
    n=50; t=time.perf_counter()
    for _ in range(n): r=f(*a)
    _=r.numpy()
    dt=(time.perf_counter()-t)/n*1e3
    print(f"{name}: {dt:.2f} ms/layer-call")
idx=tf.where(tf.reshape(mask,[-1])>0)[:,0]
def attn(x):
    q=tf.scatter_nd(idx[:,None],x@wq,[B*L,H]); k=tf.scatter_nd(idx[:,None],x@wq,[B*L,H]); v=tf.scatter_nd(idx[:,None],x@wq,[B*L,H])
    sp=lambda t: tf.transpose(tf.reshape(t,[B,L,nh,H//nh]),[0,2,1,3])
    q,k,v=sp(q),sp(k),sp(v)
    s=tf.matmul(q,k,transpose_b=True)*0.17 + (1.0-tf.cast(mask,tf.float32))[:,None,None,:]*-1e4
    p=tf.nn.softmax(s)
    c=tf.reshape(tf.transpose(tf.matmul(p,v),[0,2,1,3]),[-1,H])
    return tf.gather(c,idx)
def qkv(x): return x@wq+x@wq+x@wq
def attn_core(q):
    sp=lambda t: tf.transpose(tf.reshape(t,[B,L,nh,H//nh]),[0,2,1,3])
    q=sp(q)
    s=tf.matmul(q,q,transpose_b=True)
    p=tf.nn.softmax(s)
    return tf.matmul(p,q)
def scat(x): return tf.scatter_nd(idx[:,None],x,[B*L,H])
def gath(x): return tf.gather(x,idx)
def ffn(x): return keras.activations.gelu(x@wi, approximate=False)
def ffn_mm(x): return x@wi
ln=keras.layers.LayerNormalization(epsilon=1e-12); ln.build((None,H))
def lnf(x): return ln(x)
bench("3 qkv matmuls",qkv,x)
bench("attention incl scatter/gather (+3 qkv mm)",attn,x)
bench("attention core (no mm qkv, padded)",attn_core,xp)
bench("scatter [T,H]",scat,x)
bench("gather",gath,xp)
bench("ffn in matmul",ffn_mm,x)
bench("ffn in + gelu erf",ffn,x)
bench("layernorm",lnf,x)
