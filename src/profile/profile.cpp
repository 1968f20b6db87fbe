// The model profile (DESIGN.md 2.6): reading, writing and checking it, and
// importing the CompressKV authors' published files (arXiv 2508.02401; format
// in ../shared/data/compresskv-published/README.md). Every error names the
// file and the field at fault.
#include "profile/profile.h"

#include <cmath>
#include <cstdint>
#include <fstream>
#include <sstream>

#include "util/error.h"

namespace ckv {

namespace {

using json = nlohmann::json;

Error field_error(const std::string& src, const std::string& field, const std::string& what) {
  return file_error(src, "field \"" + field + "\": " + what);
}

const json& need(const json& obj, const char* key, const std::string& src, const std::string& field) {
  auto it = obj.find(key);
  if (it == obj.end()) throw field_error(src, field, "missing");
  return *it;
}

int get_int(const json& v, const std::string& src, const std::string& field) {
  if (!v.is_number_integer()) throw field_error(src, field, "expected an integer, found " + v.dump());
  long long x = v.get<long long>();
  if (x < INT32_MIN || x > INT32_MAX) throw field_error(src, field, "integer out of range: " + v.dump());
  return static_cast<int>(x);
}

int get_positive(const json& obj, const char* key, const std::string& src, const std::string& field) {
  int x = get_int(need(obj, key, src, field), src, field);
  if (x < 1) throw field_error(src, field, "must be positive, found " + std::to_string(x));
  return x;
}

double get_number(const json& v, const std::string& src, const std::string& field) {
  if (!v.is_number()) throw field_error(src, field, "expected a number, found " + v.dump());
  double x = v.get<double>();
  if (!std::isfinite(x)) throw field_error(src, field, "not finite");
  return x;
}

// One ranking row: unique query-head indices within [0, n_heads), 1..n_heads of them.
std::vector<int> read_ranking_row(const json& v, int n_heads, const std::string& src, const std::string& field) {
  if (!v.is_array()) throw field_error(src, field, "expected an array of head indices, found " + v.dump());
  if (v.empty() || static_cast<int>(v.size()) > n_heads)
    throw field_error(src, field,
                      "ranks " + std::to_string(v.size()) + " heads, expected 1 to " + std::to_string(n_heads));
  std::vector<int> row;
  std::vector<bool> seen(n_heads, false);
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string f = field + "[" + std::to_string(i) + "]";
    int h = get_int(v[i], src, f);
    if (h < 0 || h >= n_heads)
      throw field_error(src, f, "head " + std::to_string(h) + " is outside [0, " + std::to_string(n_heads) + ")");
    if (seen[h]) throw field_error(src, f, "head " + std::to_string(h) + " is ranked twice");
    seen[h] = true;
    row.push_back(h);
  }
  return row;
}

std::vector<std::vector<int>> read_ranking(const json& v, int n_layers, int n_heads, const std::string& src,
                                           const std::string& field) {
  if (!v.is_array()) throw field_error(src, field, "expected an array of per-layer rankings");
  if (static_cast<int>(v.size()) != n_layers)
    throw field_error(src, field,
                      "has " + std::to_string(v.size()) + " layers, the profile's model has " + std::to_string(n_layers));
  std::vector<std::vector<int>> r;
  for (int l = 0; l < n_layers; ++l) r.push_back(read_ranking_row(v[l], n_heads, src, field + "[" + std::to_string(l) + "]"));
  return r;
}

// Layer scores: n_layers finite numbers >= 0, renormalised to sum 1.
std::vector<double> read_layer_scores(const json& v, int n_layers, const std::string& src, const std::string& field,
                                      const std::string& whose) {
  if (!v.is_array()) throw field_error(src, field, "expected an array of per-layer scores");
  if (static_cast<int>(v.size()) != n_layers)
    throw field_error(src, field, "has " + std::to_string(v.size()) + " layer scores, " + whose + " has " +
                                      std::to_string(n_layers) + " layers");
  std::vector<double> e;
  double sum = 0;
  for (int l = 0; l < n_layers; ++l) {
    const std::string f = field + "[" + std::to_string(l) + "]";
    double x = get_number(v[l], src, f);
    if (x < 0) throw field_error(src, f, "layer score " + v[l].dump() + " is negative");
    e.push_back(x);
    sum += x;
  }
  if (!(sum > 0)) throw field_error(src, field, "layer scores sum to 0");
  for (double& x : e) x /= sum;
  return e;
}

std::string shape_text(const std::string& arch, int L, int H, int G, int hd) {
  return arch + " " + std::to_string(L) + " layers x " + std::to_string(H) + " heads (" + std::to_string(G) +
         " KV heads, head dim " + std::to_string(hd) + ")";
}

json parse_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw file_error(path, "cannot open");
  std::ostringstream ss;
  ss << f.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::exception& e) {
    throw file_error(path, std::string("not valid JSON: ") + e.what());
  }
}

}  // namespace

json Profile::to_json() const {
  json j;
  j["version"] = version;
  j["model"] = {{"arch", arch},         {"n_layers", n_layers}, {"n_heads", n_heads},
                {"n_kv_heads", n_kv_heads}, {"head_dim", head_dim}, {"fingerprint", fingerprint}};
  j["srh"] = {{"ranking", srh_ranking}, {"scores", srh_scores}};
  j["retrieval"] = {{"ranking", retrieval_ranking}};
  j["layer_scores"] = layer_scores;
  j["provenance"] = provenance;
  return j;
}

Profile Profile::from_json(const json& j, const std::string& src) {
  if (!j.is_object()) throw file_error(src, "a profile is a JSON object");
  Profile p;
  p.source = src;
  p.version = get_int(need(j, "version", src, "version"), src, "version");
  if (p.version != kVersion)
    throw field_error(src, "version",
                      "unsupported profile version " + std::to_string(p.version) + " (this build reads version " +
                          std::to_string(kVersion) + ")");

  const json& m = need(j, "model", src, "model");
  if (!m.is_object()) throw field_error(src, "model", "expected an object");
  const json& a = need(m, "arch", src, "model.arch");
  if (!a.is_string()) throw field_error(src, "model.arch", "expected a string");
  p.arch = a.get<std::string>();
  p.n_layers = get_positive(m, "n_layers", src, "model.n_layers");
  p.n_heads = get_positive(m, "n_heads", src, "model.n_heads");
  p.n_kv_heads = get_positive(m, "n_kv_heads", src, "model.n_kv_heads");
  p.head_dim = get_positive(m, "head_dim", src, "model.head_dim");
  if (p.n_heads % p.n_kv_heads != 0)
    throw field_error(src, "model.n_kv_heads",
                      std::to_string(p.n_kv_heads) + " does not divide n_heads " + std::to_string(p.n_heads));
  if (auto it = m.find("fingerprint"); it != m.end() && !it->is_null()) {
    if (!it->is_string()) throw field_error(src, "model.fingerprint", "expected a string");
    p.fingerprint = it->get<std::string>();
  }

  const json& srh = need(j, "srh", src, "srh");
  if (!srh.is_object()) throw field_error(src, "srh", "expected an object");
  p.srh_ranking = read_ranking(need(srh, "ranking", src, "srh.ranking"), p.n_layers, p.n_heads, src, "srh.ranking");
  if (auto it = srh.find("scores"); it != srh.end() && !it->is_null() && !(it->is_array() && it->empty())) {
    if (!it->is_array() || static_cast<int>(it->size()) != p.n_layers)
      throw field_error(src, "srh.scores", "expected " + std::to_string(p.n_layers) + " per-layer score rows");
    for (int l = 0; l < p.n_layers; ++l) {
      const std::string f = "srh.scores[" + std::to_string(l) + "]";
      const json& row = (*it)[l];
      if (!row.is_array() || row.size() != p.srh_ranking[l].size())
        throw field_error(src, f, "expected " + std::to_string(p.srh_ranking[l].size()) +
                                      " scores (one per ranked head)");
      std::vector<double> s;
      for (size_t i = 0; i < row.size(); ++i) s.push_back(get_number(row[i], src, f + "[" + std::to_string(i) + "]"));
      p.srh_scores.push_back(std::move(s));
    }
  }

  if (auto it = j.find("retrieval"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) throw field_error(src, "retrieval", "expected an object");
    if (auto r = it->find("ranking"); r != it->end() && !r->is_null() && !(r->is_array() && r->empty()))
      p.retrieval_ranking = read_ranking(*r, p.n_layers, p.n_heads, src, "retrieval.ranking");
  }

  if (auto it = j.find("layer_scores"); it != j.end() && !it->is_null() && !(it->is_array() && it->empty()))
    p.layer_scores = read_layer_scores(*it, p.n_layers, src, "layer_scores", "the profile's model");

  if (auto it = j.find("provenance"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) throw field_error(src, "provenance", "expected an object");
    p.provenance = *it;
  }
  return p;
}

Profile Profile::load(const std::string& path) { return from_json(parse_file(path), path); }

void Profile::save(const std::string& path) const {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw file_error(path, "cannot write");
  f << to_json().dump(2) << "\n";
  f.close();
  if (!f) throw file_error(path, "write failed");
}

std::string Profile::check_model(const std::string& m_arch, int L, int H, int G, int hd,
                                 const std::string& m_fingerprint) const {
  const std::string name = source.empty() ? std::string("profile") : "profile " + source;
  if (L != n_layers || H != n_heads || G != n_kv_heads || hd != head_dim)
    throw Error(name + " is for " + shape_text(arch, n_layers, n_heads, n_kv_heads, head_dim) + ", model is " +
                shape_text(m_arch, L, H, G, hd));
  std::string warn;
  if (!arch.empty() && !m_arch.empty() && arch != m_arch)
    warn += name + " was made for architecture " + arch + ", model is " + m_arch + " (same shape; used anyway)";
  if (!fingerprint.empty() && !m_fingerprint.empty() && fingerprint != m_fingerprint) {
    if (!warn.empty()) warn += "; ";
    warn += name + " was measured on weights with fingerprint " + fingerprint + ", model has " + m_fingerprint +
            " (e.g. another quantisation; used anyway)";
  }
  return warn;
}

Profile import_published_profile(const std::string& heads_path, const std::string& scores_path,
                                  const std::string& arch, int n_layers, int n_heads, int n_kv_heads, int head_dim,
                                  const std::string& fingerprint) {
  Profile p;
  p.arch = arch;
  p.n_layers = n_layers;
  p.n_heads = n_heads;
  p.n_kv_heads = n_kv_heads;
  p.head_dim = head_dim;
  p.fingerprint = fingerprint;
  p.source = heads_path;

  // {"0": [h, ...], ..., "L-1": [...]}
  const json hj = parse_file(heads_path);
  if (!hj.is_object()) throw file_error(heads_path, "expected an object {\"0\": [heads...], ...}");
  for (auto it = hj.begin(); it != hj.end(); ++it) {
    const std::string& k = it.key();
    bool numeric = !k.empty() && k.size() < 10 && k.find_first_not_of("0123456789") == std::string::npos;
    if (!numeric) throw field_error(heads_path, k, "not a layer index");
  }
  if (static_cast<int>(hj.size()) != n_layers)
    throw file_error(heads_path, "ranks heads of " + std::to_string(hj.size()) + " layers, the model has " +
                                     std::to_string(n_layers));
  for (int l = 0; l < n_layers; ++l) {
    const std::string key = std::to_string(l);
    p.srh_ranking.push_back(read_ranking_row(need(hj, key.c_str(), heads_path, key), n_heads, heads_path, key));
  }

  json prov = {{"method", "CompressKV semantic retrieval heads and layer scores published by the authors "
                          "(arXiv 2508.02401), imported"},
               {"heads_file", heads_path}};
  if (!scores_path.empty()) {
    // {"<dataset>": [L floats], ..., "avg_score": [L floats]}
    const json sj = parse_file(scores_path);
    if (!sj.is_object()) throw file_error(scores_path, "expected an object {\"avg_score\": [...], ...}");
    p.layer_scores = read_layer_scores(need(sj, "avg_score", scores_path, "avg_score"), n_layers, scores_path,
                                       "avg_score", "the model");
    prov["layer_scores_file"] = scores_path;
    prov["layer_scores_field"] = "avg_score";
  }
  p.provenance = prov;
  return p;
}

}  // namespace ckv
