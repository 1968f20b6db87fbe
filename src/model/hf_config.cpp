#include "model/hf_config.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "util/error.h"

namespace ckv {

using nlohmann::json;

namespace {

// Limit on any size field: larger values are corrupt, and keeping them well
// inside int avoids overflow in the products taken later.
constexpr int64_t kMaxDim = int64_t(1) << 30;

// Field of obj, or nullptr when absent or null (HF writes null for "unset").
const json* field(const json& obj, const std::string& key) {
  auto it = obj.find(key);
  return (it == obj.end() || it->is_null()) ? nullptr : &*it;
}

int get_int(const json& obj, const std::string& key, const std::string& where, const std::string& path,
            const int* dflt = nullptr) {
  const json* v = field(obj, key);
  if (!v) {
    if (dflt) return *dflt;
    throw file_error(path, "missing field '" + where + key + "'");
  }
  if (!v->is_number_integer() || v->get<int64_t>() <= 0 || v->get<int64_t>() > kMaxDim)
    throw file_error(path, "field '" + where + key + "' must be a positive integer, found " + v->dump());
  return static_cast<int>(v->get<int64_t>());
}

double get_num(const json& obj, const std::string& key, const std::string& where, const std::string& path,
               const double* dflt = nullptr) {
  const json* v = field(obj, key);
  if (!v) {
    if (dflt) return *dflt;
    throw file_error(path, "missing field '" + where + key + "'");
  }
  if (!v->is_number() || !(v->get<double>() > 0) || !std::isfinite(v->get<double>()))
    throw file_error(path, "field '" + where + key + "' must be a positive number, found " + v->dump());
  return v->get<double>();
}

bool get_bool(const json& obj, const std::string& key, bool dflt, const std::string& path) {
  const json* v = field(obj, key);
  if (!v) return dflt;
  if (!v->is_boolean()) throw file_error(path, "field '" + key + "' must be true or false, found " + v->dump());
  return v->get<bool>();
}

// model_type, else the first architectures entry, mapped to our names.
std::string detect_arch(const json& j, const std::string& path) {
  static const std::pair<const char*, const char*> kClasses[] = {{"LlamaForCausalLM", "llama"},
                                                                 {"MistralForCausalLM", "mistral"},
                                                                 {"Qwen2ForCausalLM", "qwen2"},
                                                                 {"Qwen3ForCausalLM", "qwen3"}};
  std::string cls;
  if (const json* a = field(j, "architectures"); a && a->is_array() && !a->empty() && (*a)[0].is_string())
    cls = (*a)[0].get<std::string>();
  std::string type;
  if (const json* t = field(j, "model_type"); t && t->is_string()) type = t->get<std::string>();
  if (type.empty())
    for (auto& [c, n] : kClasses)
      if (cls == c) type = n;
  if (type == "llama" || type == "mistral" || type == "qwen2" || type == "qwen3") return type;
  std::string named = !type.empty() ? "'" + type + "'" : cls.empty() ? "(none given)" : "'" + cls + "'";
  throw file_error(path, "unsupported architecture " + named + " (supported: llama, mistral, qwen2, qwen3)");
}

RopeConfig parse_rope(const json& j, const std::string& path) {
  RopeConfig r;
  r.interleaved = false;  // HF checkpoints rotate halves
  const double kTheta = 10000.0;
  double theta = get_num(j, "rope_theta", "", path, &kTheta);

  // Newer layout first; it carries rope_theta inside.
  const json* p = field(j, "rope_parameters");
  std::string where = "rope_parameters.";
  if (!p) {
    p = field(j, "rope_scaling");
    where = "rope_scaling.";
  }
  if (p) {
    if (!p->is_object()) throw file_error(path, "field '" + where.substr(0, where.size() - 1) + "' is not an object");
    theta = get_num(*p, "rope_theta", where, path, &theta);
    const json* t = field(*p, "rope_type");
    if (!t) t = field(*p, "type");
    if (!t || !t->is_string()) throw file_error(path, "field '" + where + "rope_type' is missing or not a string");
    std::string type = t->get<std::string>();
    if (type == "linear") {
      r.factor = static_cast<float>(get_num(*p, "factor", where, path));
    } else if (type == "llama3") {
      r.factor = static_cast<float>(get_num(*p, "factor", where, path));
      r.low_freq_factor = static_cast<float>(get_num(*p, "low_freq_factor", where, path));
      r.high_freq_factor = static_cast<float>(get_num(*p, "high_freq_factor", where, path));
      r.original_context = get_int(*p, "original_max_position_embeddings", where, path);
      if (r.high_freq_factor <= r.low_freq_factor)
        throw file_error(path, "field '" + where + "high_freq_factor' must exceed low_freq_factor");
    } else if (type != "default") {
      throw file_error(path, "unsupported rope type '" + type + "' in '" + where.substr(0, where.size() - 1) +
                                 "' (supported: default, linear, llama3)");
    }
    r.scaling = type;
  }
  r.theta = static_cast<float>(theta);
  return r;
}

}  // namespace

ModelConfig parse_hf_config(const json& j, const std::string& path) {
  if (!j.is_object()) throw file_error(path, "not a JSON object");
  ModelConfig c;
  c.arch = detect_arch(j, path);
  c.dim = get_int(j, "hidden_size", "", path);
  c.hidden_dim = get_int(j, "intermediate_size", "", path);
  c.n_layers = get_int(j, "num_hidden_layers", "", path);
  c.n_heads = get_int(j, "num_attention_heads", "", path);
  c.n_kv_heads = get_int(j, "num_key_value_heads", "", path, &c.n_heads);
  c.vocab_size = get_int(j, "vocab_size", "", path);
  c.context = get_int(j, "max_position_embeddings", "", path);
  // transformers' Qwen3Config defaults head_dim to 128; the others derive it.
  int hd = c.arch == "qwen3" ? 128 : c.dim / c.n_heads;
  if (c.arch != "qwen3" && !field(j, "head_dim") && c.dim % c.n_heads != 0)
    throw file_error(path, "hidden_size " + std::to_string(c.dim) + " is not a multiple of num_attention_heads " +
                               std::to_string(c.n_heads) + " and head_dim is not given");
  c.head_dim = get_int(j, "head_dim", "", path, &hd);
  if (c.n_heads % c.n_kv_heads != 0)
    throw file_error(path, "num_attention_heads " + std::to_string(c.n_heads) +
                               " is not a multiple of num_key_value_heads " + std::to_string(c.n_kv_heads));
  if (c.head_dim % 2 != 0) throw file_error(path, "head_dim " + std::to_string(c.head_dim) + " is odd");
  if (c.head_dim > kMaxHeadDim)
    throw file_error(path, "head_dim " + std::to_string(c.head_dim) + " is out of range: expected at most " +
                               std::to_string(kMaxHeadDim));
  const double kEps = 1e-6;  // transformers' default for all four families
  c.norm_eps = static_cast<float>(get_num(j, "rms_norm_eps", "", path, &kEps));
  c.rope = parse_rope(j, path);
  c.tied_output = get_bool(j, "tie_word_embeddings", false, path);

  // Variants the forward pass does not implement are refused, not ignored.
  if (const json* act = field(j, "hidden_act"); act && !(act->is_string() && act->get<std::string>() == "silu"))
    throw file_error(path, "unsupported hidden_act " + act->dump() + " (only silu)");
  if (get_bool(j, "mlp_bias", false, path)) throw file_error(path, "mlp_bias = true is not supported");
  if (c.arch != "qwen2" && get_bool(j, "attention_bias", false, path))
    throw file_error(path, "attention_bias = true is not supported for " + c.arch);
  c.qkv_bias = c.arch == "qwen2";
  c.qk_norm = c.arch == "qwen3";
  // mistral/qwen2 sliding_window: accepted; the engine attends over the full
  // context, which matches whenever the window is unset or >= the prompt.
  return c;
}

ModelConfig read_hf_config(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw file_error(path, "cannot open");
  std::ostringstream ss;
  ss << f.rdbuf();
  json j;
  try {
    j = json::parse(ss.str());
  } catch (const json::exception& e) {
    throw file_error(path, std::string("not valid JSON: ") + e.what());
  }
  return parse_hf_config(j, path);
}

}  // namespace ckv
