// The kernel interface: every operation of the forward pass and of the
// presses' scoring, implemented once per device (kernels/cpu, kernels/cuda).
// The forward pass (engine/forward.cpp) and the presses call only this, so
// nothing else differs between backends (DESIGN.md 4).
//
// Conventions. Activations are row-major f32 in the backend's memory
// ("device pointers"; on the CPU, host memory). Weights are the Model's
// Tensors: a backend maps each to its own form in prepare() (the CPU reads
// them in place; CUDA holds bf16 copies). Small metadata (token ids,
// positions, lengths, kept positions) is passed as host spans and moved by
// the backend as it needs. Shapes are given beside each parameter.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "model/model.h"

namespace ckv {

class KvCache;
enum class Pool;

// Cache row element type: f32 (exact) or f16 (half the memory and traffic).
enum class KvType { F32, F16 };
// "f32" / "f16"; anything else is an error naming --kv-type.
KvType parse_kv_type(const std::string& s);
inline size_t kv_type_bytes(KvType t) { return t == KvType::F16 ? 2 : 4; }

// One matrix of a grouped product: y = x W^T ([n][W.rows()]).
struct MatmulOut {
  const Tensor* W;
  float* y;
};

// Keys and values of one layer laid out densely as [rows][n_kv][hd] f32 with
// the new tokens at rows [first_new, first_new + n_new). KV head g's cached
// prefix (a later read) sits right before them, at rows [start[g], first_new):
// heads may hold different lengths (Ada-KV). A first read has first_new = 0.
struct DenseKV {
  float* k = nullptr;
  float* v = nullptr;
  int64_t first_new = 0;
  std::span<const int64_t> start;  // per KV head; empty = all 0 (= first_new)
};

// One sequence's part of a batched decode attention: query rows
// [row0, row0 + n) of the batch, over its cache at this layer (whose lengths
// already count the n new tokens: token i sees len - n + i + 1 rows).
struct DecodeItem {
  int row0 = 0, n = 0;
  const KvCache* cache = nullptr;
};

// Optional outputs of decode attention for calibration (identify-heads): for
// a batch of one sequence and one token, per query head, the sum of its
// softmax probabilities over cache rows [lo, hi) and the row of its largest.
struct AttnProbeOut {
  int lo = 0, hi = 0;
  float* mass = nullptr;     // [n_heads], host
  int32_t* argmax = nullptr;  // [n_heads], host
};

// Where a decode step appends each sequence's new rows: batch rows
// [row0, row0 + n) of k/v ([rows][n_kv][hd]) go after the cache's current
// rows (reserved before; the cache's lengths are advanced by the caller).
struct AppendItem {
  int row0 = 0, n = 0;
  KvCache* cache = nullptr;
};

// A decode step's rows: the token ids and positions of every row and each
// sequence's rows [row0, row0 + n) with its cache (grown for them already).
struct StepBatch {
  std::span<const int32_t> tokens, pos;  // [rows]
  std::span<const AppendItem> seqs;
};

// Sizes a context's kernels may be asked to handle, for their scratch.
struct BackendLimits {
  int max_rows = 1;      // rows of one matrix product / attention call
  int max_seqs = 1;      // sequences in one decode batch
  int64_t max_ctx = 1;   // positions per sequence
};

// Recorded decode steps (CUDA graphs; a backend may not record). Between
// begin_recording() (false: this backend does not record) and
// end_recording() the queued work is recorded, not run; end_recording()
// returns the recording's handle. replay(h) runs it on the inputs the last
// Backend::set_step() gave; false when the recording is gone (the backend's
// scratch moved): record again. A recording is valid for every step of the
// same shape: the same rows per sequence and the same outputs.
class StepRecorder {
 public:
  virtual ~StepRecorder() = default;
  virtual bool begin_recording() { return false; }
  virtual int end_recording() { return -1; }
  virtual void abort_recording() {}  // ends an open recording, keeping nothing
  virtual bool replay(int /*handle*/) { return false; }
  virtual void drop_recording(int /*handle*/) {}
};

class Backend : public StepRecorder {
 public:
  virtual std::string name() const = 0;  // "CPU", "CUDA"
  // Token rows per KV page on this device (engine/kv_pages.h).
  virtual int kv_page_rows() const = 0;
  // Device pointers are host addresses (the CPU): no copies for metadata.
  virtual bool host_memory() const = 0;
  // Prompt rows per chunk of a layer-major read that keep this device busy
  // (the CPU: a few hundred; a GPU's attention needs thousands).
  virtual int preferred_chunk() const { return 256; }

  // ---- memory (device pointers; sizes in bytes)
  // Throws ckv::Error naming `what` and the size when the device is out of memory.
  virtual void* alloc(size_t bytes, const std::string& what) = 0;
  virtual void free(void* p) = 0;
  virtual void upload(void* dst, const void* src, size_t bytes) = 0;
  // Uploads between these two (a decode step's page-table and length
  // updates: many small ones) may be held and sent together at the end, in
  // the order they were made; upload() copies the data at once. By default
  // each is sent when made.
  virtual void begin_upload_batch() {}
  virtual void end_upload_batch() {}
  virtual void download(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;  // device to device
  virtual void sync() = 0;  // waits for queued work
  // Fills n floats with a value (poisoning in tests, zeroing).
  virtual void fill(float* x, int64_t n, float value) = 0;

  // ---- set-up, once per context: weights in this device's form, RoPE
  // tables, scratch for the given limits.
  virtual void prepare(const Model& m, const BackendLimits& lim) = 0;
  // Bytes this backend holds for the model (its own weight copies) and its scratch.
  virtual size_t weight_bytes() const = 0;
  virtual size_t scratch_bytes() const = 0;
  // Bytes the device has free now (the CPU: the kernel's MemAvailable); the
  // server sizes its KV pool from it.
  virtual size_t free_memory() const = 0;

  // ---- the forward pass
  // x[i] = embedding row tokens[i]; x: [n][dim].
  virtual void embed(std::span<const int32_t> tokens, float* x) = 0;
  // y[i] = x[i] / rms(x[i]) * w for n rows of dim = w's size; y may alias x.
  virtual void rmsnorm(const float* x, const Tensor& w, float* y, int64_t n) = 0;
  // Products on one input x ([n][cols], cols shared): each y = x W^T.
  virtual void matmul(std::span<const MatmulOut> outs, const float* x, int64_t n) = 0;
  // y[i][j] += b[j] for n rows of b's size (qwen2 biases).
  virtual void add_bias(float* y, const Tensor& b, int64_t n) = 0;
  // x[i] += y[i], n elements (the residual stream).
  virtual void add(float* x, const float* y, int64_t n) = 0;
  // RoPE in place at positions pos[n]; x: [n][n_heads][hd] (the model's
  // rotary layout and frequencies, set in prepare()).
  virtual void rope(float* x, std::span<const int32_t> pos, int n_heads) = 0;
  // out[i] = silu(gate[i]) * up[i]; out may alias gate.
  virtual void swiglu(const float* gate, const float* up, float* out, int64_t n) = 0;

  // ---- fused forms of the calls above: these defaults call them (the CPU);
  // a backend may do each in one pass over the weights (CUDA's GEMV).
  // The products of rmsnorm(x, norm) ([n] rows): rmsnorm into xn ([n][cols]
  // scratch, which a fused form may leave unwritten), then matmul on it.
  virtual void rmsnorm_matmul(const float* x, const Tensor& norm, float* xn, std::span<const MatmulOut> outs,
                              int64_t n);
  // y += x W^T ([n][W.rows()]): a product added to the residual stream; tmp
  // is [n][W.rows()] scratch.
  virtual void matmul_add(const Tensor& W, const float* x, int64_t n, float* y, float* tmp);
  // The SwiGLU FFN's hidden rows h = silu(a G^T) * (a U^T) of a = rmsnorm(x,
  // norm): [n][G.rows()]; xn ([n][cols]) and up ([n][U.rows()]) are scratch.
  virtual void ffn_hidden(const float* x, const Tensor& norm, float* xn, const Tensor& gate, const Tensor& up, float* h,
                          float* up_out, int64_t n);

  // Causal GQA attention of new-token query rows [i0, i0 + nq) over kv:
  // row i sees its KV head's prefix and the new rows 0..i. q, out: [nq][H][hd].
  virtual void attention_prefill(const float* q, int64_t i0, int64_t nq, const DenseKV& kv, int n_heads, int n_kv,
                                 int hd, float* out) = 0;
  // Batched attention over paged caches at `layer`: one call serves every
  // sequence of a decode step. q, out: [rows][H][hd].
  virtual void attention_decode(const float* q, std::span<const DecodeItem> items, int layer, float* out,
                                const AttnProbeOut* probe = nullptr) = 0;

  // ---- the KV store (pages of engine/kv_pages.h)
  // Appends, at `layer`, each item's batch rows of k/v ([rows][n_kv][hd]).
  virtual void kv_append(std::span<const AppendItem> items, int layer, const float* k, const float* v) = 0;
  // Appends to head g of `layer` the rows rows[g] (ascending) of src.
  virtual void kv_gather(KvCache& cache, int layer, const DenseKV& src, std::span<const std::vector<int32_t>> rows) = 0;
  // The cache's rows at `layer` into dst (f32), right-aligned: head g's
  // first m = len - exclude_last rows at [first_new - m, first_new)
  // (dst.start is ignored; exclude_last skips rows reserved for a read).
  virtual void kv_to_dense(const KvCache& cache, int layer, const DenseKV& dst, int exclude_last) = 0;

  // ---- scoring for the presses (DESIGN.md 2.1 steps 3-7)
  // For each group of query heads, the mean over its heads of the pooled
  // window attention mass: softmax (fp32, causal inside the window) of the w
  // query rows qw ([w][H][hd], positions T-w..T-1) over the T keys of k
  // ([T][n_kv][hd]), summed over the rows, for positions [0, T-w), pooled
  // along positions (kernel odd). out: [groups][T-w] device floats.
  virtual void window_scores(const float* qw, const float* k, int T, int w, int n_heads, int n_kv, int hd,
                             std::span<const std::vector<int>> groups, int kernel, Pool pool, float* out) = 0;
  // For each row r of score ([rows][n]), the k[r] positions with the largest
  // score, ascending; ties: the lower position first.
  virtual std::vector<std::vector<int32_t>> top_k(const float* score, int rows, int n, std::span<const int> k) = 0;
  // Each of `rows` logit rows ([rows][V]): its k (<= kMaxTopLogits) largest,
  // value descending and the lowest id first on ties, into host vals/ids
  // [rows][k] (past V: id -1, -infinity). A row holding a NaN or an infinity
  // gets vals[0] = NaN. Lets a
  // decode step send back a few candidates per sequence, not the vocabulary.
  static constexpr int kMaxTopLogits = 64;
  virtual void top_logits(const float* logits, int rows, int V, int k, float* vals, int32_t* ids) = 0;

  // ---- a decode step's kernels on the step's own inputs
  // set_step() gives the step's rows once; the *_step calls then read them
  // from the device, not from host lists, so that a recorded step (StepRecorder)
  // replays with the inputs of the step it serves. These defaults keep a
  // host copy and call the calls above (the CPU).
  virtual void set_step(const StepBatch& s);
  virtual void embed_step(float* x) { embed(step_tokens_, x); }
  // RoPE of the step's q ([rows][n_heads][hd]) and k ([rows][n_kv][hd]) in
  // place, then k and v appended to the pages at `layer`.
  virtual void rope_append_step(float* q, float* k, const float* v, int layer, int n_heads, int n_kv) {
    rope(q, step_pos_, n_heads);
    rope(k, step_pos_, n_kv);
    kv_append(step_seqs_, layer, k, v);
  }
  virtual void attention_step(const float* q, int layer, float* out, const AttnProbeOut* probe = nullptr) {
    attention_decode(q, step_items_, layer, out, probe);
  }

 private:
  std::vector<int32_t> step_tokens_, step_pos_;
  std::vector<AppendItem> step_seqs_;
  std::vector<DecodeItem> step_items_;
};

// A scope whose uploads to `b` go together (Backend::begin_upload_batch):
// send() at its end; the destructor sends them too on the way out of an
// error (and drops a second error: the first is the one to report).
class UploadBatch {
 public:
  explicit UploadBatch(Backend& b) : b_(&b) { b.begin_upload_batch(); }
  UploadBatch(const UploadBatch&) = delete;
  UploadBatch& operator=(const UploadBatch&) = delete;
  void send() {
    Backend* b = b_;
    b_ = nullptr;
    if (b) b->end_upload_batch();
  }
  ~UploadBatch() {
    try {
      send();
    } catch (...) {
    }
  }

 private:
  Backend* b_;
};

// The CPU backend (kernels/cpu); `q8` selects 8-bit activations for small
// products (--matmul q8).
std::unique_ptr<Backend> make_cpu_backend(bool q8 = false);

}  // namespace ckv
