// A sequence: its KV pages, its press and its position (DESIGN.md 4). Its
// first read (the prompt) runs layer-major, each layer compressed by the
// press right after its attention; that read can advance a few layers at a
// time between decode steps of other sequences (begin_read / read_layers /
// finish_read). Later tokens are decoded in batches (engine/forward.h).
#pragma once
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/context.h"
#include "press/press.h"

namespace ckv {

// Calibration (identify-heads, DESIGN.md 2.4 step 6): each query head's
// decode attention probabilities summed over cache rows [lo, hi) (a full
// cache: row = position) and the row of its largest probability.
struct AttentionProbe {
  int lo = 0, hi = 0;
  // Called once per decode step and layer; mass and argmax are [n_heads].
  std::function<void(int layer, const float* mass, const int32_t* argmax)> on_layer;
};

struct SequenceOptions {
  std::string method = "full";  // press preset (press/press.h)
  std::string select, alloc;    // or a (selection, allocation) pair, when both are set
  PressParams press;
  const Profile* profile = nullptr;
  // Tokens at the end of the prompt that follow the final user message's
  // content (the chat template's suffix, e.g. "<|im_end|>\n<|im_start|>
  // assistant\n"); 0 for a plain prompt. Read with press.window_at User: the
  // window ends before them and they are kept (press/press.h).
  int user_suffix = 0;
  // Prompt queries kept per layer after the read (rows from the end), so
  // that another method's selection can be applied later (compress_copy).
  int keep_queries = 0;
  // Observer called for each layer of a compressing read, after attention
  // and before compression (tests, calibration).
  std::function<void(const LayerView&)> on_layer;
  // Called after each layer of a read (progress display).
  std::function<void(int layer, int n_layers)> on_progress;
  // Decode-time observers for calibration (batches of one sequence, one
  // token): the probe, and each layer's query ([n_heads][hd], post-RoPE) and
  // attention output ([n_heads][hd], before W_o), host pointers.
  AttentionProbe* probe = nullptr;
  std::function<void(int layer, const float* q, const float* attn)> on_decode_layer;
};

// Positions after the observation window that a read's press keeps as they
// are (LayerView::suffix): the user suffix with --kv-window-at user, else 0.
int window_suffix(const SequenceOptions& o);
// Query rows the press scores with: the window and the suffix after it.
int window_rows(const SequenceOptions& o);

class Sequence {
 public:
  Sequence(Context& ctx, const SequenceOptions& opt);
  ~Sequence();
  Sequence(const Sequence&) = delete;
  Sequence& operator=(const Sequence&) = delete;

  // A layer-major read of `tokens` after what the sequence holds. The first
  // read of a sequence is its prompt: each layer is compressed by the press.
  // begin_read reserves what the read needs (all or nothing; throws naming
  // the limit); read_layers runs up to n more layers and says whether all are
  // done; finish_read computes the last position's logits (vocab floats,
  // host) and, when `each` is set, every position's.
  void begin_read(std::span<const int> tokens);
  bool read_layers(int n);
  void finish_read(float* logits_last, const std::function<void(int64_t pos, const float* logits)>& each = {});
  bool reading() const { return read_.active; }
  // Abandons a read in progress as a failed one would (tensor parallelism:
  // another rank could not begin its part).
  void cancel_read();
  // The whole read at once.
  void read(std::span<const int> tokens, float* logits_last,
            const std::function<void(int64_t pos, const float* logits)>& each = {});

  // A sequence holding `full`'s prompt cache compressed by opt's press,
  // exactly as if its own read had compressed it (same kept positions and
  // rows; f32 caches). `full` must have read one prompt with method "full"
  // and kept at least the window's queries (keep_queries).
  static std::unique_ptr<Sequence> compress_copy(const Sequence& full, const SequenceOptions& opt);

  // The press a sequence of these options would use, checked against the
  // model's shape (throws ckv::Error naming the setting at fault).
  static std::unique_ptr<Press> make_press_for(const SequenceOptions& opt, const Model& m);
  // Most KV pages a sequence of these options holds after reading a prompt
  // of `prompt` tokens (each layer compressed to its press's budget) and
  // generating `generated` more: what the server reserves before the read.
  static int64_t pages_bound(const Context& ctx, const SequenceOptions& opt, int64_t prompt, int64_t generated);
  // Device bytes a first read of n tokens allocates beside its pages (the
  // read's residual stream, [n][dim] floats), until finish_read.
  static size_t read_transient_bytes(const ModelConfig& c, int64_t n) {
    return sizeof(float) * static_cast<size_t>(n) * c.dim;
  }

  int64_t n_past() const { return n_past_; }  // logical position of the next token
  const KvCache& kv() const { return kv_; }
  const Press& press() const { return *press_; }
  const SequenceOptions& options() const { return opt_; }
  // Kept prompt positions per layer from the compressing read ([L][G][n]).
  const std::vector<KeptPositions>& kept() const { return kept_; }
  // Bytes this sequence has held at its peak: KV pages, page tables, a
  // read's residual stream, kept queries and position lists.
  size_t peak_bytes() const { return peak_; }
  Context& context() const { return ctx_; }

 private:
  friend void decode_step(Context&, std::span<struct DecodeStep>);
  friend void read_layer(Context&, Sequence&, int);
  friend void read_logits(Context&, Sequence&, float*, const std::function<void(int64_t, const float*)>&);
  void note_peak(size_t transient = 0);
  void fail_read();

  Context& ctx_;
  SequenceOptions opt_;
  std::unique_ptr<Press> press_;
  KvCache kv_;
  int64_t n_past_ = 0;
  std::vector<KeptPositions> kept_;
  size_t kept_bytes_ = 0;
  float* queries_ = nullptr;  // [L][keep_queries][n_heads * hd] device, when kept
  int kept_query_rows_ = 0;
  size_t peak_ = 0;

  // State of a layer-major read in progress.
  struct Read {
    bool active = false, first = false, compress = false;
    std::vector<int32_t> tokens, pos;
    int64_t n = 0;          // new tokens
    int64_t first_new = 0;  // dense row of the first new token (a later read: the longest head's prefix)
    std::vector<int64_t> start;  // per KV head: dense row of its prefix
    int next_layer = 0;
    float* x = nullptr;  // [n][dim] device: the residual stream of the read
  } read_;
};

}  // namespace ckv
