// NCCL communicators (kernels/cuda/nccl_comm.h). Every NCCL and CUDA call is
// checked and its error names the call.
#include "kernels/cuda/nccl_comm.h"

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_common.cuh"

#ifdef CKV_HAVE_NCCL
#include <dlfcn.h>
#include <nccl.h>

namespace ckv {

namespace {

// The few NCCL entry points used, from libnccl.so.2 opened at run time.
struct NcclApi {
  ncclResult_t (*CommInitAll)(ncclComm_t*, int, const int*) = nullptr;
  ncclResult_t (*AllReduce)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*AllGather)(const void*, void*, size_t, ncclDataType_t, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*CommDestroy)(ncclComm_t) = nullptr;
  ncclResult_t (*CommAbort)(ncclComm_t) = nullptr;
  const char* (*GetErrorString)(ncclResult_t) = nullptr;
  ncclResult_t (*GetVersion)(int*) = nullptr;
};

const NcclApi* nccl_api(std::string* why) {
  static std::once_flag once;
  static NcclApi api;
  static std::string err;
  static bool ok = false;
  std::call_once(once, [] {
    void* h = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
#ifdef CKV_NCCL_LIB
    if (!h) h = dlopen(CKV_NCCL_LIB, RTLD_NOW | RTLD_LOCAL);
#endif
    if (!h) {
      const char* e = dlerror();
      err = std::string("cannot load libnccl.so.2 (") + (e ? e : "not found") +
            "): put NCCL's library directory on LD_LIBRARY_PATH";
      return;
    }
    auto sym = [&](const char* name) {
      void* p = dlsym(h, name);
      if (!p && err.empty()) err = std::string("libnccl.so.2 has no ") + name;
      return p;
    };
    api.CommInitAll = reinterpret_cast<decltype(api.CommInitAll)>(sym("ncclCommInitAll"));
    api.AllReduce = reinterpret_cast<decltype(api.AllReduce)>(sym("ncclAllReduce"));
    api.AllGather = reinterpret_cast<decltype(api.AllGather)>(sym("ncclAllGather"));
    api.CommDestroy = reinterpret_cast<decltype(api.CommDestroy)>(sym("ncclCommDestroy"));
    api.CommAbort = reinterpret_cast<decltype(api.CommAbort)>(sym("ncclCommAbort"));
    api.GetErrorString = reinterpret_cast<decltype(api.GetErrorString)>(sym("ncclGetErrorString"));
    api.GetVersion = reinterpret_cast<decltype(api.GetVersion)>(sym("ncclGetVersion"));
    ok = err.empty();
  });
  if (!ok && why) *why = err;
  return ok ? &api : nullptr;
}

void check(const NcclApi& api, ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw Error(std::string("NCCL error in ") + what + ": " + api.GetErrorString(r));
}

__global__ void to_bf16(const float* x, __nv_bfloat16* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __float2bfloat16_rn(x[i]);
}
__global__ void from_bf16(const __nv_bfloat16* y, float* x, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[i] = __bfloat162float(y[i]);
}

class NcclComm final : public Communicator {
 public:
  NcclComm(const NcclApi& api, ncclComm_t c, int rank, int size, int device, cudaStream_t s, bool bf16)
      : api_(api), comm_(c), rank_(rank), size_(size), device_(device), stream_(s), bf16_(bf16) {}
  ~NcclComm() override {
    if (comm_) api_.CommDestroy(comm_);
    cudaFree(wire_);
    cudaFree(gather_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_reduce_sum(float* buf, int64_t n) override {
    if (n <= 0) return;
    live();
    if (!bf16_) {
      check(api_, api_.AllReduce(buf, buf, static_cast<size_t>(n), ncclFloat32, ncclSum, comm_, stream_),
            "ncclAllReduce (f32)");
      return;
    }
    auto* w = static_cast<__nv_bfloat16*>(room(wire_, wire_cap_, static_cast<size_t>(n) * 2));
    const unsigned grid = static_cast<unsigned>(std::min<int64_t>(4096, (n + 255) / 256));
    to_bf16<<<grid, 256, 0, stream_>>>(buf, w, n);
    CKV_LAUNCH_CHECK();
    check(api_, api_.AllReduce(w, w, static_cast<size_t>(n), ncclBfloat16, ncclSum, comm_, stream_),
          "ncclAllReduce (bf16)");
    from_bf16<<<grid, 256, 0, stream_>>>(w, buf, n);
    CKV_LAUNCH_CHECK();
  }

  void all_gather(const int32_t* mine, int32_t* out, int n) override {
    if (n <= 0) return;
    live();
    auto* d = static_cast<int32_t*>(room(gather_, gather_cap_, static_cast<size_t>(n) * (size_ + 1) * 4));
    CKV_CUDA_CHECK(cudaMemcpyAsync(d, mine, static_cast<size_t>(n) * 4, cudaMemcpyHostToDevice, stream_));
    check(api_, api_.AllGather(d, d + n, static_cast<size_t>(n), ncclInt32, comm_, stream_), "ncclAllGather");
    CKV_CUDA_CHECK(cudaMemcpyAsync(out, d + n, static_cast<size_t>(n) * size_ * 4, cudaMemcpyDeviceToHost, stream_));
    CKV_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  void barrier() override {
    int32_t one = 1;
    std::vector<int32_t> all(size_);
    all_gather(&one, all.data(), 1);
  }

  bool abort() override {
    if (comm_) api_.CommAbort(comm_);
    comm_ = nullptr;
    return false;
  }

 private:
  void live() const {
    if (!comm_) throw Error("tensor parallel: this rank's NCCL communicator was aborted after a failure");
  }
  // A device buffer of at least `bytes` on this rank's device (grown rarely:
  // the largest sum is a prompt chunk's rows).
  void* room(void*& p, size_t& cap, size_t bytes) {
    if (bytes <= cap) return p;
    CKV_CUDA_CHECK(cudaSetDevice(device_));
    CKV_CUDA_CHECK(cudaStreamSynchronize(stream_));
    CKV_CUDA_CHECK(cudaFree(p));
    p = nullptr;
    cap = 0;
    CKV_CUDA_CHECK(cudaMalloc(&p, bytes));
    cap = bytes;
    return p;
  }

  const NcclApi& api_;
  ncclComm_t comm_;
  int rank_, size_, device_;
  cudaStream_t stream_;
  bool bf16_;
  void* wire_ = nullptr;
  size_t wire_cap_ = 0;
  void* gather_ = nullptr;
  size_t gather_cap_ = 0;
};

}  // namespace

bool nccl_available(std::string* why) { return nccl_api(why) != nullptr; }

std::vector<std::unique_ptr<Communicator>> make_nccl_comms(std::span<Backend* const> backends) {
  std::string why;
  const NcclApi* api = nccl_api(&why);
  if (!api) throw Error("--tp on CUDA devices needs NCCL: " + why);
  // NVLink multicast stays off unless the user chose otherwise (see the header).
  setenv("NCCL_NVLS_ENABLE", "0", 0);
  setenv("NVSHMEM_DISABLE_NVLS", "1", 0);
  setenv("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1", 0);
  const int n = static_cast<int>(backends.size());
  std::vector<int> devs(n);
  for (int r = 0; r < n; ++r) devs[r] = cuda_device_of(*backends[r]);
  for (int r = 0; r < n; ++r)
    for (int q = 0; q < r; ++q)
      if (devs[q] == devs[r]) throw Error("--tp: ranks " + std::to_string(q) + " and " + std::to_string(r) +
                                          " are on the same CUDA device " + std::to_string(devs[r]));
  const char* mode = std::getenv("CKV_TP_REDUCE");
  const std::string m = mode ? mode : "f32";
  if (m != "f32" && m != "bf16") throw Error("CKV_TP_REDUCE must be f32 or bf16, found '" + m + "'");
  std::vector<ncclComm_t> comms(n);
  check(*api, api->CommInitAll(comms.data(), n, devs.data()), "ncclCommInitAll");
  std::vector<std::unique_ptr<Communicator>> v;
  for (int r = 0; r < n; ++r)
    v.push_back(std::make_unique<NcclComm>(*api, comms[r], r, n, devs[r],
                                           static_cast<cudaStream_t>(cuda_stream_of(*backends[r])), m == "bf16"));
  return v;
}

}  // namespace ckv

#else  // CUDA without NCCL's header

namespace ckv {

bool nccl_available(std::string* why) {
  if (why) *why = "built without NCCL (nccl.h was not found at configure time)";
  return false;
}

std::vector<std::unique_ptr<Communicator>> make_nccl_comms(std::span<Backend* const>) {
  throw Error("--tp on CUDA devices needs NCCL: this build has none (install NCCL and configure again)");
}

}  // namespace ckv

#endif
