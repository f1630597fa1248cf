#include "fusions.h"

#include <cstdlib>
#include <sstream>
#include <utility>
#include <vector>

#include "../../core/error.h"

namespace l2d::cuda {
namespace {

// name -> member; one table so parsing and describe() cannot disagree.
std::vector<std::pair<const char*, bool Fusions::*>> table() {
  return {{"geglu", &Fusions::geglu},
          {"qkv", &Fusions::qkv},
          {"layout", &Fusions::layout},
          {"conv_epilogue", &Fusions::conv_epilogue}};
}

}  // namespace

Fusions fusions_from_string(const char* value) {
  Fusions f;
  if (!value || !*value) return f;
  const std::string s(value);
  if (s == "all") return f;
  for (const auto& [name, member] : table()) f.*member = false;
  if (s == "none") return f;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    bool known = false;
    for (const auto& [name, member] : table())
      if (item == name) {
        f.*member = true;
        known = true;
      }
    if (!known) {
      std::string names;
      for (const auto& [name, member] : table()) names += std::string(names.empty() ? "" : ", ") + name;
      fail(L2D_ERR_INVALID_ARGUMENT, "L2D_FUSE must be \"all\", \"none\" or a comma-separated list of ", names,
           "; got \"", s, "\" (unknown entry \"", item, "\")");
    }
  }
  return f;
}

Fusions fusions_from_env() { return fusions_from_string(std::getenv("L2D_FUSE")); }

std::string Fusions::describe() const {
  std::string on;
  int n = 0, total = 0;
  for (const auto& [name, member] : table()) {
    ++total;
    if (this->*member) {
      on += std::string(n++ ? "," : "") + name;
    }
  }
  if (n == total) return "all";
  if (n == 0) return "none";
  return on;
}

}  // namespace l2d::cuda
