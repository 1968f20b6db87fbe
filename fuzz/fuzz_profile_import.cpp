// The importer of the CompressKV authors' published files (profile/profile.cpp):
// head rankings and layer scores. First byte: the model's layers - 1, second:
// its heads - 1; then the parts heads file | scores file (empty: none).
#include "fuzz_util.h"
#include "profile/profile.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ckv::fuzz::init_threads();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const int n_layers = 1 + data[0] % 64, n_heads = 1 + data[1] % 64;
  auto parts = ckv::fuzz::split(data + 2, size - 2, 2);
  const std::string heads = ckv::fuzz::put_file("heads.json", parts[0]);
  const std::string scores = parts[1].empty() ? "" : ckv::fuzz::put_file("scores.json", parts[1]);
  try {
    ckv::Profile p = ckv::import_published_profile(heads, scores, "llama", n_layers, n_heads, 1, 64, "");
    if (static_cast<int>(p.srh_ranking.size()) != n_layers) __builtin_trap();
    // An imported profile is a valid profile.
    (void)ckv::Profile::from_json(p.to_json(), "imported");
  } catch (const ckv::Error& e) {
    ckv::fuzz::refused(e);
  }
  return 0;
}
