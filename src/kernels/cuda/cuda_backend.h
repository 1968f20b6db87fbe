// The CUDA backend (kernels/cuda): the kernels of kernels/backend.h on one
// NVIDIA GPU. Weights are held as bf16 (GGUF quantised and f16/f32 tensors are
// dequantised exactly on the host and rounded once); activations are f32 in
// device memory; matrix products go through cuBLASLt (bf16 x bf16, fp32
// accumulation); attention, RoPE, norms, KV pages, window scoring and top-k
// are this directory's kernels.
//
// Built when CMake finds nvcc (option CKV_CUDA, which defines CKV_HAVE_CUDA);
// without it these functions exist too and report that CUDA is absent, so
// callers need no #ifdef.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "kernels/backend.h"

namespace ckv {

struct CudaOptions {
  int device = 0;
  // Matrices of the Model whose Tensor has a shape but no data (data ==
  // nullptr, numel > 0) are filled at prepare() with seeded random bf16
  // values (--random-weights; for speed only): this seed.
  uint64_t random_seed = 0;
};

// True when built with CUDA and a usable device is present; otherwise false
// and, when why is given, the reason ("built without CUDA", the driver's
// error). Never throws.
bool cuda_available(std::string* why = nullptr);

// Throws ckv::Error when CUDA is absent or the device cannot be opened.
std::unique_ptr<Backend> make_cuda_backend(const CudaOptions& opt = {});

// A CUDA backend's device and stream (a cudaStream_t), for the collectives
// queued beside its kernels (kernels/cuda/nccl_comm.h). Throws for another backend.
int cuda_device_of(Backend& b);
void* cuda_stream_of(Backend& b);
// CUDA devices present (0 without CUDA). Never throws.
int cuda_device_count();

// A model of the shape of a Hugging Face config.json with no weights in it
// (--random-weights): matrices are BF16 Tensors with data == nullptr, which
// the CUDA backend fills with seeded random values at prepare(); norm
// weights are ones and biases zeros (F32, owned by the Model); no tokenizer.
std::unique_ptr<Model> make_random_model(const std::string& config_json);

}  // namespace ckv
