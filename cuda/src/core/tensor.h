// tensor.h: backend tensors. A Buffer is move-only RAII device (or host) memory owned by one
// backend; a Tensor is a cheap, copyable view of a whole Buffer (dtype + shape, always contiguous),
// so reshapes are free and weights can be shared by many sessions. Ops never mutate their inputs
// (write_slice and the KV-cache op are the documented in-place exceptions).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "host_tensor.h"

namespace l2d {

class Backend;

// Storage types of backend tensors. Float tensors use the backend's float_dtype(); I32 holds
// indices (token ids, PE indices, cache slots).
enum class DType : int { F32 = 0, F16 = 1, I32 = 2 };
size_t storage_size(DType dtype);

class Buffer {
 public:
  Buffer(Backend* backend, size_t bytes);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Backend* backend() const { return backend_; }

 private:
  Backend* backend_ = nullptr;
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

class Tensor {
 public:
  Tensor() = default;
  // Allocates an uninitialised tensor on backend.
  Tensor(Backend* backend, DType dtype, Shape shape);

  bool defined() const { return buffer_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return int(shape_.size()); }
  // dim(-1) is the last dimension.
  int64_t dim(int i) const;
  int64_t numel() const { return shape_numel(shape_); }
  size_t bytes() const { return size_t(numel()) * storage_size(dtype_); }
  DType dtype() const { return dtype_; }
  Backend* backend() const { return buffer_ ? buffer_->backend() : nullptr; }
  void* data() const { return buffer_ ? buffer_->data() : nullptr; }
  template <typename T>
  T* ptr() const { return static_cast<T*>(data()); }

  // Same data, new shape (same numel; one dimension may be -1).
  Tensor reshape(Shape shape) const;

 private:
  std::shared_ptr<Buffer> buffer_;
  DType dtype_ = DType::F32;
  Shape shape_;
};

}  // namespace l2d
