// The model profile JSON (profile/profile.cpp): read, check against a model
// shape, write and read back.
#include "fuzz_util.h"
#include "profile/profile.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ckv::fuzz::init_threads();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = ckv::fuzz::put_file("profile.json", {reinterpret_cast<const char*>(data), size});
  try {
    ckv::Profile p = ckv::Profile::load(path);
    try {
      (void)p.check_model("llama", p.n_layers, p.n_heads, p.n_kv_heads, p.head_dim, "0123");
      (void)p.check_model("llama", 32, 32, 8, 128, "");
    } catch (const ckv::Error&) {
    }
    // What was accepted saves and reads back the same.
    const std::string again = ckv::fuzz::scratch() + "/again.json";
    p.save(again);
    ckv::Profile q = ckv::Profile::load(again);
    if (q.srh_ranking != p.srh_ranking || q.layer_scores.size() != p.layer_scores.size()) __builtin_trap();
  } catch (const ckv::Error& e) {
    ckv::fuzz::refused(e);
  }
  return 0;
}
