// Chat templates. The model's own template text decides the family; each
// family is rendered by code that reproduces the template's output exactly.
#pragma once
#include <string>
#include <vector>

namespace ckv {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

struct ChatTemplate {
  // "chatml", "llama3", "mistral", "llama2", ...
  std::string family;
  // Default system message the template inserts when the conversation has
  // none (SmolLM2, Qwen2.5), empty if it inserts none.
  std::string default_system;
  std::string bos_text;  // text of the BOS token, for templates that print it
  std::string eos_text = "</s>";  // llama2/mistral: printed after assistant turns
  // llama3 with Llama 3.1's always-present system turn ("Cutting Knowledge
  // Date: ...\n\n" before the system content); empty for plain Llama 3.
  std::string system_preamble;

  // With user_end, *user_end gets the byte offset in the result where the
  // final user message's content ends (what follows is the template's suffix:
  // --kv-window-at user); the result's size when there is no user message.
  std::string render(const std::vector<ChatMessage>& msgs, bool add_generation_prompt,
                     size_t* user_end = nullptr) const;
};

// Detects the family from the template text (or takes `name` when given,
// e.g. from --chat-template). Unknown: ckv::Error that names --chat-template
// and the known families, and `source` (where the template text came from,
// e.g. "model.gguf (tokenizer.chat_template)") when given.
ChatTemplate make_chat_template(const std::string& template_text, const std::string& bos_text,
                                const std::string& name = "", const std::string& source = "");

}  // namespace ckv
