// A llama2.c checkpoint (model/llama2c.cpp), with tok512.bin beside it so that
// 512-token vocabularies also load their tokenizer, and one forward step on a
// tiny model.
#include "fuzz_util.h"

static bool have_tok = false;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ckv::fuzz::init_threads();
  std::error_code ec;
  have_tok = std::filesystem::copy_file(CKV_SOURCE_DIR "/models/stories260k/tok512.bin",
                                        ckv::fuzz::scratch() + "/tok512.bin", ec);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size >= 4 && std::string_view(reinterpret_cast<const char*>(data), 4) == "GGUF") return 0;  // GGUF's target
  const std::string path = ckv::fuzz::put_file("model.bin", {reinterpret_cast<const char*>(data), size});
  try {
    auto m = ckv::load_model(path);
    ckv::fuzz::tokenize_some(m->vocab);
    ckv::fuzz::forward_step(*m);
  } catch (const ckv::Error& e) {
    ckv::fuzz::refused(e);
  }
  return 0;
}
