// GGML quantisation block layouts (the bytes as stored in GGUF files).
#pragma once
#include <cstdint>

namespace ckv {

using f16_t = uint16_t;  // IEEE half, raw bits
constexpr int QK4_0 = 32, QK4_1 = 32, QK8_0 = 32, QK_K = 256, K_SCALE_SIZE = 12;

struct block_q4_0 { f16_t d; uint8_t qs[QK4_0 / 2]; };
struct block_q4_1 { f16_t d; f16_t m; uint8_t qs[QK4_1 / 2]; };
struct block_q8_0 { f16_t d; int8_t qs[QK8_0]; };
struct block_q4_K { f16_t d; f16_t dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qs[QK_K / 2]; };
struct block_q5_K { f16_t d; f16_t dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; };
struct block_q6_K { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; f16_t d; };

static_assert(sizeof(block_q4_0) == 18);
static_assert(sizeof(block_q4_1) == 20);
static_assert(sizeof(block_q8_0) == 34);
static_assert(sizeof(block_q4_K) == 144);
static_assert(sizeof(block_q5_K) == 176);
static_assert(sizeof(block_q6_K) == 210);

}  // namespace ckv
