#include "engine/session.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ops.h"
#include "model/quant.h"
#include "util/error.h"

namespace ckv {

Session::Session(const Model& m, const SessionOptions& opt)
    : m_(m),
      opt_(opt),
      n_ctx_(opt.n_ctx > 0 ? opt.n_ctx : m.config.context),
      kv_(m.config.n_layers, m.config.n_kv_heads, m.config.head_dim, opt.kv_type) {
  const ModelConfig& c = m.config;
  press_ = make_press(opt.method, opt.press, PressShape{c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim}, opt.profile);
  if (opt.method != "full" && opt.press.budget > n_ctx_)
    throw Error("--kv-budget " + std::to_string(opt.press.budget) + " exceeds the context size " +
                std::to_string(n_ctx_) + " (-c)");
}

Session::~Session() = default;

void Session::prefill(const std::vector<int>& tokens, float* logits_last,
                      const std::function<void(int64_t, const float*)>& each) {
  if (tokens.empty()) throw Error("empty prompt: nothing to read");
  forward(tokens.data(), static_cast<int64_t>(tokens.size()), logits_last, each);
}

void Session::decode(int token, float* logits) { forward(&token, 1, logits, {}); }

void Session::forward(const int* tokens, int64_t n, float* logits_last,
                      const std::function<void(int64_t, const float*)>& each) {
  const ModelConfig& c = m_.config;
  const int dim = c.dim, hd = c.head_dim, H = c.n_heads, G = c.n_kv_heads, L = c.n_layers;
  const int qdim = H * hd, kvdim = G * hd, ff = c.hidden_dim;
  if (n_past_ + n > n_ctx_)
    throw Error("sequence of " + std::to_string(n_past_ + n) + " tokens exceeds the context size " +
                std::to_string(n_ctx_) + " (-c)");
  for (int64_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= c.vocab_size)
      throw Error("token id " + std::to_string(tokens[i]) + " out of range [0, " + std::to_string(c.vocab_size) + ")");

  const bool first = (n_past_ == 0);
  const bool compress = first && n > 1;
  const int64_t C = std::max(1, opt_.chunk);
  const int64_t cn = std::min<int64_t>(n, C);

  // Activations of the whole read ([n][...]) and per-chunk scratch ([cn][...]).
  std::vector<float> x(n * dim), q(n * qdim), k(n * kvdim), v(n * kvdim), att(n * qdim);
  std::vector<float> xb(cn * dim), gate(cn * ff), up(cn * ff);
  std::vector<int32_t> pos(n);
  std::iota(pos.begin(), pos.end(), static_cast<int32_t>(n_past_));
  const size_t scratch = sizeof(float) * (x.size() + q.size() + k.size() + v.size() + att.size() + xb.size() +
                                          gate.size() + up.size());

  // Embedding rows, dequantised.
  for (int64_t i = 0; i < n; ++i) dequantize_row(m_.tok_embd.type, m_.tok_embd.row(tokens[i]), &x[i * dim], dim);

  cpu::Rope rope(c);
  if (compress) {
    press_->begin(L, static_cast<int>(n));
    kept_.assign(L, {});
  }

  for (int l = 0; l < L; ++l) {
    const LayerWeights& w = m_.layers[l];
    // Q, K, V for every new token, chunk by chunk.
    for (int64_t c0 = 0; c0 < n; c0 += C) {
      int64_t nc = std::min(C, n - c0);
      cpu::rmsnorm(&x[c0 * dim], static_cast<const float*>(w.attn_norm.data), xb.data(), nc, dim, c.norm_eps);
      const cpu::MatmulOut qkv[] = {{&w.wq, &q[c0 * qdim]}, {&w.wk, &k[c0 * kvdim]}, {&w.wv, &v[c0 * kvdim]}};
      cpu::matmul(qkv, xb.data(), nc, opt_.matmul);
    }
    if (c.qkv_bias) {
      auto add = [&](float* y, const Tensor& b, int d) {
        const float* bp = static_cast<const float*>(b.data);
        for (int64_t i = 0; i < n; ++i)
          for (int j = 0; j < d; ++j) y[i * d + j] += bp[j];
      };
      add(q.data(), w.bq, qdim);
      add(k.data(), w.bk, kvdim);
      add(v.data(), w.bv, kvdim);
    }
    if (c.qk_norm) {
      cpu::rmsnorm(q.data(), static_cast<const float*>(w.q_norm.data), q.data(), n * H, hd, c.norm_eps);
      cpu::rmsnorm(k.data(), static_cast<const float*>(w.k_norm.data), k.data(), n * G, hd, c.norm_eps);
    }
    rope.apply(q.data(), pos.data(), n, H);
    rope.apply(k.data(), pos.data(), n, G);

    // Attention over what the cache holds plus the new tokens (causal).
    cpu::AttnPrefix prefix;
    prefix.f16 = kv_.type() == KvType::F16;
    if (!first) {
      for (int g = 0; g < G; ++g) {
        prefix.k.push_back(kv_.k(l, g));
        prefix.v.push_back(kv_.v(l, g));
        prefix.len.push_back(kv_.len(l, g));
      }
    }
    cpu::attention(q.data(), k.data(), v.data(), n, prefix, H, G, hd, att.data());

    // Store this layer's K/V: the prompt compressed by the press, later tokens appended.
    if (compress) {
      LayerView lv{l, L, static_cast<int>(n), H, G, hd, q.data(), k.data()};
      if (opt_.on_layer) opt_.on_layer(lv);
      KeptPositions kept = press_->select(lv);
      for (int g = 0; g < G; ++g) kv_.assign(l, g, &k[g * hd], &v[g * hd], kvdim, kept[g], opt_.gen_reserve);
      kept_[l] = std::move(kept);
    } else if (first) {
      std::vector<int32_t> all(n);
      std::iota(all.begin(), all.end(), 0);
      for (int g = 0; g < G; ++g) kv_.assign(l, g, &k[g * hd], &v[g * hd], kvdim, all, opt_.gen_reserve);
    } else {
      for (int64_t i = 0; i < n; ++i)
        for (int g = 0; g < G; ++g) kv_.append(l, g, &k[i * kvdim + g * hd], &v[i * kvdim + g * hd]);
    }
    peak_bytes_ = std::max(peak_bytes_, kv_.bytes() + scratch);
    if (opt_.on_progress && n > 1) opt_.on_progress(l, L);

    // Output projection and feed-forward, chunk by chunk.
    for (int64_t c0 = 0; c0 < n; c0 += C) {
      int64_t nc = std::min(C, n - c0);
      float* xc = &x[c0 * dim];
      cpu::matmul(w.wo, &att[c0 * qdim], nc, xb.data(), opt_.matmul);
      for (int64_t i = 0; i < nc * dim; ++i) xc[i] += xb[i];
      cpu::rmsnorm(xc, static_cast<const float*>(w.ffn_norm.data), xb.data(), nc, dim, c.norm_eps);
      const cpu::MatmulOut gate_up[] = {{&w.w_gate, gate.data()}, {&w.w_up, up.data()}};
      cpu::matmul(gate_up, xb.data(), nc, opt_.matmul);
      cpu::swiglu(gate.data(), up.data(), gate.data(), nc * ff);
      cpu::matmul(w.w_down, gate.data(), nc, xb.data(), opt_.matmul);
      for (int64_t i = 0; i < nc * dim; ++i) xc[i] += xb[i];
    }
  }

  // Final norm and output head: every position for `each`, else the last.
  const float* onorm = static_cast<const float*>(m_.output_norm.data);
  const int V = c.vocab_size;
  if (each) {
    const int64_t R = 16;
    std::vector<float> xn(R * dim), lg(R * V);
    for (int64_t c0 = 0; c0 < n; c0 += R) {
      int64_t nc = std::min(R, n - c0);
      cpu::rmsnorm(&x[c0 * dim], onorm, xn.data(), nc, dim, c.norm_eps);
      cpu::matmul(m_.output, xn.data(), nc, lg.data(), opt_.matmul);
      for (int64_t i = 0; i < nc; ++i) each(n_past_ + c0 + i, &lg[i * V]);
      if (logits_last && c0 + nc == n) std::memcpy(logits_last, &lg[(nc - 1) * V], sizeof(float) * V);
    }
  } else if (logits_last) {
    std::vector<float> xn(dim);
    cpu::rmsnorm(&x[(n - 1) * dim], onorm, xn.data(), 1, dim, c.norm_eps);
    cpu::matmul(m_.output, xn.data(), 1, logits_last, opt_.matmul);
  }
  n_past_ += n;
}

}  // namespace ckv
