// error.h: the library's one exception type. Every failure inside the core throws l2d::Error with
// a status code; api.cpp turns it into an l2d_status plus the per-thread last-error message.
// Nothing here prints, aborts or exits: the library lives inside the Deno process.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

#include "l2d.h"

namespace l2d {

class Error : public std::runtime_error {
 public:
  Error(l2d_status status, const std::string& message) : std::runtime_error(message), status_(status) {}
  l2d_status status() const { return status_; }

 private:
  l2d_status status_;
};

// Builds a message from stream-able parts: fail(L2D_ERR_FORMAT, "tensor ", name, " has shape ", s).
template <typename... Parts>
[[noreturn]] inline void fail(l2d_status status, const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  throw Error(status, os.str());
}

}  // namespace l2d

// Checks an internal invariant; a violation is a bug, reported as L2D_ERR_INTERNAL (never an abort).
#define L2D_ASSERT(cond)                                                                            \
  do {                                                                                              \
    if (!(cond)) ::l2d::fail(L2D_ERR_INTERNAL, "internal check failed: ", #cond, " at ", __FILE__, \
                             ":", __LINE__);                                                        \
  } while (0)

// Checks a caller-supplied condition; a violation is L2D_ERR_INVALID_ARGUMENT with the message.
#define L2D_REQUIRE(cond, ...)                                 \
  do {                                                         \
    if (!(cond)) ::l2d::fail(L2D_ERR_INVALID_ARGUMENT, __VA_ARGS__); \
  } while (0)
