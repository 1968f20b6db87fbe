// JSON Lines input (needle sets, calibration prompts): one object a line,
// blank lines skipped, every error naming the file and line.
#pragma once
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

namespace ckv {

// Calls fn(object, "path:line") for each non-blank line of the file. `what`
// says what the file is (in "cannot read the <what>"), `expect` what an
// object holds (in the error for a line that is not an object).
void for_each_jsonl_object(const std::string& path, const std::string& what, const std::string& expect,
                           const std::function<void(const nlohmann::json& o, const std::string& where)>& fn);

}  // namespace ckv
