// Microbenchmark of ckv::cpu::matmul on SmolLM2-135M's shapes.
//
// Not built by CMake. Build by hand from the repository root:
//   g++ -std=c++20 -O2 -march=x86-64-v3 -fopenmp -Isrc bench/bench_matmul.cpp
//       build/libckv.a -lopenblas -lbenchmark -lpthread -o build/bench_matmul
//   OMP_NUM_THREADS=2 build/bench_matmul --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true
// or add to CMakeLists.txt:
//   find_package(benchmark)
//   if(benchmark_FOUND)
//     add_executable(bench_matmul bench/bench_matmul.cpp)
//     target_link_libraries(bench_matmul PRIVATE ckv benchmark::benchmark)
//   endif()
//
// Counters: GFLOPs = 2*rows*cols*n per second; tok/s = n per second for this
// one matrix. BM_SmolLM2Forward runs every matmul of one forward pass (30
// layers of q,k,v,o,gate,up,down in Q4_1 plus the Q8_0 output head), so its
// tok/s is an upper bound for the whole model at that batch size.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <random>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "model/quant.h"
#include "model/quant_blocks.h"

namespace {

// CKV_MATMUL=q8 in the environment benchmarks MatmulMode::Q8.
ckv::cpu::MatmulMode mode() {
  const char* m = std::getenv("CKV_MATMUL");
  return m && std::string(m) == "q8" ? ckv::cpu::MatmulMode::Q8 : ckv::cpu::MatmulMode::Exact;
}

using ckv::DType;

struct Weights {
  std::vector<uint8_t> bytes;
  ckv::Tensor t;
  Weights(DType type, int64_t rows, int64_t cols, uint32_t seed) {
    std::mt19937 g(seed);
    const int64_t nbytes = rows * ckv::dtype_row_bytes(type, cols);
    bytes.resize(size_t(nbytes));
    for (auto& b : bytes) b = uint8_t(g());
    // Sane f16 scales at the start of each 32-block (Q4_0/Q4_1/Q8_0); float
    // types get small random values.
    std::uniform_real_distribution<float> u(0.001f, 0.02f);
    if (type == DType::Q4_0 || type == DType::Q4_1 || type == DType::Q8_0) {
      const int64_t bb = ckv::dtype_block_bytes(type);
      for (int64_t b = 0; b < nbytes / bb; ++b) {
        const uint16_t h = ckv::f32_to_f16(u(g));
        std::memcpy(bytes.data() + b * bb, &h, 2);
        if (type == DType::Q4_1) std::memcpy(bytes.data() + b * bb + 2, &h, 2);
      }
    } else if (type == DType::F32) {
      for (int64_t i = 0; i < rows * cols; ++i) {
        const float f = u(g);
        std::memcpy(bytes.data() + 4 * i, &f, 4);
      }
    } else if (type == DType::F16 || type == DType::BF16) {
      for (int64_t i = 0; i < rows * cols; ++i) {
        const uint16_t h = type == DType::F16 ? ckv::f32_to_f16(u(g)) : ckv::f32_to_bf16(u(g));
        std::memcpy(bytes.data() + 2 * i, &h, 2);
      }
    } else {
      // K-quants: random bytes with sane f16 d/dmin.
      const int64_t bb = ckv::dtype_block_bytes(type);
      const int off = type == DType::Q6_K ? int(offsetof(ckv::block_q6_K, d)) : 0;
      for (int64_t b = 0; b < nbytes / bb; ++b) {
        const uint16_t h = ckv::f32_to_f16(u(g));
        std::memcpy(bytes.data() + b * bb + off, &h, 2);
        if (type != DType::Q6_K) std::memcpy(bytes.data() + b * bb + 2, &h, 2);
      }
    }
    t.name = "bench";
    t.type = type;
    t.shape = {rows, cols};
    t.data = bytes.data();
    t.nbytes = size_t(nbytes);
  }
};

std::vector<float> act(int64_t n, int64_t cols) {
  std::mt19937 g(3);
  std::normal_distribution<float> nd;
  std::vector<float> x(size_t(n * cols));
  for (auto& v : x) v = nd(g);
  return x;
}

// args: type, rows, cols, n
void BM_Matmul(benchmark::State& st) {
  const DType type = DType(st.range(0));
  const int64_t rows = st.range(1), cols = st.range(2), n = st.range(3);
  Weights w(type, rows, cols, 1);
  const std::vector<float> x = act(n, cols);
  std::vector<float> y(size_t(n * rows));
  for (auto _ : st) {
    ckv::cpu::matmul(w.t, x.data(), n, y.data(), mode());
    benchmark::DoNotOptimize(y.data());
  }
  const double it = double(st.iterations());
  st.counters["GFLOPs"] = benchmark::Counter(2.0 * rows * cols * n * it * 1e-9, benchmark::Counter::kIsRate);
  st.counters["tok/s"] = benchmark::Counter(double(n) * it, benchmark::Counter::kIsRate);
  st.SetLabel(ckv::dtype_name(type));
}

void SmolShapes(benchmark::internal::Benchmark* b) {
  const int q41 = int(DType::Q4_1), q80 = int(DType::Q8_0);
  for (int n : {1, 512}) {
    b->Args({q41, 576, 576, n});    // attn q, o
    b->Args({q41, 192, 576, n});    // attn k, v (3 KV heads x 64)
    b->Args({q41, 1536, 576, n});   // ffn gate, up
    b->Args({q41, 576, 1536, n});   // ffn down
    b->Args({q80, 576, 576, n});
    b->Args({q80, 49152, 576, n});  // output head (tied embedding)
  }
  // Other types at one shape, for reference.
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K})
    for (int n : {1, 512}) b->Args({int(t), 576, 1536, n});
}
BENCHMARK(BM_Matmul)->Apply(SmolShapes)->Unit(benchmark::kMicrosecond)->UseRealTime();

// All matmuls of one SmolLM2-135M forward pass over n tokens (the output head
// over all n, as in a perplexity run; generation needs it for 1 token only).
void BM_SmolLM2Forward(benchmark::State& st) {
  const int64_t n = st.range(0);
  const DType q41 = DType::Q4_1;
  std::vector<Weights> layer;
  layer.emplace_back(q41, 576, 576, 1);   // q
  layer.emplace_back(q41, 192, 576, 2);   // k
  layer.emplace_back(q41, 192, 576, 3);   // v
  layer.emplace_back(q41, 576, 576, 4);   // o
  layer.emplace_back(q41, 1536, 576, 5);  // gate
  layer.emplace_back(q41, 1536, 576, 6);  // up
  layer.emplace_back(q41, 576, 1536, 7);  // down
  // 30 layers read distinct weights in the real model; one copy per layer
  // keeps the cache behaviour honest (about 67 MB in all).
  std::vector<std::vector<Weights>> layers;
  for (int l = 0; l < 30; ++l) {
    std::vector<Weights> ws;
    for (const auto& w : layer) ws.emplace_back(q41, w.t.shape[0], w.t.shape[1], uint32_t(10 * l + ws.size()));
    layers.push_back(std::move(ws));
  }
  Weights head(DType::Q8_0, 49152, 576, 99);
  const std::vector<float> x576 = act(n, 576), x1536 = act(n, 1536);
  std::vector<float> y(size_t(n * 49152));
  for (auto _ : st) {
    for (const auto& ws : layers)
      for (const auto& w : ws)
        ckv::cpu::matmul(w.t, w.t.cols() == 576 ? x576.data() : x1536.data(), n, y.data(), mode());
    ckv::cpu::matmul(head.t, x576.data(), n, y.data(), mode());
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["tok/s"] = benchmark::Counter(double(n) * double(st.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SmolLM2Forward)->Arg(1)->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
