#include "profile/shipped.h"

#include <algorithm>
#include <filesystem>

#include "profile/profile.h"
#include "util/error.h"

namespace ckv {

std::string find_shipped_profile(const std::vector<std::string>& dirs, const std::string& arch, int n_layers,
                                 int n_heads, int n_kv_heads, int head_dim, const std::string& fingerprint) {
  namespace fs = std::filesystem;
  if (fingerprint.empty()) return "";
  for (const std::string& d : dirs) {
    std::error_code ec;
    if (d.empty() || !fs::is_directory(d, ec)) continue;
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(d, ec))
      if (e.path().extension() == ".json" && e.is_regular_file(ec)) files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    for (const std::string& f : files) {
      try {
        Profile p = Profile::load(f);
        if (p.n_layers == n_layers && p.n_heads == n_heads && p.n_kv_heads == n_kv_heads &&
            p.head_dim == head_dim && p.fingerprint == fingerprint && (p.arch.empty() || p.arch == arch))
          return f;
      } catch (const Error&) {
        // not a profile of ours
      }
    }
  }
  return "";
}

}  // namespace ckv
