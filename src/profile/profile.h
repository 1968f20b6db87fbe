// The model profile CompressKV reads (DESIGN.md 2.6): per-layer semantic
// retrieval head rankings and layer error scores, with the model's identity.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ckv {

struct Profile {
  static constexpr int kVersion = 1;
  int version = kVersion;
  // Identity of the model it was made for.
  std::string arch;
  int n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
  std::string fingerprint;  // mismatch is a warning only
  // [n_layers][n_heads] query-head indices, best first, with their scores
  // (scores may be empty when imported from a ranking alone).
  std::vector<std::vector<int>> srh_ranking;
  std::vector<std::vector<double>> srh_scores;
  std::vector<std::vector<int>> retrieval_ranking;  // traditional (Wu et al.), may be empty
  std::vector<double> layer_scores;                 // e_l, sum 1; empty = uniform budgets
  nlohmann::json provenance = nlohmann::json::object();  // how each part was made
  // Where it was read from (load/from_json/import), for messages; not saved.
  std::string source;

  nlohmann::json to_json() const;
  // Throws ckv::Error naming `source` and the field at fault.
  static Profile from_json(const nlohmann::json& j, const std::string& source);
  static Profile load(const std::string& path);
  void save(const std::string& path) const;
  // Shape check against a model: throws ckv::Error naming both shapes. Returns
  // a warning text (empty if none) when only the fingerprint differs.
  std::string check_model(const std::string& arch, int n_layers, int n_heads, int n_kv_heads, int head_dim,
                          const std::string& fingerprint) const;
};

// Reads the CompressKV authors' published files: heads_path
// {"0": [h, ...], ...} and optionally scores_path {"<dataset>": [...], "avg_score": [...]}.
// The shape fields come from the model. Throws ckv::Error naming file and field.
Profile import_published_profile(const std::string& heads_path, const std::string& scores_path,
                                  const std::string& arch, int n_layers, int n_heads, int n_kv_heads,
                                  int head_dim, const std::string& fingerprint);

}  // namespace ckv
