// Errors the engine reports to users: every message names the file, field or
// parameter at fault, so a bad input never turns into a crash or silent garbage.
#pragma once
#include <stdexcept>
#include <string>

namespace ckv {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// "path: what" -- the form every file-related error takes.
inline Error file_error(const std::string& path, const std::string& what) {
  return Error(path + ": " + what);
}

}  // namespace ckv
