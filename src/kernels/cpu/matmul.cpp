// CPU matrix products y = x W^T for every weight type.
//
// Layout of the work (why):
// - By default every path computes in fp32 on weights dequantised exactly as
//   the reference does: 8-bit activation quantisation (llama.cpp's way) moved
//   SmolLM2's logits by ~0.6, far outside the golden tolerance of 1e-2.
// - Small n (decode, memory-bound): FMA register tiles read the weights in
//   place. Q4_0/Q4_1/Q8_0 are dequantised a whole 32-block at a time in
//   registers (scales converted once per block, 4 x 8 f32 per block, reused
//   across the tile's tokens); F16/BF16 8 values at a time.
// - Large n (prefill, compute-bound): a block of rows is dequantised to f32
//   once and multiplied with all tokens by single-threaded sgemm.
// - Q4_K/Q5_K are read in place like Q4_1, a 32-value sub-block at a time;
//   Q6_K is converted a 32-row block at a time to f32 (SIMD, exact) and goes
//   through the float tiles.
// - MatmulMode::Q8 (opt-in, small n, Q8_0/Q4_0/Q4_1): integer tiles on 8-bit
//   activations (gemm_q8.h).
// - Threads: rows are cut into blocks handed out with schedule(static), so
//   each thread owns one contiguous range of rows (and of y columns). Matrices
//   sharing an input (Q/K/V, gate/up) are one list of blocks. Inside a block,
//   token groups are the outer loop and row tiles the inner one.
#include "kernels/cpu/matmul.h"

#include <algorithm>
#include <atomic>
#include <span>
#include <vector>

#include <cblas.h>

#include "kernels/cpu/gemm_f32.h"
#include "kernels/cpu/gemm_q8.h"
#include "kernels/cpu/kquant_f32.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/quant_dot.h"
#include "model/quant.h"
#include "model/quant_blocks.h"
#include "util/error.h"

namespace ckv::cpu {

namespace {

constexpr int64_t kRowBlock = 32;
// Up to this many tokens the register tiles win over dequantise + sgemm.
constexpr int64_t kDirectMaxTokens = 8;

// ---- Float weights (and K-quants through f32) ----------------------------

// rowp(i) -> bytes of row r0 + i in WL's format.
template <class WL, int R, int C, class RowP>
void f_rows(RowP rowp, int64_t nr, const float* x, int64_t cols, int64_t t, float* y, int64_t rows, int64_t r0) {
  const float* xt = x + t * cols;
  float* yt = y + t * rows + r0;
  int64_t r = 0;
  for (; r + R <= nr; r += R) {
    const uint8_t* w[R];
    for (int i = 0; i < R; ++i) w[i] = rowp(r + i);
    gemmf::tile<WL, R, C>(w, xt, cols, cols, yt + r, rows);
  }
  for (; r < nr; ++r) {
    const uint8_t* w[1] = {rowp(r)};
    gemmf::tile<WL, 1, C>(w, xt, cols, cols, yt + r, rows);
  }
}

template <class WL, class RowP>
void f_block(RowP rowp, int64_t nr, const float* x, int64_t n, int64_t cols, float* y, int64_t rows, int64_t r0) {
  int64_t t = 0;
  for (; t + 4 <= n; t += 4) f_rows<WL, 2, 4>(rowp, nr, x, cols, t, y, rows, r0);
  switch (n - t) {
    case 1: f_rows<WL, 4, 1>(rowp, nr, x, cols, t, y, rows, r0); break;
    case 2: f_rows<WL, 4, 2>(rowp, nr, x, cols, t, y, rows, r0); break;
    case 3: f_rows<WL, 2, 3>(rowp, nr, x, cols, t, y, rows, r0); break;
    default: break;
  }
}

// ---- Q8_0 / Q4_0 / Q4_1 read in place, a 32-block at a time ---------------

// sx: per token and block, 8 floats [0, s/4, 0, s/4, ...] (see qtile).
template <class QB, int R, int C, int A, class RowP>
void q_rows(RowP rowp, int64_t nr, const float* x, const float* sx, int64_t cols, int64_t t, float* y, int64_t rows,
            int64_t r0) {
  const float* xt = x + t * cols;
  float* yt = y + t * rows + r0;
  const int64_t nb = cols / 32;
  const float* sxt = sx + t * nb * 8;
  const int64_t pf = 2 * R * nb * QB::kBytes;  // two tiles ahead: see qtile
  int64_t r = 0;
  for (; r + R <= nr; r += R) {
    const uint8_t* w[R];
    for (int i = 0; i < R; ++i) w[i] = rowp(r + i);
    gemmf::qtile<QB, R, C, A>(w, xt, cols, sxt, nb, yt + r, rows, pf);
  }
  for (; r < nr; ++r) {
    const uint8_t* w[1] = {rowp(r)};
    gemmf::qtile<QB, 1, C, 2>(w, xt, cols, sxt, nb, yt + r, rows, pf);
  }
}

// Token groups of 4 then the remainder. Tile shapes (rows x tokens x
// accumulators) keep R*C*A = 8: see qtile. C = 4 expands each weight block
// once for 4 tokens, so n = 2..8 costs little more than n = 1 in weight
// expansion and memory traffic (the 32-row block stays in L1/L2 between the
// token groups).
template <class QB, class RowP>
void q_block(RowP rowp, int64_t nr, const float* x, const float* sx, int64_t n, int64_t cols, float* y, int64_t rows,
             int64_t r0) {
  int64_t t = 0;
  for (; t + 4 <= n; t += 4) q_rows<QB, 2, 4, 1>(rowp, nr, x, sx, cols, t, y, rows, r0);
  switch (n - t) {
    case 1: q_rows<QB, 4, 1, 2>(rowp, nr, x, sx, cols, t, y, rows, r0); break;
    case 2: q_rows<QB, 4, 2, 1>(rowp, nr, x, sx, cols, t, y, rows, r0); break;
    case 3: q_rows<QB, 2, 3, 1>(rowp, nr, x, sx, cols, t, y, rows, r0); break;
    default: break;
  }
}

// Q blocks to f32 with the same exact whole-block expansion (faster than the
// scalar reference dequantiser; same bits).
template <class QB>
void q_to_f32(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t k = 0; k < n; k += 32) {
    __m256 w[4];
    QB::load(src + (k / 32) * QB::kBytes, w);
    for (int i = 0; i < 4; ++i) _mm256_storeu_ps(dst + k + 8 * i, w[i]);
  }
}

}  // namespace

void to_f32(DType type, const uint8_t* src, float* dst, int64_t n) {
  int64_t k = 0;
  auto blocks = [&](auto f, int64_t bytes) {
    for (; k < n; k += 256) f(src + (k / 256) * bytes, dst + k);
  };
  switch (type) {
    case DType::F16:
      for (; k + 8 <= n; k += 8) _mm256_storeu_ps(dst + k, gemmf::F16L::load8(src, k));
      for (; k < n; ++k) dst[k] = gemmf::F16L::load1(src, k);
      return;
    case DType::BF16:
      for (; k + 8 <= n; k += 8) _mm256_storeu_ps(dst + k, gemmf::BF16L::load8(src, k));
      for (; k < n; ++k) dst[k] = gemmf::BF16L::load1(src, k);
      return;
    case DType::Q8_0: return q_to_f32<gemmf::Q8_0B>(src, dst, n);
    case DType::Q4_0: return q_to_f32<gemmf::Q4_0B>(src, dst, n);
    case DType::Q4_1: return q_to_f32<gemmf::Q4_1B>(src, dst, n);
    case DType::Q4_K: return blocks(kq::q45_k<false>, sizeof(block_q4_K));
    case DType::Q5_K: return blocks(kq::q45_k<true>, sizeof(block_q5_K));
    case DType::Q6_K: return blocks(kq::q6_k, sizeof(block_q6_K));
    default: return dequantize_row(type, src, dst, n);
  }
}

namespace {

// Row blocks of a group of matrices that share one input, as one list (one
// parallel loop for Q, K and V, or gate and up: fewer fork/joins per token and
// one continuous weight stream per thread).
struct Block {
  const Tensor* W;
  float* y;
  int64_t r0, nr;
};
// Sizes a thread's buffer inside a parallel region: an exception leaving an
// OpenMP region ends the program, so a failed allocation is reported to the
// caller after the region instead (the flag), and the thread skips its work.
bool try_size(std::vector<float>& buf, size_t n, std::atomic<bool>& failed) noexcept {
  try {
    if (buf.size() < n) buf.resize(n);
    return true;
  } catch (...) {
    failed = true;
    return false;
  }
}

void throw_if(const std::atomic<bool>& failed, const char* what) {
  if (failed) throw Error(std::string("out of memory for the ") + what + " row buffers");
}

// The caller's thread keeps the list (no allocation once it has grown).
const std::vector<Block>& row_blocks(std::span<const MatmulOut> outs) {
  static thread_local std::vector<Block> b;
  b.clear();
  for (const MatmulOut& o : outs)
    for (int64_t r0 = 0; r0 < o.W->rows(); r0 += kRowBlock)
      b.push_back({o.W, o.y, r0, std::min(o.W->rows(), r0 + kRowBlock) - r0});
  return b;
}

// Small n (decode): register tiles. Types with an exact 8-wide loader are read
// in place; K-quants go through a row-block buffer.
void matmul_f(std::span<const MatmulOut> outs, const float* x, int64_t n) {
  const int64_t cols = outs[0].W->cols();
  // Per token and 32-block: [0, s/4, 0, s/4, ...] with s the block's sum of
  // x, for the m * sum(x) term of Q4_1 and Q4_K/Q5_K (see gemmf::qtile).
  static thread_local std::vector<float> sxbuf;
  const float* sx = nullptr;
  auto has_offset = [](const MatmulOut& o) {
    return o.W->type == DType::Q4_1 || o.W->type == DType::Q4_K || o.W->type == DType::Q5_K;
  };
  if (std::any_of(outs.begin(), outs.end(), has_offset)) {
    const int64_t nb = cols / 32;
    sxbuf.assign(size_t(n * nb * 8), 0.0f);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t b = 0; b < nb; ++b) {
        __m256 v = _mm256_loadu_ps(x + t * cols + 32 * b);
        for (int i = 1; i < 4; ++i) v = _mm256_add_ps(v, _mm256_loadu_ps(x + t * cols + 32 * b + 8 * i));
        const float s = qdot::hsum8(v) * 0.25f;
        for (int i = 1; i < 8; i += 2) sxbuf[size_t((t * nb + b) * 8 + i)] = s;
      }
    sx = sxbuf.data();
  }
  const std::vector<Block>& blocks = row_blocks(outs);
  const int64_t nblocks = static_cast<int64_t>(blocks.size());
  const bool buffered = std::any_of(outs.begin(), outs.end(), [](const MatmulOut& o) { return o.W->type == DType::Q6_K; });
  std::atomic<bool> failed{false};
#pragma omp parallel
  {
    static thread_local std::vector<float> buf;
    const bool ok = !buffered || try_size(buf, size_t(kRowBlock * cols), failed);
#pragma omp for schedule(static)
    for (int64_t ib = 0; ib < nblocks; ++ib) {
      if (!ok) continue;
      const Block& bk = blocks[size_t(ib)];
      const Tensor& W = *bk.W;
      const int64_t rows = W.rows(), r0 = bk.r0, nr = bk.nr;
      const uint8_t* base = W.row(0);
      const int64_t rb = W.row_bytes();
      float* y = bk.y;
      auto wrow = [&](int64_t i) { return base + (r0 + i) * rb; };
      switch (W.type) {
        case DType::F32: f_block<gemmf::F32L>(wrow, nr, x, n, cols, y, rows, r0); break;
        case DType::F16: f_block<gemmf::F16L>(wrow, nr, x, n, cols, y, rows, r0); break;
        case DType::BF16: f_block<gemmf::BF16L>(wrow, nr, x, n, cols, y, rows, r0); break;
        case DType::Q8_0: q_block<gemmf::Q8_0B>(wrow, nr, x, sx, n, cols, y, rows, r0); break;
        case DType::Q4_0: q_block<gemmf::Q4_0B>(wrow, nr, x, sx, n, cols, y, rows, r0); break;
        case DType::Q4_1: q_block<gemmf::Q4_1B>(wrow, nr, x, sx, n, cols, y, rows, r0); break;
        case DType::Q4_K: q_block<gemmf::Q4_KB>(wrow, nr, x, sx, n, cols, y, rows, r0); break;
        case DType::Q5_K: q_block<gemmf::Q5_KB>(wrow, nr, x, sx, n, cols, y, rows, r0); break;
        default: {  // Q6_K: dequantise the row block, then f32 tiles
          float* b = buf.data();
          for (int64_t i = 0; i < nr; ++i) to_f32(W.type, W.row(r0 + i), b + i * cols, cols);
          auto brow = [&](int64_t i) { return reinterpret_cast<const uint8_t*>(b + i * cols); };
          f_block<gemmf::F32L>(brow, nr, x, n, cols, y, rows, r0);
        }
      }
    }
  }
  throw_if(failed, "matmul");
}

// ---- MatmulMode::Q8: 8-bit activations, integer dot products -------------

template <class QB, int R, int C>
void q8_rows(const uint8_t* base, int64_t rb, int64_t r0, int64_t nr, const gemmq8::ActBlock* xa, int64_t nb, float* y,
             int64_t rows) {
  const int64_t pf = 2 * R * nb * QB::kBytes;  // two tiles ahead, as in q_rows
  int64_t r = 0;
  for (; r + R <= nr; r += R) {
    const uint8_t* w[R];
    for (int i = 0; i < R; ++i) w[i] = base + (r0 + r + i) * rb;
    gemmq8::tile<QB, R, C>(w, xa, nb, y + r0 + r, rows, pf);
  }
  for (; r < nr; ++r) {
    const uint8_t* w[1] = {base + (r0 + r) * rb};
    gemmq8::tile<QB, 1, C>(w, xa, nb, y + r0 + r, rows, pf);
  }
}

// Token groups of 4 then the remainder, as in q_block.
template <class QB>
void q8_block(const uint8_t* base, int64_t rb, int64_t r0, int64_t nr, const gemmq8::ActBlock* xa, int64_t n,
              int64_t nb, float* y, int64_t rows) {
  int64_t t = 0;
  for (; t + 4 <= n; t += 4) q8_rows<QB, 2, 4>(base, rb, r0, nr, xa + t * nb, nb, y + t * rows, rows);
  switch (n - t) {
    case 1: q8_rows<QB, 4, 1>(base, rb, r0, nr, xa + t * nb, nb, y + t * rows, rows); break;
    case 2: q8_rows<QB, 4, 2>(base, rb, r0, nr, xa + t * nb, nb, y + t * rows, rows); break;
    case 3: q8_rows<QB, 2, 3>(base, rb, r0, nr, xa + t * nb, nb, y + t * rows, rows); break;
    default: break;
  }
}

bool q8_type(DType t) { return t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q4_1; }

// All of outs must have a q8_type.
void matmul_q8(std::span<const MatmulOut> outs, const float* x, int64_t n) {
  const int64_t cols = outs[0].W->cols(), nb = cols / 32;
  static thread_local std::vector<gemmq8::ActBlock> xa;
  xa.resize(size_t(n * nb));
  for (int64_t t = 0; t < n; ++t) gemmq8::quantize_row(x + t * cols, cols, xa.data() + t * nb);
  const gemmq8::ActBlock* xp = xa.data();
  const std::vector<Block>& blocks = row_blocks(outs);
  const int64_t nblocks = static_cast<int64_t>(blocks.size());
#pragma omp parallel for schedule(static)
  for (int64_t ib = 0; ib < nblocks; ++ib) {
    const Block& bk = blocks[size_t(ib)];
    const Tensor& W = *bk.W;
    const uint8_t* base = W.row(0);
    const int64_t rb = W.row_bytes(), rows = W.rows();
    switch (W.type) {
      case DType::Q8_0: q8_block<gemmq8::Q8_0B>(base, rb, bk.r0, bk.nr, xp, n, nb, bk.y, rows); break;
      case DType::Q4_0: q8_block<gemmq8::Q4_0B>(base, rb, bk.r0, bk.nr, xp, n, nb, bk.y, rows); break;
      default: q8_block<gemmq8::Q4_1B>(base, rb, bk.r0, bk.nr, xp, n, nb, bk.y, rows); break;
    }
  }
}

// Large n (prefill chunks): each thread dequantises a block of rows to f32
// once and multiplies it with all n tokens through single-threaded sgemm
// (compute-bound work where BLAS's packing and microkernels pay off).
void matmul_blas(const Tensor& W, const float* x, int64_t n, float* y) {
  init_blas();
  const int64_t rows = W.rows(), cols = W.cols();
  constexpr int64_t kBlasRows = 128;
  const int64_t nblocks = (rows + kBlasRows - 1) / kBlasRows;
  std::atomic<bool> failed{false};
#pragma omp parallel
  {
    static thread_local std::vector<float> buf;
    const bool ok = W.type == DType::F32 || try_size(buf, size_t(kBlasRows * cols), failed);
#pragma omp for schedule(static)
    for (int64_t ib = 0; ib < nblocks; ++ib) {
      if (!ok) continue;
      const int64_t r0 = ib * kBlasRows, nr = std::min(rows, r0 + kBlasRows) - r0;
      const float* wb;
      if (W.type == DType::F32) {
        wb = reinterpret_cast<const float*>(W.row(r0));  // loaders keep F32 data 4-byte aligned
      } else {
        for (int64_t i = 0; i < nr; ++i) to_f32(W.type, W.row(r0 + i), buf.data() + i * cols, cols);
        wb = buf.data();
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, nr, cols, 1.0f, x, cols, wb, cols, 0.0f, y + r0, rows);
    }
  }
  throw_if(failed, "matmul (prefill)");
}

void check(const Tensor& W, const char* what) {
  const int64_t cols = W.cols(), qk = dtype_block_elems(W.type);
  if (W.shape.size() < 2 || cols % qk != 0)
    throw Error(std::string(what) + " " + W.name + ": expected a matrix with columns a multiple of " +
                std::to_string(qk) + " for " + dtype_name(W.type) + ", found " + std::to_string(cols) + " columns");
  const size_t need = size_t(W.rows()) * size_t(W.row_bytes());
  if (W.data == nullptr || W.nbytes < need)
    throw Error(std::string(what) + " " + W.name + ": expected " + std::to_string(need) + " bytes, found " +
                std::to_string(W.data ? W.nbytes : 0));
}

}  // namespace

void matmul(std::span<const MatmulOut> outs, const float* x, int64_t n, MatmulMode mode) {
  if (outs.empty()) return;
  const int64_t cols = outs[0].W->cols();
  for (const MatmulOut& o : outs) {
    check(*o.W, "matmul");
    if (o.W->cols() != cols)
      throw Error("matmul " + o.W->name + ": " + std::to_string(o.W->cols()) + " columns, but " + outs[0].W->name +
                  " in the same group has " + std::to_string(cols));
  }
  if (n <= 0) return;
  if (n > kDirectMaxTokens) {
    for (const MatmulOut& o : outs)
      if (o.W->rows() > 0) matmul_blas(*o.W, x, n, o.y);
    return;
  }
  if (mode == MatmulMode::Q8) {
    static thread_local std::vector<MatmulOut> q8, rest;
    q8.clear(), rest.clear();
    for (const MatmulOut& o : outs) (q8_type(o.W->type) ? q8 : rest).push_back(o);
    if (!q8.empty()) matmul_q8(q8, x, n);
    if (!rest.empty()) matmul_f(rest, x, n);
    return;
  }
  matmul_f(outs, x, n);
}

void matmul(const Tensor& W, const float* x, int64_t n, float* y, MatmulMode mode) {
  const MatmulOut one[] = {{&W, y}};
  matmul(one, x, n, mode);
}

void matmul_reference(const Tensor& W, const float* x, int64_t n, float* y) {
  check(W, "matmul_reference");
  const std::vector<float> w = dequantize(W);
  const int64_t rows = W.rows(), cols = W.cols();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t r = 0; r < rows; ++r) {
      double acc = 0.0;
      for (int64_t c = 0; c < cols; ++c) acc += double(w[size_t(r * cols + c)]) * double(x[i * cols + c]);
      y[i * rows + r] = float(acc);
    }
}

}  // namespace ckv::cpu
