#include "kernels/comm.h"

#include <string>

namespace ckv {

void agree_on_step(Communicator* comm, std::exception_ptr mine) {
  if (!comm || comm->size() == 1) {
    if (mine) std::rethrow_exception(mine);
    return;
  }
  const int32_t flag = mine ? 1 : 0;
  std::vector<int32_t> all(comm->size());
  comm->all_gather(&flag, all.data(), 1);
  if (mine) {
    try {
      std::rethrow_exception(mine);
    } catch (const std::exception& e) {
      throw RankStepFailed(e.what(), true);
    }
  }
  for (int r = 0; r < comm->size(); ++r)
    if (all[r])
      throw RankStepFailed("tensor parallel rank " + std::to_string(r) + " could not take this step (its error is "
                           "reported by that rank); rank " + std::to_string(comm->rank()) + " did not take it either",
                           false);
}

}  // namespace ckv
