// Built without MPI (BITPLAN_MPI=OFF, or none found): every search runs in one process.
#include "search/mpi_runner.hpp"

namespace bitplan::search {

std::unique_ptr<MpiJob> start_mpi_job() {
  return nullptr;
}

}  // namespace bitplan::search
