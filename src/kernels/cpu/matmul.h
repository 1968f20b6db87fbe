// Matrix products against weight tensors of any supported type, on all cores.
#pragma once
#include <cstdint>
#include <span>

#include "kernels/backend.h"
#include "model/tensor.h"

namespace ckv::cpu {

// Exact: fp32 products on exactly dequantised weights (matches the reference
// implementations to ~1e-5). Q8: for n <= 8 tokens and Q8_0/Q4_0/Q4_1
// weights, activations are quantised to 8 bits per 32-block and multiplied in
// integers, as llama.cpp does (about half the vector work per weight block,
// ~1.25x the decode speed on a 2-core machine where weight traffic also
// limits; logits move by up to ~0.5); everything else stays exact.
enum class MatmulMode { Exact, Q8 };

// y[i][r] = sum_c W[r][c] * x[i][c] for i < n, r < W.rows(), c < W.cols().
// x: [n][W.cols()] f32, y: [n][W.rows()] f32 (overwritten).
// Exact mode: all in fp32 on exactly dequantised weights. Small n (decode):
// weights are dequantised in registers inside FMA tiles. Large n (prefill):
// row blocks are dequantised once and multiplied with BLAS sgemm.
void matmul(const Tensor& W, const float* x, int64_t n, float* y, MatmulMode mode = MatmulMode::Exact);

// Several matrices with the same number of columns on one input x (Q, K and
// V; gate and up): y_i = x W_i^T, each as above, in one parallel loop.
using MatmulOut = ckv::MatmulOut;  // kernels/backend.h
void matmul(std::span<const MatmulOut> outs, const float* x, int64_t n, MatmulMode mode = MatmulMode::Exact);

// n values of a weight row (n a multiple of the type's block) to f32 with
// SIMD; bit-identical to dequantize_row.
void to_f32(DType type, const uint8_t* src, float* dst, int64_t n);

// Reference: dequantise W fully and loop in double. For tests only.
void matmul_reference(const Tensor& W, const float* x, int64_t n, float* y);

}  // namespace ckv::cpu
