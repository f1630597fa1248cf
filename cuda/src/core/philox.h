// philox.h: Philox4x32-10 and the golden README's derived draws (uniform, normal, weight rule),
// header-only so the CPU backend, the CUDA backend (device code) and the tests share one definition.
// The 32x32->64 products use plain 64-bit integer math, which is exact on host and device.
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>

#if defined(__CUDACC__)
#define L2D_HD __host__ __device__
#else
#define L2D_HD
#endif

namespace l2d::philox {

struct Block {
  uint32_t w[4];
};

L2D_HD inline Block philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    const uint64_t p0 = uint64_t(0xD2511F53u) * c0;
    const uint64_t p1 = uint64_t(0xCD9E8D57u) * c2;
    const uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
    const uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
  }
  return Block{{c0, c1, c2, c3}};
}

// u = (x + 0.5) / 2^32, in (0, 1).
L2D_HD inline double to_uniform(uint32_t x) { return (double(x) + 0.5) / 4294967296.0; }

// Element e of a draw uses block e/4 of counter (b, c1, c2, c3) and word e%4.
L2D_HD inline double uniform_at(uint64_t e, uint32_t seed, uint32_t c1, uint32_t c2, uint32_t c3) {
  const Block b = philox4x32_10(uint32_t(e / 4), c1, c2, c3, seed, 0);
  return to_uniform(b.w[e % 4]);
}

// normal(shape, seed, stream, draw): Box-Muller on the block's four uniforms, float64 then float32.
L2D_HD inline float normal_at(uint64_t e, uint32_t seed, uint32_t stream, uint32_t draw) {
  const Block b = philox4x32_10(uint32_t(e / 4), 0, stream, draw, seed, 0);
  const int lane = int(e % 4);
  const double ua = to_uniform(b.w[lane < 2 ? 0 : 2]);
  const double ub = to_uniform(b.w[lane < 2 ? 1 : 3]);
  const double r = sqrt(-2.0 * log(ua));
  const double angle = 2.0 * 3.14159265358979323846 * ub;
  return float((lane % 2 == 0) ? r * cos(angle) : r * sin(angle));
}

constexpr uint32_t kWeightTag = 0x57454947u;  // "WEIG"

inline uint32_t fnv1a32(std::string_view s) {
  uint32_t h = 0x811C9DC5u;
  for (unsigned char c : s) h = (h ^ c) * 0x01000193u;
  return h;
}

// How a parameter's uniforms are scaled (golden README, "Weights").
enum class WeightRule { FanIn, NormWeight, Bias };

inline WeightRule weight_rule(std::string_view name, int ndim) {
  if (ndim >= 2) return WeightRule::FanIn;
  const std::string_view suffix = ".weight";
  if (name.size() > suffix.size() && name.substr(name.size() - suffix.size()) == suffix) {
    // Some dot-separated component before ".weight" contains "norm".
    const std::string_view head = name.substr(0, name.size() - suffix.size());
    if (head.find("norm") != std::string_view::npos) return WeightRule::NormWeight;
  }
  return WeightRule::Bias;
}

L2D_HD inline float weight_at(uint64_t e, uint32_t seed, uint32_t name_hash, int rule, double fan_in) {
  const double u = uniform_at(e, seed, 0, name_hash, kWeightTag);
  if (rule == int(WeightRule::FanIn)) return float((2.0 * u - 1.0) / sqrt(fan_in));
  if (rule == int(WeightRule::NormWeight)) return float(1.0 + 0.1 * (2.0 * u - 1.0));
  return float(0.05 * (2.0 * u - 1.0));
}

}  // namespace l2d::philox
