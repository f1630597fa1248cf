// backends.h: constructors of the concrete backends (the only place api.cpp learns they exist).
#pragma once

#include <memory>

#include "../core/backend.h"
#include "../core/json.h"

namespace l2d {

// options: {"threads": n} (default: hardware concurrency).
std::unique_ptr<Backend> make_cpu_backend(const Json& options);

// options: {"precision": "fp16"|"fp32", "device": n}. Throws L2D_ERR_UNSUPPORTED when the library
// was built without CUDA or no device is present.
std::unique_ptr<Backend> make_cuda_backend(const Json& options);
// 1 when built with CUDA and a device is visible.
bool cuda_backend_available();

}  // namespace l2d
