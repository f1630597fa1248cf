// test_cuda_similarity: Backend::image_cosine_similarity (the similar-image filter's measure on the
// device path of LiveStream::push_frame) on CUDA, fp32 and fp16 storage, against the CPU backend
// (frame_cosine_similarity in double on the same levels), through the C ABI and the "ops" model.
// Inputs are fitted images: levels / 255, so both sides compare the same uint8 levels (fp16 keeps
// them recoverable); CUDA sums in fp32 (block reduction), hence the small tolerance. The pairs are
// near-duplicates (sim ~0.99, where the filter decides), a brightness change and unrelated frames.
// --list, --filter S; exit 77 without a GPU; L2D_TEST_SELF=1 runs the device side on a CPU context.
#include <cstdint>
#include <string>
#include <vector>

#include "op_test_harness.h"

using namespace l2d_test;
using In = std::vector<Input>;

namespace {

// A fitted image [1, 3, h, w] of levels / 255: a smooth gradient plus texture.
std::vector<float> frame_levels(int64_t h, int64_t w, Rng& rng) {
  std::vector<float> v(size_t(3 * h * w));
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        const int64_t level = (255 * (x + 2 * y + 40 * c)) / (w + 2 * h + 80) + int64_t(rng.next() % 16);
        v[size_t((c * h + y) * w + x)] = float(level > 255 ? 255 : level) / 255.f;
      }
  return v;
}

// b = a with every level moved by up to +-`noise` and shifted by `shift` (clamped to 0..255).
std::vector<float> perturbed(const std::vector<float>& a, int noise, int shift, Rng& rng) {
  std::vector<float> b(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    int level = int(a[i] * 255.f + 0.5f) + shift + (noise ? int(rng.next() % uint32_t(2 * noise + 1)) - noise : 0);
    level = level < 0 ? 0 : level > 255 ? 255 : level;
    b[i] = float(level) / 255.f;
  }
  return b;
}

Case pair_case(const std::string& label, int64_t h, int64_t w, int noise, int shift, bool unrelated,
               const std::string& note) {
  const bool identical = noise == 0 && shift == 0 && !unrelated;
  Case c{label, "image_cosine_similarity", [=](Rng& rng) {
           const std::vector<float> a = frame_levels(h, w, rng);
           const std::vector<float> b = unrelated ? perturbed(frame_levels(h, w, rng), 0, -128, rng)
                                                  : perturbed(a, noise, shift, rng);
           return In{fval("a", {1, 3, h, w}, a), fval("b", {1, 3, h, w}, b)};
         }};
  // One value. The filter uses it as p = 1 - (1 - sim) / (1 - threshold), so the gate is absolute:
  // fp32 partial sums over up to 3M terms, relative error a few 1e-7 typically (bounded near 2e-6);
  // the levels are exact in both storages, so fp16 gets the same bound. Identical images give the
  // three sums equal, hence exactly 1.
  c.fp32 = Bound{1e-4, 5e-6, 0};
  c.fp32.exact = identical;
  c.fp16 = c.fp32;
  c.shape = "[1,3," + std::to_string(h) + "," + std::to_string(w) + "]";
  c.note = note;
  c.big = h * w > 512 * 512;
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  Harness h("test_cuda_similarity", argc, argv);
  const std::vector<Case> cases{
      pair_case("sim_512_identical", 512, 512, 0, 0, false, "a repeated frame: exactly 1"),
      pair_case("sim_512_noise2", 512, 512, 2, 0, false, "camera noise: sim ~0.99, where the filter decides"),
      pair_case("sim_512_brighter", 512, 512, 0, 12, false, "a brightness step"),
      pair_case("sim_768x512_noise4", 512, 768, 4, -3, false, "768x512 stream"),
      pair_case("sim_512_unrelated", 512, 512, 0, 0, true, "a scene cut"),
      pair_case("sim_1024_noise1", 1024, 1024, 1, 0, false, "1024x1024 stream (most terms)"),
      pair_case("sim_odd_37x61", 37, 61, 3, 1, false, "a size no block divides"),
  };
  return h.run(cases);
}
