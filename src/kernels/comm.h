// Collectives between the ranks of a tensor-parallel group (engine/tp.h):
// one rank per device, each with its own backend. The forward pass sums the
// ranks' partial outputs of W_o and W_down with all_reduce_sum, the presses
// share their scores with it, and a step that one rank could not take
// (a full KV pool) is agreed on through all_gather.
//
// Every rank calls the same collectives in the same order (the forward pass
// and the presses have one control flow for all ranks). Implementations:
// threads of one process over host memory (make_thread_comms below, for the
// CPU backend) and NCCL on CUDA devices (kernels/cuda/nccl_comm.h).
#pragma once
#include <cstdint>
#include <exception>
#include <memory>
#include <vector>

#include "util/error.h"

namespace ckv {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // buf (n floats in this rank's backend memory) becomes the element-wise
  // sum over the ranks' buffers, on every rank. Queued in the backend's
  // order (on CUDA: its stream); x + 0 is exact, so a rank that contributes
  // zeros leaves the others' values bit for bit.
  virtual void all_reduce_sum(float* buf, int64_t n) = 0;
  // Every rank's n values (host) into out ([size][n], host), in rank order.
  // Waits for the backend's queued work.
  virtual void all_gather(const int32_t* mine, int32_t* out, int n) = 0;
  virtual void barrier() = 0;
  // Called from another thread when a rank failed outside a collective: the
  // ranks waiting in one are released with an Error. False when this
  // communicator cannot be used afterwards (NCCL: it is torn down).
  virtual bool abort() = 0;
  // Back to a usable state after abort() returned true and every rank stopped.
  virtual void reset() {}
};

// A step some rank could not take, thrown on every rank at the same point of
// the forward pass (no rank waits for another afterwards). `own` is set on
// the rank that met the failure; the others report it second hand.
struct RankStepFailed : Error {
  RankStepFailed(const std::string& what, bool own_failure) : Error(what), own(own_failure) {}
  bool own;
};

// Agreement on a step every rank tried: rethrows `mine` (as RankStepFailed)
// where set, and throws RankStepFailed naming the failed rank on the others.
// comm may be null (one rank): then only rethrows.
void agree_on_step(Communicator* comm, std::exception_ptr mine);

// The CPU's communicator: n ranks that are threads of this process, each
// holding host buffers (kernels/cpu/thread_comm.cpp). Element i of a sum is
// added in rank order on whichever thread owns i, so sums are deterministic.
std::vector<std::unique_ptr<Communicator>> make_thread_comms(int n);

}  // namespace ckv
