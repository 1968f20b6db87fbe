// A Hugging Face checkpoint directory: config.json, then either one
// model.safetensors or model.safetensors.index.json and its shards, then the
// loader's tensor checks and one forward step on a tiny model.
// Input parts (fuzz_util.h split): config.json | index (empty: single file) |
// model.safetensors or the shards named model-0000N.safetensors, in order.
#include "fuzz_util.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ckv::fuzz::init_threads();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parts = ckv::fuzz::split(data, size, 3);
  if (parts.size() > 8) return 0;
  const std::string dir = ckv::fuzz::fresh_dir("ckpt");
  ckv::fuzz::put_file("ckpt/config.json", parts[0]);
  if (parts[1].empty()) {
    ckv::fuzz::put_file("ckpt/model.safetensors", parts[2]);
  } else {
    ckv::fuzz::put_file("ckpt/model.safetensors.index.json", parts[1]);
    for (size_t i = 2; i < parts.size(); ++i)
      ckv::fuzz::put_file("ckpt/model-0000" + std::to_string(i - 1) + ".safetensors", parts[i]);
  }
  try {
    auto m = ckv::load_model(dir);
    ckv::fuzz::forward_step(*m);
  } catch (const ckv::Error& e) {
    ckv::fuzz::refused(e);
  }
  return 0;
}
