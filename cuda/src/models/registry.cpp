#include <map>

#include "model.h"

namespace l2d {

static std::map<std::string, ModelFactory>& registry() {
  static std::map<std::string, ModelFactory> factories;  // function-local: no static-init order issue
  return factories;
}

ModelRegistrar::ModelRegistrar(const char* kind, ModelFactory factory) { registry()[kind] = std::move(factory); }

const ModelFactory& find_model_factory(const std::string& kind) {
  auto it = registry().find(kind);
  if (it == registry().end()) {
    std::string known;
    for (const auto& [k, f] : registry()) known += (known.empty() ? "" : ", ") + k;
    fail(L2D_ERR_NOT_FOUND, "unknown model kind \"", kind, "\" (known: ", known, ")");
  }
  return it->second;
}

std::unique_ptr<Session> Model::create_session(const Json&) {
  fail(L2D_ERR_UNSUPPORTED, "this model has no per-stream state; call its methods directly");
}

void unknown_method(const char* kind, const std::string& method) {
  fail(L2D_ERR_NOT_FOUND, "the ", kind, " model has no method \"", method, "\"");
}

}  // namespace l2d
