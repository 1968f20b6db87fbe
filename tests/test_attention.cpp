// The CPU attention kernels -- split-K decode over KV pages for n <= 8, sgemm
// prefill over dense K/V in chunks of query rows above -- against a plain
// double-precision causal softmax attention, on random data: GQA group sizes
// 1 and 3, prefixes shorter and longer than a decode chunk and than a page,
// head sizes that are and are not multiples of 8, per-head prefix lengths
// that differ (as after Ada-KV compression).
#include <gtest/gtest.h>

#include <immintrin.h>

#include <cmath>
#include <random>
#include <vector>

#include <omp.h>

#include "engine/kv_pages.h"
#include "kernels/cpu/attention.h"

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

// Attention of the n new rows over a cache holding each head's prefix:
// n <= 8 through the decode kernel over the pages (the new rows appended
// first, as the engine does); larger n through the prefill kernel over dense
// K/V that kv_to_dense filled from the cache, in chunks of 50 query rows.
std::vector<float> run_attention(const Case& c, const std::vector<float>& q, const std::vector<float>& kn,
                                 const std::vector<float>& vn, const std::vector<std::vector<float>>& pk,
                                 const std::vector<std::vector<float>>& pv, bool f16) {
  const int hd = c.hd, G = c.n_kv;
  auto backend = ckv::make_cpu_backend();
  int pmax = 0;
  for (int p : c.plen) pmax = std::max(pmax, p);
  const int64_t T = pmax + c.n;
  ckv::KvPool pool(*backend, hd, f16 ? ckv::KvType::F16 : ckv::KvType::F32, 16, G * (T / 16 + 2));
  ckv::KvCache cache(pool, 1, G, T);
  // The prefixes into the pages, through a dense [pmax][G][hd] source.
  std::vector<float> dk(size_t(std::max(pmax, 1)) * G * hd), dv(dk.size());
  std::vector<std::vector<int32_t>> rows(G);
  for (int g = 0; g < G; ++g)
    for (int j = 0; j < c.plen[g]; ++j) {
      std::copy(&pk[g][size_t(j) * hd], &pk[g][size_t(j + 1) * hd], &dk[(size_t(j) * G + g) * hd]);
      std::copy(&pv[g][size_t(j) * hd], &pv[g][size_t(j + 1) * hd], &dv[(size_t(j) * G + g) * hd]);
      rows[g].push_back(j);
    }
  for (int g = 0; g < G; ++g) cache.grow_head(0, g, c.plen[g]);
  backend->kv_gather(cache, 0, {dk.data(), dv.data(), 0, {}}, rows);
  std::vector<float> out(c.n * c.n_heads * hd, -7.0f);
  const int threads = omp_get_max_threads();
  if (c.n <= 8) {
    cache.grow(static_cast<int>(c.n));
    const ckv::AppendItem app[] = {{0, static_cast<int>(c.n), &cache}};
    backend->kv_append(app, 0, kn.data(), vn.data());
    ckv::cpu::DecodeScratch ws;
    ws.reserve(1, T, G, c.n_heads / G, 8, hd, threads);
    const ckv::DecodeItem items[] = {{0, static_cast<int>(c.n), &cache}};
    ckv::cpu::attention_decode(q.data(), items, 0, c.n_heads, G, hd, ws, out.data(), nullptr);
  } else {
    std::vector<float> k(size_t(T) * G * hd, NAN), v(k.size(), NAN);
    std::vector<int64_t> start(G);
    for (int g = 0; g < G; ++g) start[g] = pmax - c.plen[g];
    const ckv::DenseKV dense{k.data(), v.data(), pmax, start};
    backend->kv_to_dense(cache, 0, dense, 0);
    std::copy(kn.begin(), kn.end(), k.begin() + size_t(pmax) * G * hd);
    std::copy(vn.begin(), vn.end(), v.begin() + size_t(pmax) * G * hd);
    ckv::cpu::PrefillScratch ws;
    ws.reserve(T, threads);
    for (int64_t i0 = 0; i0 < c.n; i0 += 50)
      ckv::cpu::attention_prefill(&q[i0 * c.n_heads * hd], i0, std::min<int64_t>(50, c.n - i0), dense, c.n_heads, G,
                                  hd, ws, &out[i0 * c.n_heads * hd]);
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
  for (int gi = 0; gi < c.n_kv; ++gi) {
    pk.push_back(randn(size_t(c.plen[gi]) * hd, g, 1.0f));
    pv.push_back(randn(size_t(c.plen[gi]) * hd, g, 1.0f));
    if (f16)  // the reference sees the rounded values the cache holds
      for (auto* pr : {&pk.back(), &pv.back()})
        for (float& x : *pr) x = _cvtsh_ss(_cvtss_sh(x, 0));
  }
  // An f16 cache also rounds the new rows (decode appends them first).
  std::vector<float> kr = kn, vr = vn;
  if (f16 && c.n <= 8)
    for (auto* pr : {&kr, &vr})
      for (float& x : *pr) x = _cvtsh_ss(_cvtss_sh(x, 0));
  std::vector<float> out = run_attention(c, q, kn, vn, pk, pv, f16);
  const std::vector<double> ref = reference(c, q, kr, vr, pk, pv);
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
  const Case all{H, G, hd, n, std::vector<int>(G, 0)};
  std::vector<float> full = run_attention(all, q, k, v, std::vector<std::vector<float>>(G), std::vector<std::vector<float>>(G), false);
  // The prefix as a cache: keys 0..n-2 per KV head, contiguous.
  std::vector<std::vector<float>> pk(G), pv(G);
  for (int gi = 0; gi < G; ++gi)
    for (int64_t j = 0; j < n - 1; ++j)
      for (int e = 0; e < hd; ++e) {
        pk[gi].push_back(k[(j * G + gi) * hd + e]);
        pv[gi].push_back(v[(j * G + gi) * hd + e]);
      }
  const Case one{H, G, hd, 1, std::vector<int>(G, int(n - 1))};
  std::vector<float> ql(&q[(n - 1) * H * hd], &q[n * H * hd]), kl(&k[(n - 1) * G * hd], &k[n * G * hd]),
      vl(&v[(n - 1) * G * hd], &v[n * G * hd]);
  std::vector<float> last = run_attention(one, ql, kl, vl, pk, pv, false);
  for (int i = 0; i < H * hd; ++i) ASSERT_NEAR(last[i], full[(n - 1) * H * hd + i], 1e-5) << i;
}

}  // namespace
