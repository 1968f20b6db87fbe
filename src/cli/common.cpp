#include "cli/common.h"

#include <omp.h>

#include <cblas.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "kernels/cuda/nccl_comm.h"
#include "profile/shipped.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

namespace ckv::cli {

void warn(const std::string& what) { std::fprintf(stderr, "warning: %s\n", what.c_str()); }

namespace {

// A value as typed, cut short for messages.
std::string shown(const std::string& s) { return "'" + (s.size() <= 24 ? s : s.substr(0, 24) + "...") + "'"; }

std::string num(double x) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", x);
  return b;
}

}  // namespace

CLI::Validator int_range(int64_t lo, int64_t hi, const std::string& note) {
  const std::string range = hi == INT32_MAX || hi == INT64_MAX ? "an integer >= " + std::to_string(lo)
                                                               : "an integer from " + std::to_string(lo) + " to " +
                                                                     std::to_string(hi);
  const std::string tail = note.empty() ? "" : " " + note;
  return CLI::Validator(
      [=](std::string& s) -> std::string {
        errno = 0;
        char* end = nullptr;
        long long v = std::strtoll(s.c_str(), &end, 10);
        if (s.empty() || *end != '\0') return "must be " + range + tail + ", found " + shown(s);
        if (errno == ERANGE || v < lo || v > hi) return "must be " + range + tail + ", found " + shown(s);
        return "";
      },
      range);
}

CLI::Validator real_range(double lo, double hi, bool lo_open, const std::string& note) {
  const std::string range = std::isinf(hi) ? (lo_open ? "a number > " : "a number >= ") + num(lo)
                                           : std::string("in ") + (lo_open ? "(" : "[") + num(lo) + ", " + num(hi) + "]";
  const std::string tail = note.empty() ? "" : " " + note;
  return CLI::Validator(
      [=](std::string& s) -> std::string {
        char* end = nullptr;
        double v = std::strtod(s.c_str(), &end);
        bool in = !s.empty() && *end == '\0' && std::isfinite(v) && (lo_open ? v > lo : v >= lo) && v <= hi;
        return in ? "" : "must be " + range + tail + ", found " + shown(s);
      },
      range);
}

void check_bench_flags(CLI::App* bench) {
  struct Flag {
    const char* name;
    int64_t lo;
    const char* note;
  };
  for (Flag f : {Flag{"-p", 0, "(0 leaves pp out)"}, Flag{"-n", 0, "(0 leaves tg out)"}, Flag{"-d", 0, ""},
                 Flag{"-r", 1, ""}})
    if (CLI::Option* o = bench->get_option_no_throw(f.name)) {
      // Ours replaces the option's own checks (CLI11's print a 300-digit bound).
      for (int i = 0;; ++i) try {
          o->get_validator(i)->active(false);
        } catch (const CLI::OptionNotFound&) {
          break;
        }
      o->check(int_range(f.lo, INT32_MAX, f.note));
    }
}

void check_output_path(const std::string& path, const std::string& flag) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (path.empty()) throw Error(flag + ": empty path");
  if (fs::is_directory(path, ec)) throw Error(flag + " " + path + ": is a directory, expected a file to write");
  fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  if (!fs::is_directory(dir, ec)) throw Error(flag + " " + path + ": the directory " + dir.string() + " does not exist");
  if (access(dir.c_str(), W_OK) != 0)
    throw Error(flag + " " + path + ": cannot write in " + dir.string() + ": " + std::strerror(errno));
  if (fs::exists(path, ec) && access(path.c_str(), W_OK) != 0)
    throw Error(flag + " " + path + ": cannot write: " + std::strerror(errno));
}

void add_model_args(CLI::App* app, ModelArgs& a) {
  app->add_option("-m,--model", a.model, "model: GGUF file, safetensors directory or llama2.c .bin");
  app->add_option("--tokenizer", a.tokenizer, "llama2.c tokenizer file (default: tok512.bin/tokenizer.bin beside the model)");
  app->add_option("-t,--threads", a.threads, "CPU threads (0: all cores)")->check(int_range(0, 4096, "(0: all cores)"));
  app->add_option("--device", a.device, "cpu or cuda (default: cuda when this build has CUDA and a GPU is present)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
}

void add_tp_arg(CLI::App* app, ModelArgs& a) {
  app->add_option("--tp", a.tp,
                  "tensor parallelism: split the model's heads and FFN over N devices (CUDA: GPUs 0..N-1 through "
                  "NCCL; CPU: N threads of this process); N must divide the KV heads")
      ->check(int_range(1, 1024));
}

std::function<std::unique_ptr<Backend>(int rank)> rank_backend_factory(const ModelArgs& a, bool q8) {
  if (device_of(a) == "cuda") {
    if (a.tp > 1) {
      const int n = cuda_device_count();
      if (n < a.tp)
        throw Error("--tp " + std::to_string(a.tp) + " needs " + std::to_string(a.tp) + " CUDA devices, found " +
                    std::to_string(n));
      std::string why;
      if (!nccl_available(&why)) throw Error("--tp " + std::to_string(a.tp) + " with --device cuda: " + why);
    }
    const uint64_t seed = a.seed;
    return [seed](int rank) { return make_cuda_backend(CudaOptions{rank, seed}); };
  }
  if (!a.random_weights.empty())
    throw Error("--random-weights builds its weights on the GPU: it needs --device cuda");
  return [q8](int) { return make_cpu_backend(q8); };
}

void default_kv_type(SessionArgs& kv, const ModelArgs& m) {
  if (kv.kv_type.empty()) kv.kv_type = device_of(m) == "cuda" ? "f16" : "f32";
}

std::string device_of(const ModelArgs& a) {
  if (!a.device.empty()) return a.device;
  return cuda_available() ? "cuda" : "cpu";
}

std::function<std::unique_ptr<Backend>()> backend_factory(const ModelArgs& a, bool q8) {
  if (device_of(a) == "cuda") {
    if (q8) std::fprintf(stderr, "warning: --matmul q8 applies to the CPU only; CUDA multiplies bf16 weights\n");
    const uint64_t seed = a.seed;
    return [seed] { return make_cuda_backend(CudaOptions{0, seed}); };
  }
  if (!a.random_weights.empty())
    throw Error("--random-weights builds its weights on the GPU: it needs --device cuda");
  return [q8] { return make_cpu_backend(q8); };
}

std::unique_ptr<Model> load(const ModelArgs& a) {
  int t = a.threads > 0 ? a.threads : static_cast<int>(std::thread::hardware_concurrency());
  omp_set_num_threads(t > 0 ? t : 1);
  // Our kernels parallelise themselves; BLAS runs single-threaded inside them.
  openblas_set_num_threads(1);
  if (!a.random_weights.empty()) {
    if (!a.model.empty()) throw Error("give either -m MODEL or --random-weights CONFIG, not both");
    return make_random_model(a.random_weights);
  }
  if (a.model.empty()) throw Error("-m,--model is required: a GGUF file, a safetensors directory or a llama2.c .bin");
  LoadOptions opt;
  opt.tokenizer_path = a.tokenizer;
  auto m = load_model(a.model, opt);
  if (!a.tokenizer.empty() && m->format != "llama2c")
    warn("--tokenizer is only read for llama2.c models; " + m->format + " models carry their own tokenizer (ignored)");
  return m;
}

std::unique_ptr<Tokenizer> tokenizer_for(const Model& m) {
  if (m.vocab.tokens.empty()) {
    // Say what was looked for, by format.
    namespace fs = std::filesystem;
    if (m.format == "safetensors")
      throw file_error((fs::path(m.path) / "tokenizer.json").string(),
                       "not found: this safetensors checkpoint has no tokenizer (tokenizer.json beside config.json)");
    if (m.format == "gguf")
      throw file_error(m.path, "the GGUF file has no tokenizer (no tokenizer.ggml.model metadata)");
    const fs::path dir = fs::path(m.path).parent_path();
    const std::string tok = "tok" + std::to_string(m.config.vocab_size) + ".bin";
    throw file_error(m.path, "no llama2.c tokenizer: looked for " + (dir / tok).string() + " and " +
                                 (dir / "tokenizer.bin").string() + "; pass --tokenizer FILE");
  }
  return make_tokenizer(m.vocab);
}

void add_session_args(CLI::App* app, SessionArgs& a) {
  a.app = app;
  app->add_option("--kv-method", a.method,
                  "KV compression: full, streamingllm, snapkv, pyramidkv, adakv, compresskv, adacompresskv");
  app->add_option("--kv-select", a.select,
                  "token selection, with --kv-alloc instead of --kv-method: window (SnapKV), srh (CompressKV), "
                  "sinks (StreamingLLM)");
  app->add_option("--kv-alloc", a.alloc,
                  "budget allocation, with --kv-select: uniform, pyramid, error-aware, ada, ada-error-aware");
  app->add_option("--kv-budget", a.budget, "average tokens kept per layer and KV head, window included (needed by "
                                           "every method but full)")
      ->check(int_range(1, INT32_MAX));
  app->add_option("--kv-window", a.window, "observation window")->check(int_range(1, INT32_MAX));
  add_window_at_arg(app, a);
  app->add_option("--kv-kernel", a.kernel, "pooling kernel")->check(int_range(1, INT32_MAX));
  app->add_option("--kv-pool", a.pool, "pooling: avg or max");
  app->add_option("--kv-srh", a.srh, "semantic retrieval heads per layer (compresskv)")->check(int_range(1, INT32_MAX));
  app->add_option("--kv-profile", a.profile, "model profile JSON (compresskv; default: a shipped profile of profiles/ matching the model)");
  app->add_option("--kv-sinks", a.sinks, "attention sinks kept (streamingllm)")->check(int_range(0, INT32_MAX));
  app->add_option("--kv-alpha", a.alpha, "Ada-KV uniform share (adakv)")->check(real_range(0, 1));
  app->add_option("--kv-beta", a.beta, "PyramidKV beta (pyramidkv)")->check(int_range(1, INT32_MAX));
  app->add_option("--kv-dump-kept", a.dump_kept, "write the kept prompt positions as JSON");
  app->add_option("--kv-type", a.kv_type,
                  "cache rows: f32 (exact; the default on the CPU) or f16 (half the KV memory and traffic, the "
                  "default on CUDA, whose fast decode kernel reads f16 pages, as llama.cpp's; rounds keys and values "
                  "to 11 bits)");
  app->add_option("--matmul", a.matmul,
                  "exact (default: fp32 on exactly dequantised weights, matches the references) or q8 "
                  "(decoding with 8-bit activations and integer dot products, as llama.cpp; ~1.25x faster "
                  "decoding, logits move by up to ~0.5)");
}

void add_window_at_arg(CLI::App* app, SessionArgs& a) {
  app->add_option("--kv-window-at", a.window_at,
                  "where the observation window ends: end (default, the paper's setting: the prompt's last "
                  "--kv-window tokens) or user (the last --kv-window tokens of the final user message, before the "
                  "chat template's suffix; the suffix's tokens are kept too and count against --kv-budget). A plain "
                  "prompt (no chat template: run without --chat, bench's random prompts, eval kld) has no suffix, so "
                  "there user = end");
}

// The (selection, allocation) pair the flags name ("" for full).
static std::pair<std::string, std::string> pair_of(const SessionArgs& a) {
  if (!a.select.empty()) return {a.select, a.alloc};
  if (a.method == "full") return {"", ""};
  return preset_pair(a.method);
}

static bool uses_profile(const SessionArgs& a) {
  auto [sel, alloc] = pair_of(a);
  return sel == "srh" || alloc.find("error-aware") != std::string::npos;
}

// Warns about --kv-* flags that the method given does not read.
static void warn_unused_session_flags(const SessionArgs& a) {
  if (!a.app) return;
  auto given = [&](const char* flag) { return a.app->count(flag) > 0; };
  auto [sel, alloc] = pair_of(a);
  const std::string m = a.select.empty() ? a.method : sel + "+" + alloc;
  const bool ada = alloc.rfind("ada", 0) == 0;
  const bool scores = sel == "window" || sel == "srh" || ada;
  const char* scorers = "methods that score with the window (window/srh selection, ada allocation)";
  struct Use {
    const char* flag;
    bool used;
    const char* who;
  };
  for (Use u : {Use{"--kv-budget", !sel.empty(), "a compressing method"}, Use{"--kv-window", scores, scorers},
                Use{"--kv-window-at", scores, scorers},
                Use{"--kv-kernel", scores, scorers}, Use{"--kv-pool", scores, scorers},
                Use{"--kv-srh", sel == "srh", "compresskv (srh selection)"},
                Use{"--kv-profile", uses_profile(a), "compresskv (srh selection, error-aware allocation)"},
                Use{"--kv-sinks", sel == "sinks", "streamingllm (sinks selection)"},
                Use{"--kv-alpha", ada, "adakv (ada allocation)"}, Use{"--kv-beta", alloc == "pyramid", "pyramidkv"}})
    if (given(u.flag) && !u.used)
      warn(std::string(u.flag) + " does nothing with --kv-method " + m + (m == "full" ? " (the default)" : "") +
           "; it is read by " + u.who + " (ignored)");
  if (given("--kv-dump-kept") && a.app->get_name() != "run")
    warn("--kv-dump-kept does nothing in " + a.app->get_name() + " (it is read by run; ignored)");
}

SessionOptions session_options(const SessionArgs& a, const Model& m, Profile& prof, const Profile* loaded) {
  // The method name first: a misspelt method should not be asked for a budget.
  const std::vector<std::string> names = press_names();
  if (std::find(names.begin(), names.end(), a.method) == names.end()) {
    std::string known;
    for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
    throw Error("unknown --kv-method '" + a.method + "' (known: " + known + ")");
  }
  if (!a.select.empty() || !a.alloc.empty()) {
    if (a.select.empty() || a.alloc.empty()) throw Error("--kv-select and --kv-alloc go together: give both");
    if (a.method != "full") throw Error("give either --kv-method or --kv-select/--kv-alloc, not both");
  }
  warn_unused_session_flags(a);
  SessionOptions o;
  o.method = a.method;
  o.select = a.select;
  o.alloc = a.alloc;
  o.press.budget = a.budget;
  o.press.window = a.window;
  o.press.kernel = a.kernel;
  if (a.pool == "avg") o.press.pool = Pool::Avg;
  else if (a.pool == "max") o.press.pool = Pool::Max;
  else throw Error("--kv-pool must be avg or max, got '" + a.pool + "'");
  if (a.window_at == "end") o.press.window_at = WindowAt::End;
  else if (a.window_at == "user") o.press.window_at = WindowAt::User;
  else throw Error("--kv-window-at must be end or user, got '" + a.window_at + "'");
  o.press.n_srh = a.srh;
  o.press.n_sinks = a.sinks;
  o.press.alpha = a.alpha;
  o.press.beta = a.beta;
  o.kv_type = parse_kv_type(a.kv_type.empty() ? "f32" : a.kv_type);
  if (a.matmul == "exact") o.q8_matmul = false;
  else if (a.matmul == "q8") o.q8_matmul = true;
  else throw Error("--matmul must be exact or q8, got '" + a.matmul + "'");
  if ((a.method != "full" || !a.select.empty()) && a.budget <= 0)
    throw Error((a.select.empty() ? "--kv-method " + a.method : "--kv-select " + a.select) +
                " needs --kv-budget N (average tokens kept per layer)");
  if (loaded && uses_profile(a)) {  // loaded and checked by the caller (serve's profiles)
    o.profile = loaded;
    return o;
  }
  std::string profile = a.profile;
  if (profile.empty() && uses_profile(a)) {
    profile = shipped_profile_for(m);
    if (!profile.empty())
      std::fprintf(stderr, "using the shipped profile %s (it matches the model's shape and fingerprint)\n",
                   profile.c_str());
  }
  if (!profile.empty() && uses_profile(a)) {  // other methods ignore it (warned above)
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
    const ModelConfig& c = s.model().config;  // every KV head (a --tp rank's cache holds only its own)
    for (int l = 0; l < c.n_layers; ++l) layers.push_back(std::vector<std::vector<int32_t>>(c.n_kv_heads, all));
  } else {
    for (const auto& kl : s.kept()) layers.push_back(kl);
  }
  nlohmann::json j = {{"prompt_tokens", prompt_tokens}, {"layers", layers}};
  std::ofstream f(path);
  if (!f) throw Error("--kv-dump-kept: cannot write " + path);
  f << j.dump() << "\n";
  f.close();
  if (!f) throw Error("--kv-dump-kept: writing " + path + " failed (disk full?)");
}

static std::string read_prompt(const std::string& text, const std::string& file) {
  if (!text.empty() && !file.empty()) throw Error("give either -p TEXT or -f FILE, not both");
  if (file == "-") {
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    if (std::cin.bad()) throw Error("-f -: cannot read standard input");
    return ss.str();
  }
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

std::string prompt_text(const std::string& text, const std::string& file) {
  std::string s = read_prompt(text, file);
  size_t bad = 0;
  std::string clean = utf8::replace_invalid(s, &bad);
  if (bad > 0)
    warn((file.empty() ? std::string("the prompt (-p)") : file == "-" ? "standard input" : file) + ": " +
         std::to_string(bad) + " byte sequence" + (bad == 1 ? " that is" : "s that are") +
         " not UTF-8 replaced with U+FFFD");
  return clean;
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
