#include "weights.h"

namespace l2d {

// Weights are float tensors; an integer tensor under a weight name means a wrong or hostile file.
static void require_float(const std::string& kind, const std::string& name, const HostTensor& h) {
  if (h.dtype != L2D_F32 && h.dtype != L2D_F16 && h.dtype != L2D_BF16)
    fail(L2D_ERR_FORMAT, kind, " weight \"", name, "\" has dtype ", dtype_name(h.dtype), ", expected a float tensor");
}

const Shape& WeightLoader::shape_of(const std::string& name) const {
  return weights_.at(name, (kind_ + " model").c_str()).shape;
}

Tensor WeightLoader::get(const std::string& name, const Shape& shape) {
  const HostTensor& h = weights_.at(name, (kind_ + " model").c_str());
  if (h.shape != shape)
    fail(L2D_ERR_FORMAT, kind_, " weight \"", name, "\" has shape ", shape_str(h.shape), ", expected ", shape_str(shape));
  require_float(kind_, name, h);
  used_.insert(name);
  return backend_.from_host(h);
}

Tensor WeightLoader::get_any(const std::string& name) {
  const HostTensor& h = weights_.at(name, (kind_ + " model").c_str());
  require_float(kind_, name, h);
  used_.insert(name);
  return backend_.from_host(h);
}

std::vector<float> WeightLoader::get_host(const std::string& name, const Shape& shape) {
  const HostTensor& h = weights_.at(name, (kind_ + " model").c_str());
  if (h.shape != shape)
    fail(L2D_ERR_FORMAT, kind_, " weight \"", name, "\" has shape ", shape_str(h.shape), ", expected ", shape_str(shape));
  require_float(kind_, name, h);
  used_.insert(name);
  return h.to_f32();
}

void WeightLoader::check_all_used(const std::vector<std::string>& ignored_fragments) const {
  std::string unused;
  int count = 0;
  for (const auto& [name, t] : weights_.entries) {
    if (used_.count(name)) continue;
    bool ignored = false;
    for (const std::string& f : ignored_fragments) ignored = ignored || name.find(f) != std::string::npos;
    if (ignored) continue;
    if (count < 5) unused += (count ? ", \"" : "\"") + name + "\"";
    ++count;
  }
  if (count) fail(L2D_ERR_FORMAT, kind_, " model: ", count, " unexpected weight(s): ", unused, count > 5 ? ", ..." : "");
}

}  // namespace l2d
