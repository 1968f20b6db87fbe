// Shared by the CUDA backend's .cu files: error checks, bf16/f16 helpers and
// the internal kernel launchers (defined in cuda_attention.cu and
// cuda_backend.cu). Everything here runs on the backend's one stream.
#pragma once
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <utility>

#include "util/error.h"

namespace ckv::cuda {

// Every CUDA call is checked; the error names the call and the place.
[[noreturn]] void fail(const char* what, const char* err, const char* file, int line);
#define CKV_CUDA_CHECK(call)                                                          \
  do {                                                                                \
    cudaError_t e_ = (call);                                                          \
    if (e_ != cudaSuccess) ::ckv::cuda::fail(#call, cudaGetErrorString(e_), __FILE__, __LINE__); \
  } while (0)
#define CKV_CUBLAS_CHECK(call)                                                                 \
  do {                                                                                         \
    cublasStatus_t s_ = (call);                                                                \
    if (s_ != CUBLAS_STATUS_SUCCESS) ::ckv::cuda::fail(#call, cublasLt_status(s_), __FILE__, __LINE__); \
  } while (0)
// After each launch: a bad configuration shows here, not at the next sync.
#define CKV_LAUNCH_CHECK() CKV_CUDA_CHECK(cudaGetLastError())

const char* cublasLt_status(cublasStatus_t s);

// Function attributes (cudaFuncSetAttribute: a kernel's dynamic shared
// memory) hold per device, and tensor parallelism runs several devices in one
// process, a thread each: true the first time the current device comes to
// the kernel whose flags `mask` holds (one bit a device).
inline bool first_on_this_device(std::atomic<uint64_t>& mask) {
  int d = 0;
  CKV_CUDA_CHECK(cudaGetDevice(&d));
  const uint64_t bit = uint64_t(1) << (d & 63);
  return (mask.fetch_or(bit) & bit) == 0;
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ---- programmatic dependent launch (Hopper) ---------------------------------
// A kernel started by launch_pdl may become resident while the kernel before
// it in the stream still runs (a decode step is ~230 small launches: this
// hides the launch and the previous kernel's tail). It runs up to pdl_wait(),
// which returns once the kernel before has finished and its writes are
// visible; so before pdl_wait() a kernel reads only what no kernel writes
// (weights) and writes nothing. pdl_trigger() (after the wait) lets the next
// kernel's blocks start. Both are no-ops in a kernel launched the plain way.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
// on = false: the plain launch (the backend's choice: CKV_CUDA_PDL=0, or a
// GPU before compute capability 9.0).
template <class... P, class... A>
void launch_pdl(bool on, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, A&&... args) {
  cudaLaunchAttribute attr[1] = {};
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cfg.attrs = attr;
  cfg.numAttrs = on ? 1 : 0;
  CKV_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<A>(args)...));
}

// Key/value row element of a KV page.
enum class KvElem { F32, F16 };

// ---- attention launchers (cuda_attention.cu)

// Dense causal prefill (Backend::attention_prefill) on the tensor cores for
// head dims 64 and 128: K/V rows [kv_row0, ...) as f16 ([rows][n_kv][hd]),
// made from the f32 rows by convert_kv_half. start: device [n_kv] or nullptr
// (every head starts at first_new).
bool prefill_mma_supported(int hd);
void convert_kv_half(const float* k, const float* v, __half* kh, __half* vh, int64_t n, cudaStream_t s);
void attention_prefill_f16(const float* q, const __half* kh, const __half* vh, int64_t kv_row0, float* out, int64_t i0,
                           int64_t nq, int64_t first_new, const int32_t* start, int n_heads, int n_kv, int hd,
                           cudaStream_t s);
// The same on the CUDA cores in f32, any head dim up to 256.
void attention_prefill_generic(const float* q, const float* k, const float* v, float* out, int64_t i0, int64_t nq,
                               int64_t first_new, const int32_t* start, int n_heads, int n_kv, int hd, cudaStream_t s);

// One sequence's view of its paged cache at one layer, for the device.
// Layer-independent (one upload serves every layer of a step): the kernels
// add head_off = layer * n_kv.
struct PagedSeq {
  const int32_t* table;  // [layers * n_kv][max_pages] page ids
  const int32_t* len;    // [layers * n_kv] rows, counting the new tokens
  int max_pages;
  int row0, n;           // query rows [row0, row0 + n) of the batch
  int chunk;             // keys of one split of the tensor-core decode (a multiple of 64)
};

// Query rows of one decode tile: KV head g's query heads for each new token
// of a sequence, packed (row p = token p / r, head g*r + p % r), 16 a tile.
constexpr int kDecodeTileRows = 16;
// The tensor-core decode's grid: block (split, tile, seq * n_kv + g) takes
// rows [16 tile, 16 tile + 16) of KV head g's packed query group of sequence
// seq over keys [split * chunk, (split + 1) * chunk) clipped to the head's
// length, which the kernel reads on the device (so that a recorded step
// replays at any length). With splits > 1 each block leaves a partial in its
// slot and a second kernel merges a tile's splits.
struct DecodeGrid {
  const PagedSeq* seqs;  // device [n_seqs]
  int n_seqs, tiles, splits;
  int head_off;          // layer * n_kv
  float* part_acc;       // [n_seqs * n_kv * tiles * splits][16][hd]
  float* part_ml;        // [same][16][2] (max in log2 units, sum)
};

struct PagedPool {
  const uint8_t* base;
  size_t page_bytes;
  int page_rows;
  KvElem elem;
};

// Flash-decoding over f16 pages on the tensor cores, head dims 64 and 128
// (others, and f32 pages: the generic kernel).
void attention_decode_split(const float* q, float* out, const PagedPool& pool, const DecodeGrid& grid, int n_heads,
                            int n_kv, int hd, cudaStream_t s, bool pdl);
bool decode_split_supported(int hd);
int decode_tile_keys();  // a split's keys are best a multiple of this (4 warps x 16 keys)
// Blocks of the split kernel resident on one SM at once (its occupancy; 4
// for head dims it does not serve): a grid of at most this many per SM runs
// in one wave.
int decode_blocks_per_sm(int hd);

// The generic decode (any head dim; one block per query row and head) with
// optional probe outputs (mass over [lo, hi) and argmax row per head of a
// one-sequence one-token batch: device mass[H], argmax[H]).
void attention_decode_generic(const float* q, float* out, const PagedPool& pool, const PagedSeq* seqs, int n_seqs,
                              int max_rows_per_seq, int head_off, int n_heads, int n_kv, int hd, int probe_lo,
                              int probe_hi,
                              float* probe_mass, int32_t* probe_argmax, cudaStream_t s);

}  // namespace ckv::cuda
