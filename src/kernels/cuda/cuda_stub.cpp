// Built without CUDA (CKV_CUDA off or no nvcc): the CUDA entry points exist
// and say so, so callers need no #ifdef.
#ifndef CKV_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#include "util/error.h"

namespace ckv {

bool cuda_available(std::string* why) {
  if (why) *why = "built without CUDA (configure with nvcc present, or -DCKV_CUDA=ON)";
  return false;
}

std::unique_ptr<Backend> make_cuda_backend(const CudaOptions&) {
  throw Error("--device cuda: this build has no CUDA backend (configure with nvcc present, or -DCKV_CUDA=ON)");
}

}  // namespace ckv
#endif
