// Known-answer tests of philox.h on the host (the TS tests cover the full vector file; the CUDA
// backend checks the same function in device code).
#include <cstdio>

#include "core/philox.h"

int main() {
  using namespace l2d::philox;
  struct Kat {
    uint32_t c[4], k[2], out[4];
  } kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}, {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}, {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const Kat& t : kats) {
    const Block b = philox4x32_10(t.c[0], t.c[1], t.c[2], t.c[3], t.k[0], t.k[1]);
    for (int i = 0; i < 4; ++i)
      if (b.w[i] != t.out[i]) {
        std::printf("philox KAT mismatch\n");
        return 1;
      }
  }
  if (fnv1a32("") != 0x811c9dc5u || fnv1a32("a") != 0xe40c292cu || fnv1a32("foobar") != 0xbf9cf968u ||
      fnv1a32("conv_in.weight") != 0xb1e79747u) {
    std::printf("fnv1a32 mismatch\n");
    return 1;
  }
  std::printf("test_philox: ok\n");
  return 0;
}
