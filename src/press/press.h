// KV-cache compression methods ("presses"). A press looks at one layer right
// after its attention over the whole prompt and returns, per KV head, the
// prompt positions to keep. Budgets come from an allocator (press/budgets.h);
// the engine does the gather. One file per method, one registry line each.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ckv {

struct Profile;

enum class Pool { Avg, Max };

// User settings (--kv-* flags). Validated by make_press.
struct PressParams {
  int budget = 0;  // average tokens kept per layer and KV head, window included
  int window = 8;
  int kernel = 5;
  Pool pool = Pool::Avg;
  int n_srh = 4;     // compresskv: semantic retrieval heads used per layer
  int n_sinks = 4;   // streamingllm
  float alpha = 0.2f;  // adakv
  int beta = 20;       // pyramidkv
};

// What a press sees of one layer (all pointers valid during select()).
struct LayerView {
  int layer = 0;
  int n_layers = 0;
  int T = 0;  // prompt length
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  const float* q;  // [T][n_heads][head_dim], post-RoPE queries of the whole prompt
  const float* k;  // [T][n_kv_heads][head_dim], post-RoPE keys of the whole prompt
};

// Kept prompt positions: [n_kv_heads][n_kept], each ascending.
using KeptPositions = std::vector<std::vector<int32_t>>;

class Press {
 public:
  virtual ~Press() = default;
  virtual std::string name() const = 0;
  // Called once per prompt before the first layer.
  virtual void begin(int n_layers, int T) {}
  // Positions each KV head of this layer keeps. Must be ascending, unique,
  // within [0, T). A press that keeps everything returns all of [0, T).
  virtual KeptPositions select(const LayerView& lv) = 0;
  // Budget of a layer for this prompt (tokens per KV head; T or more = all).
  virtual int layer_budget(int layer) const = 0;
};

// Model shape a press needs to check its settings and profile against.
struct PressShape {
  int n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
};

// Registry: "full", "streamingllm", "snapkv", "pyramidkv", "adakv", "compresskv".
// Throws ckv::Error naming the parameter for bad settings (unknown method,
// budget <= window, compresskv without a profile, ...). profile may be null.
std::unique_ptr<Press> make_press(const std::string& method, const PressParams& p, const PressShape& shape,
                                  const Profile* profile);
std::vector<std::string> press_names();

}  // namespace ckv
