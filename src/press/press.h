// KV-cache compression methods ("presses"). A press looks at one layer right
// after its attention over the whole prompt and returns, per KV head, the
// prompt positions to keep. A press is a token selection and a budget
// allocation (DESIGN.md 3, "Methods compose"), each one small file, joined by
// name in registry.cpp; the named methods are presets of such pairs. Scores
// come from the backend (Backend::window_scores / top_k), so a press never
// reads K itself and on a GPU nothing of a layer's keys goes to the host.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ckv {

struct Profile;
class Backend;
class Communicator;

enum class Pool { Avg, Max };

// Where the observation window ends (--kv-window-at). End: the prompt's last
// w tokens (the paper's setting). User: the last w tokens of the final user
// message's content, before the chat template's suffix; the suffix's tokens
// are then always kept, like the window, and count against the budget
// (LayerView::suffix). A plain prompt has no suffix: User equals End.
enum class WindowAt { End, User };

// User settings (--kv-* flags). Validated by make_press.
struct PressParams {
  int budget = 0;  // average tokens kept per layer and KV head, window included
  int window = 8;
  int kernel = 5;
  Pool pool = Pool::Avg;
  int n_srh = 4;       // srh selection: semantic retrieval heads used per layer
  int n_sinks = 4;     // sinks selection (streamingllm)
  float alpha = 0.2f;  // ada allocation
  int beta = 20;       // pyramid allocation
  WindowAt window_at = WindowAt::End;
};

// What a press sees of one layer (all pointers valid during select(); device
// pointers are in the backend's memory).
struct LayerView {
  int layer = 0;
  int n_layers = 0;
  int T = 0;  // prompt length
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  const float* q = nullptr;  // [q_rows][n_heads][head_dim]: post-RoPE queries of positions T-q_rows .. T-1
  int q_rows = 0;            // at least the window
  const float* k = nullptr;  // [T][n_kv_heads][head_dim], post-RoPE keys of the whole prompt
  Backend* backend = nullptr;
  float* scratch = nullptr;  // device floats, at least (n_heads + 1) * T; a rank's: (total_kv + total_heads + 1) * T
  // The last `suffix` positions follow the observation window (--kv-window-at
  // user: the chat template's suffix). They are always kept and count against
  // the budget; the window is the `window` positions before them, and q's
  // rows end at T - 1 as ever (so q_rows >= window + suffix). 0: the window
  // ends the prompt.
  int suffix = 0;
  // Tensor parallelism (engine/tp.h): this rank's heads above are query heads
  // [head0, head0 + n_heads) and KV heads [kv_head0, ...) of the whole
  // model's total_heads / total_kv_heads, and comm joins the ranks. A press
  // keeps the same positions on every rank as on one device. Zeros/null: the
  // whole model on one device.
  int head0 = 0, kv_head0 = 0, total_heads = 0, total_kv_heads = 0;
  Communicator* comm = nullptr;
  bool split() const { return comm != nullptr && total_kv_heads > n_kv_heads; }
  int all_heads() const { return total_heads ? total_heads : n_heads; }
  int all_kv_heads() const { return total_kv_heads ? total_kv_heads : n_kv_heads; }
};

// Kept prompt positions: [n_kv_heads][n_kept], each ascending.
using KeptPositions = std::vector<std::vector<int32_t>>;

class Press {
 public:
  virtual ~Press() = default;
  virtual std::string name() const = 0;
  // Called once per prompt before the first layer.
  virtual void begin(int n_layers, int T) {}
  // Positions each KV head of this layer keeps. Ascending, unique, within
  // [0, T). A press that keeps everything returns all of [0, T).
  virtual KeptPositions select(const LayerView& lv) = 0;
  // Budget of a layer for this prompt (tokens per KV head on average; T or
  // more = all).
  virtual int layer_budget(int layer) const = 0;
};

// Model shape a press needs to check its settings and profile against.
struct PressShape {
  int n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
};

// Registry. `method` is a preset ("full", "streamingllm", "snapkv",
// "pyramidkv", "adakv", "compresskv", "adacompresskv") or, with `select` and
// `alloc` set, any pair (make_press_pair). Throws ckv::Error naming the
// parameter for bad settings (unknown method, budget <= window, srh without
// a profile, ...). profile may be null.
std::unique_ptr<Press> make_press(const std::string& method, const PressParams& p, const PressShape& shape,
                                  const Profile* profile);
// A selection ("window", "srh", "sinks") and an allocation ("uniform",
// "pyramid", "error-aware", "ada", "ada-error-aware") by name (--kv-select,
// --kv-alloc).
std::unique_ptr<Press> make_press_pair(const std::string& select, const std::string& alloc, const PressParams& p,
                                       const PressShape& shape, const Profile* profile);
std::vector<std::string> press_names();
std::vector<std::string> selection_names();
std::vector<std::string> allocation_names();
// The (selection, allocation) pair of a preset; throws for unknown names and "full".
std::pair<std::string, std::string> preset_pair(const std::string& method);

}  // namespace ckv
