// fuzz_config.cpp: libFuzzer target for the JSON parser and the config layer of every model kind.
// The input is JSON text (seeds: the golden configs, the engine presets, cuda/fuzz/seeds/config).
// It is parsed, then the root object and each of its object members (presets nest the configs)
// go through every consumer: the model factories of all kinds with no weights (a config is read
// whole before the first weight is looked up), the LCM scheduler (stream configs) and the unet
// config parser. Any outcome but success or an l2d::Error is a finding; so is a config that
// passes validation but breaks an invariant the builders divide by (checked below, trap on failure).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "backends/backends.h"
#include "core/error.h"
#include "core/json.h"
#include "models/model.h"
#include "models/unet/unet_config.h"
#include "pipeline/lcm_scheduler.h"

namespace {

l2d::Backend& backend() {
  static std::unique_ptr<l2d::Backend> be = l2d::make_cpu_backend(l2d::Json::parse("{\"threads\": 1}"));
  return *be;
}

template <typename F>
void expect_typed(F&& f) {
  try {
    f();
  } catch (const l2d::Error&) {
    // the contract: a typed error
  }
  // Anything else (std::bad_alloc, std::out_of_range, ...) escapes and libFuzzer reports it.
}

// What a validated unet config promises the builder (every division and shift it does).
void check_unet_invariants(const l2d::unet::UnetConfig& c) {
  if (c.levels() < 1 || c.levels() > 8 || c.norm_groups < 1 || c.layers_per_block < 1) __builtin_trap();
  if (int(c.attention_heads.size()) != c.levels()) __builtin_trap();
  for (size_t i = 0; i < c.block_out_channels.size(); ++i) {
    if (c.block_out_channels[i] < 1 || c.block_out_channels[i] % c.norm_groups != 0) __builtin_trap();
    if (c.attention_heads[i] < 1) __builtin_trap();
  }
  if (c.block_out_channels.back() % c.attention_heads.back() != 0) __builtin_trap();
  const auto& m = c.motion;
  if (m.enabled && (m.heads < 1 || m.dim_div < 1 || m.sink < 1 || m.window <= m.sink || m.window > m.max_len))
    __builtin_trap();
}

void consume(const l2d::Json& j) {
  for (const char* kind : {"unet", "taesd", "clip_text", "midas", "ops"}) {
    expect_typed([&] {
      static const l2d::TensorMap kNoWeights;
      l2d::find_model_factory(kind)(backend(), j, kNoWeights);
    });
  }
  expect_typed([&] { check_unet_invariants(l2d::unet::parse_unet_config(j)); });
  expect_typed([&] {
    const l2d::LcmSchedule s = l2d::make_lcm_schedule(j);
    if (s.steps() < 1 || s.steps() > 16) __builtin_trap();
  });
  expect_typed([&] {
    if (j.has("scheduler")) l2d::make_lcm_schedule(j["scheduler"]);
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  l2d::Json root;
  try {
    root = l2d::Json::parse(text);
  } catch (const l2d::Error&) {
    return 0;
  }
  consume(root);
  if (root.type() == l2d::Json::Type::Object) {
    int members = 0;
    for (const auto& [key, value] : root.object()) {
      if (value.type() == l2d::Json::Type::Object && ++members <= 16) consume(value);
    }
  }
  return 0;
}
