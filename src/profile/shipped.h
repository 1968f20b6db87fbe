// Profiles shipped with the program (profiles/ in the source tree): the one
// for a model is the profile whose shape and weights' fingerprint both match.
#pragma once
#include <string>
#include <vector>

namespace ckv {

// The first *.json under the given directories (each in name order) whose
// model shape and fingerprint equal these; "" when none. Unreadable or
// invalid files are passed over.
std::string find_shipped_profile(const std::vector<std::string>& dirs, const std::string& arch, int n_layers,
                                 int n_heads, int n_kv_heads, int head_dim, const std::string& fingerprint);

}  // namespace ckv
