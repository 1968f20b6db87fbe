// NCCL communicators for tensor parallelism on CUDA (kernels/comm.h): one
// process, one thread per GPU (engine/tp.h), the communicators made together
// by ncclCommInitAll. Sums run in place on each backend's stream, in f32 (the
// activations' type) or, with CKV_TP_REDUCE=bf16, as bf16 on the wire (half
// the bytes; the sum rounded to bf16 -- Megatron's choice with bf16
// activations).
//
// libnccl.so.2 is opened at run time (dlopen), so a build with NCCL's header
// runs without the library until --tp asks for it. NVLink multicast (NVLS) is
// kept off (NCCL_NVLS_ENABLE=0 unless the user set it): on shared hosts it
// can put GPUs out of service.
#pragma once
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/comm.h"

namespace ckv {

// True when this build has NCCL and libnccl.so.2 loads; otherwise false and
// the reason in why. Never throws.
bool nccl_available(std::string* why = nullptr);

// One communicator per CUDA backend (rank r = backends[r], each on its own
// device). Throws an Error saying what is missing or what NCCL reported.
std::vector<std::unique_ptr<Communicator>> make_nccl_comms(std::span<Backend* const> backends);

}  // namespace ckv
