#include "lcm_scheduler.h"

#include <algorithm>
#include <cmath>

#include "../core/config.h"
#include "../core/error.h"

namespace l2d {

// numpy/torch linspace in float64, then rounded to float32 (torch.linspace(..., dtype=float32)
// computes start + i*step in float32; diffusers uses torch.linspace with dtype=torch.float32).
static std::vector<float> linspace_f32(float start, float end, int n) {
  std::vector<float> out(static_cast<size_t>(n));
  const float step = n > 1 ? (end - start) / float(n - 1) : 0.f;
  // torch's CPU linspace: first half from start, second half from end (symmetric), in float32.
  const int half = n / 2;
  for (int i = 0; i < n; ++i) out[size_t(i)] = i < half ? start + step * float(i) : end - step * float(n - 1 - i);
  return out;
}

LcmSchedule make_lcm_schedule(const Json& config) {
  // Per-stream options: a bad value is an invalid argument naming the key (never an int wrap).
  const ConfigReader c(config, "scheduler config", L2D_ERR_INVALID_ARGUMENT);
  LcmSchedule s;
  const int train = int(c.integer("num_train_timesteps", 1000, 2, 100000));
  const double beta_start = c.number("beta_start", 0.00085, 0.0, 1.0);
  const double beta_end = c.number("beta_end", 0.012, 0.0, 1.0);
  const std::string schedule = c.string("beta_schedule", "linear");
  std::vector<float> betas;
  if (schedule == "linear") {
    betas = linspace_f32(float(beta_start), float(beta_end), train);
  } else if (schedule == "scaled_linear") {
    betas = linspace_f32(std::sqrt(float(beta_start)), std::sqrt(float(beta_end)), train);
    for (float& b : betas) b = b * b;
  } else {
    fail(L2D_ERR_INVALID_ARGUMENT, "beta_schedule \"", schedule, "\" is not supported (linear, scaled_linear)");
  }
  s.alphas_cumprod.resize(size_t(train));
  // torch.cumprod on the CPU accumulates float32 inputs in double (acc_type) and stores float32.
  double prod = 1.0;
  for (int i = 0; i < train; ++i) {
    prod *= double(1.f - betas[size_t(i)]);
    s.alphas_cumprod[size_t(i)] = float(prod);
  }

  const int n_inf = int(c.integer("num_inference_steps", 50, 1, 100000));
  const int original = int(c.integer("original_inference_steps", 50, 1, 100000));
  L2D_REQUIRE(n_inf >= 1 && original >= 1 && n_inf <= original && original <= train,
              "num_inference_steps must be 1..original_inference_steps (", original, "), got ", n_inf);
  const int k = train / original;
  std::vector<int64_t> origin;
  for (int i = 1; i <= original; ++i) origin.push_back(int64_t(i) * k - 1);
  const int skip = int(origin.size()) / n_inf;
  for (int i = int(origin.size()) - 1; i >= 0 && int(s.all_timesteps.size()) < n_inf; i -= skip)
    s.all_timesteps.push_back(origin[size_t(i)]);

  std::vector<int64_t> t_index;
  if (c.has("t_index_list")) {
    t_index = c.integers("t_index_list", 1, 16, 0, n_inf - 1);
  } else {
    const double strength = c.number("strength", 0.4, 0.0, 1.0);
    const int steps = int(c.integer("steps", 2, 1, std::min(n_inf, 16)));
    L2D_REQUIRE(strength > 0, "scheduler config: strength must be in (0, 1], got ", strength);
    const int first = std::min(n_inf - 1, int(std::lround((1.0 - strength) * n_inf)));
    for (int i = 0; i < steps; ++i) {
      const int idx = steps == 1 ? first : first + int(std::lround(double(i) * (n_inf - 1 - first) / (steps - 1)));
      t_index.push_back(idx);
    }
  }
  L2D_REQUIRE(!t_index.empty() && t_index.size() <= 16, "t_index_list must have 1..16 entries");
  for (size_t i = 0; i < t_index.size(); ++i) {
    L2D_REQUIRE(t_index[i] >= 0 && t_index[i] < n_inf, "t_index_list[", i, "] = ", t_index[i], " is outside 0..", n_inf - 1);
    L2D_REQUIRE(i == 0 || t_index[i] > t_index[i - 1], "t_index_list must be strictly increasing");
    s.timesteps.push_back(s.all_timesteps[size_t(t_index[i])]);
  }

  const float scaling = float(c.number("timestep_scaling", 10.0, 0.0, 1e6));
  const float sigma_data = 0.5f;
  for (int64_t t : s.timesteps) {
    const float a = s.alphas_cumprod[size_t(t)];
    s.alpha_prod_t_sqrt.push_back(std::sqrt(a));
    s.beta_prod_t_sqrt.push_back(std::sqrt(1.f - a));
    const float st = float(t) * scaling;
    s.c_skip.push_back(sigma_data * sigma_data / (st * st + sigma_data * sigma_data));
    s.c_out.push_back(st / std::sqrt(st * st + sigma_data * sigma_data));
  }
  return s;
}

}  // namespace l2d
