// dynlib.h: opening a vendor library with dlopen and binding its symbols to our declared types.
#pragma once

#include <dlfcn.h>

#include <initializer_list>
#include <string>

namespace l2d::vendor {

// The first of names that dlopen accepts (RTLD_NOW | RTLD_LOCAL), or null with `why` listing every
// failure. The handle is never closed: vendor libraries keep process-wide state.
inline void* open_first(std::initializer_list<const char*> names, std::string& opened, std::string& why) {
  why.clear();
  for (const char* name : names) {
    if (void* so = dlopen(name, RTLD_NOW | RTLD_LOCAL)) {
      opened = name;
      return so;
    }
    const char* err = dlerror();
    why += std::string(why.empty() ? "" : "; ") + (err ? err : name);
  }
  return nullptr;
}

// Binds `fn` to symbol `name` of `so`; false (and `why`) when it is missing.
template <typename Fn>
bool bind(void* so, const char* name, Fn& fn, std::string& why) {
  fn = reinterpret_cast<Fn>(dlsym(so, name));
  if (!fn) why = std::string("missing symbol ") + name;
  return fn != nullptr;
}

}  // namespace l2d::vendor
