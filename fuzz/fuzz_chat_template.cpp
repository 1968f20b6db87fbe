// Chat template detection and rendering (tokenizer/chat_template.cpp).
// Input parts: template text | BOS text | family name (empty: detect) |
// then role, content, role, content, ... of the conversation.
#include "fuzz_util.h"
#include "tokenizer/chat_template.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ckv::fuzz::init_threads();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parts = ckv::fuzz::split(data, size, 3);
  std::vector<ckv::ChatMessage> msgs;
  for (size_t i = 3; i + 1 < parts.size(); i += 2) msgs.push_back({std::string(parts[i]), std::string(parts[i + 1])});
  try {
    ckv::ChatTemplate ct = ckv::make_chat_template(std::string(parts[0]), std::string(parts[1]), std::string(parts[2]));
    std::string with = ct.render(msgs, true), without = ct.render(msgs, false);
    // The generation prompt only ever adds text at the end.
    if (with.compare(0, without.size(), without) != 0) __builtin_trap();
  } catch (const ckv::Error& e) {
    ckv::fuzz::refused(e);
  }
  return 0;
}
