// Tensor parallelism on CUDA devices through NCCL (engine/tp.h,
// kernels/cuda/nccl_comm.h): --tp 2 and 4 against --tp 1 on the same GPUs --
// logits within bf16 reordering, kept positions of every scoring method
// equal. Needs two or more GPUs and libnccl.so.2; skips (saying why) otherwise.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "engine/session.h"
#include "engine/tp.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/nccl_comm.h"
#include "profile/profile.h"
#include "test_util.h"

namespace ckv {
namespace {

#define REQUIRE_GPUS(n)                                                                          \
  do {                                                                                           \
    const int have_ = cuda_device_count();                                                       \
    if (have_ < (n)) GTEST_SKIP() << "needs " << (n) << " CUDA devices, found " << have_;        \
    std::string why_;                                                                            \
    if (!nccl_available(&why_)) GTEST_SKIP() << "NCCL unavailable: " << why_;                   \
  } while (0)

SessionOptions on_gpus(int tp) {
  SessionOptions so;
  so.tp = tp;
  so.make_backend = [] { return make_cuda_backend(CudaOptions{0, 0}); };
  so.make_rank_backend = [](int r) { return make_cuda_backend(CudaOptions{r, 0}); };
  return so;
}

std::vector<int> tokens(int n, int vocab, uint32_t seed) {
  std::vector<int> t(n);
  for (int& x : t) {
    seed = seed * 1664525u + 1013904223u;
    x = static_cast<int>((seed >> 8) % vocab);
  }
  return t;
}

// Every position's logits of a prompt, then gen decoded tokens'.
std::vector<float> run(const Model& m, const SessionOptions& so, const std::vector<int>& prompt, int gen,
                       std::vector<KeptPositions>* kept = nullptr) {
  const int V = m.config.vocab_size;
  Session s(m, so);
  std::vector<float> all, last(V);
  s.prefill(prompt, last.data(), [&](int64_t, const float* lg) { all.insert(all.end(), lg, lg + V); });
  if (kept) *kept = s.kept();
  for (int i = 0; i < gen; ++i) {
    s.decode((i * 37) % V, last.data());
    all.insert(all.end(), last.begin(), last.end());
  }
  return all;
}

// Max |a - b| over max |b|: bf16 weights, fp32 sums in another order.
double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, s = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(double(a[i]) - b[i])), s = std::max(s, std::fabs(double(b[i])));
  return d / std::max(s, 1e-30);
}

TEST(CudaTp, Stories260KLogitsAndKeptPositionsMatchOneGpu) {
  REQUIRE_GPUS(2);
  auto m = load_model(test::source_dir() + "/models/stories260k/stories260K.bin");
  const ModelConfig& c = m->config;
  Profile prof;
  prof.arch = c.arch, prof.n_layers = c.n_layers, prof.n_heads = c.n_heads, prof.n_kv_heads = c.n_kv_heads;
  prof.head_dim = c.head_dim;
  for (int l = 0; l < c.n_layers; ++l) {
    std::vector<int> r(c.n_heads);
    for (int h = 0; h < c.n_heads; ++h) r[h] = (h * 5 + l * 3) % c.n_heads;
    prof.srh_ranking.push_back(r);
  }
  prof.layer_scores = {0.1, 0.3, 0.2, 0.25, 0.15};
  const auto prompt = tokens(240, c.vocab_size, 11);
  for (const char* method : {"full", "snapkv", "adakv", "compresskv", "adacompresskv"}) {
    SessionOptions one = on_gpus(1);
    one.method = method;
    one.press.budget = 48;
    one.profile = &prof;
    std::vector<KeptPositions> want;
    const auto ref = run(*m, one, prompt, 4, &want);
    for (int tp : {2, 4}) {
      if (cuda_device_count() < tp) continue;
      SessionOptions so = one;
      so.tp = tp;
      so.make_rank_backend = on_gpus(tp).make_rank_backend;
      std::vector<KeptPositions> got;
      const auto lg = run(*m, so, prompt, 4, &got);
      EXPECT_LE(rel_err(lg, ref), 2e-3) << method << " tp " << tp;
      EXPECT_EQ(got, want) << method << " tp " << tp;
    }
  }
}

TEST(CudaTp, RandomWeightSlicesEqualTheUnsplitRandomModel) {
  REQUIRE_GPUS(2);
  test::TmpDir dir("cuda_tp");
  const std::string cfg = dir / "config.json";
  test::write_file(cfg, R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256,
    "intermediate_size": 688, "num_attention_heads": 8, "num_key_value_heads": 4, "num_hidden_layers": 2,
    "vocab_size": 1000, "max_position_embeddings": 1024, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "tie_word_embeddings": false})");
  auto m = make_random_model(cfg);
  const auto prompt = tokens(300, 1000, 5);
  const auto ref = run(*m, on_gpus(1), prompt, 3);
  for (int tp : {2, 4}) {
    if (cuda_device_count() < tp) continue;
    EXPECT_LE(rel_err(run(*m, on_gpus(tp), prompt, 3), ref), 2e-3) << "tp " << tp;
  }
}

}  // namespace
}  // namespace ckv
