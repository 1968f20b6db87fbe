#include "tokenizer/stop_filter.h"

#include <algorithm>
#include <utility>

namespace ckv {

std::string StopFilter::push(const std::string& s, bool& hit) {
  buf_ += s;
  size_t cut = std::string::npos;
  for (auto& st : stops_)
    if (!st.empty()) cut = std::min(cut, buf_.find(st));
  if (cut != std::string::npos) {
    hit = true;
    std::string out = buf_.substr(0, cut);
    buf_.clear();
    return out;
  }
  // The longest tail of the buffer that starts some stop string stays.
  size_t keep = 0;
  for (auto& st : stops_)
    for (size_t k = std::min(st.size() - 1, buf_.size()); k > keep; --k)
      if (buf_.compare(buf_.size() - k, k, st, 0, k) == 0) {
        keep = k;
        break;
      }
  std::string out = buf_.substr(0, buf_.size() - keep);
  buf_.erase(0, buf_.size() - keep);
  return out;
}

std::string StopFilter::flush() { return std::exchange(buf_, {}); }

}  // namespace ckv
