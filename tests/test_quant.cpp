// Dequantisation against the gguf package (golden, bit for bit) and the
// f16/bf16 conversions on their edge cases.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "model/gguf.h"
#include "model/quant.h"
#include "model/quant_blocks.h"
#include "test_util.h"
#include "util/error.h"

using namespace ckv;

namespace {

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

TEST(Quant, GoldenBlocksBitExact) {
  CKV_REQUIRE_SHARED();
  const std::string dir = test::shared_dir() + "/golden/gguf/";
  GGUFFile f(dir + "quant_blocks.gguf");
  auto spec = test::read_json(dir + "quant_blocks.json");
  ASSERT_EQ(f.tensors().size(), spec.size());
  for (auto& [name, info] : spec.items()) {
    SCOPED_TRACE(name);
    const Tensor* t = f.find(name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(dtype_name(t->type), info["type"].get<std::string>());
    EXPECT_EQ(t->shape, info["shape"].get<std::vector<int64_t>>());
    std::vector<float> want = test::read_f32(dir + "quant_blocks." + name + ".f32");
    std::vector<float> got = dequantize(*t);
    ASSERT_EQ(got.size(), want.size());
    EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * 4), 0);
    for (size_t i = 0; i < got.size(); ++i) {
      if (bits(got[i]) != bits(want[i])) {
        ADD_FAILURE() << "first mismatch at " << i << ": " << got[i] << " vs " << want[i];
        break;
      }
    }
    // Row by row gives the same values as the whole tensor.
    std::vector<float> row(size_t(t->cols()));
    for (int64_t r = 0; r < t->rows(); ++r) {
      dequantize_row(t->type, t->row(r), row.data(), t->cols());
      EXPECT_EQ(std::memcmp(row.data(), got.data() + r * t->cols(), row.size() * 4), 0);
    }
  }
}

TEST(Quant, F16EdgeValues) {
  EXPECT_EQ(bits(f16_to_f32(0x0000)), 0x00000000u);
  EXPECT_EQ(bits(f16_to_f32(0x8000)), 0x80000000u);           // -0
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);                     // largest
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));        // smallest subnormal
  EXPECT_EQ(f16_to_f32(0x03ff), 1023 * std::ldexp(1.0f, -24));  // largest subnormal
  EXPECT_EQ(f16_to_f32(0x0400), std::ldexp(1.0f, -14));        // smallest normal
  EXPECT_EQ(f16_to_f32(0x7c00), INFINITY);
  EXPECT_EQ(f16_to_f32(0xfc00), -INFINITY);
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7e00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7c01)));

  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7bff);  // below the midpoint to 65536
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);  // tie rounds to even = inf
  EXPECT_EQ(f32_to_f16(1e10f), 0x7c00);
  EXPECT_EQ(f32_to_f16(-1e10f), 0xfc00);
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);                 // tie -> even (0)
  EXPECT_EQ(f32_to_f16(from_bits(bits(std::ldexp(1.0f, -25)) + 1)), 0x0001);
  EXPECT_EQ(f32_to_f16(3 * std::ldexp(1.0f, -25)), 0x0002);             // 1.5 ulp -> 2
  EXPECT_EQ(f32_to_f16(5 * std::ldexp(1.0f, -25)), 0x0002);             // 2.5 ulp -> 2
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);          // tie -> even
  EXPECT_EQ(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);      // tie -> even (up)
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -14) - std::ldexp(1.0f, -25)), 0x0400);  // rounds up into normal
  uint16_t qnan = f32_to_f16(NAN);
  EXPECT_EQ(qnan & 0x7c00, 0x7c00);
  EXPECT_NE(qnan & 0x03ff, 0);
  EXPECT_NE(f32_to_f16(from_bits(0x7f800001u)) & 0x03ff, 0);  // NaN with low payload stays NaN

  // Every finite half survives the round trip; NaNs stay NaN.
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = f16_to_f32(uint16_t(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f)))) << h;
      continue;
    }
    ASSERT_EQ(f32_to_f16(f), h) << h;
  }
}

#if defined(__F16C__)
// The hardware converter is an independent reference for both directions.
TEST(Quant, F16MatchesF16C) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float hw = _cvtsh_ss(uint16_t(h)), sw = f16_to_f32(uint16_t(h));
    if (std::isnan(hw)) {
      ASSERT_TRUE(std::isnan(sw)) << h;
    } else {
      ASSERT_EQ(bits(sw), bits(hw)) << h;
    }
  }
  std::mt19937 rng(1);
  for (int i = 0; i < 2000000; ++i) {
    // Bias towards the half range (exponents 100..145) where rounding matters.
    uint32_t u = rng();
    if (i & 1) u = (u & 0x807fffffu) | ((100 + (u >> 23) % 46) << 23);
    float f = from_bits(u);
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_f16(f), uint16_t(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT))) << std::hex << u;
  }
}
#endif

TEST(Quant, BF16EdgeValues) {
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  EXPECT_EQ(bits(bf16_to_f32(0x8000)), 0x80000000u);
  EXPECT_EQ(bf16_to_f32(0x7f80), INFINITY);
  EXPECT_EQ(bf16_to_f32(0x0001), from_bits(0x00010000u));  // subnormal
  EXPECT_TRUE(std::isnan(bf16_to_f32(0x7fc0)));
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f808000u)), 0x3f80);  // tie -> even (down)
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f818000u)), 0x3f82);  // tie -> even (up)
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f808001u)), 0x3f81);  // above the tie
  EXPECT_EQ(f32_to_bf16(from_bits(0x7f7fffffu)), 0x7f80);  // FLT_MAX rounds to inf
  EXPECT_EQ(f32_to_bf16(from_bits(0x00008000u)), 0x0000);  // subnormal tie -> even
  EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000);
  uint16_t n = f32_to_bf16(from_bits(0x7f800001u));  // NaN whose payload is all in the low half
  EXPECT_TRUE(std::isnan(bf16_to_f32(n)));
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = bf16_to_f32(uint16_t(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_bf16(f), h) << h;
  }
}

TEST(Quant, HandBuiltBlocks) {
  // Q4_0: d = 0.5, nibbles 0..15 -> (q - 8) * 0.5; low nibbles first.
  block_q4_0 b0{};
  b0.d = f32_to_f16(0.5f);
  for (int j = 0; j < 16; ++j) b0.qs[j] = uint8_t(j | ((15 - j) << 4));
  float y[QK_K];
  dequantize_row(DType::Q4_0, &b0, y, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 0.5f * float(j - 8));
    EXPECT_EQ(y[j + 16], 0.5f * float(7 - j));
  }
  // Q8_0 from an odd address (blocks need not be aligned).
  alignas(4) uint8_t buf[1 + sizeof(block_q8_0)];
  block_q8_0 b8{};
  b8.d = f32_to_f16(2.0f);
  for (int j = 0; j < 32; ++j) b8.qs[j] = int8_t(j - 16);
  std::memcpy(buf + 1, &b8, sizeof(b8));
  dequantize_row(DType::Q8_0, buf + 1, y, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], 2.0f * float(j - 16));
  // Q6_K: scale 1 everywhere, q = 32 + (e % 32) except the high bits; a
  // constant pattern checks the element order.
  block_q6_K b6{};
  b6.d = f32_to_f16(1.0f);
  for (auto& s : b6.scales) s = 1;
  for (int i = 0; i < 128; ++i) b6.ql[i] = uint8_t(0x5 | (0xa << 4));  // lower 64 of each half: 5, upper: 10
  for (auto& q : b6.qh) q = uint8_t(0 | (1 << 2) | (2 << 4) | (3 << 6));
  dequantize_row(DType::Q6_K, &b6, y, 256);
  for (int e = 0; e < 256; ++e) {
    int r = e % 128;
    int lo = r < 64 ? 5 : 10, hi = r / 32;
    EXPECT_EQ(y[e], float((lo | (hi << 4)) - 32)) << e;
  }
}

TEST(Quant, TypeTable) {
  EXPECT_EQ(dtype_name(DType::Q4_K), "Q4_K");
  EXPECT_EQ(dtype_name(DType::BF16), "BF16");
  EXPECT_EQ(dtype_name(6), "Q5_0");
  EXPECT_EQ(dtype_name(10), "Q2_K");
  EXPECT_EQ(dtype_name(16), "IQ2_XXS");
  EXPECT_EQ(dtype_name(99), "type 99");
  for (uint32_t id : {0u, 1u, 2u, 3u, 8u, 12u, 13u, 14u, 30u}) EXPECT_TRUE(dtype_supported(id)) << id;
  for (uint32_t id : {4u, 6u, 7u, 9u, 10u, 11u, 15u, 16u, 28u, 29u, 31u, 99u, 0xffffffffu})
    EXPECT_FALSE(dtype_supported(id)) << id;
  EXPECT_EQ(dtype_block_elems(DType::F16), 1);
  EXPECT_EQ(dtype_block_bytes(DType::BF16), 2);
  EXPECT_EQ(dtype_block_elems(DType::Q5_K), 256);
  EXPECT_EQ(dtype_block_bytes(DType::Q5_K), 176);
  EXPECT_EQ(dtype_row_bytes(DType::Q4_1, 64), 40);
  EXPECT_THROW(dtype_block_elems(DType(6)), Error);
  float y[32];
  uint8_t zero[64] = {};
  EXPECT_THROW(dequantize_row(DType::Q8_0, zero, y, 16), Error);  // not a whole block
  EXPECT_THROW(dequantize_row(DType(6), zero, y, 32), Error);
}
