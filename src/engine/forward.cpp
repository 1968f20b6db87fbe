// The forward pass of a decoder-only GQA transformer (Llama, Mistral, Qwen2,
// Qwen3), once for every backend: it calls only the kernel interface
// (kernels/backend.h). Two shapes of the same layer:
//  - decode_step: a batch of sequences, a few new tokens each, token-major;
//    the new K/V are appended to each sequence's pages and attention reads
//    the pages.
//  - read_layer: one sequence's prompt, layer-major (DESIGN.md 4): the
//    prompt goes through a layer chunk by chunk -- Q/K/V, attention over
//    the layer's dense K/V so far, output projection and FFN -- so only the
//    residual stream and the layer's K/V are whole-prompt; then the press
//    selects what the layer keeps and only that goes to the pages.
#include "engine/forward.h"

#include <algorithm>
#include <numeric>

#include "engine/sequence.h"
#include "util/error.h"

namespace ckv {

namespace {

// Attention input of n rows of the residual stream x: q ([n][H*hd]), k and v
// ([n][G*hd]), before RoPE (the caller rotates: a prefill chunk at its
// positions, a decode step as it appends).
void qkv(Backend& b, const ModelConfig& c, const LayerWeights& w, const float* x, float* xb, int64_t n, float* q,
         float* k, float* v) {
  const MatmulOut outs[] = {{&w.wq, q}, {&w.wk, k}, {&w.wv, v}};
  b.rmsnorm_matmul(x, w.attn_norm, xb, outs, n);
  if (c.qkv_bias) {
    b.add_bias(q, w.bq, n);
    b.add_bias(k, w.bk, n);
    b.add_bias(v, w.bv, n);
  }
  if (c.qk_norm) {
    b.rmsnorm(q, w.q_norm, q, n * c.n_heads);
    b.rmsnorm(k, w.k_norm, k, n * c.n_kv_heads);
  }
}

// x += in W^T. Tensor parallelism: a rank's W_o and W_down hold only its
// heads' / FFN columns' share of the sum, so the ranks add their partial
// products before the residual add (Megatron's one all-reduce after each).
// One device: one fused product.
void add_product(Context& ctx, const Tensor& W, const float* in, float* x, int64_t n) {
  Backend& b = ctx.backend();
  float* tmp = ctx.ws().xb;
  Communicator* comm = ctx.comm();
  if (!comm) return b.matmul_add(W, in, n, x, tmp);
  const MatmulOut o[] = {{&W, tmp}};
  b.matmul(o, in, n);
  comm->all_reduce_sum(tmp, n * W.rows());
  b.add(x, tmp, n * W.rows());
}

// The rest of the layer for n rows: x += W_o att; x += FFN(x).
void output_and_ffn(Context& ctx, const LayerWeights& w, float* x, const float* att, int64_t n) {
  Workspace& ws = ctx.ws();
  add_product(ctx, w.wo, att, x, n);
  ctx.backend().ffn_hidden(x, w.ffn_norm, ws.xb, w.w_gate, w.w_up, ws.gate, ws.up, n);
  add_product(ctx, w.w_down, ws.gate, x, n);
}

// Logits of n rows of x (host out: [n][vocab]), logit_rows at a time.
void logits_of(Backend& b, const Model& m, Workspace& ws, const float* x, int64_t n, float* out) {
  const int dim = m.config.dim, V = m.config.vocab_size;
  for (int64_t r0 = 0; r0 < n; r0 += ws.logit_rows) {
    const int64_t nr = std::min<int64_t>(ws.logit_rows, n - r0);
    const MatmulOut o[] = {{&m.output, ws.logits}};
    b.rmsnorm_matmul(x + r0 * dim, m.output_norm, ws.xn, o, nr);
    b.download(out + r0 * V, ws.logits, sizeof(float) * nr * V);
  }
}

// The last row of each sequence that wants only its last row's logits,
// packed to the front of x (then one read of the output matrix serves the
// whole batch). Returns how many.
int64_t pack_last_rows(Backend& b, std::span<DecodeStep> batch, const std::vector<DecodeItem>& items, float* x,
                       int dim) {
  int64_t packed = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (batch[i].all_logits || !batch[i].logits) continue;
    const int64_t src = items[i].row0 + static_cast<int64_t>(batch[i].tokens.size()) - 1;
    if (src != packed) b.copy(x + packed * dim, x + src * dim, sizeof(float) * dim);
    ++packed;
  }
  return packed;
}

// The packed rows [r0, r0 + nr) of ws.logits to their steps: whole rows, or
// each step's top candidates.
void send_logits(Backend& b, std::span<DecodeStep> batch, Workspace& ws, int V, int64_t r0, int64_t nr) {
  int64_t row = 0;  // the batch's sequences in order, skipping those served otherwise
  int kmax = 0;
  for (const DecodeStep& st : batch) {
    if (st.all_logits || !st.logits) continue;
    if (row >= r0 && row < r0 + nr) {
      if (st.top > 0) kmax = std::max(kmax, st.top);
      else b.download(st.logits, ws.logits + (row - r0) * V, sizeof(float) * V);
    }
    ++row;
  }
  if (kmax == 0) return;
  b.top_logits(ws.logits, static_cast<int>(nr), V, kmax, ws.top_vals.data(), ws.top_ids.data());
  row = 0;
  for (const DecodeStep& st : batch) {
    if (st.all_logits || !st.logits) continue;
    if (row >= r0 && row < r0 + nr && st.top > 0) {
      std::copy_n(ws.top_vals.data() + (row - r0) * kmax, st.top, st.logits);
      std::copy_n(ws.top_ids.data() + (row - r0) * kmax, st.top, st.top_ids);
    }
    ++row;
  }
}

// The layers and logits of a decode step whose caches have room for it.
void forward_decode(Context& ctx, std::span<DecodeStep> batch, const SequenceOptions& so) {
  const Model& m = ctx.model();
  const ModelConfig& c = m.config;
  Backend& b = ctx.backend();
  Workspace& ws = ctx.ws();
  const int dim = c.dim, V = c.vocab_size;
  const int qd = c.n_heads * c.head_dim;
  const std::vector<DecodeItem>& items = ws.items;
  const int64_t R = static_cast<int64_t>(ws.tokens.size());
  b.set_step({ws.tokens, ws.pos, ws.appends});

  // Calibration observers see a batch of one sequence and one token.
  const bool observe = batch.size() == 1 && R == 1 && (so.probe || so.on_decode_layer);
  AttnProbeOut probe;
  if (observe && so.probe) probe = {so.probe->lo, so.probe->hi, ws.probe_mass.data(), ws.probe_arg.data()};
  auto layers = [&] {
    b.embed_step(ws.x);
    for (int l = 0; l < c.n_layers; ++l) {
      const LayerWeights& w = m.layers[l];
      qkv(b, c, w, ws.x, ws.xb, R, ws.q, ws.k, ws.v);
      b.rope_append_step(ws.q, ws.k, ws.v, l, c.n_heads, c.n_kv_heads);
      b.attention_step(ws.q, l, ws.att, observe && so.probe ? &probe : nullptr);
      if (observe && so.probe) so.probe->on_layer(l, ws.probe_mass.data(), ws.probe_arg.data());
      if (observe && so.on_decode_layer) {
        b.download(ws.host_q.data(), ws.q, sizeof(float) * qd);
        b.download(ws.host_att.data(), ws.att, sizeof(float) * qd);
        so.on_decode_layer(l, ws.host_q.data(), ws.host_att.data());
      }
      output_and_ffn(ctx, w, ws.x, ws.att, R);
    }
  };
  auto head = [&](int64_t r0, int64_t nr) {
    const MatmulOut o[] = {{&m.output, ws.logits}};
    b.rmsnorm_matmul(ws.x + r0 * dim, m.output_norm, ws.xn, o, nr);
  };

  // A step of last-row logits only (what generation asks) is device work up
  // to the logits: replayed from a recording of its shape. Observers, whole
  // rows of logits and tensor parallelism's collectives run directly.
  bool all_rows = false;
  std::vector<int32_t>& shape = ws.shape;
  shape.clear();
  for (const DecodeStep& st : batch) {
    all_rows |= st.all_logits && st.logits;
    shape.push_back(static_cast<int32_t>(st.tokens.size()) * 2 + (st.logits ? 1 : 0));
  }
  if (ctx.options().record_steps && !observe && !all_rows && !ctx.comm()) {
    auto kernels = [&] {
      layers();
      const int64_t packed = pack_last_rows(b, batch, items, ws.x, dim);
      if (packed > 0) head(0, packed);
    };
    ctx.recordings().run(shape, kernels);
    int64_t packed = 0;
    for (const DecodeStep& st : batch) packed += st.logits ? 1 : 0;
    if (packed > 0) send_logits(b, batch, ws, V, 0, packed);
    return;
  }

  layers();
  // Sequences that ask for every row get their own head first (packing
  // below moves rows).
  for (size_t i = 0; i < batch.size(); ++i) {
    const DecodeStep& st = batch[i];
    if (st.all_logits && st.logits)
      logits_of(b, m, ws, ws.x + int64_t(items[i].row0) * dim, static_cast<int64_t>(st.tokens.size()), st.logits);
  }
  const int64_t packed = pack_last_rows(b, batch, items, ws.x, dim);
  for (int64_t r0 = 0; r0 < packed; r0 += ws.logit_rows) {
    const int64_t nr = std::min<int64_t>(ws.logit_rows, packed - r0);
    head(r0, nr);
    send_logits(b, batch, ws, V, r0, nr);
  }
}

}  // namespace

void compress_layer(Context& ctx, KvCache& kv, Press& press, int layer, int T, const DenseKV& dense, const float* qw,
                    int q_rows, int suffix, std::vector<KeptPositions>& kept,
                    const std::function<void(const LayerView&)>& on_layer) {
  const int G = ctx.model().config.n_kv_heads;
  LayerView lv = ctx.layer_view(layer, T, qw, q_rows, dense.k);
  lv.suffix = suffix;
  if (on_layer) on_layer(lv);
  KeptPositions keep = press.select(lv);
  // Ranks' heads may keep different numbers of rows (Ada-KV): a rank whose
  // pool cannot hold them fails the step for all.
  std::exception_ptr err;
  try {
    for (int g = 0; g < G; ++g) kv.grow_head(layer, g, static_cast<int>(keep[g].size()));
  } catch (const Error&) {
    err = std::current_exception();
  }
  agree_on_step(ctx.comm(), err);
  ctx.backend().kv_gather(kv, layer, dense, keep);
  kept[layer] = std::move(keep);
}

void decode_step(Context& ctx, std::span<DecodeStep> batch) {
  Workspace& ws = ctx.ws();
  const int V = ctx.model().config.vocab_size;

  // The batch's rows: each sequence's new tokens at its positions (host
  // lists of the workspace, reserved for the largest batch).
  std::vector<int32_t>& tokens = ws.tokens;
  std::vector<int32_t>& pos = ws.pos;
  std::vector<DecodeItem>& items = ws.items;
  std::vector<AppendItem>& appends = ws.appends;
  tokens.clear(), pos.clear(), items.clear(), appends.clear();
  for (const DecodeStep& st : batch) {
    Sequence& s = *st.seq;
    const int n = static_cast<int>(st.tokens.size());
    if (n < 1 || n > 8) throw Error("decode: a step takes 1 to 8 tokens per sequence, got " + std::to_string(n));
    if (s.reading()) throw Error("decode: the sequence is still reading its prompt");
    if (s.n_past() + n > ctx.n_ctx())
      throw Error("sequence of " + std::to_string(s.n_past() + n) + " tokens exceeds the context size " +
                  std::to_string(ctx.n_ctx()) + " (-c)");
    for (int t : st.tokens)
      if (t < 0 || t >= V) throw Error("token id " + std::to_string(t) + " out of range [0, " + std::to_string(V) + ")");
    if (st.top < 0 || st.top > Backend::kMaxTopLogits || (st.top > 0 && (!st.top_ids || st.all_logits)))
      throw Error("decode: top logits take 1 to " + std::to_string(Backend::kMaxTopLogits) +
                  " candidates, an id array and the last row only, got " + std::to_string(st.top));
    const int row0 = static_cast<int>(tokens.size());
    for (int i = 0; i < n; ++i) {
      tokens.push_back(st.tokens[i]);
      pos.push_back(static_cast<int32_t>(s.n_past() + i));
    }
    items.push_back({row0, n, &s.kv_});
    appends.push_back({row0, n, &s.kv_});
  }
  const int64_t R = static_cast<int64_t>(tokens.size());
  if (R > ctx.decode_rows() || static_cast<int>(batch.size()) > ctx.options().max_seqs)
    throw Error("decode: " + std::to_string(batch.size()) + " sequences / " + std::to_string(R) +
                " rows exceed the context's batch of " + std::to_string(ctx.options().max_seqs));
  // Room for the new rows in every cache, all or nothing (on every rank);
  // their table and length updates go to the device together.
  size_t grown = 0;
  auto undo = [&] {
    for (size_t i = 0; i < grown; ++i) batch[i].seq->kv_.shrink(static_cast<int>(batch[i].tokens.size()));
  };
  std::exception_ptr err;
  {
    UploadBatch updates(ctx.backend());
    try {
      for (; grown < batch.size(); ++grown) batch[grown].seq->kv_.grow(static_cast<int>(batch[grown].tokens.size()));
    } catch (const Error&) {
      undo();
      err = std::current_exception();
    }
    updates.send();
  }
  agree_on_step(ctx.comm(), err);
  try {
    forward_decode(ctx, batch, batch[0].seq->opt_);
  } catch (...) {
    undo();
    throw;
  }
  for (const DecodeStep& st : batch) {
    st.seq->n_past_ += static_cast<int64_t>(st.tokens.size());
    st.seq->note_peak();
  }
}

void read_layer(Context& ctx, Sequence& s, int l) {
  const Model& m = ctx.model();
  const ModelConfig& c = m.config;
  Backend& b = ctx.backend();
  Workspace& ws = ctx.ws();
  Sequence::Read& rd = s.read_;
  const LayerWeights& w = m.layers[l];
  const int dim = c.dim, qd = c.n_heads * c.head_dim, kvd = c.n_kv_heads * c.head_dim;
  const int64_t n = rd.n, P = rd.first_new, C = ctx.options().chunk;
  const DenseKV dense{ws.dense_k, ws.dense_v, P, rd.start};

  // A later read: the layer's cached rows right-aligned before the new ones.
  if (!rd.first) b.kv_to_dense(s.kv_, l, dense, static_cast<int>(n));

  // The window's queries are among the read's last rows (the press scores
  // with them; with --kv-window-at user the suffix's rows follow them).
  const int64_t q_rows = std::min<int64_t>(n, std::max(s.opt_.keep_queries, window_rows(s.opt_)));
  for (int64_t c0 = 0; c0 < n; c0 += C) {
    const int64_t nc = std::min(C, n - c0);
    float* x = rd.x + c0 * dim;
    const std::span<const int32_t> pos(rd.pos.data() + c0, nc);
    float* k = dense.k + (P + c0) * kvd;
    qkv(b, c, w, x, ws.xb, nc, ws.q, k, dense.v + (P + c0) * kvd);
    b.rope(ws.q, pos, c.n_heads);
    b.rope(k, pos, c.n_kv_heads);
    b.attention_prefill(ws.q, c0, nc, dense, c.n_heads, c.n_kv_heads, c.head_dim, ws.att);
    const int64_t lo = std::max(c0, n - q_rows);  // window rows within this chunk
    if (rd.compress && lo < c0 + nc)
      b.copy(ws.qw + (lo - (n - q_rows)) * qd, ws.q + (lo - c0) * qd, sizeof(float) * (c0 + nc - lo) * qd);
    output_and_ffn(ctx, w, x, ws.att, nc);
  }

  // What the layer keeps: the press's selection over the whole prompt, or
  // (a later read) the new rows appended.
  if (rd.compress) {
    compress_layer(ctx, s.kv_, *s.press_, l, static_cast<int>(n), dense, ws.qw, static_cast<int>(q_rows),
                   window_suffix(s.opt_), s.kept_, s.opt_.on_layer);
    if (s.queries_) {  // the last m rows, right-aligned in the layer's slot
      const int64_t m = std::min<int64_t>(s.kept_query_rows_, q_rows);
      b.copy(s.queries_ + (static_cast<size_t>(l) * s.kept_query_rows_ + s.kept_query_rows_ - m) * qd,
             ws.qw + (q_rows - m) * qd, sizeof(float) * m * qd);
    }
  } else {
    const AppendItem all[] = {{static_cast<int>(P), static_cast<int>(n), &s.kv_}};
    b.kv_append(all, l, dense.k, dense.v);
  }
  if (s.opt_.on_progress && n > 1) s.opt_.on_progress(l, c.n_layers);
}

void read_logits(Context& ctx, Sequence& s, float* logits_last,
                 const std::function<void(int64_t pos, const float* logits)>& each) {
  const Model& m = ctx.model();
  const int dim = m.config.dim, V = m.config.vocab_size;
  Sequence::Read& rd = s.read_;
  if (each) {
    std::vector<float>& host = ctx.ws().host_logits;
    const int64_t R = ctx.ws().logit_rows;
    for (int64_t r0 = 0; r0 < rd.n; r0 += R) {
      const int64_t nr = std::min(R, rd.n - r0);
      logits_of(ctx.backend(), m, ctx.ws(), rd.x + r0 * dim, nr, host.data());
      for (int64_t i = 0; i < nr; ++i) each(s.n_past_ + r0 + i, &host[i * V]);
      if (logits_last && r0 + nr == rd.n) std::copy(&host[(nr - 1) * V], &host[nr * V], logits_last);
    }
  } else if (logits_last) {
    logits_of(ctx.backend(), m, ctx.ws(), rd.x + (rd.n - 1) * dim, 1, logits_last);
  }
}

}  // namespace ckv
