// A llama2.c tokenizer file (tok512.bin's format, tokenizer/llama2c_tokenizer.cpp)
// and the SPM tokenizer built from it. The first two bytes are the model's
// vocabulary size (little-endian), the rest is the file.
#include "fuzz_util.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ckv::fuzz::init_threads();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const int vocab = data[0] | (data[1] << 8);
  const std::string path = ckv::fuzz::put_file("tok.bin", {reinterpret_cast<const char*>(data + 2), size - 2});
  try {
    ckv::TokenizerData d = ckv::read_llama2c_tokenizer(path, vocab);
    if (static_cast<int>(d.tokens.size()) != vocab) __builtin_trap();
    ckv::fuzz::tokenize_some(d);
  } catch (const ckv::Error& e) {
    ckv::fuzz::refused(e);
  }
  return 0;
}
