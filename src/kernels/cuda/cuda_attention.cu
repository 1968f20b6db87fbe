// Attention on the GPU: causal GQA prefill over dense K/V and split-K
// ("flash decoding") decode over paged caches, both FlashAttention-2 style on
// the tensor cores (mma.sync m16n8k16, f16 operands, f32 accumulation and
// softmax) for head dims 64 and 128; a plain CUDA-core kernel (f32
// arithmetic) serves every other head dim, f32 KV pages and the calibration
// probe.
//
// Tensor-core tiles (per warp): 16 query rows x 16*k keys. S = Q K^T comes
// out of the mma in the C layout (thread (gid, tig) holds rows gid and gid+8,
// columns 2*tig, 2*tig+1 of each 8-key block), which is exactly the A layout
// P needs for O += P V, so probabilities never leave registers. K and V tiles
// sit in shared memory as [key][hd + 8] f16 (the 8-element pad makes the
// ldmatrix rows hit distinct banks); V's B operand comes from ldmatrix.trans.
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <string>

#include "kernels/cuda/cuda_common.cuh"

namespace ckv::cuda {

namespace {

constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ int64_t ceil_div_dev(int64_t a, int64_t b) { return (a + b - 1) / b; }
__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
constexpr int kDecodeRows = kDecodeTileRows;

__device__ __forceinline__ uint32_t pack_h2(float a, float b) {
  __half2 h = __floats2half2_rn(a, b);  // a in the low half (the lower column)
  return *reinterpret_cast<uint32_t*>(&h);
}

__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void* p) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}

__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], const void* p) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}

// 16 bytes global -> shared, asynchronously; zero-filled when !valid (src is
// then not read but must still be a valid address).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// One warp's FlashAttention-2 state for 16 query rows: Q fragments (already
// scaled by log2(e)/sqrt(hd): softmax in base 2), the output accumulator, and
// the running max and sum of the rows gid and gid + 8 this thread holds.
template <int HD>
struct WarpFA {
  static constexpr int RS = HD + 8;  // shared-memory row stride (halves)
  uint32_t qa[HD / 16][4];
  float o[HD / 8][4];
  float m[2], l[2];

  __device__ void init() {
#pragma unroll
    for (int d = 0; d < HD / 8; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.0f;
    m[0] = m[1] = -INFINITY;
    l[0] = l[1] = 0.0f;
  }

  // Row `rs` (0: gid, 1: gid + 8) of Q from f32 (nullptr: a padding row).
  __device__ void load_q_row(int rs, const float* qrow, float scale) {
    const int tig = threadIdx.x & 3;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      float2 a = make_float2(0.f, 0.f), b = make_float2(0.f, 0.f);
      if (qrow) {
        a = *reinterpret_cast<const float2*>(qrow + kk * 16 + 2 * tig);
        b = *reinterpret_cast<const float2*>(qrow + kk * 16 + 8 + 2 * tig);
      }
      qa[kk][rs] = pack_h2(a.x * scale, a.y * scale);
      qa[kk][2 + rs] = pack_h2(b.x * scale, b.y * scale);
    }
  }

  // NK keys (rows of Ks/Vs, key index j0 + row); key j is visible to row rs
  // when j < lim[rs].
  template <int NK>
  __device__ void step(const __half* Ks, const __half* Vs, int j0, int lim0, int lim1) {
    const int lane = threadIdx.x & 31, tig = lane & 3, mat = lane >> 3, rr = lane & 7;
    float s[NK / 8][4];
#pragma unroll
    for (int nb = 0; nb < NK / 8; ++nb) s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.0f;
    // S = Q K^T. ldmatrix x4: (keys +0..7, d lo), (keys +0..7, d hi), (keys +8..15, d lo), (keys +8..15, d hi).
#pragma unroll
    for (int nb2 = 0; nb2 < NK / 16; ++nb2) {
#pragma unroll
      for (int kk = 0; kk < HD / 16; ++kk) {
        uint32_t b[4];
        ldsm_x4(b, Ks + (nb2 * 16 + (mat >> 1) * 8 + rr) * RS + kk * 16 + (mat & 1) * 8);
        mma16816(s[2 * nb2], qa[kk], b[0], b[1]);
        mma16816(s[2 * nb2 + 1], qa[kk], b[2], b[3]);
      }
    }
    // Mask, online softmax (base 2), rescale O.
#pragma unroll
    for (int rs = 0; rs < 2; ++rs) {
      const int lim = rs ? lim1 : lim0;
      float mx = -INFINITY;
#pragma unroll
      for (int nb = 0; nb < NK / 8; ++nb)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int j = j0 + nb * 8 + 2 * tig + c;
          float& x = s[nb][2 * rs + c];
          if (j >= lim) x = -INFINITY;
          mx = fmaxf(mx, x);
        }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float mnew = fmaxf(m[rs], mx);
      const float mu = mnew == -INFINITY ? 0.0f : mnew;  // nothing visible yet
      const float alpha = exp2f(m[rs] - mu);
      float sum = 0.0f;
#pragma unroll
      for (int nb = 0; nb < NK / 8; ++nb)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          float& x = s[nb][2 * rs + c];
          x = exp2f(x - mu);
          sum += x;
        }
      l[rs] = l[rs] * alpha + sum;
      m[rs] = mnew;
#pragma unroll
      for (int d = 0; d < HD / 8; ++d) {
        o[d][2 * rs] *= alpha;
        o[d][2 * rs + 1] *= alpha;
      }
    }
    // O += P V: the S accumulators are P's A fragments.
#pragma unroll
    for (int kc = 0; kc < NK / 16; ++kc) {
      uint32_t pa[4];
      pa[0] = pack_h2(s[2 * kc][0], s[2 * kc][1]);
      pa[1] = pack_h2(s[2 * kc][2], s[2 * kc][3]);
      pa[2] = pack_h2(s[2 * kc + 1][0], s[2 * kc + 1][1]);
      pa[3] = pack_h2(s[2 * kc + 1][2], s[2 * kc + 1][3]);
#pragma unroll
      for (int dp = 0; dp < HD / 16; ++dp) {
        uint32_t b[4];
        ldsm_x4_t(b, Vs + (kc * 16 + (mat & 1) * 8 + rr) * RS + dp * 16 + (mat >> 1) * 8);
        mma16816(o[2 * dp], pa, b[0], b[1]);
        mma16816(o[2 * dp + 1], pa, b[2], b[3]);
      }
    }
  }

  // Row sums over the quad (each thread summed its own columns).
  __device__ void finish_sums() {
#pragma unroll
    for (int rs = 0; rs < 2; ++rs) {
      l[rs] += __shfl_xor_sync(0xffffffffu, l[rs], 1);
      l[rs] += __shfl_xor_sync(0xffffffffu, l[rs], 2);
    }
  }
};

// ---- prefill (tensor cores) ------------------------------------------------
// Block: 64 query rows (4 warps x 16) of one query head, walking 64-key tiles
// of its KV head from the head's start to the block's last visible key,
// double-buffered with cp.async. Tiles of the causal diagonal go first
// (blocks in reverse order) so the long blocks start early.
// NW warps a block: 64 or 128 query rows (CKV_CUDA_PREFILL_ROWS picks; 64 by default).
constexpr int kPrefillBN = 64;

template <int HD, int NW>
__global__ void __launch_bounds__(NW * 32) prefill_mma_kernel(const float* __restrict__ q, const __half* __restrict__ kh,
                                                          const __half* __restrict__ vh, int64_t kv_row0,
                                                          float* __restrict__ out, int64_t i0, int nq,
                                                          int64_t first_new, const int32_t* __restrict__ start,
                                                          int H, int G, float qscale) {
  constexpr int RS = WarpFA<HD>::RS;
  constexpr int TILE = kPrefillBN * RS;  // halves per K (or V) stage
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __half* sm = reinterpret_cast<__half*>(smem_raw);  // [2 stages][K, V][BN][RS]

  const int qb = gridDim.x - 1 - blockIdx.x;
  const int h = blockIdx.y, g = h / (H / G);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gid = lane >> 2;
  constexpr int kPrefillBM = NW * 16;
  const int row_w = qb * kPrefillBM + warp * 16;  // this warp's first local row

  WarpFA<HD> fa;
  fa.init();
#pragma unroll
  for (int rs = 0; rs < 2; ++rs) {
    const int a = row_w + gid + 8 * rs;
    fa.load_q_row(rs, a < nq ? q + (static_cast<int64_t>(a) * H + h) * HD : nullptr, qscale);
  }
  const int64_t kv_lo = start ? start[g] : first_new;
  const int last = (nq < (qb + 1) * kPrefillBM ? nq : (qb + 1) * kPrefillBM) - 1;
  const int64_t kv_hi = first_new + i0 + last + 1;  // exclusive, for the whole block
  const int64_t lim0 = min64(first_new + i0 + row_w + gid + 1, kv_hi);
  const int64_t lim1 = min64(lim0 + 8, kv_hi);
  const int64_t warp_hi = first_new + i0 + row_w + 16;  // no key at or past this is visible to the warp
  const int ntiles = static_cast<int>(ceil_div_dev(kv_hi - kv_lo, kPrefillBN));

  auto load = [&](int t) {
    __half* Ks = sm + (t & 1) * 2 * TILE;
    __half* Vs = Ks + TILE;
    const int64_t j0 = kv_lo + static_cast<int64_t>(t) * kPrefillBN;
    for (int c = threadIdx.x; c < kPrefillBN * HD / 8; c += blockDim.x) {
      const int row = c / (HD / 8), ch = c % (HD / 8);
      const int64_t j = j0 + row;
      const bool ok = j < kv_hi;
      const size_t off = ok ? (static_cast<size_t>(j - kv_row0) * G + g) * HD + ch * 8 : 0;
      cp_async16(Ks + row * RS + ch * 8, kh + off, ok);
      cp_async16(Vs + row * RS + ch * 8, vh + off, ok);
    }
    cp_async_commit();
  };

  load(0);
  for (int t = 0; t < ntiles; ++t) {
    if (t + 1 < ntiles) {
      load(t + 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const int64_t j0 = kv_lo + static_cast<int64_t>(t) * kPrefillBN;
    if (j0 < warp_hi) {
      const __half* Ks = sm + (t & 1) * 2 * TILE;
      // Key offsets relative to j0 fit in int; limits are compared relative too.
      fa.template step<kPrefillBN>(Ks, Ks + TILE, 0, static_cast<int>(min64(lim0 - j0, 1 << 30)),
                                   static_cast<int>(min64(lim1 - j0, 1 << 30)));
    }
    __syncthreads();
  }
  fa.finish_sums();
  const int tig = lane & 3;
#pragma unroll
  for (int rs = 0; rs < 2; ++rs) {
    const int a = row_w + gid + 8 * rs;
    if (a >= nq) continue;
    const float inv = 1.0f / fa.l[rs];
    float* orow = out + (static_cast<int64_t>(a) * H + h) * HD;
#pragma unroll
    for (int d = 0; d < HD / 8; ++d)
      *reinterpret_cast<float2*>(orow + d * 8 + 2 * tig) = make_float2(fa.o[d][2 * rs] * inv, fa.o[d][2 * rs + 1] * inv);
  }
}

// ---- decode (tensor cores, f16 pages) --------------------------------------
// Block (split, tile, seq * n_kv + g) of a DecodeGrid: 16 packed query rows
// (the query heads of KV head g for each of the sequence's new tokens: row p
// is token p / r, head g*r + p%r) over its split of the head's keys. Its 4
// warps take interleaved 16-key chunks, each double-buffered with cp.async,
// and merge their states through shared memory at the end.
template <int HD>
__global__ void __launch_bounds__(128) decode_mma_kernel(const float* __restrict__ q, float* __restrict__ out,
                                                         PagedPool pool, DecodeGrid dg, int H, int G, float qscale) {
  constexpr int RS = WarpFA<HD>::RS;
  constexpr int CH = 16;                  // keys per chunk
  constexpr int STAGE = 2 * CH * RS;      // halves: K then V
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gid = lane >> 2, tig = lane & 3;
  __half* wsm = reinterpret_cast<__half*>(smem_raw) + warp * 2 * STAGE;

  const int seq = blockIdx.z / G, g = blockIdx.z % G, tile = blockIdx.y, split = blockIdx.x;
  pdl_wait();
  pdl_trigger();
  const PagedSeq sq = dg.seqs[seq];
  const int r = H / G, nrows = r * sq.n;
  if (tile * kDecodeRows >= nrows) return;  // a sequence with fewer tiles than the grid's
  const int len = sq.len[dg.head_off + g];
  const int k0 = split * sq.chunk, k1 = min(len, k0 + sq.chunk);
  const int slot = dg.splits > 1 ? (static_cast<int>(blockIdx.z) * dg.tiles + tile) * dg.splits + split : -1;
  if (k0 >= k1) {  // past the head's keys: an empty partial (the merge skips it)
    if (slot >= 0 && threadIdx.x < kDecodeRows)
      dg.part_ml[(static_cast<size_t>(slot) * kDecodeRows + threadIdx.x) * 2] = -INFINITY;
    return;
  }
  const int32_t* tab = sq.table + static_cast<size_t>(dg.head_off + g) * sq.max_pages;
  const int P = pool.page_rows;

  WarpFA<HD> fa;
  fa.init();
  int lim[2];
#pragma unroll
  for (int rs = 0; rs < 2; ++rs) {
    const int p = tile * kDecodeRows + gid + 8 * rs;
    const bool ok = p < nrows;
    const int i = ok ? p / r : 0;
    lim[rs] = ok ? len - sq.n + i + 1 : 0;
    const float* qrow = ok ? q + (static_cast<int64_t>(sq.row0 + i) * H + g * r + p % r) * HD : nullptr;
    fa.load_q_row(rs, qrow, qscale);
  }

  const int nchunks = (k1 - k0 + CH - 1) / CH;
  auto load = [&](int c, int stage) {
    __half* Ks = wsm + stage * STAGE;
    __half* Vs = Ks + CH * RS;
    const int j0 = k0 + c * CH;
    for (int e = lane; e < CH * HD / 8; e += 32) {
      const int row = e / (HD / 8), ch = e % (HD / 8);
      const int j = j0 + row;
      const bool ok = j < k1;
      const uint8_t* kp = pool.base;
      if (ok) kp += static_cast<size_t>(tab[j / P]) * pool.page_bytes + static_cast<size_t>(j % P) * HD * 2 + ch * 16;
      cp_async16(Ks + row * RS + ch * 8, kp, ok);
      cp_async16(Vs + row * RS + ch * 8, ok ? kp + static_cast<size_t>(P) * HD * 2 : kp, ok);
    }
    cp_async_commit();
  };
  int stage = 0;
  if (warp < nchunks) load(warp, 0);
  for (int c = warp; c < nchunks; c += 4) {
    if (c + 4 < nchunks) {
      load(c + 4, stage ^ 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncwarp();
    const int j0 = k0 + c * CH;
    const __half* Ks = wsm + stage * STAGE;
    fa.template step<CH>(Ks, Ks + CH * RS, j0, lim[0], lim[1]);
    __syncwarp();
    stage ^= 1;
  }
  fa.finish_sums();

  // Merge the 4 warps: O (unnormalised), m, l per row, through shared memory.
  __syncthreads();
  float* cb = reinterpret_cast<float*>(smem_raw);    // [4][16][HD]
  float* ml = cb + 4 * kDecodeRows * HD;              // [4][16][2]
#pragma unroll
  for (int rs = 0; rs < 2; ++rs) {
    const int row = gid + 8 * rs;
#pragma unroll
    for (int d = 0; d < HD / 8; ++d) {
      cb[(warp * kDecodeRows + row) * HD + d * 8 + 2 * tig] = fa.o[d][2 * rs];
      cb[(warp * kDecodeRows + row) * HD + d * 8 + 2 * tig + 1] = fa.o[d][2 * rs + 1];
    }
    if (tig == 0) {
      ml[(warp * kDecodeRows + row) * 2] = fa.m[rs];
      ml[(warp * kDecodeRows + row) * 2 + 1] = fa.l[rs];
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < kDecodeRows * HD; e += blockDim.x) {
    const int row = e / HD, d = e % HD;
    const int p = tile * kDecodeRows + row;
    if (p >= nrows) continue;
    float M = -INFINITY;
#pragma unroll
    for (int k = 0; k < 4; ++k) M = fmaxf(M, ml[(k * kDecodeRows + row) * 2]);
    float acc = 0.0f, L = 0.0f;
    if (M != -INFINITY) {
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const float f = exp2f(ml[(k * kDecodeRows + row) * 2] - M);
        acc += f * cb[(k * kDecodeRows + row) * HD + d];
        L += f * ml[(k * kDecodeRows + row) * 2 + 1];
      }
    }
    if (slot < 0) {
      const int i = p / r;
      out[(static_cast<int64_t>(sq.row0 + i) * H + g * r + p % r) * HD + d] = acc / L;
    } else {
      dg.part_acc[(static_cast<size_t>(slot) * kDecodeRows + row) * HD + d] = acc;
      if (d == 0) {
        dg.part_ml[(static_cast<size_t>(slot) * kDecodeRows + row) * 2] = M;
        dg.part_ml[(static_cast<size_t>(slot) * kDecodeRows + row) * 2 + 1] = L;
      }
    }
  }
}

// Block (tile, seq * n_kv + g): merges the tile's splits (empty ones, past
// the head's keys, hold max -infinity and are skipped).
__global__ void decode_combine_kernel(float* __restrict__ out, DecodeGrid dg, int H, int G, int HD) {
  const int seq = blockIdx.y / G, g = blockIdx.y % G, tile = blockIdx.x;
  pdl_wait();
  pdl_trigger();
  const PagedSeq sq = dg.seqs[seq];
  const int r = H / G, nrows = r * sq.n;
  const size_t slot0 = (static_cast<size_t>(blockIdx.y) * dg.tiles + tile) * dg.splits;
  for (int e = threadIdx.x; e < kDecodeRows * HD; e += blockDim.x) {
    const int row = e / HD, d = e % HD;
    const int p = tile * kDecodeRows + row;
    if (p >= nrows) continue;
    float M = -INFINITY;
    for (int s = 0; s < dg.splits; ++s) M = fmaxf(M, dg.part_ml[((slot0 + s) * kDecodeRows + row) * 2]);
    float acc = 0.0f, L = 0.0f;
    for (int s = 0; s < dg.splits; ++s) {
      const size_t b = (slot0 + s) * kDecodeRows + row;
      const float m = dg.part_ml[b * 2];
      if (m == -INFINITY) continue;
      const float f = exp2f(m - M);
      acc += f * dg.part_acc[b * HD + d];
      L += f * dg.part_ml[b * 2 + 1];
    }
    const int i = p / r;
    out[(static_cast<int64_t>(sq.row0 + i) * H + g * r + p % r) * HD + d] = acc / L;
  }
}

// ---- the generic kernel (CUDA cores, f32 arithmetic, any head dim <= 256) --
constexpr int kGenericMaxHd = 256;

struct DenseRows {
  const float* k;
  const float* v;
  int G, hd, g;
  __device__ float key(int64_t j, int d) const { return k[(j * G + g) * hd + d]; }
  __device__ float val(int64_t j, int d) const { return v[(j * G + g) * hd + d]; }
};

template <typename T>
struct PagedRows {
  const uint8_t* base;
  size_t page_bytes;
  int P, hd;
  const int32_t* tab;
  __device__ const T* krow(int64_t j) const {
    return reinterpret_cast<const T*>(base + static_cast<size_t>(tab[j / P]) * page_bytes) + (j % P) * hd;
  }
  __device__ float key(int64_t j, int d) const { return to_f(krow(j)[d]); }
  __device__ float val(int64_t j, int d) const { return to_f(krow(j)[static_cast<int64_t>(P) * hd + d]); }
  __device__ static float to_f(float x) { return x; }
  __device__ static float to_f(__half x) { return __half2float(x); }
};

// One query row against keys [lo, hi) with a block of 128 threads: warp w
// takes keys lo + w, lo + w + 4, ...; lanes split the head dim. Optionally
// the probe: softmax mass over [plo, phi) and the argmax key (lowest on ties).
template <class Rows>
__device__ void attend_row(const float* qrow, float* orow, const Rows& src, int64_t lo, int64_t hi, int hd,
                           float scale, int64_t plo, int64_t phi, float* pmass, int32_t* parg) {
  constexpr int E = kGenericMaxHd / 32;
  __shared__ float sm_acc[4][kGenericMaxHd];
  __shared__ float sm_m[4], sm_l[4], sm_mass[4], sm_best[4];
  __shared__ int64_t sm_bestj[4];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float qr[E], acc[E];
#pragma unroll
  for (int t = 0; t < E; ++t) {
    const int d = lane + 32 * t;
    qr[t] = d < hd ? qrow[d] : 0.0f;
    acc[t] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f, mass = 0.0f, best = -INFINITY;
  int64_t bestj = -1;
  for (int64_t j = lo + warp; j < hi; j += 4) {
    float dot = 0.0f;
#pragma unroll
    for (int t = 0; t < E; ++t) {
      const int d = lane + 32 * t;
      if (d < hd) dot += qr[t] * src.key(j, d);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
    const float s = dot * scale;
    if (s > best) {
      best = s;
      bestj = j;
    }
    const float mnew = fmaxf(m, s);
    const float alpha = expf(m - mnew), p = expf(s - mnew);
    l = l * alpha + p;
    mass = mass * alpha + (j >= plo && j < phi ? p : 0.0f);
#pragma unroll
    for (int t = 0; t < E; ++t) {
      const int d = lane + 32 * t;
      acc[t] = acc[t] * alpha + (d < hd ? p * src.val(j, d) : 0.0f);
    }
    m = mnew;
  }
#pragma unroll
  for (int t = 0; t < E; ++t) {
    const int d = lane + 32 * t;
    if (d < hd) sm_acc[warp][d] = acc[t];
  }
  if (lane == 0) {
    sm_m[warp] = m;
    sm_l[warp] = l;
    sm_mass[warp] = mass;
    sm_best[warp] = best;
    sm_bestj[warp] = bestj;
  }
  __syncthreads();
  float M = -INFINITY;
  for (int k = 0; k < 4; ++k) M = fmaxf(M, sm_m[k]);
  float f[4], L = 0.0f;
  for (int k = 0; k < 4; ++k) {
    f[k] = sm_m[k] == -INFINITY ? 0.0f : expf(sm_m[k] - M);
    L += f[k] * sm_l[k];
  }
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float a = 0.0f;
    for (int k = 0; k < 4; ++k) a += f[k] * sm_acc[k][d];
    orow[d] = a / L;
  }
  if (pmass && threadIdx.x == 0) {
    float ms = 0.0f, b = -INFINITY;
    int64_t bj = -1;
    for (int k = 0; k < 4; ++k) {
      ms += f[k] * sm_mass[k];
      if (sm_bestj[k] >= 0 && (sm_best[k] > b || (sm_best[k] == b && sm_bestj[k] < bj))) {
        b = sm_best[k];
        bj = sm_bestj[k];
      }
    }
    *pmass = ms / L;
    *parg = static_cast<int32_t>(bj);
  }
}

__global__ void __launch_bounds__(128) prefill_generic_kernel(const float* q, const float* k, const float* v,
                                                              float* out, int64_t i0, int64_t first_new,
                                                              const int32_t* start, int H, int G, int hd) {
  const int64_t a = blockIdx.x;
  const int h = blockIdx.y, g = h / (H / G);
  const DenseRows src{k, v, G, hd, g};
  const int64_t lo = start ? start[g] : first_new, hi = first_new + i0 + a + 1;
  attend_row(q + (a * H + h) * hd, out + (a * H + h) * hd, src, lo, hi, hd, rsqrtf(static_cast<float>(hd)), 0, 0,
             nullptr, nullptr);
}

template <typename T>
__global__ void __launch_bounds__(128) decode_generic_kernel(const float* q, float* out, PagedPool pool,
                                                             const PagedSeq* seqs, int head_off, int H, int G, int hd,
                                                             int plo, int phi, float* pmass, int32_t* parg) {
  const PagedSeq sq = seqs[blockIdx.z];
  const int i = blockIdx.x, h = blockIdx.y, g = h / (H / G);
  if (i >= sq.n) return;
  const PagedRows<T> src{pool.base, pool.page_bytes, pool.page_rows, hd,
                         sq.table + static_cast<size_t>(head_off + g) * sq.max_pages};
  const int64_t hi = sq.len[head_off + g] - sq.n + i + 1;
  const int64_t row = (static_cast<int64_t>(sq.row0) + i) * H + h;
  attend_row(q + row * hd, out + row * hd, src, 0, hi, hd, rsqrtf(static_cast<float>(hd)), plo, phi,
             pmass ? pmass + h : nullptr, parg ? parg + h : nullptr);
}

// Dense f32 K/V rows [lo, hi) -> f16 (the tensor-core prefill reads f16 tiles).
__global__ void to_half_kernel(const float* __restrict__ k, const float* __restrict__ v, __half* __restrict__ kh,
                               __half* __restrict__ vh, int64_t n4) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n4;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float4 a = reinterpret_cast<const float4*>(k)[i], b = reinterpret_cast<const float4*>(v)[i];
    reinterpret_cast<__half2*>(kh)[2 * i] = __floats2half2_rn(a.x, a.y);
    reinterpret_cast<__half2*>(kh)[2 * i + 1] = __floats2half2_rn(a.z, a.w);
    reinterpret_cast<__half2*>(vh)[2 * i] = __floats2half2_rn(b.x, b.y);
    reinterpret_cast<__half2*>(vh)[2 * i + 1] = __floats2half2_rn(b.z, b.w);
  }
}

template <int HD>
size_t prefill_smem() {
  return 2 * 2 * kPrefillBN * WarpFA<HD>::RS * sizeof(__half);
}
template <int HD>
size_t decode_smem() {
  const size_t stages = 4 * 2 * 2 * 16 * WarpFA<HD>::RS * sizeof(__half);
  const size_t merge = (4 * kDecodeRows * HD + 4 * kDecodeRows * 2) * sizeof(float);
  return stages > merge ? stages : merge;
}

template <int HD, int NW>
void launch_prefill_mma(const float* q, const __half* kh, const __half* vh, int64_t kv_row0, float* out, int64_t i0,
                        int64_t nq, int64_t first_new, const int32_t* start, int H, int G, cudaStream_t s) {
  static std::atomic<uint64_t> attr{0};  // once per device
  const size_t smem = prefill_smem<HD>();
  if (first_on_this_device(attr))
    CKV_CUDA_CHECK(cudaFuncSetAttribute(prefill_mma_kernel<HD, NW>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(smem)));
  const dim3 grid(static_cast<unsigned>(ceil_div(nq, NW * 16)), H);
  const float qscale = kLog2e / std::sqrt(static_cast<float>(HD));
  prefill_mma_kernel<HD, NW><<<grid, NW * 32, smem, s>>>(q, kh, vh, kv_row0, out, i0, static_cast<int>(nq), first_new,
                                                         start, H, G, qscale);
  CKV_LAUNCH_CHECK();
}

template <int HD>
void launch_decode_mma(const float* q, float* out, const PagedPool& pool, const DecodeGrid& dg, int H, int G,
                       cudaStream_t s, bool pdl) {
  static std::atomic<uint64_t> attr{0};  // once per device
  const size_t smem = decode_smem<HD>();
  if (first_on_this_device(attr))
    CKV_CUDA_CHECK(cudaFuncSetAttribute(decode_mma_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(smem)));
  const float qscale = kLog2e / std::sqrt(static_cast<float>(HD));
  const unsigned pairs = static_cast<unsigned>(dg.n_seqs) * G;
  launch_pdl(pdl, decode_mma_kernel<HD>, dim3(dg.splits, dg.tiles, pairs), dim3(128), smem, s, q, out, pool, dg, H, G,
             qscale);
  if (dg.splits > 1) launch_pdl(pdl, decode_combine_kernel, dim3(dg.tiles, pairs), dim3(256), 0, s, out, dg, H, G, HD);
}

}  // namespace

bool prefill_mma_supported(int hd) { return hd == 64 || hd == 128; }
bool decode_split_supported(int hd) { return hd == 64 || hd == 128; }
int decode_tile_keys() { return 64; }

namespace {
template <int HD>
int blocks_per_sm() {
  const size_t smem = decode_smem<HD>();
  CKV_CUDA_CHECK(cudaFuncSetAttribute(decode_mma_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(smem)));
  int n = 0;
  CKV_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, decode_mma_kernel<HD>, 128, smem));
  return std::max(1, n);
}
}  // namespace

int decode_blocks_per_sm(int hd) {
  if (hd == 64) return blocks_per_sm<64>();
  if (hd == 128) return blocks_per_sm<128>();
  return 4;
}

void attention_prefill_f16(const float* q, const __half* kh, const __half* vh, int64_t kv_row0, float* out, int64_t i0,
                           int64_t nq, int64_t first_new, const int32_t* start, int H, int G, int hd, cudaStream_t s) {
  const char* env = std::getenv("CKV_CUDA_PREFILL_ROWS");
  const bool wide = env && std::atoi(env) == 128;
  if (hd == 64 && wide)
    launch_prefill_mma<64, 8>(q, kh, vh, kv_row0, out, i0, nq, first_new, start, H, G, s);
  else if (hd == 64)
    launch_prefill_mma<64, 4>(q, kh, vh, kv_row0, out, i0, nq, first_new, start, H, G, s);
  else if (hd == 128 && wide)
    launch_prefill_mma<128, 8>(q, kh, vh, kv_row0, out, i0, nq, first_new, start, H, G, s);
  else if (hd == 128)
    launch_prefill_mma<128, 4>(q, kh, vh, kv_row0, out, i0, nq, first_new, start, H, G, s);
  else
    throw Error("CUDA prefill: no tensor-core kernel for head dim " + std::to_string(hd));
}

void convert_kv_half(const float* k, const float* v, __half* kh, __half* vh, int64_t n, cudaStream_t s) {
  if (n % 4 != 0) throw Error("CUDA: K/V rows of " + std::to_string(n) + " elements are not a multiple of 4");
  const int64_t n4 = n / 4;
  const int blocks = static_cast<int>(std::min<int64_t>(ceil_div(n4, 256), 4096));
  if (blocks == 0) return;
  to_half_kernel<<<blocks, 256, 0, s>>>(k, v, kh, vh, n4);
  CKV_LAUNCH_CHECK();
}

void attention_prefill_generic(const float* q, const float* k, const float* v, float* out, int64_t i0, int64_t nq,
                               int64_t first_new, const int32_t* start, int H, int G, int hd, cudaStream_t s) {
  if (hd > kGenericMaxHd) throw Error("CUDA attention: head dim " + std::to_string(hd) + " above 256");
  if (nq == 0) return;
  prefill_generic_kernel<<<dim3(static_cast<unsigned>(nq), H), 128, 0, s>>>(q, k, v, out, i0, first_new, start, H, G,
                                                                            hd);
  CKV_LAUNCH_CHECK();
}

void attention_decode_split(const float* q, float* out, const PagedPool& pool, const DecodeGrid& dg, int n_heads,
                            int n_kv, int hd, cudaStream_t s, bool pdl) {
  if (pool.elem != KvElem::F16) throw Error("CUDA decode: the tensor-core kernel reads f16 pages");
  if (dg.n_seqs == 0 || dg.tiles == 0) return;
  if (hd == 64)
    launch_decode_mma<64>(q, out, pool, dg, n_heads, n_kv, s, pdl);
  else if (hd == 128)
    launch_decode_mma<128>(q, out, pool, dg, n_heads, n_kv, s, pdl);
  else
    throw Error("CUDA decode: no tensor-core kernel for head dim " + std::to_string(hd));
}

void attention_decode_generic(const float* q, float* out, const PagedPool& pool, const PagedSeq* seqs, int n_seqs,
                              int max_rows_per_seq, int head_off, int n_heads, int n_kv, int hd, int probe_lo,
                              int probe_hi, float* probe_mass, int32_t* probe_argmax, cudaStream_t s) {
  if (hd > kGenericMaxHd) throw Error("CUDA attention: head dim " + std::to_string(hd) + " above 256");
  if (n_seqs == 0 || max_rows_per_seq == 0) return;
  const dim3 grid(max_rows_per_seq, n_heads, n_seqs);
  if (pool.elem == KvElem::F16)
    decode_generic_kernel<__half><<<grid, 128, 0, s>>>(q, out, pool, seqs, head_off, n_heads, n_kv, hd, probe_lo,
                                                       probe_hi, probe_mass, probe_argmax);
  else
    decode_generic_kernel<float><<<grid, 128, 0, s>>>(q, out, pool, seqs, head_off, n_heads, n_kv, hd, probe_lo,
                                                      probe_hi, probe_mass, probe_argmax);
  CKV_LAUNCH_CHECK();
}

}  // namespace ckv::cuda
