#include "weights.h"

namespace l2d {

const Shape& WeightLoader::shape_of(const std::string& name) const {
  return weights_.at(name, (kind_ + " model").c_str()).shape;
}

Tensor WeightLoader::get(const std::string& name, const Shape& shape) {
  const HostTensor& h = weights_.at(name, (kind_ + " model").c_str());
  if (h.shape != shape)
    fail(L2D_ERR_FORMAT, kind_, " weight \"", name, "\" has shape ", shape_str(h.shape), ", expected ", shape_str(shape));
  used_.insert(name);
  return backend_.from_host(h);
}

Tensor WeightLoader::get_any(const std::string& name) {
  const HostTensor& h = weights_.at(name, (kind_ + " model").c_str());
  used_.insert(name);
  return backend_.from_host(h);
}

std::vector<float> WeightLoader::get_host(const std::string& name, const Shape& shape) {
  const HostTensor& h = weights_.at(name, (kind_ + " model").c_str());
  if (h.shape != shape)
    fail(L2D_ERR_FORMAT, kind_, " weight \"", name, "\" has shape ", shape_str(h.shape), ", expected ", shape_str(shape));
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
