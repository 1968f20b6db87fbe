// The CUDA backend (kernels/cuda/cuda_backend.h): class CudaBackend, the
// element-wise kernels, cuBLASLt products, the KV page kernels, window
// scoring and top-k. Attention lives in cuda_attention.cu.
//
// Everything is queued on one stream, in order: metadata (token ids,
// positions, page plans) goes up with cudaMemcpyAsync from pageable host
// memory, which copies the host bytes before returning, so a caller's
// buffers are free again at once and the device buffers they land in are
// reused safely by the next call (stream order). download() and top_k()
// synchronise; nothing else does.
#include <cub/device/device_segmented_radix_sort.cuh>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <climits>
#include <cstring>
#include <exception>
#include <map>
#include <numeric>
#include <thread>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "engine/kv_pages.h"
#include "kernels/cpu/ops.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_common.cuh"
#include "model/quant.h"
#include "press/press.h"

namespace ckv::cuda {

void fail(const char* what, const char* err, const char* file, int line) {
  throw Error(std::string("CUDA error: ") + err + " in " + what + " (" + file + ":" + std::to_string(line) + ")");
}

const char* cublasLt_status(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "cuBLAS error";
  }
}

namespace {

inline unsigned grid_for(int64_t n, int threads, int64_t cap = 65535LL * 16) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(ceil_div(n, threads), cap)));
}

#define GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); i += static_cast<int64_t>(gridDim.x) * blockDim.x)

// ---- element-wise kernels ---------------------------------------------------

__global__ void fill_kernel(float* x, int64_t n, float v) {
  GRID_STRIDE(i, n) x[i] = v;
}

// One block a held upload (CudaBackend::end_upload_batch): its words from
// the batch's data to where it goes.
struct HeldCopy {
  uint32_t* dst;
  uint32_t off, words;  // into the data, in 4-byte words
};
__global__ void held_copies_kernel(const HeldCopy* copies, const uint32_t* data) {
  const HeldCopy c = copies[blockIdx.x];
  for (uint32_t i = threadIdx.x; i < c.words; i += blockDim.x) c.dst[i] = data[c.off + i];
}

__global__ void embed_kernel(const __nv_bfloat16* table, const int32_t* tok, float* x, int64_t n, int dim) {
  pdl_wait();
  pdl_trigger();
  GRID_STRIDE(i, n * dim) {
    const int64_t t = i / dim, c = i % dim;
    x[i] = __bfloat162float(table[static_cast<int64_t>(tok[t]) * dim + c]);
  }
}

// One block per row; y may alias x (each element is read and then written by
// one thread). Out = bf16: the normalised rows as a product's input.
template <class Out>
__global__ void rmsnorm_kernel(const float* x, const float* w, Out* y, int dim, float eps) {
  pdl_wait();
  pdl_trigger();
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * dim;
  Out* yr = y + static_cast<int64_t>(blockIdx.x) * dim;
  float ss = 0.0f;
  for (int c = threadIdx.x; c < dim; c += blockDim.x) ss += xr[c] * xr[c];
  __shared__ float red[32];
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < blockDim.x / 32 ? red[threadIdx.x] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (threadIdx.x == 0) red[0] = v;
  }
  __syncthreads();
  const float r = 1.0f / sqrtf(red[0] / dim + eps);
  for (int c = threadIdx.x; c < dim; c += blockDim.x) {
    const float v = w[c] * (xr[c] * r);
    if constexpr (std::is_same_v<Out, float>) yr[c] = v;
    else yr[c] = __float2bfloat16_rn(v);
  }
}

__global__ void to_bf16_kernel(const float* __restrict__ x, __nv_bfloat16* __restrict__ y, int64_t n) {
  pdl_wait();
  pdl_trigger();
  if (n % 4 == 0) {
    GRID_STRIDE(i, n / 4) {
      const float4 v = reinterpret_cast<const float4*>(x)[i];
      reinterpret_cast<__nv_bfloat162*>(y)[2 * i] = __floats2bfloat162_rn(v.x, v.y);
      reinterpret_cast<__nv_bfloat162*>(y)[2 * i + 1] = __floats2bfloat162_rn(v.z, v.w);
    }
  } else {
    GRID_STRIDE(i, n) y[i] = __float2bfloat16_rn(x[i]);
  }
}

// One input row times up to three matrices in one launch (a decode step of
// one sequence: q/k/v, gate/up): a warp per pair of output rows (each x load
// serves both; twice the bytes in flight of one row a warp: 85% of the copy
// bandwidth on the H200 against 70%, measured), W streamed with 16-byte loads
// that skip L1 (x stays there), f32 x read directly, fp32 accumulation.
// Fused forms: x normalised on the fly (kNorm: the warp sums x^2 over the
// same loads and scales its dot products by 1/rms at the end), the result
// added to y (Add: the residual stream), or a gate row and an up row a warp
// with y[0] = silu(gate) * up (Glu: the FFN's hidden row).
enum class GemvOut { Store, Add, Glu };

struct GemvSet {
  const __nv_bfloat16* w[3];
  float* y[3];
  int rows[3];
  int n_out;
  const float* norm;  // kNorm: the rmsnorm weights of x
  float eps;
};

__device__ __forceinline__ uint4 ld_stream(const void* p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
}
__device__ __forceinline__ float bf_lo(uint32_t u) { return __uint_as_float(u << 16); }
__device__ __forceinline__ float bf_hi(uint32_t u) { return __uint_as_float(u & 0xffff0000u); }
__device__ __forceinline__ float dot8(uint4 w, float4 x0, float4 x1) {
  return bf_lo(w.x) * x0.x + bf_hi(w.x) * x0.y + bf_lo(w.y) * x0.z + bf_hi(w.y) * x0.w + bf_lo(w.z) * x1.x +
         bf_hi(w.z) * x1.y + bf_lo(w.w) * x1.z + bf_hi(w.w) * x1.w;
}
__device__ __forceinline__ float4 mul4(float4 a, float4 b) { return {a.x * b.x, a.y * b.y, a.z * b.z, a.w * b.w}; }
__device__ __forceinline__ float sq4(float4 a) { return a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w; }

template <bool kNorm, GemvOut kOut>
__global__ void __launch_bounds__(256) gemv_kernel(GemvSet s, const float* __restrict__ x, int cols) {
  int p = blockIdx.x * 8 + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  int o = 0, r0, r1;
  const __nv_bfloat16 *w0, *w1;
  if constexpr (kOut == GemvOut::Glu) {  // row p of the gate and of the up matrix
    if (p >= s.rows[0]) return;
    r0 = r1 = p;
    w0 = s.w[0] + static_cast<size_t>(p) * cols;
    w1 = s.w[1] + static_cast<size_t>(p) * cols;
  } else {  // rows 2p, 2p + 1 of one output
    while (o < s.n_out && p >= (s.rows[o] + 1) / 2) p -= (s.rows[o++] + 1) / 2;
    if (o >= s.n_out) return;
    r0 = 2 * p;
    r1 = min(2 * p + 1, s.rows[o] - 1);
    w0 = s.w[o] + static_cast<size_t>(r0) * cols;
    w1 = s.w[o] + static_cast<size_t>(r1) * cols;
  }
  // No L2 prefetch of the (constant) weights before the wait: 256 or 1024
  // columns of them measured 0% and -4% on the H200.
  pdl_wait();
  pdl_trigger();
  float a0 = 0.0f, a1 = 0.0f, ss = 0.0f;
#pragma unroll 4
  for (int c = lane * 8; c < cols; c += 256) {
    const uint4 u = ld_stream(w0 + c), v = ld_stream(w1 + c);
    float4 x0 = *reinterpret_cast<const float4*>(x + c), x1 = *reinterpret_cast<const float4*>(x + c + 4);
    if constexpr (kNorm) {
      ss += sq4(x0) + sq4(x1);
      x0 = mul4(x0, *reinterpret_cast<const float4*>(s.norm + c));
      x1 = mul4(x1, *reinterpret_cast<const float4*>(s.norm + c + 4));
    }
    a0 += dot8(u, x0, x1);
    a1 += dot8(v, x0, x1);
  }
#pragma unroll
  for (int k = 16; k > 0; k >>= 1) {
    a0 += __shfl_xor_sync(0xffffffffu, a0, k);
    a1 += __shfl_xor_sync(0xffffffffu, a1, k);
    if constexpr (kNorm) ss += __shfl_xor_sync(0xffffffffu, ss, k);
  }
  if (lane != 0) return;
  if constexpr (kNorm) {
    const float r = 1.0f / sqrtf(ss / cols + s.eps);
    a0 *= r;
    a1 *= r;
  }
  float* y = s.y[o];
  if constexpr (kOut == GemvOut::Glu) {
    y[p] = a0 / (1.0f + expf(-a0)) * a1;
  } else if constexpr (kOut == GemvOut::Add) {
    y[r0] += a0;
    if (r1 != r0) y[r1] += a1;
  } else {
    y[r0] = a0;
    if (r1 != r0) y[r1] = a1;
  }
}

__global__ void add_bias_kernel(float* y, const float* b, int64_t n, int d) {
  GRID_STRIDE(i, n * d) y[i] += b[i % d];
}

__global__ void add_kernel(float* x, const float* y, int64_t n) {
  GRID_STRIDE(i, n) x[i] += y[i];
}

__global__ void swiglu_kernel(const float* gate, const float* up, float* out, int64_t n) {
  GRID_STRIDE(i, n) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

// One thread per rotated pair; the same float arithmetic as cpu::Rope.
__global__ void rope_kernel(float* x, const int32_t* pos, int64_t n, int nh, int hd, const float* inv_freq,
                            float pos_scale, bool interleaved) {
  const int half = hd / 2;
  GRID_STRIDE(e, n * nh * half) {
    const int i = static_cast<int>(e % half);
    const int64_t th = e / half, t = th / nh;
    const float p = static_cast<float>(pos[t]) * pos_scale;
    float sn, cs;
    sincosf(p * inv_freq[i], &sn, &cs);
    float* v = x + th * hd;
    const int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
    const float x0 = v[a], x1 = v[b];
    v[a] = x0 * cs - x1 * sn;
    v[b] = x0 * sn + x1 * cs;
  }
}

// Seeded uniform values in [-a, a], rounded to bf16 (--random-weights).
__device__ __forceinline__ uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
// Element i of a cols-wide slice at (row0, col0) of a full_cols-wide matrix
// is seeded by its index in the whole (a tensor-parallel rank's slice holds
// the same values as the unsplit model).
__global__ void random_bf16_kernel(__nv_bfloat16* w, int64_t n, uint64_t seed, float a, int64_t cols, int64_t row0,
                                   int64_t col0, int64_t full_cols) {
  GRID_STRIDE(i, n) {
    const int64_t gi = (i / cols + row0) * full_cols + i % cols + col0;
    const uint64_t r = splitmix64(seed ^ splitmix64(static_cast<uint64_t>(gi)));
    const float u = static_cast<float>(r >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    w[i] = __float2bfloat16_rn((2.0f * u - 1.0f) * a);
  }
}

// ---- KV pages ---------------------------------------------------------------

__device__ __forceinline__ void store_row(uint8_t* dst, const float* src, int hd, KvElem e, int lane, int step) {
  if (e == KvElem::F16) {
    __half* d = reinterpret_cast<__half*>(dst);
    for (int c = lane; c < hd; c += step) d[c] = __float2half_rn(src[c]);
  } else {
    float* d = reinterpret_cast<float*>(dst);
    for (int c = lane; c < hd; c += step) d[c] = src[c];
  }
}
__device__ __forceinline__ float load_elem(const uint8_t* row, int c, KvElem e) {
  return e == KvElem::F16 ? __half2float(reinterpret_cast<const __half*>(row)[c]) : reinterpret_cast<const float*>(row)[c];
}
__device__ __forceinline__ uint8_t* page_row(const PagedPool& pool, const int32_t* tab, int64_t row, int hd,
                                             size_t esz) {
  return const_cast<uint8_t*>(pool.base) + static_cast<size_t>(tab[row / pool.page_rows]) * pool.page_bytes +
         static_cast<size_t>(row % pool.page_rows) * hd * esz;
}

// Block (token i, KV head g, sequence s): the batch row's K and V after the
// head's first len - n rows.
__global__ void kv_append_kernel(PagedPool pool, const PagedSeq* seqs, int head_off, const float* k, const float* v,
                                 int G, int hd) {
  const PagedSeq sq = seqs[blockIdx.z];
  const int i = blockIdx.x, g = blockIdx.y;
  if (i >= sq.n) return;
  const size_t esz = pool.elem == KvElem::F16 ? 2 : 4;
  const int64_t row = sq.len[head_off + g] - sq.n + i;
  uint8_t* kd = page_row(pool, sq.table + static_cast<size_t>(head_off + g) * sq.max_pages, row, hd, esz);
  uint8_t* vd = kd + static_cast<size_t>(pool.page_rows) * hd * esz;
  const int64_t src = (static_cast<int64_t>(sq.row0 + i) * G + g) * hd;
  store_row(kd, k + src, hd, pool.elem, threadIdx.x, blockDim.x);
  store_row(vd, v + src, hd, pool.elem, threadIdx.x, blockDim.x);
}

__device__ __forceinline__ void store_elem(uint8_t* row, int c, float x, KvElem e) {
  if (e == KvElem::F16) reinterpret_cast<__half*>(row)[c] = __float2half_rn(x);
  else reinterpret_cast<float*>(row)[c] = x;
}

// A decode step's RoPE and append in one launch. Block (token i, head h,
// sequence s), h < H a query head, else K head h - H: the row rotated in
// place (rope_kernel's arithmetic); a K head's rotated row and its V row then
// go to the head's page row len - n + i.
__global__ void rope_append_kernel(PagedPool pool, const PagedSeq* seqs, int head_off, const int32_t* pos, float* q,
                                   float* k, const float* v, int H, int G, int hd, const float* inv_freq,
                                   float pos_scale, bool interleaved) {
  pdl_wait();
  pdl_trigger();
  const PagedSeq sq = seqs[blockIdx.z];
  const int i = blockIdx.x, h = blockIdx.y;
  if (i >= sq.n) return;
  const int64_t t = sq.row0 + i;
  const int g = h - H;
  float* x = g < 0 ? q + (t * H + h) * hd : k + (t * G + g) * hd;
  uint8_t* kd = nullptr;
  if (g >= 0) {
    const size_t esz = pool.elem == KvElem::F16 ? 2 : 4;
    const int64_t row = sq.len[head_off + g] - sq.n + i;
    kd = page_row(pool, sq.table + static_cast<size_t>(head_off + g) * sq.max_pages, row, hd, esz);
  }
  const float p = static_cast<float>(pos[t]) * pos_scale;
  const int half = hd / 2;
  for (int e = threadIdx.x; e < half; e += blockDim.x) {
    float sn, cs;
    sincosf(p * inv_freq[e], &sn, &cs);
    const int a = interleaved ? 2 * e : e, b = interleaved ? 2 * e + 1 : e + half;
    const float x0 = x[a], x1 = x[b];
    const float y0 = x0 * cs - x1 * sn, y1 = x0 * sn + x1 * cs;
    x[a] = y0;
    x[b] = y1;
    if (kd) store_elem(kd, a, y0, pool.elem), store_elem(kd, b, y1, pool.elem);
  }
  if (!kd) return;
  if (hd % 2 && threadIdx.x == 0) store_elem(kd, hd - 1, x[hd - 1], pool.elem);  // an odd head dim's last, unrotated
  uint8_t* vd = kd + static_cast<size_t>(pool.page_rows) * hd * (pool.elem == KvElem::F16 ? 2 : 4);
  const float* vr = v + (t * G + g) * hd;
  for (int c = threadIdx.x; c < hd; c += blockDim.x) store_elem(vd, c, vr[c], pool.elem);
}

// Block (idx, g): head g's row dst0[g] + idx gets dense row rows[off[g] + idx].
__global__ void kv_gather_kernel(PagedPool pool, const int32_t* table, int max_pages, const float* k, const float* v,
                                 const int32_t* rows, const int32_t* off, const int32_t* dst0, int G, int hd) {
  const int g = blockIdx.y, idx = blockIdx.x;
  if (idx >= off[g + 1] - off[g]) return;
  const size_t esz = pool.elem == KvElem::F16 ? 2 : 4;
  const int64_t srow = rows[off[g] + idx];
  uint8_t* kd = page_row(pool, table + static_cast<size_t>(g) * max_pages, dst0[g] + idx, hd, esz);
  uint8_t* vd = kd + static_cast<size_t>(pool.page_rows) * hd * esz;
  store_row(kd, k + (srow * G + g) * hd, hd, pool.elem, threadIdx.x, blockDim.x);
  store_row(vd, v + (srow * G + g) * hd, hd, pool.elem, threadIdx.x, blockDim.x);
}

// Block (j, g): head g's row j to dense row first_new - m + j, m = len[g] - exclude.
__global__ void kv_to_dense_kernel(PagedPool pool, const int32_t* table, const int32_t* len, int exclude,
                                   int max_pages, float* k, float* v, int64_t first_new, int G, int hd) {
  const int g = blockIdx.y, j = blockIdx.x;
  const int L = len[g] - exclude;
  if (j >= L) return;
  const size_t esz = pool.elem == KvElem::F16 ? 2 : 4;
  const uint8_t* kr = page_row(pool, table + static_cast<size_t>(g) * max_pages, j, hd, esz);
  const uint8_t* vr = kr + static_cast<size_t>(pool.page_rows) * hd * esz;
  const int64_t d = ((first_new - L + j) * G + g) * hd;
  for (int c = threadIdx.x; c < hd; c += blockDim.x) {
    k[d + c] = load_elem(kr, c, pool.elem);
    v[d + c] = load_elem(vr, c, pool.elem);
  }
}

// ---- window scores (DESIGN.md 2.1 steps 3-7) --------------------------------
// Pass 1: per (head a, chunk of keys), the max and exp-sum of each window row
// over its visible keys in the chunk. Pass 2: per (head a, chunk of [0, T-w)),
// the window mass s[a][j] = sum_i exp(l_ij - M_i) / L_i with the rows' totals.
// Pass 3: pooling along j and the mean over each group's heads.
// Logits are dot products of 8-lane groups (one key each) with the head's w
// query rows held in shared memory; a chunk's logits sit in shared memory.
constexpr int kWsThreads = 128;

struct WsArgs {
  const float* qw;   // [w][H][hd]
  const float* k;    // [T][G][hd]
  const int32_t* heads;  // [nh] query heads scored
  int T, w, H, G, hd, chunk;
  float scale;
};

// Logits of keys [j0, j0 + cnt) for the block's head into s[i][jj] (-inf where masked).
__device__ void ws_logits(const WsArgs& a, int h, const float* qs, float* s, int64_t j0, int cnt) {
  const int grp = threadIdx.x >> 3, l8 = threadIdx.x & 7;
  const int g = h / (a.H / a.G), n = a.T - a.w;
  // Warp-uniform trip count: every lane reaches each shuffle (a group past
  // the end computes on a clamped row and stores nothing).
  for (int base = 0; base < cnt; base += kWsThreads / 8) {
    const int jj = base + grp;
    const bool ok = jj < cnt;
    const int64_t j = j0 + (ok ? jj : cnt - 1);
    const float* kr = a.k + (j * a.G + g) * a.hd;
    for (int i = 0; i < a.w; ++i) {
      const float* qi = qs + i * a.hd;
      float d = 0.0f;
      for (int c = l8; c < a.hd; c += 8) d += qi[c] * kr[c];
      d += __shfl_xor_sync(0xffffffffu, d, 4);
      d += __shfl_xor_sync(0xffffffffu, d, 2);
      d += __shfl_xor_sync(0xffffffffu, d, 1);
      if (ok && l8 == 0) s[i * a.chunk + jj] = j <= n + i ? d * a.scale : -INFINITY;
    }
  }
}

__device__ void ws_load_q(const WsArgs& a, int h, float* qs) {
  for (int e = threadIdx.x; e < a.w * a.hd; e += blockDim.x) {
    const int i = e / a.hd, c = e % a.hd;
    qs[e] = a.qw[(static_cast<int64_t>(i) * a.H + h) * a.hd + c];
  }
}

// part: [nh][w][nchunks][2] (max, sum).
__global__ void ws_stats_kernel(WsArgs a, float* part) {
  extern __shared__ float wsm[];
  float* qs = wsm;                 // [w][hd]
  float* s = wsm + a.w * a.hd;     // [w][chunk]
  const int ai = blockIdx.y, h = a.heads[ai], c = blockIdx.x, nchunks = gridDim.x;
  const int64_t j0 = static_cast<int64_t>(c) * a.chunk;
  const int cnt = static_cast<int>(a.T - j0 < a.chunk ? a.T - j0 : a.chunk);
  ws_load_q(a, h, qs);
  __syncthreads();
  ws_logits(a, h, qs, s, j0, cnt);
  __syncthreads();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int i = warp; i < a.w; i += kWsThreads / 32) {
    float m = -INFINITY;
    for (int jj = lane; jj < cnt; jj += 32) m = fmaxf(m, s[i * a.chunk + jj]);
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    float sum = 0.0f;
    if (m != -INFINITY)
      for (int jj = lane; jj < cnt; jj += 32) sum += expf(s[i * a.chunk + jj] - m);
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) {
      float* p = part + ((static_cast<int64_t>(ai) * a.w + i) * nchunks + c) * 2;
      p[0] = m;
      p[1] = sum;
    }
  }
}

// mass: [nh][T - w]; grid (chunks over [0, T - w), nh).
__global__ void ws_mass_kernel(WsArgs a, const float* part, int n_stat_chunks, float* mass) {
  extern __shared__ float wsm[];
  float* qs = wsm;
  float* s = wsm + a.w * a.hd;
  float* tot = s + a.w * a.chunk;  // [w][2]: the row's max and 1 / sum
  const int ai = blockIdx.y, h = a.heads[ai], n = a.T - a.w;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * a.chunk;
  const int cnt = static_cast<int>(n - j0 < a.chunk ? n - j0 : a.chunk);
  ws_load_q(a, h, qs);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int i = warp; i < a.w; i += kWsThreads / 32) {
    const float* p = part + (static_cast<int64_t>(ai) * a.w + i) * n_stat_chunks * 2;
    float m = -INFINITY;
    for (int c = lane; c < n_stat_chunks; c += 32) m = fmaxf(m, p[2 * c]);
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    float sum = 0.0f;
    for (int c = lane; c < n_stat_chunks; c += 32)
      if (p[2 * c] != -INFINITY) sum += p[2 * c + 1] * expf(p[2 * c] - m);
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) {
      tot[2 * i] = m;
      tot[2 * i + 1] = 1.0f / sum;
    }
  }
  __syncthreads();
  ws_logits(a, h, qs, s, j0, cnt);
  __syncthreads();
  for (int jj = threadIdx.x; jj < cnt; jj += blockDim.x) {
    float acc = 0.0f;
    for (int i = 0; i < a.w; ++i) acc += expf(s[i * a.chunk + jj] - tot[2 * i]) * tot[2 * i + 1];
    mass[static_cast<int64_t>(ai) * n + j0 + jj] = acc;
  }
}

// out[gi][j] = mean over the group's heads of pool(mass[head])[j].
__global__ void ws_pool_kernel(const float* mass, const int32_t* goff, const int32_t* gidx, int n, int kernel,
                               bool max_pool, float* out) {
  const int gi = blockIdx.y;
  const int b = goff[gi], e = goff[gi + 1], half = kernel / 2;
  for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < n; j += gridDim.x * blockDim.x) {
    const int lo = max(0, j - half), hi = min(n - 1, j + half);
    float acc = 0.0f;
    for (int t = b; t < e; ++t) {
      const float* m = mass + static_cast<int64_t>(gidx[t]) * n;
      float p;
      if (max_pool) {
        p = m[lo];
        for (int u = lo + 1; u <= hi; ++u) p = fmaxf(p, m[u]);
      } else {
        p = 0.0f;
        for (int u = lo; u <= hi; ++u) p += m[u];
        p /= static_cast<float>(kernel);
      }
      acc += p;
    }
    out[static_cast<int64_t>(gi) * n + j] = acc / static_cast<float>(e - b);
  }
}

// ---- top-k ------------------------------------------------------------------
// Keys for the radix sort (-0 as +0, so the sort sees the same ties as a
// comparison) and their positions.
__global__ void topk_prep_kernel(const float* score, float* keys, int32_t* vals, int64_t total, int n) {
  GRID_STRIDE(i, total) {
    const float s = score[i];
    keys[i] = s == 0.0f ? 0.0f : s;
    vals[i] = static_cast<int32_t>(i % n);
  }
}

// ---- top logits ---------------------------------------------------------------
// One block per logit row: k rounds of a block-wide argmax, each over the
// entries after the previous pick in (value descending, id ascending) order,
// so ties and order are those of util/top_logits.h. k <= 64 rounds over a row
// that stays in L2 cost far less than sending the row to the host. A row with
// a NaN or an infinity reports vals[0] = NaN.
constexpr int kTopThreads = 1024;
__global__ void __launch_bounds__(kTopThreads) top_logits_kernel(const float* logits, int V, int k, float* vals,
                                                                 int32_t* ids) {
  pdl_wait();
  pdl_trigger();
  const float* row = logits + static_cast<size_t>(blockIdx.x) * V;
  __shared__ float s_v[32];
  __shared__ int s_i[32];
  __shared__ int s_bad;
  if (threadIdx.x == 0) s_bad = 0;
  __syncthreads();
  bool bad = false;
  for (int i = threadIdx.x; i < V; i += kTopThreads) bad |= !isfinite(row[i]);
  if (bad) atomicOr(&s_bad, 1);
  float last_v = INFINITY;
  int last_i = -1;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int r = 0; r < k; ++r) {
    float bv = -INFINITY;
    int bi = INT_MAX;
    for (int i = threadIdx.x; i < V; i += kTopThreads) {
      const float v = row[i];
      const bool after = v < last_v || (v == last_v && i > last_i);
      if (after && (v > bv || (v == bv && i < bi))) bv = v, bi = i;
    }
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_down_sync(0xffffffffu, bv, o);
      const int oi = __shfl_down_sync(0xffffffffu, bi, o);
      if (ov > bv || (ov == bv && oi < bi)) bv = ov, bi = oi;
    }
    if (lane == 0) s_v[warp] = bv, s_i[warp] = bi;
    __syncthreads();
    if (warp == 0) {
      bv = s_v[lane], bi = s_i[lane];
      for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_down_sync(0xffffffffu, bv, o);
        const int oi = __shfl_down_sync(0xffffffffu, bi, o);
        if (ov > bv || (ov == bv && oi < bi)) bv = ov, bi = oi;
      }
      if (lane == 0) s_v[0] = bv, s_i[0] = bi;
    }
    __syncthreads();
    last_v = s_v[0], last_i = s_i[0];
    if (threadIdx.x == 0) {
      // Past V nothing is left: -infinity and id -1, as on the host.
      vals[static_cast<size_t>(blockIdx.x) * k + r] = (r == 0 && s_bad) ? NAN : last_v;
      ids[static_cast<size_t>(blockIdx.x) * k + r] = last_i == INT_MAX ? -1 : last_i;
    }
    __syncthreads();  // s_v/s_i are rewritten next round
  }
}

// ---- the backend ------------------------------------------------------------

struct Weight {
  __nv_bfloat16* bf = nullptr;  // matrices
  float* f32 = nullptr;         // vectors (norms, biases)
  int64_t rows = 0, cols = 0;
};

// A device buffer that grows on demand (never inside a captured graph: the
// context's limits size them at prepare()).
struct Scratch {
  void* p = nullptr;
  size_t cap = 0;
};

// A decode batch's sequences as the kernels see them (CudaBackend::list_seqs).
struct SeqList {
  int n = 0, max_n = 0;   // sequences with rows; most rows of one
  int G = 0, tiles = 0, splits = 1;
  PagedPool pool{};
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const CudaOptions& o) : opt_(o) {
    int n = 0;
    CKV_CUDA_CHECK(cudaGetDeviceCount(&n));
    if (o.device < 0 || o.device >= n)
      throw Error("CUDA device " + std::to_string(o.device) + " does not exist (" + std::to_string(n) + " found)");
    CKV_CUDA_CHECK(cudaSetDevice(o.device));
    CKV_CUDA_CHECK(cudaGetDeviceProperties(&prop_, o.device));
    pdl_ = prop_.major >= 9 && !(std::getenv("CKV_CUDA_PDL") && std::atoi(std::getenv("CKV_CUDA_PDL")) == 0);
    CKV_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    CKV_CUBLAS_CHECK(cublasLtCreate(&lt_));
    lt_ws_bytes_ = 32u << 20;
    lt_ws_ = alloc(lt_ws_bytes_, "the cuBLASLt workspace");
    scratch_bytes_ += lt_ws_bytes_;
  }

  ~CudaBackend() override {
    cudaStreamSynchronize(stream_);
    for (auto& [k, p] : plans_) {
      cublasLtMatmulDescDestroy(p.op);
      cublasLtMatrixLayoutDestroy(p.a);
      cublasLtMatrixLayoutDestroy(p.b);
      cublasLtMatrixLayoutDestroy(p.c);
    }
    for (void* p : owned_) cudaFree(p);
    for (auto& [h, ex] : recordings_) cudaGraphExecDestroy(ex);
    for (Scratch* s : {&xb_, &meta_, &part_, &ws_, &topk_, &kv16_, &toplog_, &pos_up_.buf, &seq_up_.buf, &step_buf_})
      cudaFree(s->p);
    cudaFree(lt_ws_);
    if (stage_.host) cudaFreeHost(stage_.host);
    for (cudaEvent_t e : stage_.done)
      if (e) cudaEventDestroy(e);
    cublasLtDestroy(lt_);
    cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "CUDA"; }
  int device() const { return opt_.device; }
  cudaStream_t stream() const { return stream_; }
  int kv_page_rows() const override { return 64; }
  bool host_memory() const override { return false; }
  int preferred_chunk() const override { return 4096; }  // fewer rows leave prefill attention short of blocks

  // ---- memory
  void* alloc(size_t bytes, const std::string& what) override {
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, std::max<size_t>(bytes, 1));
    if (e != cudaSuccess) {
      cudaGetLastError();  // clear it: the context stays usable
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      auto mib = [](size_t b) { return std::to_string(b >> 20) + " MiB"; };
      if (e == cudaErrorMemoryAllocation)
        throw Error("CUDA: out of device memory allocating " + what + ": " + std::to_string(bytes) + " bytes (" +
                    mib(bytes) + "), " + mib(free_b) + " free of " + mib(total_b));
      throw Error(std::string("CUDA: cannot allocate ") + what + " (" + std::to_string(bytes) +
                  " bytes): " + cudaGetErrorString(e));
    }
    return p;
  }
  // Never throws (destructors call it): a failed sync leaves a sticky error
  // that the next checked call reports.
  void free(void* p) override {
    if (!p) return;
    cudaStreamSynchronize(stream_);
    cudaFree(p);
  }
  // Small uploads (page tables, lengths, plans, positions) go through pinned
  // staging memory: a copy from pageable memory may wait for all the work
  // queued before it, which stalled the host at every layer of a decode step.
  void upload(void* dst, const void* src, size_t bytes) override {
    if (!bytes) return;
    if (hold(dst, src, bytes)) return;
    uint8_t* h = bytes <= kStageHalf ? stage(bytes) : nullptr;
    if (h) std::memcpy(h, src, bytes);
    CKV_CUDA_CHECK(cudaMemcpyAsync(dst, h ? h : src, bytes, cudaMemcpyHostToDevice, stream_));
  }
  void download(void* dst, const void* src, size_t bytes) override {
    if (!bytes) return;
    CKV_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    CKV_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    if (bytes) CKV_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
  }
  void sync() override { CKV_CUDA_CHECK(cudaStreamSynchronize(stream_)); }
  void begin_upload_batch() override { holding_ = batch_uploads_; }
  void end_upload_batch() override;
  void fill(float* x, int64_t n, float value) override {
    if (n <= 0) return;
    fill_kernel<<<grid_for(n, 256), 256, 0, stream_>>>(x, n, value);
    CKV_LAUNCH_CHECK();
  }

  // ---- set-up
  void prepare(const Model& m, const BackendLimits& lim) override;
  size_t weight_bytes() const override { return weight_bytes_; }
  size_t scratch_bytes() const override { return scratch_bytes_; }
  size_t free_memory() const override {
    size_t free_b = 0, total_b = 0;
    CKV_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    return free_b;
  }

  // ---- the forward pass
  void embed(std::span<const int32_t> tokens, float* x) override {
    const int64_t n = static_cast<int64_t>(tokens.size());
    if (n == 0) return;
    for (int32_t t : tokens)
      if (t < 0 || t >= cfg_.vocab_size)
        throw Error("token id " + std::to_string(t) + " out of range [0, " + std::to_string(cfg_.vocab_size) + ")");
    const Weight& e = weight(*embd_);
    int32_t* d = meta_upload(tokens.data(), tokens.size_bytes());
    embed_kernel<<<grid_for(n * e.cols, 256), 256, 0, stream_>>>(e.bf, d, x, n, static_cast<int>(e.cols));
    CKV_LAUNCH_CHECK();
  }
  void rmsnorm(const float* x, const Tensor& w, float* y, int64_t n) override {
    if (n <= 0) return;
    const Weight& wt = weight(w);
    if (n > INT32_MAX) throw Error("CUDA rmsnorm: too many rows");
    rmsnorm_kernel<float><<<static_cast<unsigned>(n), 256, 0, stream_>>>(x, wt.f32, y, static_cast<int>(wt.cols), eps_);
    CKV_LAUNCH_CHECK();
  }
  void matmul(std::span<const MatmulOut> outs, const float* x, int64_t n) override;
  void rmsnorm_matmul(const float* x, const Tensor& norm, float* xn, std::span<const MatmulOut> outs,
                      int64_t n) override;
  void matmul_add(const Tensor& W, const float* x, int64_t n, float* y, float* tmp) override;
  void ffn_hidden(const float* x, const Tensor& norm, float* xn, const Tensor& gate, const Tensor& up, float* h,
                  float* up_out, int64_t n) override;
  void add_bias(float* y, const Tensor& b, int64_t n) override {
    if (n <= 0) return;
    const Weight& wt = weight(b);
    add_bias_kernel<<<grid_for(n * wt.cols, 256), 256, 0, stream_>>>(y, wt.f32, n, static_cast<int>(wt.cols));
    CKV_LAUNCH_CHECK();
  }
  void add(float* x, const float* y, int64_t n) override {
    if (n <= 0) return;
    add_kernel<<<grid_for(n, 256), 256, 0, stream_>>>(x, y, n);
    CKV_LAUNCH_CHECK();
  }
  void rope(float* x, std::span<const int32_t> pos, int n_heads) override {
    const int64_t n = static_cast<int64_t>(pos.size());
    if (n == 0) return;
    if (!inv_freq_) throw Error("CUDA rope: prepare() was not called");
    const int32_t* d = cached_upload<int32_t>(pos_up_, pos.data(), pos.size_bytes(), "CUDA positions");
    rope_kernel<<<grid_for(n * n_heads * (hd_ / 2), 256), 256, 0, stream_>>>(x, d, n, n_heads, hd_, inv_freq_,
                                                                               pos_scale_, interleaved_);
    CKV_LAUNCH_CHECK();
  }
  void swiglu(const float* gate, const float* up, float* out, int64_t n) override {
    if (n <= 0) return;
    swiglu_kernel<<<grid_for(n, 256), 256, 0, stream_>>>(gate, up, out, n);
    CKV_LAUNCH_CHECK();
  }
  void attention_prefill(const float* q, int64_t i0, int64_t nq, const DenseKV& kv, int n_heads, int n_kv, int hd,
                         float* out) override;
  void attention_decode(const float* q, std::span<const DecodeItem> items, int layer, float* out,
                        const AttnProbeOut* probe) override;

  // ---- KV store
  void kv_append(std::span<const AppendItem> items, int layer, const float* k, const float* v) override;
  void kv_gather(KvCache& cache, int layer, const DenseKV& src, std::span<const std::vector<int32_t>> rows) override;
  void kv_to_dense(const KvCache& cache, int layer, const DenseKV& dst, int exclude_last) override;

  // ---- scoring
  void window_scores(const float* qw, const float* k, int T, int w, int n_heads, int n_kv, int hd,
                     std::span<const std::vector<int>> groups, int kernel, Pool pool, float* out) override;
  std::vector<std::vector<int32_t>> top_k(const float* score, int rows, int n, std::span<const int> k) override;
  void top_logits(const float* logits, int rows, int V, int k, float* vals, int32_t* ids) override;

  // ---- a decode step on its own inputs, recorded as a CUDA graph
  void set_step(const StepBatch& s) override;
  void embed_step(float* x) override;
  void rope_append_step(float* q, float* k, const float* v, int layer, int n_heads, int n_kv) override;
  void attention_step(const float* q, int layer, float* out, const AttnProbeOut* probe) override {
    decode_launch(step_, step_seqs_, q, layer, out, probe);
  }
  bool begin_recording() override;
  int end_recording() override;
  void abort_recording() override;
  bool replay(int handle) override;
  void drop_recording(int handle) override;

 private:
  template <class Item>
  SeqList list_seqs(std::span<const Item> items, const char* what);
  float* partials(int64_t slots);
  void decode_launch(const SeqList& sl, const PagedSeq* dseqs, const float* q, int layer, float* out,
                     const AttnProbeOut* probe);
  void append_launch(const SeqList& sl, const PagedSeq* dseqs, int layer, const float* k, const float* v);
  void drop_all_recordings();
  // The products of one row through the GEMV (a decode step of one sequence), when its layout allows.
  bool gemv_fits(const float* x, int64_t n, int64_t cols, size_t n_out, const Weight* norm) const;
  void gemv(std::span<const MatmulOut> outs, const Weight* norm, GemvOut out, const float* x, int64_t cols);
  int64_t check_cols(std::span<const MatmulOut> outs, const char* what) const;
  __nv_bfloat16* to_bf16(const float* x, int64_t n, int64_t cols);
  __nv_bfloat16* rmsnorm_bf16(const float* x, const Weight& norm, int64_t n);
  void gemm(const Weight& w, const __nv_bfloat16* xb, int64_t n, float* y, float beta = 0.0f);

  struct GemmPlan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };

  const Weight& weight(const Tensor& t) const {
    auto it = by_addr_.find(&t);
    if (it != by_addr_.end()) return *it->second;
    if (t.data) {
      auto jt = by_data_.find(t.data);
      if (jt != by_data_.end()) return *jt->second;
    }
    throw Error("CUDA backend: tensor '" + t.name + "' was not prepared (not a weight of the prepared model)");
  }
  void prepare_matrix(const Tensor& t, uint64_t tensor_id);
  void prepare_vector(const Tensor& t);
  Weight& add_weight(const Tensor& t) {
    weights_.push_back(std::make_unique<Weight>());
    Weight* w = weights_.back().get();
    by_addr_[&t] = w;
    if (t.data) by_data_[t.data] = w;
    return *w;
  }
  void* owned_alloc(size_t bytes, const std::string& what) {
    void* p = alloc(bytes, what);
    owned_.push_back(p);
    weight_bytes_ += bytes;
    return p;
  }
  void* grow(Scratch& s, size_t bytes, const char* what) {
    if (bytes <= s.cap) return s.p;
    const size_t want = std::max(bytes, s.cap + s.cap / 4);
    if (s.p) {
      drop_all_recordings();  // they may refer to the buffer that moves
      CKV_CUDA_CHECK(cudaStreamSynchronize(stream_));
      CKV_CUDA_CHECK(cudaFree(s.p));
      scratch_bytes_ -= s.cap;
      s.p = nullptr;
      s.cap = 0;
    }
    s.p = alloc(want, what);
    s.cap = want;
    scratch_bytes_ += want;
    return s.p;
  }
  // Small host metadata to the device (stream-ordered; the host bytes are copied before return).
  template <typename T>
  T* meta_upload(const T* src, size_t bytes) {
    void* d = grow(meta_, bytes, "CUDA metadata scratch");
    upload(d, src, bytes);
    return static_cast<T*>(d);
  }
  // The same into a buffer of its own that keeps its last contents: equal
  // bytes are not sent again (positions of every layer of a decode step, the
  // step's page lists and plans).
  struct Cached {
    Scratch buf;
    std::vector<uint8_t> last;
  };
  template <typename T>
  T* cached_upload(Cached& c, const void* src, size_t bytes, const char* what) {
    if (c.buf.p && c.last.size() == bytes && std::memcmp(c.last.data(), src, bytes) == 0) return static_cast<T*>(c.buf.p);
    if (bytes > c.buf.cap) c.last.clear();  // grow() below replaces the buffer
    void* d = grow(c.buf, bytes, what);
    upload(d, src, bytes);
    c.last.assign(static_cast<const uint8_t*>(src), static_cast<const uint8_t*>(src) + bytes);
    return static_cast<T*>(d);
  }
  // Room for `bytes` in the pinned staging buffer, or null when it cannot be
  // had. Two halves: before one is reused, the copies queued out of it last
  // time must have run (an event recorded when we left it).
  static constexpr size_t kStageHalf = 4u << 20;
  uint8_t* stage(size_t bytes) {
    if (!stage_.host) {
      if (stage_.failed) return nullptr;
      if (cudaMallocHost(&stage_.host, 2 * kStageHalf) != cudaSuccess) {
        cudaGetLastError();  // clear it: the pageable path still works
        stage_.failed = true;
        return nullptr;
      }
      for (auto& e : stage_.done) CKV_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    }
    bytes = (bytes + 15) / 16 * 16;
    if (stage_.used + bytes > kStageHalf) {
      CKV_CUDA_CHECK(cudaEventRecord(stage_.done[stage_.half], stream_));
      stage_.half ^= 1;
      CKV_CUDA_CHECK(cudaEventSynchronize(stage_.done[stage_.half]));  // never recorded: returns at once
      stage_.used = 0;
    }
    uint8_t* p = static_cast<uint8_t*>(stage_.host) + stage_.half * kStageHalf + stage_.used;
    stage_.used += bytes;
    return p;
  }
  // Held uploads (begin/end_upload_batch; CKV_CUDA_BATCH_UPLOADS=1): a
  // decode step of B sequences makes ~5 B small uploads (each cache's head
  // lengths, the page-table entries of heads that crossed a page), each a
  // cudaMemcpyAsync of some microseconds on the host; held, they are one
  // copy and one kernel. Word-sized and word-aligned ones only.
  bool hold(void* dst, const void* src, size_t bytes);
  const bool batch_uploads_ =
      std::getenv("CKV_CUDA_BATCH_UPLOADS") && std::atoi(std::getenv("CKV_CUDA_BATCH_UPLOADS")) == 1;
  bool holding_ = false;
  std::vector<HeldCopy> held_;
  std::vector<uint32_t> held_data_;
  std::unordered_map<uint32_t*, size_t> held_at_;  // dst -> its entry in held_ (a later upload there replaces it)
  Scratch held_dev_;
  std::vector<uint8_t> held_blob_;

  struct Staging {
    void* host = nullptr;
    bool failed = false;
    size_t used = 0;
    int half = 0;
    cudaEvent_t done[2] = {nullptr, nullptr};
  } stage_;
  PagedPool pool_of(const KvCache& c) const {
    const KvPool& p = c.pool();
    return PagedPool{p.base(), p.page_bytes(), p.page_rows(), p.type() == KvType::F16 ? KvElem::F16 : KvElem::F32};
  }

  CudaOptions opt_;
  cudaDeviceProp prop_{};
  cudaStream_t stream_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  void* lt_ws_ = nullptr;
  size_t lt_ws_bytes_ = 0;
  std::map<std::tuple<int64_t, int64_t, int64_t>, GemmPlan> plans_;

  ModelConfig cfg_;
  float eps_ = 1e-5f;
  int hd_ = 0;
  float* inv_freq_ = nullptr;  // [hd/2], device
  float pos_scale_ = 1.0f;
  bool interleaved_ = false;
  const Tensor* embd_ = nullptr;

  std::vector<std::unique_ptr<Weight>> weights_;
  std::unordered_map<const Tensor*, Weight*> by_addr_;
  std::unordered_map<const void*, Weight*> by_data_;
  std::vector<void*> owned_;
  size_t weight_bytes_ = 0, scratch_bytes_ = 0;
  // x as bf16 for the products; metadata; decode partials; window scores;
  // top-k keys/values/temp; f16 K/V for the tensor-core prefill.
  Scratch xb_, meta_, part_, ws_, topk_, kv16_, toplog_;
  Cached pos_up_, seq_up_;
  std::vector<PagedSeq> seqs_;  // host list of a decode call, reused
  // The step's inputs (set_step): where they are on the device, its batch.
  Scratch step_buf_;
  std::vector<uint8_t> step_host_;
  SeqList step_;
  int64_t step_rows_ = 0;
  // The fused decode forms (rmsnorm_matmul, matmul_add, ffn_hidden,
  // rope_append_step in one launch each) and split-K sized to one wave of the
  // kernel's occupancy: the default since they were measured (10-23% faster
  // decode on the H200, bench/cuda_notes.md). CKV_CUDA_FUSED=0 runs the plain
  // kernels in sequence with 4 split blocks an SM, for A/B runs and tests.
  const bool fused_ = !(std::getenv("CKV_CUDA_FUSED") && std::atoi(std::getenv("CKV_CUDA_FUSED")) == 0);
  // The decode step's kernels by programmatic dependent launch
  // (cuda_common.cuh); CKV_CUDA_PDL=0 launches them the plain way.
  bool pdl_ = false;
  int64_t decode_wave_ = 4;  // split-kernel blocks resident at once on the device (prepare())
  const int32_t* step_tokens_ = nullptr;
  const int32_t* step_pos_ = nullptr;
  const PagedSeq* step_seqs_ = nullptr;
  // Recorded steps by handle.
  std::map<int, cudaGraphExec_t> recordings_;
  int next_recording_ = 0;
  bool recording_ = false;
};

// ---- prepare ----------------------------------------------------------------

// Rows of a matrix to bf16 on the host (exact dequantisation, one rounding),
// several threads at a time, then to the device in slabs.
void CudaBackend::prepare_matrix(const Tensor& t, uint64_t tensor_id) {
  if (by_addr_.count(&t) || (t.data && by_data_.count(t.data))) {
    if (!by_addr_.count(&t)) by_addr_[&t] = by_data_[t.data];
    return;
  }
  Weight& w = add_weight(t);
  w.rows = t.rows();
  w.cols = t.cols();
  const size_t n = static_cast<size_t>(w.rows * w.cols);
  w.bf = static_cast<__nv_bfloat16*>(owned_alloc(n * 2, "weight " + t.name + " (bf16)"));
  if (!t.data) {  // --random-weights: uniform, variance 1/(3 cols)... scaled to keep activations O(1)
    const int64_t full_cols = t.full_cols ? t.full_cols : w.cols;
    const float a = std::sqrt(3.0f / static_cast<float>(full_cols));
    random_bf16_kernel<<<grid_for(static_cast<int64_t>(n), 256), 256, 0, stream_>>>(
        w.bf, static_cast<int64_t>(n), opt_.random_seed * 0x100000001b3ULL + tensor_id, a, w.cols, t.row0, t.col0,
        full_cols);
    CKV_LAUNCH_CHECK();
    return;
  }
  if (t.type == DType::BF16) {
    CKV_CUDA_CHECK(cudaMemcpy(w.bf, t.data, n * 2, cudaMemcpyHostToDevice));
    return;
  }
  // Slabs of rows: dequantise + round on the host threads, copy up.
  const int64_t slab_rows = std::max<int64_t>(1, (int64_t(16) << 20) / std::max<int64_t>(1, w.cols));
  std::vector<uint16_t> host(static_cast<size_t>(std::min(slab_rows, w.rows) * w.cols));
  const unsigned nt = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
  for (int64_t r0 = 0; r0 < w.rows; r0 += slab_rows) {
    const int64_t nr = std::min(slab_rows, w.rows - r0);
    std::vector<std::thread> th;
    std::vector<std::exception_ptr> err(nt);
    for (unsigned ti = 0; ti < nt; ++ti)
      th.emplace_back([&, ti] {
        try {
          std::vector<float> row(static_cast<size_t>(w.cols));
          for (int64_t r = ti; r < nr; r += nt) {
            dequantize_row(t.type, t.row(r0 + r), row.data(), w.cols);
            uint16_t* dst = &host[static_cast<size_t>(r * w.cols)];
            for (int64_t c = 0; c < w.cols; ++c) dst[c] = f32_to_bf16(row[c]);
          }
        } catch (...) {
          err[ti] = std::current_exception();
        }
      });
    for (auto& x : th) x.join();
    for (auto& e : err)
      if (e) std::rethrow_exception(e);
    CKV_CUDA_CHECK(cudaMemcpy(w.bf + r0 * w.cols, host.data(), static_cast<size_t>(nr * w.cols) * 2,
                              cudaMemcpyHostToDevice));
  }
}

void CudaBackend::prepare_vector(const Tensor& t) {
  if (t.empty() || by_addr_.count(&t)) return;
  if (t.type != DType::F32) throw Error("CUDA backend: vector " + t.name + " is not F32");
  Weight& w = add_weight(t);
  w.rows = 1;
  w.cols = t.numel();
  w.f32 = static_cast<float*>(owned_alloc(static_cast<size_t>(w.cols) * 4, "weight " + t.name));
  CKV_CUDA_CHECK(cudaMemcpy(w.f32, t.data, static_cast<size_t>(w.cols) * 4, cudaMemcpyHostToDevice));
}

void CudaBackend::prepare(const Model& m, const BackendLimits& lim) {
  cfg_ = m.config;
  eps_ = m.config.norm_eps;
  hd_ = m.config.head_dim;
  const cpu::Rope rope(m.config);  // the same tables as the CPU backend
  inv_freq_ = static_cast<float*>(owned_alloc(rope.inv_freq.size() * 4, "RoPE frequencies"));
  CKV_CUDA_CHECK(cudaMemcpy(inv_freq_, rope.inv_freq.data(), rope.inv_freq.size() * 4, cudaMemcpyHostToDevice));
  pos_scale_ = rope.pos_scale;
  interleaved_ = rope.interleaved;

  uint64_t id = 1;
  embd_ = &m.tok_embd;
  prepare_matrix(m.tok_embd, id++);
  if (m.config.tied_output && !m.output.data) by_addr_[&m.output] = by_addr_[&m.tok_embd];
  prepare_matrix(m.output, id++);
  prepare_vector(m.output_norm);
  for (const LayerWeights& l : m.layers) {
    for (const Tensor* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) prepare_matrix(*t, id++);
    for (const Tensor* t : {&l.attn_norm, &l.ffn_norm, &l.bq, &l.bk, &l.bv, &l.q_norm, &l.k_norm}) prepare_vector(*t);
  }
  // Scratch for the given limits, so that no call allocates (CUDA graphs).
  const int64_t widest = std::max<int64_t>({m.config.dim, m.config.hidden_dim,
                                            int64_t(m.config.n_heads) * m.config.head_dim});
  grow(xb_, static_cast<size_t>(std::max(1, lim.max_rows) * widest) * 2, "CUDA activations (bf16)");
  grow(meta_, std::max<size_t>(1 << 20, static_cast<size_t>(lim.max_rows) * 8), "CUDA metadata scratch");
  // A decode step's inputs and partials for the largest batch (list_seqs:
  // sequences x KV heads x tiles x splits stays under one wave or, past a
  // wave, one split each).
  const int64_t R = std::min<int64_t>(lim.max_rows, int64_t(lim.max_seqs) * 8);
  grow(step_buf_, static_cast<size_t>(2 * ((R * 4 + 15) / 16 * 16)) + lim.max_seqs * sizeof(PagedSeq),
       "CUDA decode step inputs");
  const int G = std::max(1, m.config.n_kv_heads);
  const int64_t tiles = ceil_div(int64_t(m.config.n_heads / G) * std::min<int64_t>(8, lim.max_rows), kDecodeTileRows);
  decode_wave_ = int64_t(fused_ ? decode_blocks_per_sm(m.config.head_dim) : 4) * prop_.multiProcessorCount;
  partials(std::max<int64_t>(int64_t(lim.max_seqs) * G * tiles, decode_wave_));
  CKV_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

// ---- products ---------------------------------------------------------------

// y [n][w.rows] = x [n][w.cols] W^T. Column-major view (cuBLASLt): Y^T (m x n)
// = op(A) B with A = W stored as a k x m column-major matrix (transposed: T),
// B = x^T (k x n), m = W rows, k = W cols. bf16 in, fp32 accumulate and out.
void CudaBackend::gemm(const Weight& w, const __nv_bfloat16* xb, int64_t n, float* y, float beta) {
  const auto key = std::make_tuple(w.rows, n, w.cols);
  auto it = plans_.find(key);
  if (it == plans_.end()) {
    GemmPlan p;
    CKV_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CKV_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    CKV_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    CKV_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, w.cols, w.rows, w.cols));
    CKV_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, w.cols, n, w.cols));
    CKV_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_32F, w.rows, n, w.rows));
    cublasLtMatmulPreference_t pref;
    CKV_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    CKV_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                          &lt_ws_bytes_, sizeof(lt_ws_bytes_)));
    cublasLtMatmulHeuristicResult_t res{};
    int found = 0;
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt_, p.op, p.a, p.b, p.c, p.c, pref, 1, &res, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0)
      throw Error("cuBLASLt: no bf16 algorithm for a " + std::to_string(n) + " x " + std::to_string(w.cols) + " by " +
                  std::to_string(w.cols) + " x " + std::to_string(w.rows) + " product (" + cublasLt_status(st) + ")");
    p.algo = res.algo;
    it = plans_.emplace(key, p).first;
  }
  const float one = 1.0f;
  const GemmPlan& p = it->second;
  CKV_CUBLAS_CHECK(cublasLtMatmul(lt_, p.op, &one, w.bf, p.a, xb, p.b, &beta, y, p.c, y, p.c, &p.algo, lt_ws_,
                                  lt_ws_bytes_, stream_));
}

int64_t CudaBackend::check_cols(std::span<const MatmulOut> outs, const char* what) const {
  const int64_t cols = outs[0].W->cols();
  for (const MatmulOut& o : outs)
    if (weight(*o.W).cols != cols)
      throw Error(std::string("CUDA ") + what + ": " + o.W->name + " has " + std::to_string(o.W->cols()) +
                  " columns, the input " + std::to_string(cols));
  return cols;
}

bool CudaBackend::gemv_fits(const float* x, int64_t n, int64_t cols, size_t n_out, const Weight* norm) const {
  const bool off = std::getenv("CKV_CUDA_NO_GEMV") != nullptr;  // cuBLASLt for single rows too (comparisons)
  return n == 1 && n_out <= 3 && cols % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
         (!norm || (norm->cols == cols && reinterpret_cast<uintptr_t>(norm->f32) % 16 == 0)) && !off;
}

void CudaBackend::gemv(std::span<const MatmulOut> outs, const Weight* norm, GemvOut out, const float* x,
                       int64_t cols) {
  GemvSet gs{};
  int64_t warps = 0;
  for (const MatmulOut& o : outs) {
    const Weight& w = weight(*o.W);
    gs.w[gs.n_out] = w.bf;
    gs.y[gs.n_out] = o.y;
    gs.rows[gs.n_out++] = static_cast<int>(w.rows);
    warps += out == GemvOut::Glu ? 0 : (w.rows + 1) / 2;
  }
  if (out == GemvOut::Glu) warps = gs.rows[0];
  gs.norm = norm ? norm->f32 : nullptr;
  gs.eps = eps_;
  const unsigned blocks = static_cast<unsigned>(ceil_div(warps, 8));
  const int c = static_cast<int>(cols);
  auto launch = [&](auto kernel) { launch_pdl(pdl_, kernel, dim3(blocks), dim3(256), 0, stream_, gs, x, c); };
  if (out == GemvOut::Glu) norm ? launch(gemv_kernel<true, GemvOut::Glu>) : launch(gemv_kernel<false, GemvOut::Glu>);
  else if (out == GemvOut::Add) norm ? launch(gemv_kernel<true, GemvOut::Add>) : launch(gemv_kernel<false, GemvOut::Add>);
  else norm ? launch(gemv_kernel<true, GemvOut::Store>) : launch(gemv_kernel<false, GemvOut::Store>);
}

__nv_bfloat16* CudaBackend::to_bf16(const float* x, int64_t n, int64_t cols) {
  auto* xb = static_cast<__nv_bfloat16*>(grow(xb_, static_cast<size_t>(n * cols) * 2, "CUDA activations (bf16)"));
  launch_pdl(pdl_, to_bf16_kernel, dim3(grid_for(n * cols / 4 + 1, 256)), dim3(256), 0, stream_, x, xb, n * cols);
  return xb;
}

__nv_bfloat16* CudaBackend::rmsnorm_bf16(const float* x, const Weight& norm, int64_t n) {
  if (n > INT32_MAX) throw Error("CUDA rmsnorm: too many rows");
  auto* xb = static_cast<__nv_bfloat16*>(grow(xb_, static_cast<size_t>(n * norm.cols) * 2, "CUDA activations (bf16)"));
  launch_pdl(pdl_, rmsnorm_kernel<__nv_bfloat16>, dim3(static_cast<unsigned>(n)), dim3(256), 0, stream_, x,
             static_cast<const float*>(norm.f32), xb, static_cast<int>(norm.cols), eps_);
  return xb;
}

void CudaBackend::matmul(std::span<const MatmulOut> outs, const float* x, int64_t n) {
  if (outs.empty() || n <= 0) return;
  const int64_t cols = check_cols(outs, "matmul");
  if (gemv_fits(x, n, cols, outs.size(), nullptr)) return gemv(outs, nullptr, GemvOut::Store, x, cols);
  const __nv_bfloat16* xb = to_bf16(x, n, cols);
  for (const MatmulOut& o : outs) gemm(weight(*o.W), xb, n, o.y);
}

void CudaBackend::rmsnorm_matmul(const float* x, const Tensor& norm, float* xn, std::span<const MatmulOut> outs,
                                 int64_t n) {
  if (!fused_) return Backend::rmsnorm_matmul(x, norm, xn, outs, n);
  if (outs.empty() || n <= 0) return;
  const int64_t cols = check_cols(outs, "matmul");
  const Weight& nw = weight(norm);
  if (nw.cols != cols)
    throw Error("CUDA rmsnorm_matmul: " + norm.name + " has " + std::to_string(nw.cols) + " weights for rows of " +
                std::to_string(cols));
  if (gemv_fits(x, n, cols, outs.size(), &nw)) return gemv(outs, &nw, GemvOut::Store, x, cols);
  const __nv_bfloat16* xb = rmsnorm_bf16(x, nw, n);
  for (const MatmulOut& o : outs) gemm(weight(*o.W), xb, n, o.y);
}

void CudaBackend::matmul_add(const Tensor& W, const float* x, int64_t n, float* y, float* tmp) {
  if (!fused_) return Backend::matmul_add(W, x, n, y, tmp);
  if (n <= 0) return;
  const MatmulOut o[] = {{&W, y}};
  const int64_t cols = check_cols(o, "matmul");
  if (gemv_fits(x, n, cols, 1, nullptr)) return gemv(o, nullptr, GemvOut::Add, x, cols);
  gemm(weight(W), to_bf16(x, n, cols), n, y, 1.0f);  // beta = 1: y += x W^T
}

void CudaBackend::ffn_hidden(const float* x, const Tensor& norm, float* xn, const Tensor& gate, const Tensor& up,
                             float* h, float* up_out, int64_t n) {
  if (!fused_) return Backend::ffn_hidden(x, norm, xn, gate, up, h, up_out, n);
  if (n <= 0) return;
  const MatmulOut o[] = {{&gate, h}, {&up, up_out}};
  const int64_t cols = check_cols(o, "matmul");
  const Weight& nw = weight(norm);
  if (nw.cols != cols)
    throw Error("CUDA ffn_hidden: " + norm.name + " has " + std::to_string(nw.cols) + " weights for rows of " +
                std::to_string(cols));
  const int64_t ff = weight(gate).rows;
  if (weight(up).rows != ff)
    throw Error("CUDA ffn_hidden: " + gate.name + " and " + up.name + " differ in rows");
  if (gemv_fits(x, n, cols, 2, &nw)) return gemv(o, &nw, GemvOut::Glu, x, cols);
  const __nv_bfloat16* xb = rmsnorm_bf16(x, nw, n);
  gemm(weight(gate), xb, n, h);
  gemm(weight(up), xb, n, up_out);
  swiglu(h, up_out, h, n * ff);
}

// ---- attention --------------------------------------------------------------

void CudaBackend::attention_prefill(const float* q, int64_t i0, int64_t nq, const DenseKV& kv, int n_heads, int n_kv,
                                    int hd, float* out) {
  if (nq <= 0) return;
  if (n_kv <= 0 || n_heads % n_kv != 0) throw Error("CUDA attention: heads not a multiple of KV heads");
  if (!kv.start.empty() && static_cast<int>(kv.start.size()) != n_kv)
    throw Error("CUDA attention: " + std::to_string(kv.start.size()) + " start offsets for " + std::to_string(n_kv) +
                " KV heads");
  int64_t lo = kv.first_new;
  std::vector<int32_t> st;
  for (int64_t s : kv.start) {
    if (s < 0 || s > kv.first_new)
      throw Error("CUDA attention: KV head start " + std::to_string(s) + " outside [0, " +
                  std::to_string(kv.first_new) + "]");
    lo = std::min(lo, s);
    st.push_back(static_cast<int32_t>(s));
  }
  const int32_t* dstart = st.empty() ? nullptr : meta_upload(st.data(), st.size() * 4);
  if (prefill_mma_supported(hd)) {
    const int64_t rows = kv.first_new + i0 + nq - lo;
    const int64_t elems = rows * n_kv * hd;
    auto* kh = static_cast<__half*>(grow(kv16_, static_cast<size_t>(elems) * 4, "CUDA prefill K/V (f16)"));
    __half* vh = kh + elems;
    const size_t off = static_cast<size_t>(lo) * n_kv * hd;
    convert_kv_half(kv.k + off, kv.v + off, kh, vh, elems, stream_);
    attention_prefill_f16(q, kh, vh, lo, out, i0, nq, kv.first_new, dstart, n_heads, n_kv, hd, stream_);
  } else {
    attention_prefill_generic(q, kv.k, kv.v, out, i0, nq, kv.first_new, dstart, n_heads, n_kv, hd, stream_);
  }
}

// The step's sequences as layer-independent page lists (one upload, reused
// by every layer while the batch is the same); checks the batch.
template <class Item>
void check_batch(std::span<const Item> items, int layer, const char* what) {
  const KvCache& c0 = *items[0].cache;
  for (const Item& it : items) {
    if (&it.cache->pool() != &c0.pool()) throw Error(std::string("CUDA ") + what + ": the batch's caches use different pools");
    if (it.n <= 0) continue;
    for (int g = 0; g < c0.n_kv_heads(); ++g)
      if (it.cache->len(layer, g) < it.n)
        throw Error(std::string("CUDA ") + what + ": head " + std::to_string(g) + " holds " +
                    std::to_string(it.cache->len(layer, g)) + " rows, fewer than its " + std::to_string(it.n) +
                    " new ones (grow the cache first)");
  }
}

// The device's view of a batch's sequences (host list in seqs_): each
// sequence's split length for the tensor-core decode, sized so that the
// launch has a few blocks per SM at the batch's longest head; the splits a
// (sequence, KV head, tile) gets depend only on the batch's shape, so that a
// recorded step replays at any length (empty splits end at once).
template <class Item>
SeqList CudaBackend::list_seqs(std::span<const Item> items, const char* what) {
  seqs_.clear();
  SeqList sl;
  if (items.empty()) return sl;
  const KvCache& c0 = *items[0].cache;
  const int G = c0.n_kv_heads(), H = cfg_.n_heads;
  if (H <= 0 || H % G != 0 || c0.head_dim() != cfg_.head_dim)
    throw Error(std::string("CUDA ") + what + ": prepare() a model with this cache's shape first");
  for (const Item& it : items) {
    if (&it.cache->pool() != &c0.pool())
      throw Error(std::string("CUDA ") + what + ": the batch's caches use different pools");
    if (it.n <= 0) continue;
    seqs_.push_back(PagedSeq{it.cache->device_table(), it.cache->device_len(), it.cache->max_pages(), it.row0, it.n,
                             it.cache->max_len()});
    sl.max_n = std::max(sl.max_n, it.n);
  }
  sl.n = static_cast<int>(seqs_.size());
  if (sl.n == 0) return sl;
  sl.pool = pool_of(c0);
  sl.G = G;
  sl.tiles = static_cast<int>(ceil_div(int64_t(H / G) * sl.max_n, kDecodeTileRows));
  const int64_t pairs = int64_t(sl.n) * G * sl.tiles;
  // As many splits as fill one wave of the SMs, never more: a second, partial
  // wave costs as long as a full one (1.3 waves ran the B = 1 case at 39% of
  // the copy bandwidth).
  sl.splits = static_cast<int>(std::max<int64_t>(1, fused_ ? decode_wave_ / pairs : ceil_div(decode_wave_, pairs)));
  const int tk = decode_tile_keys();
  for (PagedSeq& sq : seqs_) {
    const int longest = std::max(1, sq.chunk);  // max_len, set above
    const int per = static_cast<int>(ceil_div(longest, sl.splits));
    // at least 4 tiles of keys a split (fewer splits in use), all of them with one split
    sq.chunk = static_cast<int>(ceil_div(sl.splits == 1 ? longest : std::max(per, 4 * tk), tk) * tk);
  }
  return sl;
}

// Decode partials for up to `slots` splits.
float* CudaBackend::partials(int64_t slots) {
  const size_t bytes = static_cast<size_t>(slots) * kDecodeTileRows * (cfg_.head_dim + 2) * 4;
  return static_cast<float*>(grow(part_, bytes, "CUDA decode partials"));
}

void CudaBackend::decode_launch(const SeqList& sl, const PagedSeq* dseqs, const float* q, int layer, float* out,
                                const AttnProbeOut* probe) {
  if (sl.n == 0) return;
  const int G = sl.G, hd = cfg_.head_dim, H = cfg_.n_heads;
  const bool fast = !probe && sl.pool.elem == KvElem::F16 && decode_split_supported(hd);
  if (!fast) {
    float* pm = nullptr;
    int32_t* pa = nullptr;
    if (probe) {
      if (sl.n != 1 || sl.max_n != 1)
        throw Error("CUDA decode attention: the probe needs a batch of one sequence and one token");
      auto* base = static_cast<uint8_t*>(grow(meta_, static_cast<size_t>(H) * 8, "CUDA metadata scratch"));
      pm = reinterpret_cast<float*>(base);
      pa = reinterpret_cast<int32_t*>(base + static_cast<size_t>(H) * 4);
    }
    attention_decode_generic(q, out, sl.pool, dseqs, sl.n, sl.max_n, layer * G, H, G, hd, probe ? probe->lo : 0,
                             probe ? probe->hi : 0, pm, pa, stream_);
    if (probe) {
      download(probe->mass, pm, static_cast<size_t>(H) * 4);
      download(probe->argmax, pa, static_cast<size_t>(H) * 4);
    }
    return;
  }
  const int64_t slots = int64_t(sl.n) * G * sl.tiles * sl.splits;
  float* part = sl.splits > 1 ? partials(slots) : nullptr;
  DecodeGrid dg{dseqs, sl.n, sl.tiles, sl.splits, layer * G, part,
                part ? part + static_cast<size_t>(slots) * kDecodeTileRows * hd : nullptr};
  attention_decode_split(q, out, sl.pool, dg, H, G, hd, stream_, pdl_);
}

void CudaBackend::append_launch(const SeqList& sl, const PagedSeq* dseqs, int layer, const float* k, const float* v) {
  if (sl.n == 0) return;
  kv_append_kernel<<<dim3(sl.max_n, sl.G, static_cast<unsigned>(sl.n)), 128, 0, stream_>>>(
      sl.pool, dseqs, layer * sl.G, k, v, sl.G, cfg_.head_dim);
  CKV_LAUNCH_CHECK();
}

void CudaBackend::attention_decode(const float* q, std::span<const DecodeItem> items, int layer, float* out,
                                   const AttnProbeOut* probe) {
  if (items.empty()) return;
  check_batch(items, layer, "decode attention");
  const SeqList sl = list_seqs(items, "decode attention");
  if (sl.n == 0) return;
  const auto* d = cached_upload<PagedSeq>(seq_up_, seqs_.data(), seqs_.size() * sizeof(PagedSeq), "CUDA page lists");
  decode_launch(sl, d, q, layer, out, probe);
}

// ---- KV store ---------------------------------------------------------------

void CudaBackend::kv_append(std::span<const AppendItem> items, int layer, const float* k, const float* v) {
  if (items.empty()) return;
  check_batch(items, layer, "kv_append");
  const SeqList sl = list_seqs(items, "kv_append");
  if (sl.n == 0) return;
  const auto* d = cached_upload<PagedSeq>(seq_up_, seqs_.data(), seqs_.size() * sizeof(PagedSeq), "CUDA page lists");
  append_launch(sl, d, layer, k, v);
}

// ---- a decode step on its own inputs ---------------------------------------

// One upload a step: [tokens][positions][page lists], into a buffer sized at
// prepare() that every recorded step reads.
void CudaBackend::set_step(const StepBatch& s) {
  const int64_t R = static_cast<int64_t>(s.tokens.size());
  if (static_cast<int64_t>(s.pos.size()) != R)
    throw Error("CUDA decode step: " + std::to_string(s.pos.size()) + " positions for " + std::to_string(R) + " rows");
  for (int32_t t : s.tokens)
    if (t < 0 || t >= cfg_.vocab_size)
      throw Error("token id " + std::to_string(t) + " out of range [0, " + std::to_string(cfg_.vocab_size) + ")");
  if (!s.seqs.empty()) check_batch(s.seqs, 0, "decode step");
  step_ = list_seqs(s.seqs, "decode step");
  step_rows_ = R;
  const size_t b_ids = (static_cast<size_t>(R) * 4 + 15) / 16 * 16;
  const size_t bytes = 2 * b_ids + seqs_.size() * sizeof(PagedSeq);
  auto* d = static_cast<uint8_t*>(grow(step_buf_, bytes, "CUDA decode step inputs"));
  step_host_.assign(bytes, 0);
  std::memcpy(step_host_.data(), s.tokens.data(), s.tokens.size_bytes());
  std::memcpy(step_host_.data() + b_ids, s.pos.data(), s.pos.size_bytes());
  if (!seqs_.empty()) std::memcpy(step_host_.data() + 2 * b_ids, seqs_.data(), seqs_.size() * sizeof(PagedSeq));
  upload(d, step_host_.data(), bytes);
  step_tokens_ = reinterpret_cast<const int32_t*>(d);
  step_pos_ = reinterpret_cast<const int32_t*>(d + b_ids);
  step_seqs_ = reinterpret_cast<const PagedSeq*>(d + 2 * b_ids);
  // The partials the step's attention needs, now (never while recording).
  if (step_.n > 0 && step_.splits > 1) partials(int64_t(step_.n) * step_.G * step_.tiles * step_.splits);
}

bool CudaBackend::hold(void* dst, const void* src, size_t bytes) {
  constexpr size_t kMaxWords = size_t(1) << 24;  // held at once (the offsets are 32-bit)
  if (!holding_ || bytes % 4 || reinterpret_cast<uintptr_t>(dst) % 4 || bytes / 4 > kMaxWords) return false;
  auto* d = static_cast<uint32_t*>(dst);
  const uint32_t words = static_cast<uint32_t>(bytes / 4);
  // The same place again (a cache's lengths grown, then shrunk): the earlier
  // copy is dropped (0 words), so that only the later data goes.
  if (auto it = held_at_.find(d); it != held_at_.end() && held_[it->second].words == words) held_[it->second].words = 0;
  if (held_data_.size() + words > kMaxWords) {  // what is held goes first
    end_upload_batch();
    holding_ = true;
  }
  held_at_[d] = held_.size();
  held_.push_back({d, static_cast<uint32_t>(held_data_.size()), words});
  held_data_.resize(held_data_.size() + words);
  std::memcpy(&held_data_[held_.back().off], src, bytes);
  return true;
}

void CudaBackend::end_upload_batch() {
  holding_ = false;
  if (held_.empty()) return;
  // Two held uploads into overlapping bytes would race between the kernel's
  // blocks: then they go one by one, in the order they were made.
  std::vector<std::pair<uintptr_t, uintptr_t>> spans;
  for (const HeldCopy& c : held_)
    if (c.words > 0) spans.emplace_back(reinterpret_cast<uintptr_t>(c.dst), reinterpret_cast<uintptr_t>(c.dst + c.words));
  std::sort(spans.begin(), spans.end());
  bool overlap = false;
  for (size_t i = 1; i < spans.size(); ++i) overlap |= spans[i].first < spans[i - 1].second;
  if (overlap) {
    for (const HeldCopy& c : held_) upload(c.dst, &held_data_[c.off], size_t(c.words) * 4);
  } else {
    const size_t head = held_.size() * sizeof(HeldCopy), data = held_data_.size() * 4;
    held_blob_.resize(head + data);
    std::memcpy(held_blob_.data(), held_.data(), head);
    std::memcpy(held_blob_.data() + head, held_data_.data(), data);
    auto* d = static_cast<uint8_t*>(grow(held_dev_, held_blob_.size(), "CUDA held uploads"));
    upload(d, held_blob_.data(), held_blob_.size());
    held_copies_kernel<<<static_cast<unsigned>(held_.size()), 128, 0, stream_>>>(
        reinterpret_cast<const HeldCopy*>(d), reinterpret_cast<const uint32_t*>(d + head));
    CKV_LAUNCH_CHECK();
  }
  held_.clear();
  held_data_.clear();
  held_at_.clear();
}

void CudaBackend::embed_step(float* x) {
  if (step_rows_ == 0) return;
  const Weight& e = weight(*embd_);
  launch_pdl(pdl_, embed_kernel, dim3(grid_for(step_rows_ * e.cols, 256)), dim3(256), 0, stream_, e.bf, step_tokens_, x,
             step_rows_, static_cast<int>(e.cols));
}

void CudaBackend::rope_append_step(float* q, float* k, const float* v, int layer, int n_heads, int n_kv) {
  if (step_rows_ == 0 || step_.n == 0) return;
  if (!inv_freq_) throw Error("CUDA rope: prepare() was not called");
  if (n_kv != step_.G) throw Error("CUDA rope_append_step: " + std::to_string(n_kv) + " KV heads, the caches hold " +
                                   std::to_string(step_.G));
  if (!fused_) {  // the kernels of rope() and kv_append() on the step's device inputs
    for (auto [x, nh] : {std::pair<float*, int>{q, n_heads}, {k, n_kv}}) {
      rope_kernel<<<grid_for(step_rows_ * nh * (hd_ / 2), 256), 256, 0, stream_>>>(x, step_pos_, step_rows_, nh, hd_,
                                                                                  inv_freq_, pos_scale_, interleaved_);
      CKV_LAUNCH_CHECK();
    }
    return append_launch(step_, step_seqs_, layer, k, v);
  }
  const unsigned threads = static_cast<unsigned>(std::clamp(hd_ / 2, 32, 256));
  launch_pdl(pdl_, rope_append_kernel, dim3(step_.max_n, n_heads + n_kv, static_cast<unsigned>(step_.n)), dim3(threads), 0,
             stream_, step_.pool, step_seqs_, layer * step_.G, step_pos_, q, k, v, n_heads, n_kv, hd_,
             static_cast<const float*>(inv_freq_), pos_scale_, interleaved_);
}

// ---- recorded steps (CUDA graphs) ------------------------------------------

bool CudaBackend::begin_recording() {
  if (recording_) throw Error("CUDA: a step is being recorded already");
  CKV_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  recording_ = true;
  return true;
}

int CudaBackend::end_recording() {
  if (!recording_) throw Error("CUDA: no step is being recorded");
  recording_ = false;
  cudaGraph_t g = nullptr;
  CKV_CUDA_CHECK(cudaStreamEndCapture(stream_, &g));
  cudaGraphExec_t ex = nullptr;
  const cudaError_t e = cudaGraphInstantiate(&ex, g, 0);
  cudaGraphDestroy(g);
  CKV_CUDA_CHECK(e);
  const int h = next_recording_++;
  recordings_[h] = ex;
  return h;
}

void CudaBackend::abort_recording() {
  if (!recording_) return;
  recording_ = false;
  cudaGraph_t g = nullptr;
  if (cudaStreamEndCapture(stream_, &g) == cudaSuccess && g) cudaGraphDestroy(g);
  cudaGetLastError();  // a capture's errors are not the context's
}

bool CudaBackend::replay(int handle) {
  auto it = recordings_.find(handle);
  if (it == recordings_.end()) return false;
  CKV_CUDA_CHECK(cudaGraphLaunch(it->second, stream_));
  return true;
}

void CudaBackend::drop_recording(int handle) {
  auto it = recordings_.find(handle);
  if (it == recordings_.end()) return;
  cudaGraphExecDestroy(it->second);
  recordings_.erase(it);
}

void CudaBackend::drop_all_recordings() {
  if (recordings_.empty()) return;
  cudaStreamSynchronize(stream_);  // a replay may still read what moves
  for (auto& [h, ex] : recordings_) cudaGraphExecDestroy(ex);
  recordings_.clear();
}

void CudaBackend::kv_gather(KvCache& cache, int layer, const DenseKV& src, std::span<const std::vector<int32_t>> rows) {
  const int G = cache.n_kv_heads(), hd = cache.head_dim();
  if (static_cast<int>(rows.size()) != G)
    throw Error("CUDA kv_gather: " + std::to_string(rows.size()) + " row lists for " + std::to_string(G) + " KV heads");
  // [off: G+1][dst0: G][rows...]
  std::vector<int32_t> meta(2 * G + 1);
  int max_cnt = 0;
  for (int g = 0; g < G; ++g) {
    meta[g + 1] = meta[g] + static_cast<int32_t>(rows[g].size());
    max_cnt = std::max(max_cnt, static_cast<int>(rows[g].size()));
  }
  // The caller has grown each head by its count: the rows go to its last ones.
  for (int g = 0; g < G; ++g) {
    meta[G + 1 + g] = cache.len(layer, g) - static_cast<int32_t>(rows[g].size());
    if (meta[G + 1 + g] < 0)
      throw Error("CUDA kv_gather: head " + std::to_string(g) + " was not grown for its " +
                  std::to_string(rows[g].size()) + " rows");
  }
  for (int g = 0; g < G; ++g) meta.insert(meta.end(), rows[g].begin(), rows[g].end());
  if (max_cnt == 0) return;
  auto* d = meta_upload(meta.data(), meta.size() * 4);
  const size_t lay = static_cast<size_t>(layer) * G;
  kv_gather_kernel<<<dim3(max_cnt, G), 128, 0, stream_>>>(pool_of(cache), cache.device_table() + lay * cache.max_pages(),
                                                          cache.max_pages(), src.k, src.v, d + 2 * G + 1, d, d + G + 1,
                                                          G, hd);
  CKV_LAUNCH_CHECK();
}

void CudaBackend::kv_to_dense(const KvCache& cache, int layer, const DenseKV& dst, int exclude_last) {
  const int G = cache.n_kv_heads(), hd = cache.head_dim();
  int max_len = 0;
  for (int g = 0; g < G; ++g) {
    const int L = cache.len(layer, g) - exclude_last;
    if (L < 0) throw Error("CUDA kv_to_dense: exclude_last above head " + std::to_string(g) + "'s length");
    if (L > dst.first_new)
      throw Error("CUDA kv_to_dense: head " + std::to_string(g) + " holds " + std::to_string(L) +
                  " rows, more than the " + std::to_string(dst.first_new) + " before the new ones");
    max_len = std::max(max_len, L);
  }
  if (max_len == 0) return;
  const size_t lay = static_cast<size_t>(layer) * G;
  kv_to_dense_kernel<<<dim3(max_len, G), 128, 0, stream_>>>(pool_of(cache), cache.device_table() + lay * cache.max_pages(),
                                                            cache.device_len() + lay, exclude_last, cache.max_pages(),
                                                            dst.k, dst.v, dst.first_new, G, hd);
  CKV_LAUNCH_CHECK();
}

// ---- scoring ----------------------------------------------------------------

void CudaBackend::window_scores(const float* qw, const float* k, int T, int w, int n_heads, int n_kv, int hd,
                                std::span<const std::vector<int>> groups, int kernel, Pool pool, float* out) {
  if (w < 1 || w >= T) throw Error("CUDA window_scores: window " + std::to_string(w) + " must be in [1, T = " +
                                   std::to_string(T) + ")");
  if (kernel < 1 || kernel % 2 == 0) throw Error("CUDA window_scores: pooling kernel must be odd and >= 1");
  if (groups.empty()) return;
  // Distinct heads scored, and each group as indices into them.
  std::vector<int32_t> heads, goff{0}, gidx;
  for (const auto& grp : groups) {
    if (grp.empty()) throw Error("CUDA window_scores: an empty group of heads");
    for (int h : grp) {
      if (h < 0 || h >= n_heads) throw Error("CUDA window_scores: head " + std::to_string(h) + " out of range");
      auto it = std::find(heads.begin(), heads.end(), h);
      if (it == heads.end()) {
        heads.push_back(h);
        it = heads.end() - 1;
      }
      gidx.push_back(static_cast<int32_t>(it - heads.begin()));
    }
    goff.push_back(static_cast<int32_t>(gidx.size()));
  }
  const int nh = static_cast<int>(heads.size()), n = T - w;
  const size_t q_floats = static_cast<size_t>(w) * hd;
  if (q_floats > 8192) throw Error("CUDA window_scores: window x head dim above 8192");
  int chunk = static_cast<int>(std::min<size_t>(1024, (8192 / w) / 32 * 32));
  chunk = std::max(chunk, 32);
  const size_t smem = (q_floats + static_cast<size_t>(w) * chunk + 2 * w) * 4;
  const int stat_chunks = static_cast<int>(ceil_div(T, chunk)), mass_chunks = static_cast<int>(ceil_div(n, chunk));
  // Scratch: [meta ints][part: nh*w*stat_chunks*2][mass: nh*n]
  std::vector<int32_t> meta = heads;
  meta.insert(meta.end(), goff.begin(), goff.end());
  meta.insert(meta.end(), gidx.begin(), gidx.end());
  const size_t meta_bytes = (meta.size() * 4 + 255) / 256 * 256;
  const size_t part_floats = static_cast<size_t>(nh) * w * stat_chunks * 2;
  auto* base = static_cast<uint8_t*>(
      grow(ws_, meta_bytes + (part_floats + static_cast<size_t>(nh) * n) * 4, "CUDA window-score scratch"));
  upload(base, meta.data(), meta.size() * 4);
  auto* dheads = reinterpret_cast<const int32_t*>(base);
  float* part = reinterpret_cast<float*>(base + meta_bytes);
  float* mass = part + part_floats;
  static std::atomic<uint64_t> attr{0};  // once per device
  if (first_on_this_device(attr)) {
    CKV_CUDA_CHECK(cudaFuncSetAttribute(ws_stats_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 96 * 1024));
    CKV_CUDA_CHECK(cudaFuncSetAttribute(ws_mass_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 96 * 1024));
  }
  WsArgs a{qw, k, dheads, T, w, n_heads, n_kv, hd, chunk, 1.0f / std::sqrt(static_cast<float>(hd))};
  ws_stats_kernel<<<dim3(stat_chunks, nh), kWsThreads, smem, stream_>>>(a, part);
  CKV_LAUNCH_CHECK();
  ws_mass_kernel<<<dim3(mass_chunks, nh), kWsThreads, smem, stream_>>>(a, part, stat_chunks, mass);
  CKV_LAUNCH_CHECK();
  const int gn = static_cast<int>(groups.size());
  ws_pool_kernel<<<dim3(grid_for(n, 256, 4096), gn), 256, 0, stream_>>>(mass, dheads + nh, dheads + nh + gn + 1, n,
                                                                         kernel, pool == Pool::Max, out);
  CKV_LAUNCH_CHECK();
}

void CudaBackend::top_logits(const float* logits, int rows, int V, int k, float* vals, int32_t* ids) {
  if (rows <= 0 || k <= 0) return;
  if (k > kMaxTopLogits) throw Error("CUDA top_logits: at most " + std::to_string(kMaxTopLogits) + " per row");
  const size_t n = static_cast<size_t>(rows) * k;
  auto* base = static_cast<uint8_t*>(grow(toplog_, n * 8, "CUDA top logits"));
  auto* dv = reinterpret_cast<float*>(base);
  auto* di = reinterpret_cast<int32_t*>(base + n * 4);
  launch_pdl(pdl_, top_logits_kernel, dim3(static_cast<unsigned>(rows)), dim3(kTopThreads), 0, stream_, logits, V, k, dv,
             di);
  CKV_CUDA_CHECK(cudaMemcpyAsync(vals, dv, n * 4, cudaMemcpyDeviceToHost, stream_));
  CKV_CUDA_CHECK(cudaMemcpyAsync(ids, di, n * 4, cudaMemcpyDeviceToHost, stream_));
  CKV_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

std::vector<std::vector<int32_t>> CudaBackend::top_k(const float* score, int rows, int n, std::span<const int> k) {
  if (static_cast<int>(k.size()) != rows)
    throw Error("CUDA top_k: " + std::to_string(k.size()) + " counts for " + std::to_string(rows) + " rows");
  std::vector<std::vector<int32_t>> res(rows);
  if (rows == 0 || n <= 0) return res;
  const int64_t total = int64_t(rows) * n;
  if (total > INT32_MAX) throw Error("CUDA top_k: too many scores");
  std::vector<int32_t> off(rows + 1);
  for (int r = 0; r <= rows; ++r) off[r] = r * n;
  size_t temp = 0;
  CKV_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(
      nullptr, temp, static_cast<const float*>(nullptr), static_cast<float*>(nullptr),
      static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), static_cast<int>(total), rows,
      static_cast<const int32_t*>(nullptr), static_cast<const int32_t*>(nullptr) + 1, 0, 32, stream_));
  // [off][keys in][keys out][vals in][vals out][temp]
  auto al = [](size_t b) { return (b + 255) / 256 * 256; };
  const size_t b_off = al((rows + 1) * 4), b_arr = al(static_cast<size_t>(total) * 4);
  auto* base = static_cast<uint8_t*>(grow(topk_, b_off + 4 * b_arr + temp, "CUDA top-k scratch"));
  auto* doff = reinterpret_cast<int32_t*>(base);
  auto* kin = reinterpret_cast<float*>(base + b_off);
  auto* kout = reinterpret_cast<float*>(base + b_off + b_arr);
  auto* vin = reinterpret_cast<int32_t*>(base + b_off + 2 * b_arr);
  auto* vout = reinterpret_cast<int32_t*>(base + b_off + 3 * b_arr);
  void* dtemp = base + b_off + 4 * b_arr;
  upload(doff, off.data(), off.size() * 4);
  topk_prep_kernel<<<grid_for(total, 256), 256, 0, stream_>>>(score, kin, vin, total, n);
  CKV_LAUNCH_CHECK();
  // Radix sort is stable: equal scores keep ascending positions (ties: lower first).
  CKV_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(dtemp, temp, kin, kout, vin, vout,
                                                                     static_cast<int>(total), rows, doff, doff + 1, 0,
                                                                     32, stream_));
  for (int r = 0; r < rows; ++r) {
    const int kr = std::clamp(k[r], 0, n);
    res[r].resize(kr);
    if (kr)
      CKV_CUDA_CHECK(cudaMemcpyAsync(res[r].data(), vout + static_cast<size_t>(r) * n, static_cast<size_t>(kr) * 4,
                                     cudaMemcpyDeviceToHost, stream_));
  }
  CKV_CUDA_CHECK(cudaStreamSynchronize(stream_));
  for (auto& v : res) std::sort(v.begin(), v.end());
  return res;
}

}  // namespace

}  // namespace ckv::cuda

namespace ckv {

bool cuda_available(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    if (why) *why = std::string("no usable CUDA device: ") + cudaGetErrorString(e);
    return false;
  }
  if (n == 0) {
    if (why) *why = "no CUDA device";
    return false;
  }
  return true;
}

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

int cuda_device_of(Backend& b) {
  auto* c = dynamic_cast<cuda::CudaBackend*>(&b);
  if (!c) throw Error("not a CUDA backend: " + b.name());
  return c->device();
}

void* cuda_stream_of(Backend& b) {
  auto* c = dynamic_cast<cuda::CudaBackend*>(&b);
  if (!c) throw Error("not a CUDA backend: " + b.name());
  return c->stream();
}

std::unique_ptr<Backend> make_cuda_backend(const CudaOptions& opt) {
  std::string why;
  if (!cuda_available(&why)) throw Error("--device cuda: " + why);
  return std::make_unique<cuda::CudaBackend>(opt);
}

}  // namespace ckv
