// Scalar conversions and dequantisation of every supported type. These are the
// reference: they equal the gguf package's dequantisers bit for bit.
#pragma once
#include <cstdint>

#include "model/tensor.h"

namespace ckv {

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);  // round to nearest even

// Dequantise n elements (a multiple of the type's block size) starting at src.
void dequantize_row(DType type, const void* src, float* dst, int64_t n);
// Whole tensor into a new vector.
std::vector<float> dequantize(const Tensor& t);

}  // namespace ckv
