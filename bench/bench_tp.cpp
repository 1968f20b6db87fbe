// All-reduce timing for tensor parallelism (issue 13 item 4): the sums the
// forward pass makes after W_o and W_down (kernels/cuda/nccl_comm.h), timed
// at the sizes of a decode step and a prefill chunk, on 2, 4, 8 GPUs, f32 and
// bf16 on the wire, with NCCL's bandwidth figures: algbw = bytes / time,
// busbw = algbw * 2 (n - 1) / n (what nccl-tests reports for all-reduce; the
// largest size gives the machine's ceiling). One line of JSON per case.
//
//   bench_tp [--dim 8192] [--layers 80] [--iters 50] [--max-gpus 8]
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/nccl_comm.h"
#include "util/error.h"

using namespace ckv;

namespace {

// Seconds per all-reduce of n floats on every rank at once (median of 3 runs of iters).
double time_all_reduce(std::vector<std::unique_ptr<Backend>>& b, std::vector<std::unique_ptr<Communicator>>& comms,
                       int64_t n, int iters) {
  const int R = static_cast<int>(b.size());
  std::vector<double> secs(R);
  std::vector<std::thread> th;
  for (int r = 0; r < R; ++r)
    th.emplace_back([&, r] {
      cudaSetDevice(r);
      float* x = static_cast<float*>(b[r]->alloc(sizeof(float) * n, "the all-reduce buffer"));
      b[r]->fill(x, n, 1.0f / (r + 1));
      for (int i = 0; i < 5; ++i) comms[r]->all_reduce_sum(x, n);
      std::vector<double> runs;
      for (int k = 0; k < 3; ++k) {
        comms[r]->barrier();
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < iters; ++i) comms[r]->all_reduce_sum(x, n);
        b[r]->sync();
        runs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters);
      }
      std::sort(runs.begin(), runs.end());
      secs[r] = runs[1];
      b[r]->free(x);
    });
  for (auto& t : th) t.join();
  return *std::max_element(secs.begin(), secs.end());
}

}  // namespace

int main(int argc, char** argv) {
  int dim = 8192, layers = 80, iters = 50, max_gpus = 8;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string f = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (f == "--dim") dim = v;
    else if (f == "--layers") layers = v;
    else if (f == "--iters") iters = v;
    else if (f == "--max-gpus") max_gpus = v;
    else {
      std::fprintf(stderr, "unknown flag %s\n", f.c_str());
      return 2;
    }
  }
  try {
    const int have = cuda_device_count();
    std::string why;
    if (have < 2) {
      std::printf("skipped: %d GPUs\n", have);
      return 0;
    }
    if (!nccl_available(&why)) throw Error(why);
    struct Size {
      const char* what;
      int64_t rows;
    };
    const Size sizes[] = {{"decode b1", 1}, {"decode b8", 8}, {"decode b32", 32}, {"prefill chunk 4096", 4096},
                          {"ceiling 8192 rows", 8192}};
    for (int n = 2; n <= std::min(have, max_gpus); n *= 2) {
      std::vector<std::unique_ptr<Backend>> b;
      for (int r = 0; r < n; ++r) b.push_back(make_cuda_backend(CudaOptions{r, 0}));
      for (const char* mode : {"f32", "bf16"}) {
        setenv("CKV_TP_REDUCE", mode, 1);
        std::vector<Backend*> bp;
        for (auto& x : b) bp.push_back(x.get());
        auto comms = make_nccl_comms(bp);
        for (const Size& s : sizes) {
          const int64_t floats = s.rows * dim;
          const double t = time_all_reduce(b, comms, floats, s.rows >= 4096 ? std::max(5, iters / 5) : iters);
          const double bytes = double(floats) * (std::strcmp(mode, "bf16") == 0 ? 2 : 4);
          const double alg = bytes / t / 1e9, bus = alg * 2.0 * (n - 1) / n;
          std::printf(
              "{\"gpus\": %d, \"wire\": \"%s\", \"case\": \"%s\", \"floats\": %lld, \"us\": %.2f, \"algbw_gbs\": %.1f, "
              "\"busbw_gbs\": %.1f, \"per_step_ms\": %.3f}\n",
              n, mode, s.what, static_cast<long long>(floats), t * 1e6, alg, bus, 2.0 * layers * t * 1e3);
          std::fflush(stdout);
        }
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_tp: %s\n", e.what());
    return 1;
  }
  return 0;
}
