// lcm_scheduler.h: the LCM scheduler constants exactly as Live2Diff builds them (golden README,
// pipeline items 1-2): a DDIM-style beta schedule from the style config (Live2Diff uses "linear",
// not SD's "scaled_linear"), LCMScheduler.set_timesteps(num_inference_steps) with the default 50
// original steps, t_index_list picking the denoising steps, and the boundary-condition scalings.
// Everything is float32 like the original, so the constants match bit for bit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../core/json.h"

namespace l2d {

struct LcmSchedule {
  std::vector<float> alphas_cumprod;      // [num_train_timesteps]
  std::vector<int64_t> all_timesteps;     // set_timesteps(num_inference_steps): 999, 979, ... for 50
  std::vector<int64_t> timesteps;         // the T denoising steps (t_index_list applied)
  std::vector<float> alpha_prod_t_sqrt;   // [T] sqrt(alphas_cumprod[t])
  std::vector<float> beta_prod_t_sqrt;    // [T] sqrt(1 - alphas_cumprod[t])
  std::vector<float> c_skip, c_out;       // [T]

  int steps() const { return int(timesteps.size()); }
};

// config: {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
//          "beta_schedule": "linear"|"scaled_linear", "original_inference_steps": 50,
//          "timestep_scaling": 10, "num_inference_steps": 50,
//          "t_index_list": [32, 45]  |  "strength": 0.4 with "steps": 2 }
// With strength s and n steps, the first index is round((1-s) * num_inference_steps) and the
// remaining n-1 indices are spread evenly towards the end of the schedule (documented choice:
// the original only takes explicit t_index_list values).
LcmSchedule make_lcm_schedule(const Json& config);

}  // namespace l2d
