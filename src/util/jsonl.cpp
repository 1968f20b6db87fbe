#include "util/jsonl.h"

#include <fstream>

#include "util/error.h"

namespace ckv {

void for_each_jsonl_object(const std::string& path, const std::string& what, const std::string& expect,
                           const std::function<void(const nlohmann::json& o, const std::string& where)>& fn) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw file_error(path, "cannot read the " + what);
  std::string line;
  for (int ln = 1; std::getline(f, line); ++ln) {
    if (line.find_first_not_of(" \t\r\n") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(ln);
    nlohmann::json o;
    try {
      o = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      throw Error(where + ": not valid JSON: " + e.what());
    }
    if (!o.is_object()) throw Error(where + ": expected " + expect);
    fn(o, where);
  }
  if (f.bad()) throw file_error(path, "read failed");
}

}  // namespace ckv
