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
#include "tp_test_util.h"

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
  const Profile prof = test::spread_profile(c, {0.1, 0.3, 0.2, 0.25, 0.15});
  const auto prompt = test::pseudo_tokens(240, c.vocab_size, 11);
  for (const char* method : {"full", "snapkv", "adakv", "compresskv", "adacompresskv"}) {
    SessionOptions one = on_gpus(1);
    one.method = method;
    one.press.budget = 48;
    one.profile = &prof;
    std::vector<KeptPositions> want;
    const auto ref = test::session_logits(*m, one, prompt, 4, &want);
    for (int tp : {2, 4}) {
      if (cuda_device_count() < tp) continue;
      SessionOptions so = one;
      so.tp = tp;
      so.make_rank_backend = on_gpus(tp).make_rank_backend;
      std::vector<KeptPositions> got;
      const auto lg = test::session_logits(*m, so, prompt, 4, &got);
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
  const auto prompt = test::pseudo_tokens(300, 1000, 5);
  const auto ref = test::session_logits(*m, on_gpus(1), prompt, 3);
  for (int tp : {2, 4}) {
    if (cuda_device_count() < tp) continue;
    EXPECT_LE(rel_err(test::session_logits(*m, on_gpus(tp), prompt, 3), ref), 2e-3) << "tp " << tp;
  }
}

}  // namespace
}  // namespace ckv
