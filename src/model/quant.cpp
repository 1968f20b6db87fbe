#include "model/quant.h"

#include <cstring>
#include <string>

#include "model/quant_blocks.h"
#include "util/error.h"

// The gguf package rounds every product to float before adding (numpy does one
// operation at a time). For today's formats the products are exact (an f16
// scale times a few-bit integer), so an FMA would agree anyway, but keep the
// reference honest for any format added later: GCC fuses across statements by
// default in gnu++ mode.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace ckv {

static uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
static float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24 is exact in float.
    float v = float(mant) * 0x1p-24f;
    return bits_float(float_bits(v) | sign);
  }
  if (exp == 31) return bits_float(sign | 0x7f800000u | (mant << 13));  // inf, NaN (payload kept)
  return bits_float(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t f32_to_f16(float f) {
  uint32_t x = float_bits(f);
  uint16_t sign = uint16_t((x >> 16) & 0x8000);
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) return uint16_t(sign | 0x7e00 | ((x >> 13) & 0x3ff));  // NaN stays a quiet NaN
  if (x >= 0x477ff000u) return uint16_t(sign | 0x7c00);  // >= 65520 rounds to inf
  if (x >= 0x38800000u) {                                 // normal half: round mantissa to 10 bits, ties to even
    x += 0xfffu + ((x >> 13) & 1);
    return uint16_t(sign | ((x >> 13) - (112u << 10)));
  }
  if (x <= 0x33000000u) return sign;  // <= 2^-25 rounds to zero (tie goes to even 0)
  // Subnormal half: value in units of 2^-24 is m >> shift, rounded to nearest even.
  uint32_t e = x >> 23, m = (x & 0x7fffffu) | 0x800000u;
  uint32_t shift = 126 - e;
  uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
  if (rem > half || (rem == half && (q & 1))) ++q;
  return uint16_t(sign | q);
}

float bf16_to_f32(uint16_t h) { return bits_float(uint32_t(h) << 16); }

uint16_t f32_to_bf16(float f) {
  uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40);  // quiet NaN
  x += 0x7fffu + ((x >> 16) & 1);
  return uint16_t(x >> 16);
}

namespace {

// Blocks are copied out with memcpy: tensor data need not be aligned for the
// block structs (GGUF allows general.alignment = 1).
template <typename B>
B load(const uint8_t* p) {
  B b;
  std::memcpy(&b, p, sizeof(B));
  return b;
}

void deq_q8_0(const uint8_t* p, float* y) {
  auto b = load<block_q8_0>(p);
  const float d = f16_to_f32(b.d);
  for (int j = 0; j < QK8_0; ++j) y[j] = float(b.qs[j]) * d;
}

// Low nibbles are elements 0..15, high nibbles 16..31.
void deq_q4_0(const uint8_t* p, float* y) {
  auto b = load<block_q4_0>(p);
  const float d = f16_to_f32(b.d);
  for (int j = 0; j < QK4_0 / 2; ++j) {
    y[j] = d * float((b.qs[j] & 0xf) - 8);
    y[j + QK4_0 / 2] = d * float((b.qs[j] >> 4) - 8);
  }
}

void deq_q4_1(const uint8_t* p, float* y) {
  auto b = load<block_q4_1>(p);
  const float d = f16_to_f32(b.d), m = f16_to_f32(b.m);
  for (int j = 0; j < QK4_1 / 2; ++j) {
    y[j] = d * float(b.qs[j] & 0xf) + m;
    y[j + QK4_1 / 2] = d * float(b.qs[j] >> 4) + m;
  }
}

// 6-bit scale and min of sub-block j (of 8) packed in 12 bytes (Q4_K, Q5_K).
void scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* mn) {
  if (j < 4) {
    *sc = q[j] & 63;
    *mn = q[j + 4] & 63;
  } else {
    *sc = uint8_t((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
    *mn = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// 8 sub-blocks of 32; qs byte group g (32 bytes) holds sub-block 2g in its
// low nibbles and 2g+1 in its high nibbles.
void deq_q4_K(const uint8_t* p, float* y) {
  auto b = load<block_q4_K>(p);
  const float d = f16_to_f32(b.d), dmin = f16_to_f32(b.dmin);
  for (int s = 0; s < 8; ++s) {
    uint8_t sc, mn;
    scale_min_k4(s, b.scales, &sc, &mn);
    const float dl = d * float(sc), ml = dmin * float(mn);
    const uint8_t* qs = b.qs + (s / 2) * 32;
    const int shift = (s & 1) * 4;
    for (int l = 0; l < 32; ++l) y[s * 32 + l] = dl * float((qs[l] >> shift) & 0xf) - ml;
  }
}

// As Q4_K plus a fifth bit: bit s of qh[l] for element l of sub-block s.
void deq_q5_K(const uint8_t* p, float* y) {
  auto b = load<block_q5_K>(p);
  const float d = f16_to_f32(b.d), dmin = f16_to_f32(b.dmin);
  for (int s = 0; s < 8; ++s) {
    uint8_t sc, mn;
    scale_min_k4(s, b.scales, &sc, &mn);
    const float dl = d * float(sc), ml = dmin * float(mn);
    const uint8_t* qs = b.qs + (s / 2) * 32;
    const int shift = (s & 1) * 4;
    for (int l = 0; l < 32; ++l) {
      int q = ((qs[l] >> shift) & 0xf) | (((b.qh[l] >> s) & 1) << 4);
      y[s * 32 + l] = dl * float(q) - ml;
    }
  }
}

// Two halves of 128. In half h, element r takes 4 low bits from
// ql[64h + r%64] (nibble r/64) and 2 high bits from qh[32h + r%32] (pair r/32);
// 16 int8 scales, one per 16 elements.
void deq_q6_K(const uint8_t* p, float* y) {
  auto b = load<block_q6_K>(p);
  const float d = f16_to_f32(b.d);
  for (int e = 0; e < QK_K; ++e) {
    const int h = e / 128, r = e % 128;
    const int lo = (b.ql[h * 64 + r % 64] >> ((r / 64) * 4)) & 0xf;
    const int hi = (b.qh[h * 32 + r % 32] >> ((r / 32) * 2)) & 3;
    const float dl = d * float(b.scales[e / 16]);
    y[e] = dl * float((lo | (hi << 4)) - 32);
  }
}

template <typename F>
void each_block(const void* src, float* dst, int64_t n, int64_t qk, size_t bytes, F f) {
  const uint8_t* p = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n / qk; ++i) f(p + i * bytes, dst + i * qk);
}

}  // namespace

void dequantize_row(DType type, const void* src, float* dst, int64_t n) {
  const int64_t qk = dtype_block_elems(type);
  if (n < 0 || n % qk != 0)
    throw Error("dequantize " + dtype_name(type) + ": expected a multiple of " + std::to_string(qk) +
                " elements, found " + std::to_string(n));
  const uint8_t* p = static_cast<const uint8_t*>(src);
  switch (type) {
    case DType::F32:
      if (n) std::memcpy(dst, src, size_t(n) * 4);
      return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        dst[i] = f16_to_f32(h);
      }
      return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        dst[i] = bf16_to_f32(h);
      }
      return;
    case DType::Q8_0: return each_block(src, dst, n, qk, sizeof(block_q8_0), deq_q8_0);
    case DType::Q4_0: return each_block(src, dst, n, qk, sizeof(block_q4_0), deq_q4_0);
    case DType::Q4_1: return each_block(src, dst, n, qk, sizeof(block_q4_1), deq_q4_1);
    case DType::Q4_K: return each_block(src, dst, n, qk, sizeof(block_q4_K), deq_q4_K);
    case DType::Q5_K: return each_block(src, dst, n, qk, sizeof(block_q5_K), deq_q5_K);
    case DType::Q6_K: return each_block(src, dst, n, qk, sizeof(block_q6_K), deq_q6_K);
  }
  throw Error("dequantize: unsupported tensor type " + dtype_name(type));
}

std::vector<float> dequantize(const Tensor& t) {
  const int64_t n = t.numel();
  const size_t need = size_t(t.rows()) * size_t(t.row_bytes());
  if (t.data == nullptr || t.nbytes < need)
    throw Error("dequantize " + t.name + ": expected " + std::to_string(need) + " bytes of " +
                dtype_name(t.type) + " data, found " + std::to_string(t.data ? t.nbytes : 0));
  std::vector<float> out(size_t(n > 0 ? n : 0));
  // Rows are contiguous and each is a whole number of blocks, so the tensor
  // dequantises as one long row.
  dequantize_row(t.type, t.data, out.data(), n);
  return out;
}

}  // namespace ckv
