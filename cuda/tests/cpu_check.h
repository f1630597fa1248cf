// cpu_check.h: the check macro of the CPU replays of kernel index formulas (test_gemm_tc_layout,
// test_norm_tokens_tile): a failed condition is counted and the first 10 are printed with their
// place and a printf-style message; main() returns non-zero when cpu_check::failures is.
#pragma once

#include <cstdio>

namespace cpu_check {
inline int failures = 0;
}  // namespace cpu_check

#define CHECK(cond, ...)                                  \
  do {                                                    \
    if (!(cond)) {                                        \
      if (cpu_check::failures++ < 10) {                   \
        std::printf("FAIL %s:%d: ", __FILE__, __LINE__);  \
        std::printf(__VA_ARGS__);                         \
        std::printf("\n");                                \
      }                                                   \
    }                                                     \
  } while (0)
