// A GGUF file as a model: the loader (hyperparameters, tensors, tokenizer
// metadata, shape checks), the tokenizer it builds, and one forward step
// (Session constructor, prefill, decode) when the model is tiny.
#include "fuzz_util.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ckv::fuzz::init_threads();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4 || std::string_view(reinterpret_cast<const char*>(data), 4) != "GGUF") return 0;  // llama2.c's target
  const std::string path = ckv::fuzz::put_file("model.gguf", {reinterpret_cast<const char*>(data), size});
  try {
    auto m = ckv::load_model(path);
    ckv::fuzz::tokenize_some(m->vocab);
    ckv::fuzz::forward_step(*m);
  } catch (const ckv::Error& e) {
    ckv::fuzz::refused(e);
  }
  return 0;
}
