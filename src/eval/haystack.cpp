#include "eval/haystack.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "util/error.h"

namespace ckv::eval {

namespace fs = std::filesystem;

namespace {

std::string read_file(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw file_error(p, "cannot read the haystack file");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool is_side_file(const std::string& name) {
  std::string u = name;
  for (char& c : u)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  for (const char* p : {"LICENSE", "LICENCE", "COPYING", "README"})
    if (u.rfind(p, 0) == 0) return true;
  return false;
}

bool blank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

}  // namespace

HaystackText read_haystack(const std::string& path) {
  std::error_code ec;
  HaystackText h;
  if (fs::is_directory(path, ec)) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(path, ec)) {
      const std::string name = e.path().filename().string();
      if (e.is_regular_file(ec) && e.path().extension() == ".txt" && !is_side_file(name)) names.push_back(name);
    }
    if (ec) throw file_error(path, "cannot list the haystack directory: " + ec.message());
    std::sort(names.begin(), names.end());
    if (names.empty()) throw file_error(path, "empty haystack: the directory holds no .txt file");
    for (const auto& n : names) {
      const std::string p = (fs::path(path) / n).string();
      h.text += read_file(p);
      h.files.push_back(p);
    }
  } else if (fs::is_regular_file(path, ec)) {
    h.text = read_file(path);
    h.files.push_back(path);
  } else {
    throw file_error(path, "no such haystack file or directory (--haystack)");
  }
  if (blank(h.text)) throw file_error(path, "empty haystack: no text to build a context from");
  return h;
}

Haystack Haystack::load(const std::string& path, const Tokenizer& tok, int64_t min_tokens) {
  HaystackText t = read_haystack(path);
  Haystack h;
  h.path = path;
  h.files = std::move(t.files);
  h.text = t.text;
  h.tokens = tok.encode(h.text, false);
  if (h.tokens.empty()) throw file_error(path, "empty haystack: its text has no tokens");
  while (static_cast<int64_t>(h.tokens.size()) < min_tokens) {
    // Enough copies at once (joins may merge a token or two: hence the loop).
    const int64_t per = static_cast<int64_t>(tok.encode(t.text, false).size());
    const int64_t more = std::max<int64_t>(1, (min_tokens - static_cast<int64_t>(h.tokens.size())) / per + 1);
    for (int64_t i = 0; i < more; ++i) h.text += t.text;
    h.repeats += static_cast<int>(more);
    h.tokens = tok.encode(h.text, false);
  }
  return h;
}

}  // namespace ckv::eval
