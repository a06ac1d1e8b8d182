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

They replace one op, the projection ``F.linear``, and only for CPU tensors without autograd (``nesso.quantize``
decides when); the model's forward is ``nesso.model``'s. ``pack_huge_pages`` moves weights into 2 MiB pages:
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

/* One bf16 weight row against one bf16 activation row, fp32 accumulation. */
static float dot_bf16(const bf16_t *w, const bf16_t *x, int64_t k) {
    int64_t i = 0;
    float s = 0.f;
#if defined(NK_AVX512) && defined(__AVX512BF16__)
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    for (; i + 64 <= k; i += 64) {
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

/* Up to three matrices w0 [n0, k], w1 [n1, k], w2 [n2, k] (n = 0: absent) against the same activations, as one
   product with their rows stacked: y[m, :] = [x_m w0^T, x_m w1^T, x_m w2^T] (fused q/k/v or gate/up projections:
   one call and one parallel region instead of three). Row r of the stack belongs to matrix *j at row *r. */
static inline void pick(int64_t r, int64_t n0, int64_t n1, int *j, int64_t *local) {
    if (r < n0) { *j = 0; *local = r; }
    else if (r < n0 + n1) { *j = 1; *local = r - n0; }
    else { *j = 2; *local = r - n0 - n1; }
}

/* bf16 x [rows, k] and weights; y [rows, n0 + n1 + n2] bf16. */
int nesso_linear_bf16(const bf16_t *x, int64_t rows, int64_t k, const bf16_t *w0, int64_t n0, const bf16_t *w1,
                      int64_t n1, const bf16_t *w2, int64_t n2, bf16_t *y, int threads) {
    const int64_t n = n0 + n1 + n2;
    const bf16_t *w[3] = {w0, w1, w2};
    (void)threads;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && n >= 64)
    for (int64_t r = 0; r < n; r++) {
        int j;
        int64_t local;
        pick(r, n0, n1, &j, &local);
        for (int64_t m = 0; m < rows; m++) y[m * n + r] = f2bf(dot_bf16(w[j] + local * k, x + m * k, k));
    }
    return 0;
}

static inline float load_act(const void *x, int x_f32, int64_t i) {
    return x_f32 ? ((const float *)x)[i] : bf2f(((const bf16_t *)x)[i]);
}

/* Activations row [off, off + k) of x (bf16 or fp32) -> int16 q = round(x / s) with s = max|x| / 32767 (returned;
   NaN when the row has a NaN or an infinity, 0 for an all-zero row). */
static float quant16(const void *x, int x_f32, int64_t off, int64_t k, int16_t *q) {
    float *f = (float *)malloc((size_t)k * sizeof(float) + 64);
    if (!f) return NAN;
    for (int64_t i = 0; i < k; i++) f[i] = load_act(x, x_f32, off + i);
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
   first (once for all the matrices). */
int nesso_linear_int8(const void *x, int x_f32, int64_t rows, int64_t k, const int8_t *q0, const void *s0,
                      int64_t n0, const int8_t *q1, const void *s1, int64_t n1, const int8_t *q2, const void *s2,
                      int64_t n2, int scale_f32, void *y, int threads) {
    const int64_t n = n0 + n1 + n2;
    const int8_t *q[3] = {q0, q1, q2};
    const void *sc[3] = {s0, s1, s2};
    int16_t *xq = (int16_t *)malloc((size_t)(rows * k) * sizeof(int16_t) + 64);
    float *xs = (float *)malloc((size_t)rows * sizeof(float) + 64);
    if (!xq || !xs) { free(xq); free(xs); return 1; }
    for (int64_t m = 0; m < rows; m++) xs[m] = quant16(x, x_f32, m * k, k, xq + m * k);
    (void)threads;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && n >= 64)
    for (int64_t r = 0; r < n; r++) {
        int j;
        int64_t local;
        pick(r, n0, n1, &j, &local);
        const float s = scale_f32 ? ((const float *)sc[j])[local] : bf2f(((const bf16_t *)sc[j])[local]);
        for (int64_t m = 0; m < rows; m++)
            store(y, x_f32, m * n + r, s * xs[m] * dot_q8(q[j] + local * k, xq + m * k, k));
    }
    free(xq);
    free(xs);
    return 0;
}

/* Row-wise RMSNorm of bf16 x [rows, k] with bf16 weight, as nesso.model.RMSNorm computes it: the norm in fp32,
   x * rsqrt(mean(x^2) + eps) rounded to bf16, then times the weight (rounded to bf16 again). */
int nesso_rms_norm_bf16(const bf16_t *x, int64_t rows, int64_t k, const bf16_t *w, float eps, bf16_t *y) {
    for (int64_t m = 0; m < rows; m++) {
        const bf16_t *xr = x + m * k;
        float ss = 0.f;
#pragma omp simd reduction(+:ss)
        for (int64_t i = 0; i < k; i++) { float v = bf2f(xr[i]); ss += v * v; }
        const float r = 1.f / sqrtf(ss / (float)k + eps);
        for (int64_t i = 0; i < k; i++) y[m * k + i] = f2bf(bf2f(w[i]) * bf2f(f2bf(bf2f(xr[i]) * r)));
    }
    return 0;
}

/* Rotate-half RoPE of bf16 x [rows, heads, d] (one position per row) with fp32 cos/sin [rows, d], computed in fp32
   and rounded to bf16, as nesso.model.apply_rope. */
int nesso_rope_bf16(const bf16_t *x, int64_t rows, int64_t heads, int64_t d, const float *cos, const float *sin,
                    bf16_t *y) {
    const int64_t h = d / 2;
    for (int64_t m = 0; m < rows; m++)
        for (int64_t j = 0; j < heads; j++) {
            const bf16_t *xr = x + (m * heads + j) * d;
            bf16_t *yr = y + (m * heads + j) * d;
            const float *c = cos + m * d, *s = sin + m * d;
            for (int64_t i = 0; i < h; i++) {
                const float x1 = bf2f(xr[i]), x2 = bf2f(xr[i + h]);
                const float a = x1 * c[i], b = -x2 * s[i], e = x2 * c[i + h], f = x1 * s[i + h];
                yr[i] = f2bf(a + b);
                yr[i + h] = f2bf(e + f);
            }
        }
    return 0;
}

/* One decode step of attention: q [b, heads, d] (bf16), keys and values [b, kv_heads, s, d] (bf16, row stride d,
   head stride hs, batch stride bs, in elements), every key visible; y [b, heads, d] = softmax(q k^T / sqrt(d)) v,
   fp32 inside, rounded to bf16. Query head j reads key/value head j / (heads / kv_heads), as SDPA's enable_gqa. */
static inline float dot_f32_bf16(const float *q, const bf16_t *k, int64_t d) {
    int64_t i = 0;
    float s = 0.f;
#ifdef NK_AVX512
    __m512 a = _mm512_setzero_ps();
    for (; i + 16 <= d; i += 16) {
        __m512i kv = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(k + i)));
        a = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), _mm512_castsi512_ps(_mm512_slli_epi32(kv, 16)), a);
    }
    s = _mm512_reduce_add_ps(a);
#endif
    for (; i < d; i++) s += q[i] * bf2f(k[i]);
    return s;
}

static inline void axpy_bf16(float *o, float p, const bf16_t *v, int64_t d) {
    int64_t i = 0;
#ifdef NK_AVX512
    const __m512 pv = _mm512_set1_ps(p);
    for (; i + 16 <= d; i += 16) {
        __m512i vv = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(v + i)));
        _mm512_storeu_ps(o + i, _mm512_fmadd_ps(pv, _mm512_castsi512_ps(_mm512_slli_epi32(vv, 16)),
                                                _mm512_loadu_ps(o + i)));
    }
#endif
    for (; i < d; i++) o[i] += p * bf2f(v[i]);
}

/* One decode step of attention: q [b, heads, d] (bf16), keys and values [b, kv_heads, s, d] (bf16, row stride d,
   head stride hs, batch stride bs, in elements), every key visible; y [b, heads, d] = softmax(q k^T / sqrt(d)) v,
   fp32 inside, rounded to bf16. Query head j reads key/value head j / (heads / kv_heads), as SDPA's enable_gqa. */
int nesso_decode_attention_bf16(const bf16_t *q, int64_t b, int64_t heads, int64_t kv_heads, int64_t d,
                                const bf16_t *k, const bf16_t *v, int64_t s, int64_t bs, int64_t hs, float scale,
                                bf16_t *y, int threads) {
    const int64_t group = heads / kv_heads;
    int err = 0;
    (void)threads;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && s * b * heads >= 16384)
    for (int64_t bh = 0; bh < b * heads; bh++) {
        const int64_t bi = bh / heads, j = bh % heads;
        const bf16_t *kh = k + bi * bs + (j / group) * hs, *vh = v + bi * bs + (j / group) * hs;
        float local[2048 + 2 * 256];
        const int small = s <= 2048 && d <= 256;
        float *p = small ? local : (float *)malloc((size_t)(s + 2 * d) * sizeof(float) + 64);
        if (!p) { err = 1; continue; }
        float *qf = p + s, *o = qf + d;
        for (int64_t i = 0; i < d; i++) { qf[i] = bf2f(q[bh * d + i]) * scale; o[i] = 0.f; }
        float mx = -INFINITY;
        for (int64_t t = 0; t < s; t++) {
            p[t] = dot_f32_bf16(qf, kh + t * d, d);
            mx = p[t] > mx ? p[t] : mx;
        }
        float sum = 0.f;
        for (int64_t t = 0; t < s; t++) { p[t] = expf(p[t] - mx); sum += p[t]; }
        for (int64_t t = 0; t < s; t++) axpy_bf16(o, p[t], vh + t * d, d);
        const float inv = 1.f / sum;
        for (int64_t i = 0; i < d; i++) y[bh * d + i] = f2bf(o[i] * inv);
        if (!small) free(p);
    }
    return err;
}

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
            lib.nesso_linear_bf16.argtypes = [vp, i64, i64, vp, i64, vp, i64, vp, i64, vp, i32]
            lib.nesso_linear_bf16.restype = i32
            lib.nesso_linear_int8.argtypes = [vp, i32, i64, i64, vp, vp, i64, vp, vp, i64, vp, vp, i64, i32, vp, i32]
            lib.nesso_linear_int8.restype = i32
            f32 = ctypes.c_float
            lib.nesso_rms_norm_bf16.argtypes = [vp, i64, i64, vp, f32, vp]
            lib.nesso_rms_norm_bf16.restype = i32
            lib.nesso_rope_bf16.argtypes = [vp, i64, i64, i64, vp, vp, vp]
            lib.nesso_rope_bf16.restype = i32
            lib.nesso_decode_attention_bf16.argtypes = [vp, i64, i64, i64, i64, vp, vp, i64, i64, i64, f32, vp, i32]
            lib.nesso_decode_attention_bf16.restype = i32
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
    return (_lib is not None and not torch.is_grad_enabled() and x.dtype in _DTYPES and x.device.type == "cpu"
            and x.numel() <= MAX_ROWS * x.shape[-1])


def usable_bf16(x: torch.Tensor) -> bool:
    """``usable`` for a bf16 ``x``."""
    return x.dtype == torch.bfloat16 and usable(x)


def linear_bf16(x: torch.Tensor, *weights: torch.Tensor) -> torch.Tensor:
    """``torch.cat([F.linear(x, w) for w in weights], -1)`` for bf16 ``x`` and one to three contiguous bf16 CPU
    weights with x's last size as their columns; only when ``usable(x)`` (the caller checks the weights)."""
    n = [w.shape[0] for w in weights] + [0, 0]
    p = [w.data_ptr() for w in weights] + [0, 0]
    k = x.shape[-1]
    xc = x if x.is_contiguous() else x.contiguous()
    y = torch.empty(*x.shape[:-1], n[0] + n[1] + n[2], dtype=torch.bfloat16)
    _lib.nesso_linear_bf16(xc.data_ptr(), xc.numel() // k, k, p[0], n[0], p[1], n[1], p[2], n[2],  # type: ignore[union-attr]
                           y.data_ptr(), torch.get_num_threads())
    return y


def linear_int8(x: torch.Tensor, *pairs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``torch.cat([x @ (q * scale[:, None]).T for q, scale in pairs], -1)`` for one to three int8 ``q`` [N, K] with
    per-row ``scale`` [N] (all bf16 or all fp32); the result has ``x``'s dtype. Only when ``usable(x)``."""
    n = [q.shape[0] for q, _ in pairs] + [0, 0]
    qp = [q.data_ptr() for q, _ in pairs] + [0, 0]
    sp = [s.data_ptr() for _, s in pairs] + [0, 0]
    k = x.shape[-1]
    xc = x if x.is_contiguous() else x.contiguous()
    y = torch.empty(*x.shape[:-1], n[0] + n[1] + n[2], dtype=x.dtype)
    if _lib.nesso_linear_int8(xc.data_ptr(), int(x.dtype == torch.float32), xc.numel() // k, k,  # type: ignore[union-attr]
                              qp[0], sp[0], n[0], qp[1], sp[1], n[1], qp[2], sp[2], n[2],
                              int(pairs[0][1].dtype == torch.float32), y.data_ptr(), torch.get_num_threads()) != 0:
        raise MemoryError("nesso_linear_int8 could not allocate its activation buffer")
    return y


def rms_norm_bf16(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``nesso.model.RMSNorm`` for bf16 ``x`` and ``weight``; call only when ``usable_bf16(x)``."""
    lib = library()
    assert lib is not None and x.dtype == weight.dtype == torch.bfloat16
    k = x.shape[-1]
    xc = x.contiguous()
    y = torch.empty_like(xc)
    lib.nesso_rms_norm_bf16(xc.data_ptr(), xc.numel() // k, k, weight.data_ptr(), eps, y.data_ptr())
    return y


def rope_bf16(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``nesso.model.apply_rope`` for bf16 ``x`` [B, H, 1, D] and fp32 ``cos``/``sin`` [B, 1, D]."""
    lib = library()
    b, h, t, d = x.shape
    assert lib is not None and t == 1 and x.dtype == torch.bfloat16 and cos.dtype == sin.dtype == torch.float32
    xc, c, s = x.contiguous(), cos.contiguous(), sin.contiguous()
    y = torch.empty_like(xc)
    lib.nesso_rope_bf16(xc.data_ptr(), b, h, d, c.data_ptr(), s.data_ptr(), y.data_ptr())
    return y


def decode_attention_bf16(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor | None:
    """``F.scaled_dot_product_attention(q, k, v, enable_gqa=True)`` for one query per row (q [B, H, 1, D]) over
    bf16 keys/values [B, KV, S, D] that are views of a KV cache (rows of D contiguous, same strides for k and v).
    None when the layout is not one the kernel reads: use SDPA."""
    lib = library()
    b, h, t, d = q.shape
    kv, s = k.shape[1], k.shape[2]
    if (lib is None or t != 1 or k.dtype != torch.bfloat16 or v.dtype != torch.bfloat16 or k.stride() != v.stride()
            or k.stride(3) != 1 or k.stride(2) != d or h % kv or v.shape != k.shape):
        return None
    qc = q.contiguous()
    y = torch.empty_like(qc)
    if lib.nesso_decode_attention_bf16(qc.data_ptr(), b, h, kv, d, k.data_ptr(), v.data_ptr(), s, k.stride(0),
                                       k.stride(1), 1.0 / d ** 0.5, y.data_ptr(), torch.get_num_threads()) != 0:
        raise MemoryError("nesso_decode_attention_bf16 could not allocate its buffers")
    return y


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
