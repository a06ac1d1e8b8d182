"""Matrix-vector kernels for CPU decoding, compiled on first use with the system C compiler.

Decoding one token reads every weight once, so a decode step's speed is memory bandwidth. PyTorch's CPU matmul is
built for many activation rows: with one row its bf16 path reaches about half the bandwidth, and the int8
weight-pack kernel less. The two kernels here compute ``x @ W.T`` for a few rows of ``x`` by streaming each weight
row once, front to back (one sequential stream per thread is what the hardware prefetcher follows best), with
fp32 accumulation:

* ``linear_bf16``: bf16 weights and activations, ``vdpbf16ps`` where the CPU has AVX512-BF16; the result is
  rounded to bf16, as ``torch.nn.functional.linear`` does in bf16.
* ``linear_int8``: int8 weights with one scale per output row (``nesso.quantize.Int8Linear``'s format), the
  activations rounded to int16 with one scale per row (``vpdpwssd`` where the CPU has AVX512-VNNI).

They replace one op, the projection ``F.linear`` (optionally with the SwiGLU before it), and only for CPU tensors
without autograd (``nesso.quantize`` decides when); the model's forward is ``nesso.model``'s, which also calls
``rms_norm_bf16`` (optionally with the residual add before it), ``rope_cache_attention_bf16`` (RoPE, KV-cache
write and attention of a one-token step) and ``add_bf16`` (the residual add that ends a layer). Every wrapper
reports its call to ``nesso.decode_graph`` while it records a step, and ``replay`` runs a recorded step's calls
again from C. ``pack_huge_pages`` moves weights into 2 MiB pages:
with 4 KiB pages the page walks of a 0.4B-parameter stream cost about a third of the bandwidth.

The library is built once per source and CPU (``-march=native``), cached under ``~/.cache/nesso/kernels``
(``NESSO_KERNEL_CACHE`` moves it) and loaded with ctypes; its OpenMP is the libgomp PyTorch already loaded, so the
two share one thread pool. Without a compiler (or with ``NESSO_KERNELS=0``) ``available()`` is False, a warning is
given once, and the callers use PyTorch's ops.
"""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch

ENV_SWITCH = "NESSO_KERNELS"
ENV_CACHE = "NESSO_KERNEL_CACHE"
MAX_ROWS = 16  # up to this many activation rows a projection takes the kernels; above, PyTorch's matmul
HUGE_PAGE = 2 << 20
_DTYPES = (torch.bfloat16, torch.float32)

SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>
#define NK_AVX512 1
/* While a thread reads weight row r it asks for the same bytes of row r + 2 into L2 (a hint: never faults, even
   past the end of the matrix). Rows are a few KB, too short for the hardware prefetcher to ramp up on each one; on a
   2-core Intel Xeon VM this took a bf16 matrix-vector product from ~16 to 20-25 GB/s (a C loop over 8192 x 2048
   matrices; into L1 instead: 19-25). Results are unchanged: it only moves loads earlier. */
#define NK_PF(row, k, i) _mm_prefetch((const char *)((row) + 2 * (k) + (i)), _MM_HINT_T1)
#endif

typedef uint16_t bf16_t;

static inline float bf2f(bf16_t v) { uint32_t u = (uint32_t)v << 16; float f; memcpy(&f, &u, 4); return f; }

static inline bf16_t f2bf(float f) {  /* round to nearest even, NaN stays NaN */
    uint32_t u; memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16_t)(u >> 16);
}

static inline void store(void *y, int out_f32, int64_t i, float v) {
    if (out_f32) ((float *)y)[i] = v; else ((bf16_t *)y)[i] = f2bf(v);
}

static inline float load_act(const void *x, int x_f32, int64_t i) {
    return x_f32 ? ((const float *)x)[i] : bf2f(((const bf16_t *)x)[i]);
}

#ifdef NK_AVX512
/* 16 bf16 -> fp32, and fp32 -> bf16 rounded to nearest even as f2bf (NaN stays NaN, no flush of subnormals). */
static inline __m512 bf16x16_load(const bf16_t *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}

static inline __m256i bf16x16_round(__m512 f) {
    const __m512i u = _mm512_castps_si512(f);
    const __m512i r = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)),
                                       _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1)));
    const __mmask16 nan = _mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q);
    const __m512i out = _mm512_mask_or_epi32(_mm512_srli_epi32(r, 16), nan, _mm512_srli_epi32(u, 16),
                                             _mm512_set1_epi32(0x40));
    return _mm512_cvtepi32_epi16(out);
}

/* e^x with a relative error of a few fp32 ulp (Cephes' expf polynomial); NaN stays NaN. */
static inline __m512 exp16(__m512 x) {
    const __m512 c = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(128.f)), _mm512_set1_ps(-128.f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(c, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), c);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
    return _mm512_mask_mov_ps(_mm512_scalef_ps(p, n), _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
}
#endif

/* SwiGLU activations of one row: x holds [gate (k) | up (k)] (bf16, or fp32 when x_f32); a[i] = silu(gate[i]) *
   up[i] in fp32, and for bf16 rounded as PyTorch's bf16 ops round it: silu to bf16, then the product to bf16. */
static void swiglu_row(const void *x, int x_f32, int64_t k, float *a) {
    int64_t i = 0;
#ifdef NK_AVX512
    const __m512 one = _mm512_set1_ps(1.f);
    for (; i + 16 <= k; i += 16) {
        __m512 g, u;
        if (x_f32) { g = _mm512_loadu_ps((const float *)x + i); u = _mm512_loadu_ps((const float *)x + k + i); }
        else { g = bf16x16_load((const bf16_t *)x + i); u = bf16x16_load((const bf16_t *)x + k + i); }
        __m512 s = _mm512_div_ps(g, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), g))));
        if (!x_f32) {
            s = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bf16x16_round(s)), 16));
            s = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bf16x16_round(_mm512_mul_ps(s, u))), 16));
        } else {
            s = _mm512_mul_ps(s, u);
        }
        _mm512_storeu_ps(a + i, s);
    }
#endif
    for (; i < k; i++) {
        const float g = load_act(x, x_f32, i), u = load_act(x, x_f32, k + i);
        const float s = g / (1.f + expf(-g));
        a[i] = x_f32 ? s * u : bf2f(f2bf(bf2f(f2bf(s)) * u));
    }
}

/* One bf16 weight row against one bf16 activation row, fp32 accumulation. */
static float dot_bf16(const bf16_t *w, const bf16_t *x, int64_t k) {
    int64_t i = 0;
    float s = 0.f;
#if defined(NK_AVX512) && defined(__AVX512BF16__)
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    for (; i + 64 <= k; i += 64) {
        NK_PF(w, k, i);
        NK_PF(w, k, i + 32);
        a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512(w + i), (__m512bh)_mm512_loadu_si512(x + i));
        a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_loadu_si512(w + i + 32), (__m512bh)_mm512_loadu_si512(x + i + 32));
    }
    for (; i + 32 <= k; i += 32)
        a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512(w + i), (__m512bh)_mm512_loadu_si512(x + i));
    s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
#elif defined(NK_AVX512)
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    for (; i + 32 <= k; i += 32) {
        __m512i w0 = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(w + i)));
        __m512i w1 = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(w + i + 16)));
        __m512i x0 = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(x + i)));
        __m512i x1 = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(x + i + 16)));
        a0 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(w0, 16)),
                             _mm512_castsi512_ps(_mm512_slli_epi32(x0, 16)), a0);
        a1 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(w1, 16)),
                             _mm512_castsi512_ps(_mm512_slli_epi32(x1, 16)), a1);
    }
    s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
#endif
    float t = 0.f;
    for (; i < k; i++) t += bf2f(w[i]) * bf2f(x[i]);
    return s + t;
}

/* In a dispatcher over rows (2..8) activation rows: F(w, x, k, R, out) with R the constant rows, so that F's loops
   over rows unroll and its accumulators stay in registers; returns from the dispatcher. */
#define NK_BY_ROWS(F)                                                                                              \
    switch (rows) {                                                                                                \
    case 2: F(w, x, k, 2, out); return;                                                                            \
    case 3: F(w, x, k, 3, out); return;                                                                            \
    case 4: F(w, x, k, 4, out); return;                                                                            \
    case 5: F(w, x, k, 5, out); return;                                                                            \
    case 6: F(w, x, k, 6, out); return;                                                                            \
    case 7: F(w, x, k, 7, out); return;                                                                            \
    case 8: F(w, x, k, 8, out); return;                                                                            \
    default: break;                                                                                                \
    }

#if defined(NK_AVX512) && defined(__AVX512BF16__)
/* dot_bf16 of one weight row with R activation rows (row stride k) at once, bit for bit dot_bf16's result for each
   (the same two accumulators, steps, reduction and tail per row); each weight vector is loaded once for the R rows.
   R is a constant where this is inlined, so the 2R accumulators stay in registers. */
static inline __attribute__((always_inline)) void dot_bf16_n(const bf16_t *w, const bf16_t *x, int64_t k, const int R,
                                                              float *out) {
    __m512 a0[8], a1[8];
#pragma GCC unroll 8
    for (int m = 0; m < R; m++) { a0[m] = _mm512_setzero_ps(); a1[m] = a0[m]; }
    int64_t i = 0;
    for (; i + 64 <= k; i += 64) {
        NK_PF(w, k, i);
        NK_PF(w, k, i + 32);
        const __m512bh w0 = (__m512bh)_mm512_loadu_si512(w + i), w1 = (__m512bh)_mm512_loadu_si512(w + i + 32);
#pragma GCC unroll 8
        for (int m = 0; m < R; m++) {
            a0[m] = _mm512_dpbf16_ps(a0[m], w0, (__m512bh)_mm512_loadu_si512(x + m * k + i));
            a1[m] = _mm512_dpbf16_ps(a1[m], w1, (__m512bh)_mm512_loadu_si512(x + m * k + i + 32));
        }
    }
    for (; i + 32 <= k; i += 32) {
        const __m512bh w0 = (__m512bh)_mm512_loadu_si512(w + i);
#pragma GCC unroll 8
        for (int m = 0; m < R; m++) a0[m] = _mm512_dpbf16_ps(a0[m], w0, (__m512bh)_mm512_loadu_si512(x + m * k + i));
    }
#pragma GCC unroll 8
    for (int m = 0; m < R; m++) {
        const float s = _mm512_reduce_add_ps(_mm512_add_ps(a0[m], a1[m]));
        float t = 0.f;
        for (int64_t j = i; j < k; j++) t += bf2f(w[j]) * bf2f(x[m * k + j]);
        out[m] = s + t;
    }
}
#endif

/* out[m] = dot_bf16(w, x + m * k, k) for rows <= 8 activation rows: a few rows (a continuous batch's decode step)
   share each weight load. */
static void dot_bf16_rows(const bf16_t *w, const bf16_t *x, int64_t k, int rows, float *out) {
#if defined(NK_AVX512) && defined(__AVX512BF16__)
    NK_BY_ROWS(dot_bf16_n);
#endif
    for (int m = 0; m < rows; m++) out[m] = dot_bf16(w, x + m * k, k);
}

/* One int8 weight row against one int16 activation row: the exact integer dot product, flushed to fp32 every
   4096 columns so the int32 lanes cannot overflow (4096 / 16 * 2 products of at most 127 * 32767 each). */
static float dot_q8(const int8_t *w, const int16_t *x, int64_t k) {
    float s = 0.f;
    int64_t i = 0;
    while (i < k) {
        const int64_t end = k - i > 4096 ? i + 4096 : k;
        int32_t t = 0;
#ifdef NK_AVX512
        __m512i a0 = _mm512_setzero_si512(), a1 = a0;
        for (; i + 64 <= end; i += 64) {
            NK_PF(w, k, i);
            __m512i w0 = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(w + i)));
            __m512i w1 = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(w + i + 32)));
#ifdef __AVX512VNNI__
            a0 = _mm512_dpwssd_epi32(a0, w0, _mm512_loadu_si512(x + i));
            a1 = _mm512_dpwssd_epi32(a1, w1, _mm512_loadu_si512(x + i + 32));
#else
            a0 = _mm512_add_epi32(a0, _mm512_madd_epi16(w0, _mm512_loadu_si512(x + i)));
            a1 = _mm512_add_epi32(a1, _mm512_madd_epi16(w1, _mm512_loadu_si512(x + i + 32)));
#endif
        }
        t = _mm512_reduce_add_epi32(_mm512_add_epi32(a0, a1));
#endif
        for (; i < end; i++) t += (int32_t)w[i] * (int32_t)x[i];
        s += (float)t;
    }
    return s;
}

#ifdef NK_AVX512
/* dot_q8 of one int8 weight row with R int16 activation rows (row stride k) at once: the same exact integer sums,
   flushed to fp32 at the same columns, so each result is dot_q8's bit for bit; each weight vector is loaded and
   widened once for the R rows. R is a constant where this is inlined. */
static inline __attribute__((always_inline)) void dot_q8_n(const int8_t *w, const int16_t *x, int64_t k, const int R,
                                                            float *out) {
    float s[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    int64_t i = 0;
    while (i < k) {
        const int64_t end = k - i > 4096 ? i + 4096 : k;
        __m512i a[8];
#pragma GCC unroll 8
        for (int m = 0; m < R; m++) a[m] = _mm512_setzero_si512();
        for (; i + 32 <= end; i += 32) {
            NK_PF(w, k, i);
            const __m512i wv = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(w + i)));
#pragma GCC unroll 8
            for (int m = 0; m < R; m++) {
#ifdef __AVX512VNNI__
                a[m] = _mm512_dpwssd_epi32(a[m], wv, _mm512_loadu_si512(x + m * k + i));
#else
                a[m] = _mm512_add_epi32(a[m], _mm512_madd_epi16(wv, _mm512_loadu_si512(x + m * k + i)));
#endif
            }
        }
#pragma GCC unroll 8
        for (int m = 0; m < R; m++) {
            int32_t t = _mm512_reduce_add_epi32(a[m]);
            for (int64_t c = i; c < end; c++) t += (int32_t)w[c] * (int32_t)x[m * k + c];
            s[m] += (float)t;
        }
        i = end;
    }
#pragma GCC unroll 8
    for (int m = 0; m < R; m++) out[m] = s[m];
}
#endif

/* out[m] = dot_q8(w, x + m * k, k) for rows <= 8 activation rows, sharing each weight load. */
static void dot_q8_rows(const int8_t *w, const int16_t *x, int64_t k, int rows, float *out) {
#ifdef NK_AVX512
    NK_BY_ROWS(dot_q8_n);
#endif
    for (int m = 0; m < rows; m++) out[m] = dot_q8(w, x + m * k, k);
}

/* Up to three matrices w0 [n0, k], w1 [n1, k], w2 [n2, k] (n = 0: absent) against the same activations, as one
   product with their rows stacked: y[m, :] = [x_m w0^T, x_m w1^T, x_m w2^T] (fused q/k/v or gate/up projections:
   one call and one parallel region instead of three). Row r of the stack belongs to matrix *j at row *r. */
static inline void pick(int64_t r, int64_t n0, int64_t n1, int *j, int64_t *local) {
    if (r < n0) { *j = 0; *local = r; }
    else if (r < n0 + n1) { *j = 1; *local = r - n0; }
    else { *j = 2; *local = r - n0 - n1; }
}

/* bf16 x [rows, k] and weights; y [rows, n0 + n1 + n2] bf16. With glu, x is [rows, 2k], each row [gate | up],
   and the activations are swiglu_row's (silu(gate) * up, as PyTorch rounds it in bf16): the SwiGLU and the down
   projection in one call. Returns 1 when a buffer cannot be allocated. */
int nesso_linear_bf16(const bf16_t *x, int64_t rows, int64_t k, int glu, const bf16_t *w0, int64_t n0,
                      const bf16_t *w1, int64_t n1, const bf16_t *w2, int64_t n2, bf16_t *y, int threads) {
    const int64_t n = n0 + n1 + n2;
    const bf16_t *w[3] = {w0, w1, w2};
    bf16_t *act = NULL;
    if (glu) {
        act = (bf16_t *)malloc((size_t)(rows * k) * sizeof(bf16_t) + 64);
        float *f = (float *)malloc((size_t)k * sizeof(float) + 64);
        if (!act || !f) { free(act); free(f); return 1; }
        for (int64_t m = 0; m < rows; m++) {
            swiglu_row(x + m * 2 * k, 0, k, f);
            for (int64_t i = 0; i < k; i++) act[m * k + i] = f2bf(f[i]);  /* exact: f holds bf16 values */
        }
        free(f);
        x = act;
    }
    (void)threads;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && n >= 64)
    for (int64_t r = 0; r < n; r++) {
        int j;
        int64_t local;
        pick(r, n0, n1, &j, &local);
        for (int64_t m0 = 0; m0 < rows; m0 += 8) {
            const int nr = rows - m0 < 8 ? (int)(rows - m0) : 8;
            float d[8];
            dot_bf16_rows(w[j] + local * k, x + m0 * k, k, nr, d);
            for (int m = 0; m < nr; m++) y[(m0 + m) * n + r] = f2bf(d[m]);
        }
    }
    free(act);
    return 0;
}

/* Activations row m of x (bf16 or fp32; with glu swiglu_row's of the row [gate | up] of 2k values) -> int16
   q = round(a / s) with s = max|a| / 32767 (returned; NaN when the row has a NaN or an infinity, 0 for an all-zero
   row). */
static float quant16(const void *x, int x_f32, int glu, int64_t m, int64_t k, int16_t *q) {
    float *f = (float *)malloc((size_t)k * sizeof(float) + 64);
    if (!f) return NAN;
    if (glu) swiglu_row(x_f32 ? (const void *)((const float *)x + m * 2 * k) : (const void *)((const bf16_t *)x + m * 2 * k),
                        x_f32, k, f);
    else for (int64_t i = 0; i < k; i++) f[i] = load_act(x, x_f32, m * k + i);
    float mx = 0.f;
    int bad = 0;
    for (int64_t i = 0; i < k; i++) {
        const float a = fabsf(f[i]);
        bad |= !(a <= 3.0e38f);
        mx = a > mx ? a : mx;
    }
    const float inv = mx > 0.f ? 32767.f / mx : 0.f;
    int64_t i = 0;
#ifdef NK_AVX512
    const __m512 vinv = _mm512_set1_ps(inv);
    for (; i + 16 <= k; i += 16)  /* round to nearest even, as nearbyintf below */
        _mm256_storeu_si256((__m256i *)(q + i),
                            _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(f + i), vinv))));
#endif
    for (; i < k; i++) q[i] = (int16_t)nearbyintf(f[i] * inv);
    free(f);
    return bad ? NAN : mx / 32767.f;
}

/* int8 weights q_j [n_j, k] with one scale per row (bf16, or fp32 when scale_f32) against x [rows, k] (bf16, or
   fp32 when x_f32): y[m, :] = [x_m (s0 * q0)^T, ...] in x's type. x is rounded to int16 with one scale per row
   first (once for all the matrices). glu as in nesso_linear_bf16. */
int nesso_linear_int8(const void *x, int x_f32, int64_t rows, int64_t k, int glu, const int8_t *q0, const void *s0,
                      int64_t n0, const int8_t *q1, const void *s1, int64_t n1, const int8_t *q2, const void *s2,
                      int64_t n2, int scale_f32, void *y, int threads) {
    const int64_t n = n0 + n1 + n2;
    const int8_t *q[3] = {q0, q1, q2};
    const void *sc[3] = {s0, s1, s2};
    int16_t *xq = (int16_t *)malloc((size_t)(rows * k) * sizeof(int16_t) + 64);
    float *xs = (float *)malloc((size_t)rows * sizeof(float) + 64);
    if (!xq || !xs) { free(xq); free(xs); return 1; }
    for (int64_t m = 0; m < rows; m++) xs[m] = quant16(x, x_f32, glu, m, k, xq + m * k);
    (void)threads;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && n >= 64)
    for (int64_t r = 0; r < n; r++) {
        int j;
        int64_t local;
        pick(r, n0, n1, &j, &local);
        const float s = scale_f32 ? ((const float *)sc[j])[local] : bf2f(((const bf16_t *)sc[j])[local]);
        for (int64_t m0 = 0; m0 < rows; m0 += 8) {
            const int nr = rows - m0 < 8 ? (int)(rows - m0) : 8;
            float d[8];
            dot_q8_rows(q[j] + local * k, xq + m0 * k, k, nr, d);
            for (int m = 0; m < nr; m++) store(y, x_f32, (m0 + m) * n + r, s * xs[m0 + m] * d[m]);
        }
    }
    free(xq);
    free(xs);
    return 0;
}

/* Row-wise RMSNorm of bf16 x [rows, k] with bf16 weight, as nesso.model.RMSNorm computes it: the norm in fp32,
   x * rsqrt(mean(x^2) + eps) rounded to bf16, then times the weight (rounded to bf16 again). With a residual r
   (not NULL) the row normalised is x + r rounded to bf16, as PyTorch's bf16 add, and it is also written to sum:
   a residual add and the norm after it in one call. */
int nesso_rms_norm_bf16(const bf16_t *x, const bf16_t *r, int64_t rows, int64_t k, const bf16_t *w, float eps,
                        bf16_t *sum, bf16_t *y) {
    for (int64_t m = 0; m < rows; m++) {
        const bf16_t *xr = x + m * k;
        if (r) {
            bf16_t *sr = sum + m * k;
            for (int64_t i = 0; i < k; i++) sr[i] = f2bf(bf2f(xr[i]) + bf2f(r[m * k + i]));
            xr = sr;
        }
        float ss = 0.f;
#pragma omp simd reduction(+:ss)
        for (int64_t i = 0; i < k; i++) { float v = bf2f(xr[i]); ss += v * v; }
        const float inv = 1.f / sqrtf(ss / (float)k + eps);
        for (int64_t i = 0; i < k; i++) y[m * k + i] = f2bf(bf2f(w[i]) * bf2f(f2bf(bf2f(xr[i]) * inv)));
    }
    return 0;
}

/* Rotate-half RoPE of one bf16 head vector x [d] with fp32 cos/sin [d], computed in fp32 and rounded to bf16, as
   nesso.model.apply_rope. */
static inline void rope_row(const bf16_t *x, const float *c, const float *s, int64_t d, bf16_t *y) {
    const int64_t h = d / 2;
    for (int64_t i = 0; i < h; i++) {
        const float x1 = bf2f(x[i]), x2 = bf2f(x[i + h]);
        const float a = x1 * c[i], b = -x2 * s[i], e = x2 * c[i + h], f = x1 * s[i + h];
        y[i] = f2bf(a + b);
        y[i + h] = f2bf(e + f);
    }
}

static inline float dot_f32_bf16(const float *q, const bf16_t *k, int64_t d) {
    int64_t i = 0;
    float s = 0.f;
#ifdef NK_AVX512
    __m512 a = _mm512_setzero_ps();
    for (; i + 16 <= d; i += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), bf16x16_load(k + i), a);
    s = _mm512_reduce_add_ps(a);
#endif
    for (; i < d; i++) s += q[i] * bf2f(k[i]);
    return s;
}

#ifdef NK_AVX512
/* The 16 horizontal sums of v[0..15], in order: one vector of 16 dot products without 16 full reductions. */
static inline __m512 hsum16x16(const __m512 *v) {
    __m512 a[8], b[4];
    for (int i = 0; i < 8; i++)  /* per 128-bit lane: [v2i(0+2), v2i+1(0+2), v2i(1+3), v2i+1(1+3)] */
        a[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
    for (int i = 0; i < 4; i++)  /* per lane: the lane's sums of v4i .. v4i+3 */
        b[i] = _mm512_add_ps(_mm512_shuffle_ps(a[2 * i], a[2 * i + 1], 0x44),
                             _mm512_shuffle_ps(a[2 * i], a[2 * i + 1], 0xEE));
    const __m512 c01 = _mm512_add_ps(_mm512_shuffle_f32x4(b[0], b[1], 0x44), _mm512_shuffle_f32x4(b[0], b[1], 0xEE));
    const __m512 c23 = _mm512_add_ps(_mm512_shuffle_f32x4(b[2], b[3], 0x44), _mm512_shuffle_f32x4(b[2], b[3], 0xEE));
    return _mm512_add_ps(_mm512_shuffle_f32x4(c01, c23, 0x88), _mm512_shuffle_f32x4(c01, c23, 0xDD));
}
#endif

/* p[t] = q . k[t, :] for s rows of bf16 k (row stride d) and fp32 q [d]; returns max_t p[t]. */
static inline float scores(float *p, const float *q, const bf16_t *k, int64_t s, int64_t d) {
    float mx = -INFINITY;
    int64_t t = 0;
#ifdef NK_AVX512
    if (d % 16 == 0 && d <= 256) {
        __m512 qv[16], vmx = _mm512_set1_ps(-INFINITY);
        const int64_t c16 = d / 16;
        for (int64_t c = 0; c < c16; c++) qv[c] = _mm512_loadu_ps(q + 16 * c);
        for (; t + 16 <= s; t += 16) {
            __m512 v[16];
#pragma GCC unroll 16
            for (int u = 0; u < 16; u++) {
                const bf16_t *kr = k + (t + u) * d;
                __m512 a = _mm512_mul_ps(qv[0], bf16x16_load(kr));
                for (int64_t c = 1; c < c16; c++) a = _mm512_fmadd_ps(qv[c], bf16x16_load(kr + 16 * c), a);
                v[u] = a;
            }
            const __m512 sc = hsum16x16(v);
            _mm512_storeu_ps(p + t, sc);
            vmx = _mm512_max_ps(vmx, sc);
        }
        mx = _mm512_reduce_max_ps(vmx);
    }
#endif
    for (; t < s; t++) {
        p[t] = dot_f32_bf16(q, k + t * d, d);
        mx = p[t] > mx ? p[t] : mx;
    }
    return mx;
}

/* o [d] += sum_t p[t] * v[t, :] over s rows of bf16 v (row stride d); for d = 64 the sum stays in registers. */
static inline void weighted_rows(float *o, const float *p, const bf16_t *v, int64_t s, int64_t d) {
    int64_t i0 = 0;
#ifdef NK_AVX512
    if (d == 64) {
        __m512 a0 = _mm512_loadu_ps(o), a1 = _mm512_loadu_ps(o + 16), a2 = _mm512_loadu_ps(o + 32);
        __m512 a3 = _mm512_loadu_ps(o + 48);
        for (int64_t t = 0; t < s; t++) {
            const __m512 pv = _mm512_set1_ps(p[t]);
            const bf16_t *vr = v + t * 64;
            a0 = _mm512_fmadd_ps(pv, bf16x16_load(vr), a0);
            a1 = _mm512_fmadd_ps(pv, bf16x16_load(vr + 16), a1);
            a2 = _mm512_fmadd_ps(pv, bf16x16_load(vr + 32), a2);
            a3 = _mm512_fmadd_ps(pv, bf16x16_load(vr + 48), a3);
        }
        _mm512_storeu_ps(o, a0); _mm512_storeu_ps(o + 16, a1); _mm512_storeu_ps(o + 32, a2);
        _mm512_storeu_ps(o + 48, a3);
        return;
    }
    for (int64_t t = 0; t < s; t++) {
        const __m512 pv = _mm512_set1_ps(p[t]);
        for (int64_t i = 0; i + 16 <= d; i += 16)
            _mm512_storeu_ps(o + i, _mm512_fmadd_ps(pv, bf16x16_load(v + t * d + i), _mm512_loadu_ps(o + i)));
    }
    i0 = d / 16 * 16;
#endif
    for (int64_t t = 0; t < s; t++)
        for (int64_t i = i0; i < d; i++) o[i] += p[t] * bf2f(v[t * d + i]);
}

/* p[0..s) = exp(p - mx) in place; returns their sum. */
static inline float exp_sum(float *p, int64_t s, float mx) {
    float sum = 0.f;
    int64_t t = 0;
#ifdef NK_AVX512
    __m512 acc = _mm512_setzero_ps();
    const __m512 vmx = _mm512_set1_ps(mx);
    for (; t + 16 <= s; t += 16) {
        const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(p + t), vmx));
        _mm512_storeu_ps(p + t, e);
        acc = _mm512_add_ps(acc, e);
    }
    sum = _mm512_reduce_add_ps(acc);
#endif
    for (; t < s; t++) { p[t] = expf(p[t] - mx); sum += p[t]; }
    return sum;
}

/* One decode step of attention for b rows of one new token each, the RoPE and the KV-cache write before it in
   the same call (nesso.model.Attention's apply_rope, KVCache.update and scaled_dot_product_attention):
   q [b, heads * d], k and v [b, kv_heads * d] (bf16, row m at q + m * qs, k + m * ks, v + m * vs), fp32 cos/sin
   [b, d] at each row's position. RoPE of q and k rounded to bf16; k and v go to slot pos of the caches kc / vc
   [b, kv_heads, cap, d] (bf16, contiguous); then y [b, heads * d] = softmax(q K^T / sqrt(d)) V over slots
   [0, pos], fp32 inside, rounded to bf16. Query head j reads key/value head j / (heads / kv_heads), as SDPA's
   enable_gqa. With write and visible (int64 [b], not NULL) row m writes at slot write[m] and attends to slots
   [0, visible[m]) instead (rows of a continuous batch, each at its own length). Returns 1 when a buffer cannot be
   allocated. */
int nesso_rope_cache_attention_bf16(const bf16_t *q, int64_t qs, const bf16_t *k, int64_t ks, const bf16_t *v,
                                    int64_t vs, const float *cos, const float *sin, int64_t b, int64_t heads,
                                    int64_t kv_heads, int64_t d, bf16_t *kc, bf16_t *vc, int64_t cap, int64_t pos,
                                    float scale, bf16_t *y, int threads, const int64_t *write,
                                    const int64_t *visible) {
    const int64_t group = heads / kv_heads;
    int64_t s_max = pos + 1;  /* the longest row: whether the heads are worth threads */
    if (visible)
        for (int64_t m = 0; m < b; m++) s_max = m == 0 || visible[m] > s_max ? visible[m] : s_max;
    for (int64_t m = 0; m < b; m++)
        for (int64_t j = 0; j < kv_heads; j++) {
            const int64_t slot = ((m * kv_heads + j) * cap + (write ? write[m] : pos)) * d;
            rope_row(k + m * ks + j * d, cos + m * d, sin + m * d, d, kc + slot);
            memcpy(vc + slot, v + m * vs + j * d, (size_t)d * sizeof(bf16_t));
        }
    int err = 0;
    (void)threads;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && s_max * b * heads >= 16384)
    for (int64_t bh = 0; bh < b * heads; bh++) {
        const int64_t m = bh / heads, j = bh % heads, s = visible ? visible[m] : pos + 1;
        const bf16_t *kh = kc + (m * kv_heads + j / group) * cap * d, *vh = vc + (m * kv_heads + j / group) * cap * d;
        float local[2048 + 2 * 256];
        bf16_t qr[256];
        const int small = s <= 2048 && d <= 256;
        float *p = small ? local : (float *)malloc((size_t)(s + 2 * d) * sizeof(float) + 64);
        bf16_t *qb = d <= 256 ? qr : (bf16_t *)malloc((size_t)d * sizeof(bf16_t) + 64);
        if (!p || !qb) {
            err = 1;
            if (!small) free(p);
            if (d > 256) free(qb);
            continue;
        }
        float *qf = p + s, *o = qf + d;
        rope_row(q + m * qs + j * d, cos + m * d, sin + m * d, d, qb);
        for (int64_t i = 0; i < d; i++) { qf[i] = bf2f(qb[i]) * scale; o[i] = 0.f; }
        const float sum = exp_sum(p, s, scores(p, qf, kh, s, d));
        weighted_rows(o, p, vh, s, d);
        const float inv = 1.f / sum;
        for (int64_t i = 0; i < d; i++) y[m * heads * d + j * d + i] = f2bf(o[i] * inv);
        if (!small) free(p);
        if (d > 256) free(qb);
    }
    return err;
}

/* y = a + b over n bf16 values, rounded as PyTorch's bf16 add (the residual add that ends a decoder layer). */
int nesso_add_bf16(const bf16_t *a, const bf16_t *b, int64_t n, bf16_t *y) {
    for (int64_t i = 0; i < n; i++) y[i] = f2bf(bf2f(a[i]) + bf2f(b[i]));
    return 0;
}

/* A recorded decode step (nesso.decode_graph): n ops of NK_OP_WORDS int64 each, [kind, arg 0, arg 1, ...] with the
   arguments of the kernel the op calls in order (pointers as integers, a float as its bits), run in order. Every
   attention op takes pos as its slot instead of the recorded one (ops with per-row write / visible buffers read
   those instead). Returns the first failing kernel's code. */
#define NK_OP_WORDS 24
static inline float nk_f32(int64_t bits) { uint32_t u = (uint32_t)bits; float f; memcpy(&f, &u, 4); return f; }
#define P(i) ((void *)(intptr_t)a[(i) + 1])
#define I(i) (a[(i) + 1])
int nesso_replay(const int64_t *ops, int64_t n, int64_t pos) {
    for (int64_t op = 0; op < n; op++) {
        const int64_t *a = ops + op * NK_OP_WORDS;
        int rc;
        switch (a[0]) {
        case 1:
            rc = nesso_linear_bf16(P(0), I(1), I(2), (int)I(3), P(4), I(5), P(6), I(7), P(8), I(9), P(10), (int)I(11));
            break;
        case 2:
            rc = nesso_linear_int8(P(0), (int)I(1), I(2), I(3), (int)I(4), P(5), P(6), I(7), P(8), P(9), I(10), P(11),
                                   P(12), I(13), (int)I(14), P(15), (int)I(16));
            break;
        case 3:
            rc = nesso_rms_norm_bf16(P(0), P(1), I(2), I(3), P(4), nk_f32(I(5)), P(6), P(7));
            break;
        case 4:
            rc = nesso_rope_cache_attention_bf16(P(0), I(1), P(2), I(3), P(4), I(5), P(6), P(7), I(8), I(9), I(10),
                                                 I(11), P(12), P(13), I(14), pos, nk_f32(I(16)), P(17), (int)I(18),
                                                 P(19), P(20));
            break;
        case 5:
            rc = nesso_add_bf16(P(0), P(1), I(2), P(3));
            break;
        default:
            rc = 2;
        }
        if (rc) return rc;
    }
    return 0;
}
#undef P
#undef I

int nesso_kernels_features(void) {
    int f = 0;
#ifdef NK_AVX512
    f |= 1;
#endif
#ifdef __AVX512BF16__
    f |= 2;
#endif
#ifdef __AVX512VNNI__
    f |= 4;
#endif
#ifdef _OPENMP
    f |= 8;
#endif
    return f;
}
"""

# Op kinds of nesso_replay; each op's arguments are those of its kernel's call, in order.
OP_LINEAR_BF16, OP_LINEAR_INT8, OP_RMS_NORM_BF16, OP_ROPE_CACHE_ATTENTION_BF16, OP_ADD_BF16 = 1, 2, 3, 4, 5
OP_WORDS = 24  # int64 words per recorded op: the kind and up to 23 arguments
ATTENTION_POSITION_ARG = 15  # the argument nesso_replay replaces with the replayed slot


class _Recording(threading.local):
    # Called by every kernel wrapper after its call while nesso.decode_graph records a step on this thread:
    # recorder(kind, args, activations read, outputs written...).
    recorder = None


_tls = _Recording()
_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
_error: str | None = None


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1") != "0"


def _cpu_signature() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        import platform

        return platform.machine() + platform.processor()
    return "\n".join(sorted({ln for ln in text.splitlines() if ln.startswith(("model name", "flags", "Features"))}))


def _cache_dir() -> Path:
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nesso" / "kernels"


def _build(compiler: str) -> Path:
    key = hashlib.sha256("\0".join([SOURCE, compiler, _cpu_signature()]).encode()).hexdigest()[:16]
    lib = _cache_dir() / key / "libnesso_kernels.so"
    if lib.is_file():
        return lib
    try:
        lib.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: build in the temporary directory
        lib = Path(tempfile.gettempdir()) / f"nesso-kernels-{os.getuid()}" / key / "libnesso_kernels.so"
        if lib.is_file():
            return lib
        lib.parent.mkdir(parents=True, exist_ok=True)
    fd, src = tempfile.mkstemp(dir=lib.parent, suffix=".c")  # one source per builder: concurrent builds never mix
    with os.fdopen(fd, "w") as f:
        f.write(SOURCE)
    errors = []
    try:
        base = ["-O3", "-shared", "-fPIC", "-std=gnu11"]
        for flags in (base + ["-march=native", "-fopenmp"], base + ["-march=native"], base + ["-fopenmp"], base):
            fd, tmp = tempfile.mkstemp(dir=lib.parent, suffix=".so.tmp")
            os.close(fd)
            proc = subprocess.run([compiler, *flags, src, "-o", tmp, "-lm"], capture_output=True, text=True,
                                  timeout=300)
            if proc.returncode == 0:
                os.replace(tmp, lib)  # atomic: a concurrent process never loads a half-written library
                return lib
            os.unlink(tmp)
            errors.append(f"{' '.join(flags)}: {proc.stderr.strip()[-300:]}")
    finally:
        os.unlink(src)
    raise RuntimeError("; ".join(errors))


def library() -> ctypes.CDLL | None:
    """The compiled kernels, or None (switched off, no C compiler, or the build failed: one warning, then None)."""
    global _lib, _tried, _error
    if _lib is not None:
        return _lib
    if _tried or not enabled():
        return _lib if enabled() else None
    with _lock:
        if _tried:
            return _lib
        compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
        try:
            if compiler is None:
                raise RuntimeError("no C compiler (cc, gcc or clang) on PATH")
            lib = ctypes.CDLL(str(_build(compiler)))
            vp, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
            lib.nesso_linear_bf16.argtypes = [vp, i64, i64, i32, vp, i64, vp, i64, vp, i64, vp, i32]
            lib.nesso_linear_bf16.restype = i32
            lib.nesso_linear_int8.argtypes = [vp, i32, i64, i64, i32, vp, vp, i64, vp, vp, i64, vp, vp, i64, i32, vp,
                                              i32]
            lib.nesso_linear_int8.restype = i32
            f32 = ctypes.c_float
            lib.nesso_rms_norm_bf16.argtypes = [vp, vp, i64, i64, vp, f32, vp, vp]
            lib.nesso_rms_norm_bf16.restype = i32
            lib.nesso_rope_cache_attention_bf16.argtypes = [vp, i64, vp, i64, vp, i64, vp, vp, i64, i64, i64, i64, vp,
                                                            vp, i64, i64, f32, vp, i32, vp, vp]
            lib.nesso_rope_cache_attention_bf16.restype = i32
            lib.nesso_add_bf16.argtypes = [vp, vp, i64, vp]
            lib.nesso_add_bf16.restype = i32
            lib.nesso_replay.argtypes = [vp, i64, i64]
            lib.nesso_replay.restype = i32
            lib.nesso_kernels_features.argtypes = []
            lib.nesso_kernels_features.restype = i32
            _lib = lib
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            _error = str(e)
            warnings.warn(f"nesso's CPU decode kernels are unavailable, decoding with plain PyTorch (slower): {e}",
                          RuntimeWarning, stacklevel=2)
        _tried = True
        return _lib


def available() -> bool:
    return library() is not None


def status() -> str:
    """One line for reports: what the kernels are built with, or why they are off."""
    if not enabled():
        return f"off ({ENV_SWITCH}=0)"
    lib = library()
    if lib is None:
        return f"unavailable ({_error})"
    f = lib.nesso_kernels_features()
    names = [n for bit, n in ((1, "avx512"), (2, "avx512-bf16"), (4, "avx512-vnni"), (8, "openmp")) if f & bit]
    return "compiled (" + (", ".join(names) or "portable C") + ")"


def usable(x: torch.Tensor) -> bool:
    """Whether an op on ``x`` (a few rows, CPU, no autograd, bf16 or fp32) should take the kernels."""
    return (_lib is not None and x.is_cpu and x.dtype in _DTYPES and not torch.is_grad_enabled()
            and x.numel() <= MAX_ROWS * x.shape[-1])


def usable_bf16(x: torch.Tensor) -> bool:
    """``usable`` for a bf16 ``x``."""
    return x.dtype == torch.bfloat16 and usable(x)


def linear_bf16(x: torch.Tensor, *weights: torch.Tensor, glu: bool = False) -> torch.Tensor:
    """``torch.cat([F.linear(x, w) for w in weights], -1)`` for bf16 ``x`` and one to three contiguous bf16 CPU
    weights with x's last size as their columns; only when ``usable(x)`` (the caller checks the weights). With
    ``glu``, ``x`` is ``[gate | up]`` (twice the weights' columns) and the product is with ``F.silu(gate) * up``."""
    k = x.shape[-1] >> glu
    w0 = weights[0]
    n0, n1, n2 = w0.shape[0], 0, 0
    p1 = p2 = 0
    if len(weights) > 1:
        n1, p1 = weights[1].shape[0], weights[1].data_ptr()
        if len(weights) > 2:
            n2, p2 = weights[2].shape[0], weights[2].data_ptr()
    if not x.is_contiguous():
        x = x.contiguous()
    y = torch.empty(*x.shape[:-1], n0 + n1 + n2, dtype=torch.bfloat16)
    args = (x.data_ptr(), x.numel() // x.shape[-1], k, glu, w0.data_ptr(), n0, p1, n1, p2, n2, y.data_ptr(),
            torch.get_num_threads())
    if _lib.nesso_linear_bf16(*args) != 0:  # type: ignore[union-attr]
        raise MemoryError("nesso_linear_bf16 could not allocate its activation buffer")
    if _tls.recorder is not None:
        _tls.recorder(OP_LINEAR_BF16, args, (x,), y)
    return y


def linear_int8(x: torch.Tensor, *pairs: tuple[torch.Tensor, torch.Tensor], glu: bool = False) -> torch.Tensor:
    """``torch.cat([x @ (q * scale[:, None]).T for q, scale in pairs], -1)`` for one to three int8 ``q`` [N, K] with
    per-row ``scale`` [N] (all bf16 or all fp32); the result has ``x``'s dtype. Only when ``usable(x)``. ``glu`` as
    in ``linear_bf16``."""
    n = [q.shape[0] for q, _ in pairs] + [0, 0]
    qp = [q.data_ptr() for q, _ in pairs] + [0, 0]
    sp = [s.data_ptr() for _, s in pairs] + [0, 0]
    if not x.is_contiguous():
        x = x.contiguous()
    y = torch.empty(*x.shape[:-1], n[0] + n[1] + n[2], dtype=x.dtype)
    args = (x.data_ptr(), x.dtype == torch.float32, x.numel() // x.shape[-1], x.shape[-1] >> glu, glu, qp[0], sp[0],
            n[0], qp[1], sp[1], n[1], qp[2], sp[2], n[2], pairs[0][1].dtype == torch.float32, y.data_ptr(),
            torch.get_num_threads())
    if _lib.nesso_linear_int8(*args) != 0:  # type: ignore[union-attr]
        raise MemoryError("nesso_linear_int8 could not allocate its activation buffer")
    if _tls.recorder is not None:
        _tls.recorder(OP_LINEAR_INT8, args, (x,), y)
    return y


def rms_norm_bf16(x: torch.Tensor, weight: torch.Tensor, eps: float,
                  residual: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``nesso.model.RMSNorm`` for bf16 ``x`` and ``weight``; call only when ``usable_bf16(x)``. With a bf16
    ``residual`` of x's shape: ``(x + residual, norm(x + residual))`` in one call."""
    k = x.shape[-1]
    if not x.is_contiguous():
        x = x.contiguous()
    y = torch.empty_like(x)
    if residual is None:
        args = (x.data_ptr(), 0, x.numel() // k, k, weight.data_ptr(), eps, 0, y.data_ptr())
        _lib.nesso_rms_norm_bf16(*args)  # type: ignore[union-attr]
        if _tls.recorder is not None:
            _tls.recorder(OP_RMS_NORM_BF16, args, (x,), y)
        return y
    if not residual.is_contiguous():
        residual = residual.contiguous()
    total = torch.empty_like(x)
    args = (x.data_ptr(), residual.data_ptr(), x.numel() // k, k, weight.data_ptr(), eps, total.data_ptr(),
            y.data_ptr())
    _lib.nesso_rms_norm_bf16(*args)  # type: ignore[union-attr]
    if _tls.recorder is not None:
        _tls.recorder(OP_RMS_NORM_BF16, args, (x, residual), y, total)
    return total, y


def rope_cache_attention_bf16(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor,
                              sin: torch.Tensor, cache_k: torch.Tensor, cache_v: torch.Tensor, pos: int,
                              heads: int, kv_heads: int,
                              rows: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor | None:
    """One decode step of ``nesso.model.Attention`` after its projections, in one call: ``apply_rope`` on q and k,
    ``KVCache.update`` at slot ``pos`` and ``F.scaled_dot_product_attention(..., enable_gqa=True)`` over slots
    [0, pos]. q [B, 1, heads * D], k and v [B, 1, kv_heads * D] (bf16; rows may be strided views, as the split of
    a fused q/k/v projection), cos/sin [B, 1, D] fp32, caches [B, kv_heads, S, D] bf16 contiguous. Returns the
    attention output [B, 1, heads * D] (heads concatenated, as ``o_proj`` takes it), or None when the tensors are
    not ones the kernel reads (the caller uses PyTorch's ops; nothing was written). ``rows = (write, visible)``
    (int64 [B]): row b writes at slot ``write[b]`` and attends to slots [0, visible[b]) instead of ``pos``."""
    b, t, n = q.shape
    d = cos.shape[-1]
    bf16, f32 = torch.bfloat16, torch.float32
    shape = cache_k.shape
    if (t != 1 or not usable_bf16(q) or n != heads * d or heads % kv_heads
            or k.shape != (b, 1, kv_heads * d) or v.shape != (b, 1, kv_heads * d)
            or k.dtype != bf16 or v.dtype != bf16 or q.stride(2) != 1 or k.stride(2) != 1 or v.stride(2) != 1
            or shape != (b, kv_heads, shape[2], d) or not 0 <= pos < shape[2] or cache_v.shape != shape
            or cache_k.dtype != bf16 or cache_v.dtype != bf16 or not cache_k.is_cpu or not cache_v.is_cpu
            or not cache_k.is_contiguous() or not cache_v.is_contiguous()
            or cos.shape != (b, 1, d) or sin.shape != (b, 1, d) or cos.dtype != f32 or sin.dtype != f32
            or not cos.is_contiguous() or not sin.is_contiguous()):
        return None
    write_ptr = visible_ptr = 0
    if rows is not None:
        write, visible = rows
        if any(r.dtype != torch.int64 or r.shape != (b,) or not r.is_cpu or not r.is_contiguous() for r in rows):
            return None
        if not slots_fit(write, visible, shape[2]):
            return None
        write_ptr, visible_ptr = write.data_ptr(), visible.data_ptr()
    y = torch.empty(b, 1, n, dtype=bf16)
    args = (q.data_ptr(), q.stride(0), k.data_ptr(), k.stride(0), v.data_ptr(), v.stride(0), cos.data_ptr(),
            sin.data_ptr(), b, heads, kv_heads, d, cache_k.data_ptr(), cache_v.data_ptr(), shape[2], pos,
            1.0 / d ** 0.5, y.data_ptr(), torch.get_num_threads(), write_ptr, visible_ptr)
    if _lib.nesso_rope_cache_attention_bf16(*args) != 0:  # type: ignore[union-attr]
        raise MemoryError("nesso_rope_cache_attention_bf16 could not allocate its buffers")
    if _tls.recorder is not None:  # per-row slots are read too: a recording keeps them only as the step's inputs
        _tls.recorder(OP_ROPE_CACHE_ATTENTION_BF16, args, (q, k, v, cos, sin, *(rows or ())), y)
    return y


def slots_fit(write: torch.Tensor, visible: torch.Tensor, slots: int) -> bool:
    """Whether per-row attention slots stay inside a cache of ``slots`` columns: every row writes at a slot in
    [0, slots) and sees between 1 and ``slots`` of them (the kernel reads them unchecked)."""
    return all(0 <= w < slots and 0 < s <= slots for w, s in zip(write.tolist(), visible.tolist()))


def add_bf16(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a + b`` for two bf16 tensors of one shape; call only when ``usable_bf16(a)``."""
    if not a.is_contiguous():
        a = a.contiguous()
    if not b.is_contiguous():
        b = b.contiguous()
    y = torch.empty_like(a)
    args = (a.data_ptr(), b.data_ptr(), a.numel(), y.data_ptr())
    _lib.nesso_add_bf16(*args)  # type: ignore[union-attr]
    if _tls.recorder is not None:
        _tls.recorder(OP_ADD_BF16, args, (a, b), y)
    return y


def replay(ops: torch.Tensor, pos: int) -> None:
    """Run the ops ``nesso.decode_graph`` recorded (int64 [n, OP_WORDS]), attention at slot ``pos``."""
    rc = _lib.nesso_replay(ops.data_ptr(), ops.shape[0], pos)  # type: ignore[union-attr]
    if rc == 1:
        raise MemoryError("a replayed decode kernel could not allocate its buffers")
    if rc:
        raise RuntimeError(f"nesso_replay: unknown op kind (code {rc})")


# ---- huge pages ------------------------------------------------------------------------------------------------

def huge_page_copy(t: torch.Tensor) -> torch.Tensor:
    """A copy of CPU tensor ``t`` in memory the kernel is asked to back with 2 MiB pages (Linux
    ``madvise(MADV_HUGEPAGE)``; elsewhere, or when the kernel declines, ordinary pages: same values either way)."""
    nbytes = t.numel() * t.element_size()
    size = (nbytes + 2 * HUGE_PAGE - 1) // HUGE_PAGE * HUGE_PAGE
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        buf.madvise(mmap.MADV_HUGEPAGE)
    raw = torch.frombuffer(buf, dtype=torch.uint8)  # the tensor keeps the mapping alive
    offset = -raw.data_ptr() % HUGE_PAGE
    out = raw[offset:offset + nbytes].view(t.dtype).view(t.shape)
    out.copy_(t)
    return out


def huge_pages_supported() -> bool:
    try:
        mode = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False
    return "[never]" not in mode and hasattr(mmap, "MADV_HUGEPAGE")
