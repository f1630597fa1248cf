// weights.h: typed access to a model's named weights with the checks users need when a checkpoint
// does not fit: a missing tensor, a wrong shape (both shapes named) or a tensor nobody used.
#pragma once

#include <set>
#include <string>

#include "../core/backend.h"
#include "../core/host_tensor.h"

namespace l2d {

class WeightLoader {
 public:
  WeightLoader(Backend& backend, const TensorMap& weights, std::string model_kind)
      : backend_(backend), weights_(weights), kind_(std::move(model_kind)) {}

  // The tensor `name` on the backend; its shape must equal `shape`.
  Tensor get(const std::string& name, const Shape& shape);
  // The same without a shape check (shape read from the file).
  Tensor get_any(const std::string& name);
  // Host copy (float32) with a shape check, for weights preprocessed on the host.
  std::vector<float> get_host(const std::string& name, const Shape& shape);
  bool has(const std::string& name) const { return weights_.has(name); }
  const Shape& shape_of(const std::string& name) const;

  // Throws L2D_ERR_FORMAT listing tensors that no get() asked for, except those that start with
  // one of the ignored prefixes or contain one of the ignored fragments.
  void check_all_used(const std::vector<std::string>& ignored_fragments = {}) const;

 private:
  Backend& backend_;
  const TensorMap& weights_;
  std::string kind_;
  std::set<std::string> used_;
};

}  // namespace l2d
