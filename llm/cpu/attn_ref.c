/*
 * attn_ref.c - scalar reference attention kernel (cpu_attn_fn, internal.h).
 *
 * One query at a time: scores against every visible key, a max-subtracted
 * softmax, then the weighted sum of values.  It is the "ref" level's kernel,
 * the fallback of any level without one, and what the tests compare the
 * blocked SIMD kernels with.
 */
#include "llm/cpu/internal.h"

#include <math.h>

void cpu_attn_ref(float *out, const float *q, const float *k, const float *v, size_t ldq,
                  size_t ldk, int nq, int nk, int pos0, int hd, float scale, float *work)
{
    float *s = work;
    for (int i = 0; i < nq; i++) {
        const float *qi = q + (size_t)i * ldq;
        float *o = out + (size_t)i * ldq;
        int nv = pos0 < 0 || pos0 + i + 1 > nk ? nk : pos0 + i + 1;
        float mx = -INFINITY, sum = 0.0f;
        for (int j = 0; j < nv; j++) {
            float d = 0.0f;
            for (int e = 0; e < hd; e++) d += qi[e] * k[(size_t)j * ldk + e];
            s[j] = scale * d;
            mx = fmaxf(mx, s[j]);
        }
        for (int j = 0; j < nv; j++) sum += s[j] = expf(s[j] - mx);
        for (int e = 0; e < hd; e++) o[e] = 0.0f;
        for (int j = 0; j < nv; j++)
            for (int e = 0; e < hd; e++) o[e] += s[j] * v[(size_t)j * ldk + e];
        float inv = nv > 0 ? 1.0f / sum : 0.0f;
        for (int e = 0; e < hd; e++) o[e] *= inv;
    }
}
