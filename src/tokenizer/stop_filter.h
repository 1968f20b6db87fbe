// Stop strings over streamed text (run --stop, the server's "stop"): text is
// held back while it could be the start of a stop string, and cut at the
// first one found.
#pragma once
#include <string>
#include <vector>

namespace ckv {

class StopFilter {
 public:
  explicit StopFilter(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  // Appends text; returns what can be shown now; sets `hit` at a stop string
  // (the text before it is returned, the stop string and the rest dropped).
  std::string push(const std::string& s, bool& hit);
  // What is held back, at the end of the stream.
  std::string flush();

 private:
  std::vector<std::string> stops_;
  std::string buf_;
};

}  // namespace ckv
