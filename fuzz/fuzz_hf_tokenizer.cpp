// tokenizer.json with tokenizer_config.json, generation_config.json and
// chat_template.jinja beside it (tokenizer/hf_tokenizer.cpp), then the
// tokenizer it describes and the chat template detection.
// Input parts: tokenizer.json | tokenizer_config.json | generation_config.json
// | chat_template.jinja (an empty part is a missing file).
#include "fuzz_util.h"
#include "tokenizer/chat_template.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ckv::fuzz::init_threads();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parts = ckv::fuzz::split(data, size, 4);
  const std::string dir = ckv::fuzz::fresh_dir("tok");
  const char* names[] = {"tokenizer.json", "tokenizer_config.json", "generation_config.json", "chat_template.jinja"};
  for (int i = 0; i < 4; ++i)
    if (i == 0 || !parts[i].empty()) ckv::fuzz::put_file(std::string("tok/") + names[i], parts[i]);
  try {
    ckv::TokenizerData d = ckv::read_hf_tokenizer(dir);
    ckv::fuzz::tokenize_some(d);
    if (!d.chat_template.empty()) {
      auto ct = ckv::make_chat_template(d.chat_template, d.bos >= 0 ? d.tokens[d.bos] : "");
      (void)ct.render({{"user", "hi"}}, true);
    }
  } catch (const ckv::Error& e) {
    ckv::fuzz::refused(e);
  }
  return 0;
}
