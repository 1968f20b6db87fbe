#include "cli/common.h"

#include <omp.h>

#include <cblas.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "profile/shipped.h"
#include "util/error.h"

namespace ckv::cli {

void add_model_args(CLI::App* app, ModelArgs& a) {
  app->add_option("-m,--model", a.model, "model: GGUF file, safetensors directory or llama2.c .bin")->required();
  app->add_option("--tokenizer", a.tokenizer, "llama2.c tokenizer file (default: tok512.bin/tokenizer.bin beside the model)");
  app->add_option("-t,--threads", a.threads, "CPU threads (default: all cores)")->check(CLI::NonNegativeNumber);
}

std::unique_ptr<Model> load(const ModelArgs& a) {
  int t = a.threads > 0 ? a.threads : static_cast<int>(std::thread::hardware_concurrency());
  omp_set_num_threads(t > 0 ? t : 1);
  // Our kernels parallelise themselves; BLAS runs single-threaded inside them.
  openblas_set_num_threads(1);
  LoadOptions opt;
  opt.tokenizer_path = a.tokenizer;
  return load_model(a.model, opt);
}

std::unique_ptr<Tokenizer> tokenizer_for(const Model& m) {
  if (m.vocab.tokens.empty())
    throw Error(m.path + ": the model has no tokenizer (llama2.c: put tok512.bin or tokenizer.bin beside it, or pass --tokenizer FILE)");
  return make_tokenizer(m.vocab);
}

void add_session_args(CLI::App* app, SessionArgs& a) {
  app->add_option("--kv-method", a.method,
                  "KV compression: full, streamingllm, snapkv, pyramidkv, adakv, compresskv, adacompresskv");
  app->add_option("--kv-select", a.select,
                  "token selection, with --kv-alloc instead of --kv-method: window (SnapKV), srh (CompressKV), "
                  "sinks (StreamingLLM)");
  app->add_option("--kv-alloc", a.alloc,
                  "budget allocation, with --kv-select: uniform, pyramid, error-aware, ada, ada-error-aware");
  app->add_option("--kv-budget", a.budget, "average tokens kept per layer and KV head, window included");
  app->add_option("--kv-window", a.window, "observation window (default 8)");
  app->add_option("--kv-kernel", a.kernel, "pooling kernel (default 5)");
  app->add_option("--kv-pool", a.pool, "pooling: avg or max (default avg)");
  app->add_option("--kv-srh", a.srh, "semantic retrieval heads per layer (compresskv, default 4)");
  app->add_option("--kv-profile", a.profile, "model profile JSON (compresskv; default: a shipped profile of profiles/ matching the model)");
  app->add_option("--kv-sinks", a.sinks, "attention sinks kept (streamingllm, default 4)");
  app->add_option("--kv-alpha", a.alpha, "Ada-KV uniform share (default 0.2)");
  app->add_option("--kv-beta", a.beta, "PyramidKV beta (default 20)");
  app->add_option("--kv-dump-kept", a.dump_kept, "write the kept prompt positions as JSON");
  app->add_option("--kv-type", a.kv_type,
                  "cache rows: f32 (default, exact) or f16 (half the KV memory and traffic, as llama.cpp's default; "
                  "rounds keys and values to 11 bits)");
  app->add_option("--matmul", a.matmul,
                  "exact (default: fp32 on exactly dequantised weights, matches the references) or q8 "
                  "(decoding with 8-bit activations and integer dot products, as llama.cpp; ~1.25x faster "
                  "decoding, logits move by up to ~0.5)");
}

SessionOptions session_options(const SessionArgs& a, const Model& m, Profile& prof) {
  SessionOptions o;
  o.method = a.method;
  o.select = a.select;
  o.alloc = a.alloc;
  if (!a.select.empty() || !a.alloc.empty()) {
    if (a.select.empty() || a.alloc.empty()) throw Error("--kv-select and --kv-alloc go together: give both");
    if (a.method != "full") throw Error("give either --kv-method or --kv-select/--kv-alloc, not both");
  }
  o.press.budget = a.budget;
  o.press.window = a.window;
  o.press.kernel = a.kernel;
  if (a.pool == "avg") o.press.pool = Pool::Avg;
  else if (a.pool == "max") o.press.pool = Pool::Max;
  else throw Error("--kv-pool must be avg or max, got '" + a.pool + "'");
  o.press.n_srh = a.srh;
  o.press.n_sinks = a.sinks;
  o.press.alpha = a.alpha;
  o.press.beta = a.beta;
  o.kv_type = parse_kv_type(a.kv_type);
  if (a.matmul == "exact") o.q8_matmul = false;
  else if (a.matmul == "q8") o.q8_matmul = true;
  else throw Error("--matmul must be exact or q8, got '" + a.matmul + "'");
  if ((a.method != "full" || !a.select.empty()) && a.budget <= 0)
    throw Error((a.select.empty() ? "--kv-method " + a.method : "--kv-select " + a.select) +
                " needs --kv-budget N (average tokens kept per layer)");
  std::string profile = a.profile;
  if (profile.empty() && profile_needed(a.method, a.select, a.alloc)) {
    profile = shipped_profile_for(m);
    if (!profile.empty())
      std::fprintf(stderr, "using the shipped profile %s (it matches the model's shape and fingerprint)\n",
                   profile.c_str());
  }
  if (!profile.empty()) {
    prof = Profile::load(profile);
    const ModelConfig& c = m.config;
    std::string warn = prof.check_model(c.arch, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, m.fingerprint());
    if (!warn.empty()) std::fprintf(stderr, "warning: %s\n", warn.c_str());
    o.profile = &prof;
  }
  return o;
}

bool profile_needed(const std::string& method, const std::string& select, const std::string& alloc) {
  return method == "compresskv" || method == "adacompresskv" || select == "srh" ||
         alloc.find("error-aware") != std::string::npos;
}

std::string shipped_profile_for(const Model& m) {
  std::vector<std::string> dirs;
  std::error_code ec;
  // Beside an installed binary (bin/../share/compresskv/profiles), then the source tree's.
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    dirs.push_back((exe.parent_path().parent_path() / "share" / "compresskv" / "profiles").string());
    dirs.push_back((exe.parent_path().parent_path() / "profiles").string());
  }
#ifdef CKV_PROFILE_DIR
  dirs.push_back(CKV_PROFILE_DIR);
#endif
  const ModelConfig& c = m.config;
  return find_shipped_profile(dirs, c.arch, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, m.fingerprint());
}

void dump_kept(const std::string& path, const Session& s, int64_t prompt_tokens) {
  nlohmann::json layers = nlohmann::json::array();
  if (s.kept().empty()) {
    // No compressing prefill happened: every head keeps the whole prompt.
    std::vector<int32_t> all(prompt_tokens);
    for (int64_t i = 0; i < prompt_tokens; ++i) all[i] = static_cast<int32_t>(i);
    for (int l = 0; l < s.kv().n_layers(); ++l) layers.push_back(std::vector<std::vector<int32_t>>(s.kv().n_kv_heads(), all));
  } else {
    for (const auto& kl : s.kept()) layers.push_back(kl);
  }
  nlohmann::json j = {{"prompt_tokens", prompt_tokens}, {"layers", layers}};
  std::ofstream f(path);
  if (!f) throw Error("--kv-dump-kept: cannot write " + path);
  f << j.dump() << "\n";
}

std::string prompt_text(const std::string& text, const std::string& file) {
  if (!text.empty() && !file.empty()) throw Error("give either -p TEXT or -f FILE, not both");
  if (!file.empty()) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(file, ec)) throw Error(file + ": not a readable regular file (-f)");
    std::ifstream f(file, std::ios::binary);
    if (!f) throw Error(file + ": cannot read the prompt file");
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  return text;
}

std::string human_bytes(double b) {
  const char* u[] = {"B", "KiB", "MiB", "GiB"};
  int i = 0;
  while (b >= 1024 && i < 3) b /= 1024, ++i;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f %s", b, u[i]);
  return buf;
}

static size_t status_kb(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  size_t n = std::strlen(key);
  while (std::getline(f, line))
    if (line.compare(0, n, key) == 0) return std::stoull(line.substr(n + 1)) * 1024;
  return 0;
}
size_t rss_now() { return status_kb("VmRSS"); }
size_t rss_peak() { return status_kb("VmHWM"); }

}  // namespace ckv::cli
