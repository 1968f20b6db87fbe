// config.json of a Hugging Face checkpoint (model/hf_config.cpp).
#include "fuzz_util.h"
#include "model/hf_config.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ckv::fuzz::init_threads();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = ckv::fuzz::put_file("config.json", {reinterpret_cast<const char*>(data), size});
  try {
    ckv::ModelConfig c = ckv::read_hf_config(path);
    // What the reader promises the loader.
    if (c.n_layers <= 0 || c.dim <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 || c.head_dim <= 0 ||
        c.n_heads % c.n_kv_heads != 0 || c.head_dim % 2 != 0)
      __builtin_trap();
  } catch (const ckv::Error& e) {
    ckv::fuzz::refused(e);
  }
  return 0;
}
