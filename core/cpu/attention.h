/* core/cpu/attention.h: multi-head scaled dot-product self-attention on a fused qkv buffer
 * (timm layout: qkv (B,T,3C) = [q | k | v], head h owns columns h*hs..(h+1)*hs of each part).
 * att = softmax(q k^T / sqrt(hs) [+ causal mask]); out = att v, heads concatenated back to (B,T,C). */
#ifndef CORE_CPU_ATTENTION_H
#define CORE_CPU_ATTENTION_H

/* out (B,T,C); att (B,NH,T,T) softmax probabilities saved for backward; qkv (B,T,3C). */
void attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int NH, int causal);
/* ACCUMULATES into dqkv (B,T,3C); dout (B,T,C); att, qkv from the forward. Uses no scratch memory
 * beyond a (T) row per thread on the stack. */
void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att, int B, int T, int C,
                        int NH, int causal);
#endif
