// Built without CUDA (CKV_CUDA off or no nvcc): the CUDA entry points exist
// and say so, so callers need no #ifdef.
#ifndef CKV_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/nccl_comm.h"
#include "util/error.h"

namespace ckv {

bool cuda_available(std::string* why) {
  if (why) *why = "built without CUDA (configure with nvcc present, or -DCKV_CUDA=ON)";
  return false;
}

std::unique_ptr<Backend> make_cuda_backend(const CudaOptions&) {
  throw Error("--device cuda: this build has no CUDA backend (configure with nvcc present, or -DCKV_CUDA=ON)");
}

int cuda_device_of(Backend&) { throw Error("this build has no CUDA backend"); }
void* cuda_stream_of(Backend&) { throw Error("this build has no CUDA backend"); }
int cuda_device_count() { return 0; }

bool nccl_available(std::string* why) {
  if (why) *why = "built without CUDA, so without NCCL";
  return false;
}

std::vector<std::unique_ptr<Communicator>> make_nccl_comms(std::span<Backend* const>) {
  throw Error("--tp on CUDA devices needs NCCL: this build has no CUDA backend");
}

}  // namespace ckv
#endif
