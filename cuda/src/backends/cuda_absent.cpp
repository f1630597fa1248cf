// Built instead of the CUDA backend when nvcc is not available.
#include "backends.h"

namespace l2d {

std::unique_ptr<Backend> make_cuda_backend(const Json&) {
  fail(L2D_ERR_UNSUPPORTED, "this build of liblive2diff has no CUDA backend (nvcc was not found when it was built)");
}

bool cuda_backend_available() { return false; }

}  // namespace l2d
