// Tensor views over weights. A Tensor never owns its bytes: they live in a
// memory-mapped file or a buffer the Model keeps alive.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ckv {

// Values are GGML's type ids, so a GGUF type field maps directly.
enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q8_0 = 8,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  BF16 = 30,
};

// Name as GGUF/llama.cpp print it ("Q4_K"), or "type N" for an unknown id.
std::string dtype_name(uint32_t id);
inline std::string dtype_name(DType t) { return dtype_name(static_cast<uint32_t>(t)); }
// True for the ids above (the types this engine reads).
bool dtype_supported(uint32_t id);
// Elements per block (1 for F32/F16/BF16) and bytes per block.
int64_t dtype_block_elems(DType t);
int64_t dtype_block_bytes(DType t);
// Bytes of a row of n elements; n must be a multiple of the block size.
inline int64_t dtype_row_bytes(DType t, int64_t n) { return n / dtype_block_elems(t) * dtype_block_bytes(t); }

struct Tensor {
  std::string name;
  DType type = DType::F32;
  // Shape, outermost first: a matrix is {rows, cols} with cols contiguous
  // (GGUF's ne[1], ne[0]; safetensors' [out, in]). A vector is {n}.
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;
  // A rank's slice of a larger matrix (tensor parallelism, model/shard.h):
  // element (r, c) here is the whole's (row0 + r, col0 + c), the whole being
  // full_cols wide; full_cols 0: not a slice. --random-weights seeds each
  // element by its index in the whole, so a random model's slices equal the
  // slices of the unsplit random model.
  int64_t row0 = 0, col0 = 0, full_cols = 0;

  bool empty() const { return data == nullptr; }
  int64_t cols() const { return shape.empty() ? 0 : shape.back(); }
  int64_t rows() const {
    int64_t r = 1;
    for (size_t i = 0; i + 1 < shape.size(); ++i) r *= shape[i];
    return r;
  }
  int64_t numel() const { return rows() * cols(); }
  int64_t row_bytes() const { return dtype_row_bytes(type, cols()); }
  const uint8_t* row(int64_t r) const { return static_cast<const uint8_t*>(data) + r * row_bytes(); }
};

}  // namespace ckv
