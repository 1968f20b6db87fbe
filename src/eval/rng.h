// A small seeded generator whose numbers are the same on every platform and
// standard library (std:: distributions are not), so generated tasks repeat
// exactly from their seed.
#pragma once
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace ckv::eval {

class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  // splitmix64
  uint64_t next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n), n >= 1 (rejection, no modulo bias).
  uint64_t below(uint64_t n) {
    const uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = next();
    while (x >= lim);
    return x % n;
  }
  int64_t range(int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(below(static_cast<uint64_t>(hi - lo + 1))); }
  template <class T>
  void shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
  }
  // k distinct indices of [0, n), in the order drawn.
  std::vector<int> sample(int n, int k) {
    std::vector<int> idx(n);
    for (int i = 0; i < n; ++i) idx[i] = i;
    for (int i = 0; i < k && i < n; ++i) std::swap(idx[i], idx[i + below(static_cast<uint64_t>(n - i))]);
    idx.resize(std::min(k, n));
    return idx;
  }

 private:
  uint64_t s_;
};

// A seed from a base seed and a few integers (task, sample, length).
inline uint64_t mix_seed(uint64_t seed, std::initializer_list<uint64_t> parts) {
  Rng r(seed);
  uint64_t s = r.next();
  for (uint64_t p : parts) {
    Rng q(s ^ (p * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull));
    s = q.next();
  }
  return s;
}

}  // namespace ckv::eval
