// cpu::attention (split-K decode path for n <= 8, sgemm prefill path above)
// against a plain double-precision causal softmax attention, on random data:
// GQA group sizes 1 and 3, prefixes shorter and longer than a decode chunk,
// head sizes that are and are not multiples of 8, per-head prefix lengths
// that differ (as after Ada-KV compression).
#include <gtest/gtest.h>

#include <immintrin.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/ops.h"

namespace {

struct Case {
  int n_heads, n_kv, hd;
  int64_t n;
  std::vector<int> plen;  // per KV head
};

std::vector<float> randn(size_t n, std::mt19937& g, float sd) {
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (float& x : v) x = d(g);
  return v;
}

// out[i][h] = softmax over (prefix of h's KV head, new keys 0..i) of q.k/sqrt(hd), times v.
std::vector<double> reference(const Case& c, const std::vector<float>& q, const std::vector<float>& kn,
                              const std::vector<float>& vn, const std::vector<std::vector<float>>& pk,
                              const std::vector<std::vector<float>>& pv) {
  const int r = c.n_heads / c.n_kv, hd = c.hd;
  std::vector<double> out(c.n * c.n_heads * hd);
  for (int64_t i = 0; i < c.n; ++i)
    for (int h = 0; h < c.n_heads; ++h) {
      const int g = h / r;
      const float* qi = &q[(i * c.n_heads + h) * hd];
      std::vector<double> s;
      std::vector<const float*> vs;
      auto add = [&](const float* k, const float* v) {
        double d = 0;
        for (int e = 0; e < hd; ++e) d += double(qi[e]) * k[e];
        s.push_back(d / std::sqrt(double(hd)));
        vs.push_back(v);
      };
      for (int j = 0; j < c.plen[g]; ++j) add(&pk[g][j * hd], &pv[g][j * hd]);
      for (int64_t j = 0; j <= i; ++j) add(&kn[(j * c.n_kv + g) * hd], &vn[(j * c.n_kv + g) * hd]);
      double mx = -INFINITY, sum = 0;
      for (double x : s) mx = std::max(mx, x);
      for (double& x : s) sum += (x = std::exp(x - mx));
      for (size_t j = 0; j < s.size(); ++j)
        for (int e = 0; e < hd; ++e) out[(i * c.n_heads + h) * hd + e] += s[j] / sum * vs[j][e];
    }
  return out;
}

void check(const Case& c, uint32_t seed, bool f16 = false) {
  std::mt19937 g(seed);
  const int hd = c.hd;
  // Scores of a few units, as in real models, so the softmax is neither flat nor one-hot.
  auto q = randn(c.n * c.n_heads * hd, g, 3.0f / std::sqrt(float(hd)) * 2.0f);
  auto kn = randn(c.n * c.n_kv * hd, g, 1.0f), vn = randn(c.n * c.n_kv * hd, g, 1.0f);
  std::vector<std::vector<float>> pk, pv;
  std::vector<std::vector<uint16_t>> hk, hv;  // the f16 cache rows
  ckv::cpu::AttnPrefix prefix;
  prefix.f16 = f16;
  for (int gi = 0; gi < c.n_kv; ++gi) {
    pk.push_back(randn(size_t(c.plen[gi]) * hd, g, 1.0f));
    pv.push_back(randn(size_t(c.plen[gi]) * hd, g, 1.0f));
    hk.emplace_back(), hv.emplace_back();
    if (f16)  // the reference sees the rounded values the cache holds
      for (auto* pr : {&pk.back(), &pv.back()}) {
        auto& h = pr == &pk.back() ? hk.back() : hv.back();
        for (float& x : *pr) {
          h.push_back(_cvtss_sh(x, 0));
          x = _cvtsh_ss(h.back());
        }
      }
  }
  bool any = false;
  for (int gi = 0; gi < c.n_kv; ++gi) any = any || c.plen[gi] > 0;
  if (any)
    for (int gi = 0; gi < c.n_kv; ++gi) {
      prefix.k.push_back(f16 ? static_cast<const void*>(hk[gi].data()) : pk[gi].data());
      prefix.v.push_back(f16 ? static_cast<const void*>(hv[gi].data()) : pv[gi].data());
      prefix.len.push_back(c.plen[gi]);
    }
  std::vector<float> out(c.n * c.n_heads * hd, -7.0f);
  ckv::cpu::attention(q.data(), kn.data(), vn.data(), c.n, prefix, c.n_heads, c.n_kv, hd, out.data());
  const std::vector<double> ref = reference(c, q, kn, vn, pk, pv);
  double worst = 0;
  for (size_t i = 0; i < out.size(); ++i) worst = std::max(worst, std::fabs(out[i] - ref[i]));
  EXPECT_LT(worst, 2e-5) << "heads " << c.n_heads << "/" << c.n_kv << " hd " << hd << " n " << c.n << " plen0 "
                         << c.plen[0];
}

TEST(Attention, DecodeMatchesReference) {
  uint32_t seed = 1;
  for (int hd : {64, 32, 12})
    for (auto [H, G] : {std::pair{9, 3}, std::pair{4, 4}})
      for (int64_t n : {1, 2, 5, 8})
        for (int p : {0, 1, 7, 256, 700}) {
          std::vector<int> plen(G, p);
          if (G > 1 && p > 0) plen[1] = p / 3 + 1;  // heads of different lengths
          check({H, G, hd, n, plen}, seed++);
        }
}

TEST(Attention, PrefillMatchesReference) {
  uint32_t seed = 100;
  for (int hd : {64, 12})
    for (int64_t n : {9, 64, 130})
      for (int p : {0, 40}) check({9, 3, hd, n, std::vector<int>(3, p)}, seed++);
}

// An f16 cache prefix: both paths read the rounded rows (the reference gets
// the same rounded values, so only f32 summation error remains).
TEST(Attention, F16PrefixMatchesReference) {
  uint32_t seed = 300;
  for (int hd : {64, 12})
    for (int64_t n : {1, 3, 8, 20})
      for (int p : {5, 300}) check({9, 3, hd, n, {p, p / 2 + 1, p}}, seed++, true);
}

// Decode of one token equals the last row of a prefill over the same keys.
TEST(Attention, DecodeEqualsPrefillRow) {
  std::mt19937 g(5);
  const int H = 9, G = 3, hd = 64;
  const int64_t n = 300;
  auto q = randn(n * H * hd, g, 0.7f), k = randn(n * G * hd, g, 1.0f), v = randn(n * G * hd, g, 1.0f);
  std::vector<float> full(n * H * hd), last(H * hd);
  ckv::cpu::attention(q.data(), k.data(), v.data(), n, {}, H, G, hd, full.data());
  // The prefix as a cache: keys 0..n-2 per KV head, contiguous.
  std::vector<std::vector<float>> pk(G), pv(G);
  ckv::cpu::AttnPrefix prefix;
  for (int gi = 0; gi < G; ++gi) {
    for (int64_t j = 0; j < n - 1; ++j)
      for (int e = 0; e < hd; ++e) {
        pk[gi].push_back(k[(j * G + gi) * hd + e]);
        pv[gi].push_back(v[(j * G + gi) * hd + e]);
      }
    prefix.k.push_back(pk[gi].data());
    prefix.v.push_back(pv[gi].data());
    prefix.len.push_back(int(n - 1));
  }
  ckv::cpu::attention(&q[(n - 1) * H * hd], &k[(n - 1) * G * hd], &v[(n - 1) * G * hd], 1, prefix, H, G, hd,
                      last.data());
  for (int i = 0; i < H * hd; ++i) ASSERT_NEAR(last[i], full[(n - 1) * H * hd + i], 1e-5) << i;
}

}  // namespace
