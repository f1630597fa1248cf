// model.h: what api.cpp sees of a network. A Model is built from a JSON config plus named weights
// and answers stateless methods; a Session is per-stream state (KV caches, latent buffers) of a
// model. Both exchange named host tensors (TensorMap), so one ABI serves every network and test.
//
// To add a network: implement Model (and Session if it has state) in models/<name>/, and register a
// factory in models/registry.cpp.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <typeinfo>

#include "../core/backend.h"
#include "../core/host_tensor.h"
#include "../core/json.h"

namespace l2d {

class Session {
 public:
  virtual ~Session() = default;
  virtual void run(const std::string& method, TensorMap& io) = 0;
};

class Model {
 public:
  virtual ~Model() = default;
  virtual void run(const std::string& method, TensorMap& io) = 0;
  // Models without per-stream state refuse sessions.
  virtual std::unique_ptr<Session> create_session(const Json& config);
  // The typed network behind this model (e.g. Taesd), or nullptr when `type` does not match; lets
  // the streaming pipeline chain networks on the device without tensor-map round trips.
  virtual const void* component(const std::type_info& type) const { return nullptr; }
};

// model_component<Taesd>(model): the typed network, or nullptr.
template <typename T>
const T* model_component(const Model& model) {
  return static_cast<const T*>(model.component(typeid(T)));
}

using ModelFactory = std::function<std::unique_ptr<Model>(Backend& backend, const Json& config,
                                                          const TensorMap& weights)>;

// The factory of a model kind; throws L2D_ERR_NOT_FOUND listing the known kinds.
const ModelFactory& find_model_factory(const std::string& kind);

// Throws L2D_ERR_NOT_FOUND naming the method and the model kind.
[[noreturn]] void unknown_method(const char* kind, const std::string& method);

}  // namespace l2d

namespace l2d {
// Self-registration: a model file defines `static const ModelRegistrar kReg("unet", make_unet);` so
// adding a network touches no shared file.
struct ModelRegistrar {
  ModelRegistrar(const char* kind, ModelFactory factory);
};
}  // namespace l2d
