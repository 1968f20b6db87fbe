// The press registry: one line per method (DESIGN.md 4). Adding a method is
// one file (a factory in press/scoring.h) and one line here.
#include <string>

#include "press/scoring.h"
#include "util/error.h"

namespace ckv {

namespace {

using Factory = std::unique_ptr<Press> (*)(const PressParams&, const PressShape&, const Profile*);

struct Entry {
  const char* name;
  Factory make;
};

constexpr Entry kPresses[] = {
    {"full", press::make_full},
    {"streamingllm", press::make_streamingllm},
    {"snapkv", press::make_snapkv},
    {"pyramidkv", press::make_pyramidkv},
    {"adakv", press::make_adakv},
    {"compresskv", press::make_compresskv},
};

}  // namespace

std::unique_ptr<Press> make_press(const std::string& method, const PressParams& p, const PressShape& shape,
                                  const Profile* profile) {
  for (const Entry& e : kPresses)
    if (method == e.name) return e.make(p, shape, profile);
  std::string known;
  for (const Entry& e : kPresses) known += (known.empty() ? "" : ", ") + std::string(e.name);
  throw Error("unknown --kv-method '" + method + "' (known: " + known + ")");
}

std::vector<std::string> press_names() {
  std::vector<std::string> v;
  for (const Entry& e : kPresses) v.emplace_back(e.name);
  return v;
}

}  // namespace ckv
