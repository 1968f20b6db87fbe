// Chat templates: SmolLM2's rendering against transformers' golden output,
// family detection and default system messages from template text, errors.
#include <gtest/gtest.h>

#include "model/gguf.h"
#include "test_util.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/gguf_vocab.h"
#include "util/error.h"

using namespace ckv;
using ckv::test::read_json;
using ckv::test::shared_dir;

namespace {

std::vector<ChatMessage> messages_of(const nlohmann::json& j) {
  std::vector<ChatMessage> m;
  for (const auto& x : j) m.push_back({x["role"].get<std::string>(), x["content"].get<std::string>()});
  return m;
}

// The relevant part of Qwen2.5-Instruct's template (tools branch shortened).
const char* kQwen25 =
    "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n    {%- else %}\n"
    "        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n"
    "{%- else %}\n    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n"
    "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
    "assistant.<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}\n{%- for message in messages %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n";

const char* kPlainChatml =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const char* kLlama3 =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

}  // namespace

TEST(ChatTemplate, SmolLM2Golden) {
  CKV_REQUIRE_SHARED();
  GGUFFile f(shared_dir() + "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
  TokenizerData d = read_gguf_tokenizer(f);
  ChatTemplate ct = make_chat_template(d.chat_template, d.tokens[d.bos]);
  EXPECT_EQ(ct.family, "chatml");
  EXPECT_EQ(ct.default_system, "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  auto golden = read_json(shared_dir() + "/golden/smollm2/chat_template.json");
  ASSERT_FALSE(golden.empty());
  for (const auto& c : golden) {
    auto msgs = messages_of(c["messages"]);
    EXPECT_EQ(ct.render(msgs, true), c["rendered"].get<std::string>());
    EXPECT_EQ(ct.render(msgs, false), c["rendered_no_generation_prompt"].get<std::string>());
  }
  // The chat golden prompt is this template applied to one user question.
  auto chat = read_json(shared_dir() + "/golden/smollm2/chat.json");
  EXPECT_EQ(ct.render({{"user", "What is the capital of France?"}}, true), chat["prompt"].get<std::string>());
}

TEST(ChatTemplate, Qwen25DefaultSystem) {
  ChatTemplate ct = make_chat_template(kQwen25, "");
  EXPECT_EQ(ct.family, "chatml");
  EXPECT_EQ(ct.default_system, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
  EXPECT_EQ(ct.render({{"user", "Hi"}}, true),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(ct.render({{"system", "Be brief."}, {"user", "Hi"}}, false),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatTemplate, ChatmlWithoutDefaultSystem) {
  ChatTemplate ct = make_chat_template(kPlainChatml, "");
  EXPECT_EQ(ct.family, "chatml");
  EXPECT_EQ(ct.default_system, "");
  EXPECT_EQ(ct.render({{"user", "Hi"}}, true), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplate, Llama3) {
  ChatTemplate ct = make_chat_template(kLlama3, "<|begin_of_text|>");
  EXPECT_EQ(ct.family, "llama3");
  EXPECT_EQ(ct.render({{"system", " Be brief. "}, {"user", "Hi\n"}}, true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, Llama31AlwaysHasSystemTurn) {
  std::string t = std::string("{%- if not date_string is defined %}{%- set date_string = \"26 Jul 2024\" %}{%- endif %}"
                              "{{- \"Cutting Knowledge Date: December 2023\\n\" }}") + kLlama3;
  ChatTemplate ct = make_chat_template(t, "<|begin_of_text|>");
  EXPECT_EQ(ct.render({{"user", "Hi"}}, false),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
}

TEST(ChatTemplate, MistralAndLlama2) {
  ChatTemplate m = make_chat_template("{{ bos_token }}{% for message in messages %}[INST] ... [/INST]{% endfor %}", "<s>");
  EXPECT_EQ(m.family, "mistral");
  EXPECT_EQ(m.render({{"user", "Hi"}, {"assistant", "Hello"}, {"user", "Bye"}}, true),
            "<s>[INST] Hi [/INST]Hello</s>[INST] Bye [/INST]");
  ChatTemplate l = make_chat_template("{{ bos_token + '[INST] ' }}<<SYS>>", "<s>");
  EXPECT_EQ(l.family, "llama2");
  EXPECT_EQ(l.render({{"system", "Sys"}, {"user", "Hi"}, {"assistant", "Hello"}}, true),
            "<s>[INST] <<SYS>>\nSys\n<</SYS>>\n\nHi [/INST] Hello </s>");
}

// Where the final user message's content ends (--kv-window-at user): what
// follows it is exactly each family's suffix.
TEST(ChatTemplate, UserEndOfEveryFamily) {
  auto suffix = [](const ChatTemplate& ct, const std::vector<ChatMessage>& msgs, bool gen) {
    size_t ue = 0;
    const std::string out = ct.render(msgs, gen, &ue);
    EXPECT_EQ(out, ct.render(msgs, gen)) << "user_end changes nothing of the text";
    return out.substr(ue);
  };
  EXPECT_EQ(suffix(make_chat_template(kQwen25, ""), {{"user", "Hi"}}, true), "<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(suffix(make_chat_template(kLlama3, "<|begin_of_text|>"), {{"system", "S"}, {"user", "Hi\n"}}, true),
            "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  ChatTemplate m = make_chat_template("{{ bos_token }}{% for message in messages %}[INST] ... [/INST]{% endfor %}", "<s>");
  EXPECT_EQ(suffix(m, {{"user", "Hi"}, {"assistant", "Hello"}, {"user", "Bye"}}, true), " [/INST]");
  ChatTemplate l = make_chat_template("{{ bos_token + '[INST] ' }}<<SYS>>", "<s>");
  EXPECT_EQ(suffix(l, {{"system", "Sys"}, {"user", "Hi "}}, true), " [/INST]");
  // No user message: nothing follows it.
  EXPECT_EQ(suffix(make_chat_template(kQwen25, ""), {{"system", "S"}}, false), "");
}

TEST(ChatTemplate, UnknownTemplateErrorNamesOption) {
  try {
    make_chat_template("{{ messages | tojson }}", "");
    FAIL() << "no error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("--chat-template"), std::string::npos) << m;
    for (const char* fam : {"chatml", "llama3", "llama2", "mistral"}) EXPECT_NE(m.find(fam), std::string::npos) << m;
  }
  EXPECT_THROW(make_chat_template("", ""), Error);
  EXPECT_THROW(make_chat_template(kPlainChatml, "", "nonsense"), Error);
}

TEST(ChatTemplate, NameForcesFamily) {
  ChatTemplate ct = make_chat_template("{{ messages | tojson }}", "", "chatml");
  EXPECT_EQ(ct.family, "chatml");
  EXPECT_EQ(ct.default_system, "");
  EXPECT_EQ(ct.render({{"user", "Hi"}}, false), "<|im_start|>user\nHi<|im_end|>\n");
}

// Detection errors name where the template text came from.
TEST(ChatTemplate, ErrorsNameTheSource) {
  std::string m = test::error_of([] { make_chat_template("{{ messages | tojson }}", "", "", "m.gguf (tokenizer.chat_template)"); });
  EXPECT_NE(m.find("m.gguf (tokenizer.chat_template)"), std::string::npos) << m;
  EXPECT_NE(m.find("--chat-template"), std::string::npos) << m;
  m = test::error_of([] { make_chat_template("", "", "", "dir/tokenizer_config.json"); });
  EXPECT_NE(m.find("dir/tokenizer_config.json has no chat template"), std::string::npos) << m;
}
