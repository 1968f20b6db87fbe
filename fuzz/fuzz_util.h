// Helpers the fuzz targets share: a private scratch directory (readers that
// take a path get the fuzzer's bytes as a file), inputs made of several
// files, and one forward step on a model small enough for an iteration.
//
// Contract every target checks: outside input may be refused only with a
// ckv::Error. Any other exception escapes, and libFuzzer reports it (abort)
// as a crash, like a sanitizer finding.
#pragma once
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "engine/session.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace ckv::fuzz {

// Separates the files of a multi-file input (see split()).
inline constexpr std::string_view kPartSep = "\n#ckv-part#\n";

// The process's scratch directory (on /dev/shm when there is one), removed at
// exit; a crashed run leaves it, so fuzz.sh names it (CKV_FUZZ_TAG) to clean up.
inline const std::string& scratch() {
  struct Dir {
    std::string path;
    Dir() {
      std::error_code ec;
      const char* tag = std::getenv("CKV_FUZZ_TAG");
      path = std::string(std::filesystem::is_directory("/dev/shm", ec) ? "/dev/shm" : "/tmp") + "/ckv_fuzz_" +
             (tag ? std::string(tag) + "_" : "") + "XXXXXX";
      if (!mkdtemp(path.data())) std::abort();
    }
    ~Dir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static const Dir dir;
  return dir.path;
}

// Writes bytes to scratch()/name and returns the path.
inline std::string put_file(const std::string& name, std::string_view bytes) {
  std::string path = scratch() + "/" + name;
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  f.close();
  if (!f) std::abort();  // the harness itself failed, not the code under test
  return path;
}

// A fresh empty directory scratch()/name.
inline std::string fresh_dir(const std::string& name) {
  std::string dir = scratch() + "/" + name;
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::filesystem::create_directories(dir);
  return dir;
}

// The files of a multi-file input, in order: the bytes between kPartSep
// markers. Always at least `min_parts` entries (missing ones empty).
inline std::vector<std::string_view> split(const uint8_t* data, size_t size, size_t min_parts = 0) {
  std::string_view s(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> parts;
  for (;;) {
    size_t p = s.find(kPartSep);
    if (p == std::string_view::npos) break;
    parts.push_back(s.substr(0, p));
    s.remove_prefix(p + kPartSep.size());
  }
  parts.push_back(s);
  while (parts.size() < min_parts) parts.emplace_back();
  return parts;
}

// An expected refusal; CKV_FUZZ_VERBOSE=1 prints it (to see what seeds reach).
inline void refused(const Error& e) {
  static const bool verbose = std::getenv("CKV_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "refused: %s\n", e.what());
}

// s with bytes outside printable ASCII as \xNN, for failure messages.
inline std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c >= 32 && c < 127 && c != '\\' && c != '"') {
      out += char(c);
    } else {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02X", c);
      out += b;
    }
  }
  return out + "\"";
}

// Once per process: one thread (the fuzzer runs one process at a time on a
// shared machine, and BLAS threads would only add noise).
inline void init_threads() {
  setenv("OMP_NUM_THREADS", "1", 1);
  setenv("OPENBLAS_NUM_THREADS", "1", 1);
  omp_set_num_threads(1);
}

// Session constructor, a prefill of a few tokens and one decode step, on a
// model the loader accepted, when it is small enough for an iteration.
inline void forward_step(const Model& m) {
  const ModelConfig& c = m.config;
  // Multiply-adds of one token (double: fuzzed shapes overflow int64).
  double per_token = double(c.n_layers) * c.dim * (2.0 * c.n_heads * c.head_dim + 2.0 * c.n_kv_heads * c.head_dim +
                                                    3.0 * c.hidden_dim) + double(c.vocab_size) * c.dim;
  if (per_token > 4e6 || c.vocab_size <= 0) return;
  SessionOptions so;
  so.n_ctx = std::min(c.context, 8);
  Session s(m, so);
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  const int V = c.vocab_size;
  std::vector<int> prompt = {0, V - 1, V / 2};
  prompt.resize(std::min<size_t>(prompt.size(), static_cast<size_t>(std::max(1, so.n_ctx - 1))));
  s.prefill(prompt, logits.data());
  if (s.n_past() < s.n_ctx()) s.decode(V / 3, logits.data());
}

// Encodes and decodes a few texts with the tokenizer of a model the loader accepted.
inline void tokenize_some(const TokenizerData& d) {
  if (d.kind.empty()) return;
  std::unique_ptr<Tokenizer> t = make_tokenizer(d);
  for (const char* text : {"Hello world", " it's 2026, caf\xC3\xA9!\n<|im_start|>", "\xFF\xFE bytes"}) {
    std::vector<int> ids = t->encode(text, true);
    (void)t->decode(ids);
  }
}

}  // namespace ckv::fuzz
