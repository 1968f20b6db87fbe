// CPU matrix products y = x W^T for every weight type.
//
// Layout of the work (why):
// - Q4_0 / Q4_1 / Q8_0 (the types of real GGUF models): activations are
//   quantised once per call to int8 per 32-block and every block pair is an
//   int8 dot product (quant_dot.h). This reads 4.5-8.5 bits per weight instead
//   of 32 (decode is memory-bound) and does 32 multiply-adds in two integer
//   instructions (prefill is compute-bound), for both n = 1 and n = 512. It
//   beat dequantise + sgemm here: OpenBLAS is the pthread build, whose own
//   threads fight OpenMP's, and dequantising costs as much as the int8 dot.
// - F32 / F16 / BF16: FMA register tiles reading the weights directly for
//   small n; for large n a row block is first converted to f32 once so the
//   conversion is not repeated for every group of tokens.
// - Q4_K / Q5_K / Q6_K: row blocks are dequantised with the reference
//   dequantize_row and go through the f32 tiles (correct, not tuned).
// - Threads: rows are cut into blocks of kRowBlock and handed out with
//   schedule(static), so each thread owns one contiguous range of rows (and
//   of y columns). Inside a block, token groups are the outer loop and row
//   tiles the inner one: the block's weights stay in L1/L2 while each group's
//   activations (<= 4 tokens) stay in L1.
#include "kernels/cpu/matmul.h"

#include <algorithm>
#include <vector>

#include "kernels/cpu/gemm_f32.h"
#include "kernels/cpu/quant_dot.h"
#include "model/quant.h"
#include "model/quant_blocks.h"
#include "util/error.h"

namespace ckv::cpu {

namespace {

constexpr int64_t kRowBlock = 32;

// ---- Quantised weights, int8 activations --------------------------------

// Rows [r0, r1) for tokens [t, t + C), R rows per tile, one-row tiles for the
// remainder. dw/mw: [r1 - r0][nbp] per-block floats of these rows.
template <class WT, int R, int C>
void q_rows(const Tensor& W, int64_t r0, int64_t r1, const float* dw, const float* mw, const qdot::Q8Acts& a,
            int64_t t, float* y) {
  const int64_t rows = W.rows(), nbp = a.nbp;
  float* yt = y + t * rows;
  int64_t r = r0;
  for (; r + R <= r1; r += R) {
    const uint8_t* w[R];
    const float* d[R];
    const float* m[R];
    for (int i = 0; i < R; ++i) {
      w[i] = W.row(r + i);
      d[i] = dw + (r + i - r0) * nbp;
      m[i] = mw + (r + i - r0) * nbp;
    }
    qdot::tile<WT, R, C>(w, d, m, a, t, yt + r, rows);
  }
  for (; r < r1; ++r) {
    const uint8_t* w[1] = {W.row(r)};
    const float* d[1] = {dw + (r - r0) * nbp};
    const float* m[1] = {mw + (r - r0) * nbp};
    qdot::tile<WT, 1, C>(w, d, m, a, t, yt + r, rows);
  }
}

template <class WT>
void matmul_q(const Tensor& W, const float* x, int64_t n, float* y) {
  static thread_local qdot::Q8Acts acts;
  qdot::Q8Acts& a = acts;
  qdot::quantize_acts(x, n, W.cols(), a);
  const int64_t rows = W.rows(), nb = a.nb, nbp = a.nbp;
  const int64_t nblocks = (rows + kRowBlock - 1) / kRowBlock;
#pragma omp parallel
  {
    // Per-block scales of the current row block as f32: converted once and
    // reused by every token group (and read 8 at a time for the mw term).
    static thread_local std::vector<float> scales;
    if (scales.size() < size_t(2 * kRowBlock * nbp)) scales.resize(size_t(2 * kRowBlock * nbp));
    float* dw = scales.data();
    float* mw = dw + kRowBlock * nbp;
#pragma omp for schedule(static)
    for (int64_t ib = 0; ib < nblocks; ++ib) {
      const int64_t r0 = ib * kRowBlock, r1 = std::min(rows, r0 + kRowBlock);
      for (int64_t r = r0; r < r1; ++r) {
        const uint8_t* row = W.row(r);
        float* d = dw + (r - r0) * nbp;
        float* m = mw + (r - r0) * nbp;
        for (int64_t b = 0; b < nb; ++b) {
          d[b] = WT::dw(row + b * WT::kBytes);
          m[b] = WT::mw(row + b * WT::kBytes);
        }
        for (int64_t b = nb; b < nbp; ++b) d[b] = m[b] = 0.0f;
      }
      int64_t t = 0;
      for (; t + 4 <= n; t += 4) q_rows<WT, 2, 4>(W, r0, r1, dw, mw, a, t, y);
      switch (n - t) {
        case 1: q_rows<WT, 4, 1>(W, r0, r1, dw, mw, a, t, y); break;
        case 2: q_rows<WT, 4, 2>(W, r0, r1, dw, mw, a, t, y); break;
        case 3: q_rows<WT, 2, 3>(W, r0, r1, dw, mw, a, t, y); break;
        default: break;
      }
    }
  }
}

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

// Converts rows of F16 / BF16 (SIMD) or anything else (reference dequantiser)
// to f32.
void to_f32(DType type, const uint8_t* src, float* dst, int64_t n) {
  int64_t k = 0;
  if (type == DType::F16) {
    for (; k + 8 <= n; k += 8) _mm256_storeu_ps(dst + k, gemmf::F16L::load8(src, k));
    for (; k < n; ++k) dst[k] = gemmf::F16L::load1(src, k);
  } else if (type == DType::BF16) {
    for (; k + 8 <= n; k += 8) _mm256_storeu_ps(dst + k, gemmf::BF16L::load8(src, k));
    for (; k < n; ++k) dst[k] = gemmf::BF16L::load1(src, k);
  } else {
    dequantize_row(type, src, dst, n);
  }
}

void matmul_f(const Tensor& W, const float* x, int64_t n, float* y) {
  const int64_t rows = W.rows(), cols = W.cols();
  const DType type = W.type;
  // Direct reads for F32, and for F16/BF16 while n is small enough that
  // converting each weight vector per token group costs less than a pass
  // through a buffer.
  const bool direct = type == DType::F32 || ((type == DType::F16 || type == DType::BF16) && n <= 4);
  const int64_t nblocks = (rows + kRowBlock - 1) / kRowBlock;
#pragma omp parallel
  {
    static thread_local std::vector<float> buf;
    if (!direct && buf.size() < size_t(kRowBlock * cols)) buf.resize(size_t(kRowBlock * cols));
#pragma omp for schedule(static)
    for (int64_t ib = 0; ib < nblocks; ++ib) {
      const int64_t r0 = ib * kRowBlock, nr = std::min(rows, r0 + kRowBlock) - r0;
      auto wrow = [&](int64_t i) { return W.row(r0 + i); };
      if (direct) {
        switch (type) {
          case DType::F32: f_block<gemmf::F32L>(wrow, nr, x, n, cols, y, rows, r0); break;
          case DType::F16: f_block<gemmf::F16L>(wrow, nr, x, n, cols, y, rows, r0); break;
          default: f_block<gemmf::BF16L>(wrow, nr, x, n, cols, y, rows, r0); break;
        }
      } else {
        float* b = buf.data();
        for (int64_t i = 0; i < nr; ++i) to_f32(type, W.row(r0 + i), b + i * cols, cols);
        auto brow = [&](int64_t i) { return reinterpret_cast<const uint8_t*>(b + i * cols); };
        f_block<gemmf::F32L>(brow, nr, x, n, cols, y, rows, r0);
      }
    }
  }
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

void matmul(const Tensor& W, const float* x, int64_t n, float* y) {
  check(W, "matmul");
  if (n <= 0 || W.rows() == 0) return;
  switch (W.type) {
    case DType::Q4_0: return matmul_q<qdot::Q4_0W>(W, x, n, y);
    case DType::Q4_1: return matmul_q<qdot::Q4_1W>(W, x, n, y);
    case DType::Q8_0: return matmul_q<qdot::Q8_0W>(W, x, n, y);
    case DType::F32: case DType::F16: case DType::BF16:
    case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
      return matmul_f(W, x, n, y);
  }
  throw Error("matmul " + W.name + ": unsupported weight type " + dtype_name(W.type));
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
