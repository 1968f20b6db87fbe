// matmul against matmul_reference (dequantise, then a double-precision loop)
// for every weight type, on seeded random weight blocks written byte by byte.
// The error measure is ||y - ref|| / ||ref|| over the whole output.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "model/quant.h"
#include "model/quant_blocks.h"
#include "util/error.h"

namespace ckv {
namespace {

// Offsets of the f16 scale fields inside each block, from quant_blocks.h.
struct Scales {
  std::vector<int> d;    // f16 scales: positive, ~1e-3..2e-2
  std::vector<int> min;  // f16 offsets/mins: either sign for Q4_1, positive for K dmin
};
Scales scale_fields(DType t) {
  switch (t) {
    case DType::Q8_0: case DType::Q4_0: return {{0}, {}};
    case DType::Q4_1: return {{0}, {2}};
    case DType::Q4_K: case DType::Q5_K: return {{0}, {2}};
    case DType::Q6_K: return {{offsetof(block_q6_K, d)}, {}};
    default: return {{}, {}};
  }
}

// rows x cols weights of type t in a buffer whose data starts 2 bytes past a
// 32-byte boundary, so every unaligned-load path is exercised.
struct RandomWeights {
  std::vector<uint8_t> storage;
  Tensor t;
  RandomWeights(DType type, int64_t rows, int64_t cols, uint32_t seed) {
    std::mt19937 g(seed);
    const int64_t bytes = rows * dtype_row_bytes(type, cols);
    storage.resize(size_t(bytes + 64));
    uint8_t* base = storage.data();
    base += (32 - reinterpret_cast<uintptr_t>(base) % 32) % 32 + 2;
    std::normal_distribution<float> nd(0.0f, 0.1f);
    std::uniform_real_distribution<float> ud(0.001f, 0.02f), um(-0.1f, 0.1f);
    auto put16 = [](uint8_t* p, uint16_t h) { std::memcpy(p, &h, 2); };
    if (type == DType::F32) {
      for (int64_t i = 0; i < rows * cols; ++i) {
        const float f = nd(g);
        std::memcpy(base + 4 * i, &f, 4);
      }
    } else if (type == DType::F16 || type == DType::BF16) {
      for (int64_t i = 0; i < rows * cols; ++i)
        put16(base + 2 * i, type == DType::F16 ? f32_to_f16(nd(g)) : f32_to_bf16(nd(g)));
    } else {
      for (int64_t i = 0; i < bytes; ++i) base[i] = uint8_t(g());  // quants, K scale bytes
      const Scales s = scale_fields(type);
      const int64_t bb = dtype_block_bytes(type), nblocks = bytes / bb;
      for (int64_t b = 0; b < nblocks; ++b) {
        uint8_t* blk = base + b * bb;
        for (int off : s.d) put16(blk + off, f32_to_f16(ud(g)));
        for (int off : s.min) put16(blk + off, f32_to_f16(type == DType::Q4_1 ? um(g) : ud(g)));
      }
    }
    t.name = "w." + dtype_name(type);
    t.type = type;
    t.shape = {rows, cols};
    t.data = base;
    t.nbytes = size_t(bytes);
  }
};

std::vector<float> random_x(int64_t n, int64_t cols, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(size_t(n * cols));
  for (float& v : x) v = nd(g);
  return x;
}

double rel_err(const std::vector<float>& y, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    num += (double(y[i]) - ref[i]) * (double(y[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return std::sqrt(num / den);
}

// Every path computes in fp32 on exactly dequantised weights, so all types
// agree with the double-precision reference to f32 summation error.
double tolerance(DType) { return 1e-5; }

// Columns: a multiple of the block size but, for 32-blocks, not of 8 blocks
// (exercises the zero padding of the scale arrays); for float types not a
// multiple of 8 (exercises the scalar tail).
int64_t cols_for(DType t) {
  if (dtype_block_elems(t) == QK_K) return 512;
  if (dtype_block_elems(t) == 32) return 320;
  return 100;
}

const DType kTypes[] = {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0,
                        DType::Q4_1, DType::Q4_K, DType::Q5_K, DType::Q6_K};

struct Case {
  DType type;
  int64_t n;
};

class MatmulTest : public ::testing::TestWithParam<Case> {};

TEST_P(MatmulTest, MatchesReference) {
  const Case c = GetParam();
  // 67 rows: two full row blocks of 32 plus 3 rows, which leaves a one-row
  // remainder after the 2- and 4-row tiles.
  const int64_t rows = 67, cols = cols_for(c.type);
  RandomWeights w(c.type, rows, cols, 1234u + uint32_t(c.type));
  const std::vector<float> x = random_x(c.n, cols, 99u + uint32_t(c.n));
  std::vector<float> y(size_t(c.n * rows), -1.0f), ref(size_t(c.n * rows));
  cpu::matmul(w.t, x.data(), c.n, y.data());
  cpu::matmul_reference(w.t, x.data(), c.n, ref.data());
  const double e = rel_err(y, ref);
  EXPECT_LT(e, tolerance(c.type)) << dtype_name(c.type) << " n=" << c.n;
  RecordProperty("rel_err", std::to_string(e));

  // Batch invariance: each token's result equals a call with that token alone
  // (the decode tiles) to f32 summation error, so prefill and decode agree.
  std::vector<float> y1(static_cast<size_t>(rows));
  for (int64_t i = 0; i < c.n; i += std::max<int64_t>(1, c.n / 5)) {
    cpu::matmul(w.t, x.data() + i * cols, 1, y1.data());
    std::vector<float> yi(y.begin() + i * rows, y.begin() + (i + 1) * rows);
    EXPECT_LT(rel_err(y1, yi), 1e-5) << dtype_name(c.type) << " n=" << c.n << " token " << i;
  }
}

std::vector<Case> all_cases() {
  std::vector<Case> v;
  for (DType t : kTypes)
    for (int64_t n : {1, 2, 3, 4, 7, 64, 65, 300}) v.push_back({t, n});
  return v;
}

INSTANTIATE_TEST_SUITE_P(AllTypes, MatmulTest, ::testing::ValuesIn(all_cases()), [](const auto& info) {
  return dtype_name(info.param.type) + "_n" + std::to_string(info.param.n);
});

// SmolLM2's real shape for the int8 path, including rows not a multiple of
// the row block.
TEST(Matmul, SmolShapes) {
  for (DType t : {DType::Q4_1, DType::Q8_0})
    for (int64_t rows : {576, 1536 + 5})
      for (int64_t n : {1, 5}) {
        RandomWeights w(t, rows, 576, 7u);
        const std::vector<float> x = random_x(n, 576, 8u);
        std::vector<float> y(size_t(n * rows)), ref(size_t(n * rows));
        cpu::matmul(w.t, x.data(), n, y.data());
        cpu::matmul_reference(w.t, x.data(), n, ref.data());
        EXPECT_LT(rel_err(y, ref), tolerance(t)) << dtype_name(t) << " rows=" << rows << " n=" << n;
      }
}

// Large-magnitude and all-zero activation blocks: zero blocks must give
// scale 0 (no division by zero), outliers must not saturate.
TEST(Matmul, ZeroAndOutlierBlocks) {
  const int64_t rows = 9, cols = 128, n = 3;
  RandomWeights w(DType::Q8_0, rows, cols, 5u);
  std::vector<float> x = random_x(n, cols, 6u);
  for (int64_t c = 0; c < 32; ++c) x[size_t(c)] = 0.0f;  // token 0, block 0
  x[size_t(cols + 40)] = 1e4f;                            // token 1, block 1
  std::vector<float> y(size_t(n * rows)), ref(size_t(n * rows));
  cpu::matmul(w.t, x.data(), n, y.data());
  cpu::matmul_reference(w.t, x.data(), n, ref.data());
  EXPECT_LT(rel_err(y, ref), tolerance(DType::Q8_0));
  for (float v : y) EXPECT_TRUE(std::isfinite(v));
}

// MatmulMode::Q8 quantises each 32-block of x to 8 bits (scale amax/127,
// round to nearest), so each output may move by at most
// sum over blocks of (d_x / 2) * sum |w| there, plus f32 rounding. The bound
// is computed from the dequantised weights, so a kernel that mixed up blocks,
// rows, nibbles or scales fails it by orders of magnitude.
TEST(Matmul, Q8ModeWithinQuantisationBound) {
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_1})
    for (int64_t n : {1, 2, 3, 4, 5, 8}) {
      const int64_t rows = 67, cols = 320;
      RandomWeights w(t, rows, cols, 31u + uint32_t(t));
      std::vector<float> x = random_x(n, cols, 17u + uint32_t(n));
      for (int64_t c = 0; c < 32; ++c) x[size_t(c)] = 0.0f;  // an all-zero block
      const std::vector<float> wf = dequantize(w.t);
      std::vector<float> y(size_t(n * rows)), ref(size_t(n * rows));
      cpu::matmul(w.t, x.data(), n, y.data(), cpu::MatmulMode::Q8);
      cpu::matmul_reference(w.t, x.data(), n, ref.data());
      double worst_ratio = 0;
      for (int64_t i = 0; i < n; ++i)
        for (int64_t r = 0; r < rows; ++r) {
          double bound = 0, mag = 0;
          for (int64_t b = 0; b < cols / 32; ++b) {
            double amax = 0, wsum = 0;
            for (int64_t k = 32 * b; k < 32 * b + 32; ++k) {
              amax = std::max(amax, std::fabs(double(x[size_t(i * cols + k)])));
              wsum += std::fabs(double(wf[size_t(r * cols + k)]));
              mag += std::fabs(double(wf[size_t(r * cols + k)]) * x[size_t(i * cols + k)]);
            }
            bound += amax / 127.0 / 2.0 * wsum;
          }
          const double err = std::fabs(double(y[size_t(i * rows + r)]) - ref[size_t(i * rows + r)]);
          ASSERT_LE(err, bound * 1.01 + 1e-5 * mag) << dtype_name(t) << " n=" << n << " token " << i << " row " << r;
          worst_ratio = std::max(worst_ratio, err / bound);
        }
      // Rounding errors partly cancel: the typical error is well inside the bound.
      EXPECT_LT(worst_ratio, 0.5) << dtype_name(t) << " n=" << n;
      // And it is really the quantised path (differs from exact).
      EXPECT_GT(rel_err(y, ref), 1e-5) << dtype_name(t) << " n=" << n;
    }
}

// A group of matrices on one input (Q/K/V, gate/up) gives each matrix exactly
// what a call of its own gives, in both modes, with mixed types in the group.
TEST(Matmul, GroupEqualsSeparateCalls) {
  const int64_t cols = 512;
  std::vector<RandomWeights> ws;
  ws.emplace_back(DType::Q4_1, 70, cols, 1u);
  ws.emplace_back(DType::Q8_0, 33, cols, 2u);
  ws.emplace_back(DType::Q4_K, 40, cols, 3u);
  ws.emplace_back(DType::F16, 9, cols, 4u);
  for (auto mode : {cpu::MatmulMode::Exact, cpu::MatmulMode::Q8})
    for (int64_t n : {1, 3, 8, 20}) {
      const std::vector<float> x = random_x(n, cols, 5u);
      std::vector<std::vector<float>> grouped(ws.size()), alone(ws.size());
      std::vector<cpu::MatmulOut> outs;
      for (size_t i = 0; i < ws.size(); ++i) {
        grouped[i].assign(size_t(n * ws[i].t.rows()), -1.0f);
        alone[i].assign(size_t(n * ws[i].t.rows()), -2.0f);
        outs.push_back({&ws[i].t, grouped[i].data()});
        cpu::matmul(ws[i].t, x.data(), n, alone[i].data(), mode);
      }
      cpu::matmul(outs, x.data(), n, mode);
      for (size_t i = 0; i < ws.size(); ++i)
        EXPECT_EQ(grouped[i], alone[i]) << dtype_name(ws[i].t.type) << " n=" << n;
    }
  // Matrices of different widths cannot share an input.
  RandomWeights narrow(DType::Q4_1, 8, 256, 6u);
  std::vector<float> x = random_x(1, cols, 7u), y1(70), y2(8);
  const cpu::MatmulOut bad[] = {{&ws[0].t, y1.data()}, {&narrow.t, y2.data()}};
  EXPECT_THROW(cpu::matmul(bad, x.data(), 1), Error);
}

// The SIMD row converter the kernels use equals the reference dequantiser bit
// for bit, for every type, on random blocks (all scale and quant bits random:
// RandomWeights writes the blocks byte by byte).
TEST(Matmul, ToF32IsBitExact) {
  for (DType t : kTypes) {
    const int64_t cols = dtype_block_elems(t) == QK_K ? 1024 : 320;
    RandomWeights w(t, 7, cols, 77u + uint32_t(t));
    std::vector<float> fast(static_cast<size_t>(cols)), ref(static_cast<size_t>(cols));
    for (int64_t r = 0; r < 7; ++r) {
      cpu::to_f32(t, w.t.row(r), fast.data(), cols);
      dequantize_row(t, w.t.row(r), ref.data(), cols);
      ASSERT_EQ(0, std::memcmp(fast.data(), ref.data(), sizeof(float) * size_t(cols))) << dtype_name(t) << " row " << r;
    }
  }
}

TEST(Matmul, RejectsBadShapes) {
  RandomWeights w(DType::Q4_1, 4, 64, 1u);
  Tensor bad = w.t;
  bad.shape = {4, 48};  // not a multiple of 32
  std::vector<float> x(64), y(4);
  EXPECT_THROW(cpu::matmul(bad, x.data(), 1, y.data()), Error);
  Tensor short_data = w.t;
  short_data.nbytes -= 1;
  EXPECT_THROW(cpu::matmul(short_data, x.data(), 1, y.data()), Error);
}

}  // namespace
}  // namespace ckv
