#include "tensor.h"

#include "backend.h"

namespace l2d {

size_t storage_size(DType dtype) {
  switch (dtype) {
    case DType::F32: return 4;
    case DType::F16: return 2;
    case DType::I32: return 4;
  }
  return 4;
}

Buffer::Buffer(Backend* backend, size_t bytes) : backend_(backend), bytes_(bytes) {
  data_ = backend->raw_alloc(bytes == 0 ? 1 : bytes);
}

Buffer::~Buffer() {
  if (data_) backend_->raw_free(data_, bytes_ == 0 ? 1 : bytes_);
}

Buffer::Buffer(Buffer&& other) noexcept : backend_(other.backend_), data_(other.data_), bytes_(other.bytes_) {
  other.data_ = nullptr;
}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    if (data_) backend_->raw_free(data_, bytes_ == 0 ? 1 : bytes_);
    backend_ = other.backend_;
    data_ = other.data_;
    bytes_ = other.bytes_;
    other.data_ = nullptr;
  }
  return *this;
}

Tensor::Tensor(Backend* backend, DType dtype, Shape shape) : dtype_(dtype), shape_(std::move(shape)) {
  buffer_ = std::make_shared<Buffer>(backend, size_t(shape_numel(shape_)) * storage_size(dtype));
}

int64_t Tensor::dim(int i) const {
  const int n = ndim();
  const int j = i < 0 ? i + n : i;
  if (j < 0 || j >= n) fail(L2D_ERR_INTERNAL, "dimension ", i, " out of range for shape ", shape_str(shape_));
  return shape_[size_t(j)];
}

Tensor Tensor::reshape(Shape shape) const {
  int64_t known = 1;
  int infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (infer >= 0) fail(L2D_ERR_INTERNAL, "reshape with two -1 dimensions");
      infer = int(i);
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0) shape[size_t(infer)] = known ? numel() / known : 0;
  if (shape_numel(shape) != numel())
    fail(L2D_ERR_INTERNAL, "cannot reshape ", shape_str(shape_), " to ", shape_str(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

}  // namespace l2d
