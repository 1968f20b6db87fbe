// A context: the model, the backend it runs on, the KV page pool and a
// workspace allocated once (DESIGN.md 4). Sequences (engine/sequence.h) hold
// their own pages, press state and position; the forward pass
// (engine/forward.h) runs batches of them on one context.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "engine/kv_pages.h"
#include "engine/step_recordings.h"
#include "kernels/backend.h"
#include "kernels/comm.h"
#include "model/model.h"
#include "press/press.h"

namespace ckv {

struct ContextOptions {
  int n_ctx = 0;        // positions per sequence; 0 = the model's context
  int max_seqs = 1;     // sequences one decode step may serve
  int chunk = 0;        // rows per matrix product while reading a prompt; 0 = the backend's choice
  int max_window = 64;  // query rows a press may score with (--kv-window at most this)
  KvType kv_type = KvType::F32;
  // KV pool size in pages; 0 = room for max_seqs full caches of n_ctx
  // positions; -k = k times that.
  int64_t kv_pages = 0;
  // When set, replaces kv_pages: asked for the pool's size in pages once the
  // weights and workspace are in place (serve: what the device has left).
  std::function<int64_t(const Backend& b, size_t page_bytes)> size_kv_pool;
  // Tensor parallelism (engine/tp.h): the collectives between this rank and
  // the others, for a model that is a rank's part (Model::shard); not owned.
  // Null: one device.
  Communicator* comm = nullptr;
  // Decode steps replayed from recordings where the backend records (CUDA
  // graphs, engine/step_recordings.h); the environment's CKV_NO_GRAPHS=1
  // turns them off too.
  bool record_steps = true;
};

// Device buffers of the forward pass, allocated once per context. Rows: a
// decode step's tokens (R) or a prompt chunk (C); the layer's dense K/V hold
// a whole read.
struct Workspace {
  int rows = 0;           // max(R, C)
  int logit_rows = 0;     // rows of logits computed at once
  float* x = nullptr;     // [R][dim] the decode batch's residual stream
  float* xb = nullptr;    // [rows][dim]
  float* q = nullptr;     // [rows][n_heads * hd]
  float* k = nullptr;     // [R][n_kv * hd] a decode step's new keys
  float* v = nullptr;     // [R][n_kv * hd]
  float* att = nullptr;   // [rows][n_heads * hd]
  float* gate = nullptr;  // [rows][hidden]
  float* up = nullptr;    // [rows][hidden]
  float* dense_k = nullptr;  // [n_ctx][n_kv * hd] one layer's keys of a read
  float* dense_v = nullptr;  // [n_ctx][n_kv * hd]
  float* qw = nullptr;       // [max_window][n_heads * hd] the window's queries
  float* score = nullptr;    // [(n_heads + 1) * n_ctx] press scores; a rank's part: [(G + H + 1) * n_ctx] of the whole's heads
  float* xn = nullptr;       // [logit_rows][dim]
  float* logits = nullptr;   // [logit_rows][vocab]
  size_t bytes = 0;
  // Host lists of a decode step, reserved for the largest batch.
  std::vector<int32_t> tokens, pos;
  std::vector<DecodeItem> items;
  std::vector<AppendItem> appends;
  std::vector<int32_t> shape;  // the step's shape (engine/step_recordings.h)
  std::vector<float> probe_mass, host_q, host_att;  // [n_heads], [n_heads * hd] x2
  std::vector<int32_t> probe_arg;                   // [n_heads]
  std::vector<float> host_logits;                   // [logit_rows][vocab]
  std::vector<float> top_vals;                      // [logit_rows][kMaxTopLogits]
  std::vector<int32_t> top_ids;                     // [logit_rows][kMaxTopLogits]
};

class Context {
 public:
  Context(const Model& m, std::unique_ptr<Backend> backend, const ContextOptions& opt = {});
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  const Model& model() const { return m_; }
  Backend& backend() const { return *b_; }
  KvPool& pool() const { return *pool_; }
  Workspace& ws() { return ws_; }
  const ContextOptions& options() const { return opt_; }
  int n_ctx() const { return opt_.n_ctx; }
  int decode_rows() const { return decode_rows_; }  // R
  // The collectives of a tensor-parallel rank; null on one device.
  Communicator* comm() const { return opt_.comm; }
  StepRecordings& recordings() { return *recordings_; }
  // What the press sees of a layer whose keys k ([T][n_kv][hd]) and window
  // queries q ([q_rows][n_heads][hd]) are given: this rank's heads, and
  // where they sit among the whole model's.
  LayerView layer_view(int layer, int T, const float* q, int q_rows, const float* k);
  // Bytes the context holds besides KV pages: workspace, backend scratch and
  // the backend's own weight copies.
  size_t fixed_bytes() const;

 private:
  const Model& m_;
  std::unique_ptr<Backend> b_;
  ContextOptions opt_;
  int decode_rows_ = 0;
  std::unique_ptr<KvPool> pool_;
  Workspace ws_;
  std::vector<void*> allocs_;
  std::unique_ptr<StepRecordings> recordings_;  // hold the workspace's pointers: dropped before it
};

}  // namespace ckv
