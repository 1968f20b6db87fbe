// Chat templates by family. The Jinja text only identifies the family and
// supplies its literal defaults (ChatML's default system message, Llama 3.1's
// date); rendering is plain code that reproduces the template's output.
#include "tokenizer/chat_template.h"

#include "util/error.h"

namespace ckv {
namespace {

const char* const kFamilies = "chatml, llama3, llama2, mistral";

std::string strip(const std::string& s) {  // Jinja's trim / Python's strip()
  const char* ws = " \t\n\r\v\f";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

// Jinja string-literal escapes as they appear in template text.
std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      char c = s[++i];
      out += c == 'n' ? '\n' : c == 't' ? '\t' : c;
    } else {
      out += s[i];
    }
  }
  return out;
}

// The literal system message a ChatML template prints when the conversation
// has none: text inside one string literal between "<|im_start|>system\n" and
// "<|im_end|>". Literals that continue with an expression are not defaults.
std::string chatml_default_system(const std::string& t) {
  const std::string head = "<|im_start|>system";
  for (size_t p = t.find(head); p != std::string::npos; p = t.find(head, p + 1)) {
    size_t q = p + head.size();
    if (t.compare(q, 1, "\n") == 0) q += 1;
    else if (t.compare(q, 2, "\\n") == 0) q += 2;
    else continue;
    size_t end = t.find("<|im_end|>", q);
    if (end == std::string::npos || end == q) continue;
    std::string body = t.substr(q, end - q);
    if (body.find_first_of("'\"{}") != std::string::npos) continue;
    return unescape(body);
  }
  return "";
}

// Llama 3.1's default date ("26 Jul 2024") from `set date_string = "..."`.
std::string llama31_preamble(const std::string& t) {
  if (t.find("Cutting Knowledge Date: December 2023") == std::string::npos) return "";
  std::string date = "26 Jul 2024";
  size_t p = t.find("date_string = \"");
  if (p != std::string::npos) {
    p += 15;
    size_t e = t.find('"', p);
    if (e != std::string::npos) date = t.substr(p, e - p);
  }
  return "Cutting Knowledge Date: December 2023\nToday Date: " + date + "\n\n";
}

std::string render_chatml(const ChatTemplate& ct, const std::vector<ChatMessage>& msgs, bool gen, size_t& ue) {
  std::string out;
  if (!ct.default_system.empty() && (msgs.empty() || msgs[0].role != "system") && !msgs.empty())
    out += "<|im_start|>system\n" + ct.default_system + "<|im_end|>\n";
  for (const auto& m : msgs) {
    out += "<|im_start|>" + m.role + "\n" + m.content;
    if (m.role == "user") ue = out.size();
    out += "<|im_end|>\n";
  }
  if (gen) out += "<|im_start|>assistant\n";
  return out;
}

std::string render_llama3(const ChatTemplate& ct, const std::vector<ChatMessage>& msgs, bool gen, size_t& ue) {
  std::string out = ct.bos_text;
  auto turn = [&](const std::string& role, const std::string& text) {
    std::string t = "<|start_header_id|>" + role + "<|end_header_id|>\n\n" + text;
    if (role == "user") ue = out.size() + t.size();
    return t + "<|eot_id|>";
  };
  size_t first = 0;
  if (!ct.system_preamble.empty()) {
    // Llama 3.1 always opens with a system turn.
    std::string sys;
    if (!msgs.empty() && msgs[0].role == "system") {
      sys = strip(msgs[0].content);
      first = 1;
    }
    out += turn("system", ct.system_preamble + sys);
  }
  for (size_t i = first; i < msgs.size(); ++i) out += turn(msgs[i].role, strip(msgs[i].content));
  if (gen) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

std::string render_llama2(const ChatTemplate& ct, const std::vector<ChatMessage>& msgs, size_t& ue) {
  std::string out, system;
  size_t first = 0;
  if (!msgs.empty() && msgs[0].role == "system") {
    system = msgs[0].content;
    first = 1;
  }
  for (size_t i = first; i < msgs.size(); ++i) {
    std::string content = msgs[i].content;
    if (i == first && first == 1) content = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content;
    if (msgs[i].role == "user") {
      out += ct.bos_text + "[INST] " + strip(content);
      ue = out.size();
      out += " [/INST]";
    }
    else if (msgs[i].role == "assistant") out += " " + strip(content) + " " + ct.eos_text;
  }
  return out;
}

std::string render_mistral(const ChatTemplate& ct, const std::vector<ChatMessage>& msgs, size_t& ue) {
  std::string out = ct.bos_text, system;
  bool system_pending = false;
  for (const auto& m : msgs) {
    if (m.role == "system") {
      system = m.content;  // Mistral has no system turn: it leads the next user turn
      system_pending = true;
    } else if (m.role == "user") {
      std::string content = system_pending ? system + "\n\n" + m.content : m.content;
      system_pending = false;
      out += "[INST] " + content;
      ue = out.size();
      out += " [/INST]";
    } else if (m.role == "assistant") {
      out += m.content + ct.eos_text;
    }
  }
  return out;
}

}  // namespace

std::string ChatTemplate::render(const std::vector<ChatMessage>& msgs, bool add_generation_prompt,
                                 size_t* user_end) const {
  size_t ue = std::string::npos;
  std::string out;
  if (family == "chatml") out = render_chatml(*this, msgs, add_generation_prompt, ue);
  else if (family == "llama3") out = render_llama3(*this, msgs, add_generation_prompt, ue);
  else if (family == "llama2") out = render_llama2(*this, msgs, ue);
  else if (family == "mistral") out = render_mistral(*this, msgs, ue);
  else throw Error("chat template family '" + family + "' is not known (known: " + kFamilies + ")");
  if (user_end) *user_end = ue == std::string::npos ? out.size() : ue;
  return out;
}

ChatTemplate make_chat_template(const std::string& template_text, const std::string& bos_text,
                                const std::string& name, const std::string& source) {
  ChatTemplate ct;
  ct.bos_text = bos_text;
  const std::string& t = template_text;
  if (!name.empty()) {
    if (name != "chatml" && name != "llama3" && name != "llama2" && name != "mistral")
      throw Error("--chat-template '" + name + "' is not known (known: " + std::string(kFamilies) + ")");
    ct.family = name;
  } else if (t.find("<|im_start|>") != std::string::npos) {
    ct.family = "chatml";
  } else if (t.find("<|start_header_id|>") != std::string::npos) {
    ct.family = "llama3";
  } else if (t.find("[INST]") != std::string::npos) {
    ct.family = t.find("<<SYS>>") != std::string::npos ? "llama2" : "mistral";
  } else if (t.empty()) {
    const std::string who = source.empty() ? "the model" : source;
    throw Error(who + " has no chat template; choose one with --chat-template (known: " + std::string(kFamilies) +
                ")");
  } else {
    // The opening of the text helps to see which family it is.
    std::string head = t.substr(0, 60);
    for (char& c : head)
      if (c == '\n' || c == '\r') c = ' ';
    const std::string where = source.empty() ? "in the model" : "in " + source;
    throw Error("unrecognised chat template " + where + " (it starts \"" + head + (t.size() > 60 ? "..." : "") +
                "\"); choose one with --chat-template (known: " + std::string(kFamilies) + ")");
  }
  // Defaults come from the template text only when it is of that family.
  if (ct.family == "chatml") ct.default_system = chatml_default_system(t);
  if (ct.family == "llama3") ct.system_preamble = llama31_preamble(t);
  return ct;
}

}  // namespace ckv
