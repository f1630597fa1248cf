// test_cuda_ops: every Backend op, CUDA (fp32 and fp16 storage) against the CPU oracle, through the
// public C ABI and the "ops" model (ggml test-backend-ops style), on small shapes for the edge cases
// AND at the shapes the networks really run (the UNet's feed-forward GEMMs and 64x64 convs that pick
// the 128x128 tile, deep-K convs, temporal attention at head_dim 80/160 over 4096 pixels, MiDaS).
// Gates max-abs as well as relative L2 (op_test_harness.h); exactly-representable inputs check the
// tensor-core path to one fp16 rounding. The case list is data: `--list` prints it (no GPU needed;
// tests/native_bins_test.ts checks it covers the required shapes), `--filter S` runs a subset,
// `--small` only the small cases (for compute-sanitizer). Exit 0 ok, 1 failed, 77 no GPU.
// Host code only (built by nvcc just because it lives with the CUDA build).
#include <cmath>
#include <string>
#include <vector>

#include "op_test_harness.h"

using namespace l2d_test;
using In = std::vector<Input>;

namespace {

// SMs of the H100/H200 the check runs on: the GEMM picks its 128x128 8-warp tile when
// ceil(M/128) * ceil(N/128) * batch >= 2 * SMs and M, N > 64 (kernels/gemm.cu gemm_t).
constexpr int64_t kH100Sms = 132;
std::string gemm_tile(int64_t M, int64_t N, int64_t batch) {
  const int64_t tiles = ((M + 127) / 128) * ((N + 127) / 128) * batch;
  return (M <= 64 || N <= 64 || tiles < 2 * kH100Sms) ? "tile=64x64" : "tile=128x128";
}
std::string dims(const char* name, const std::vector<int64_t>& v) {
  std::string s = std::string(name) + "=";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "x" : "") + std::to_string(v[i]);
  return s;
}

class Table {
 public:
  std::vector<Case> cases;
  Case& add(const std::string& label, const std::string& method, std::function<In(Rng&)> make) {
    cases.push_back(Case{label, method, std::move(make)});
    return cases.back();
  }
};

// conv2d params [stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right]
Input conv_params(int s, int p) { return ival("params", {6}, {s, s, p, p, p, p}); }

void small_cases(Table& t) {
  const char* unames[] = {"silu", "relu", "gelu_erf", "gelu_tanh", "quick_gelu", "tanh", "sigmoid", "affine", "clamp"};
  for (int op = 0; op < 9; ++op)
    t.add(std::string("unary/") + unames[op], "unary", [op](Rng& r) {
      return In{fin("x", {3, 37, 5}, r, -4, 4), fval("params", {3}, {float(op), op == 8 ? -0.5f : 1.5f, op == 8 ? 0.7f : -0.5f})};
    });
  const char* bnames[] = {"add", "sub", "mul", "div"};
  for (int op = 0; op < 4; ++op) {
    t.add(std::string("binary/same/") + bnames[op], "binary", [op](Rng& r) {
      return In{fin("a", {4, 33, 7}, r), fin("b", {4, 33, 7}, r, 0.5f, 1.5f), fval("op", {1}, {float(op)})};
    });
    t.add(std::string("binary/bcast/") + bnames[op], "binary", [op](Rng& r) {
      return In{fin("a", {2, 3, 4, 5}, r), fin("b", {3, 1, 5}, r, 0.5f, 1.5f), fval("op", {1}, {float(op)})};
    });
  }
  t.add("binary/bcast2", "binary",
        [](Rng& r) { return In{fin("a", {2, 1, 5}, r), fin("b", {4, 1}, r, 0.5f, 1.5f), fval("op", {1}, {2.f})}; });
  t.add("binary/bias_nchw", "binary",
        [](Rng& r) { return In{fin("a", {2, 320, 8, 8}, r), fin("b", {1, 320, 1, 1}, r), fval("op", {1}, {0.f})}; });
  t.add("geglu", "geglu", [](Rng& r) { return In{fin("x", {2, 7, 80}, r, -3, 3)}; });
  // layout: pure data movement, bit-exact in fp32 (fp16: the input's own rounding only)
  auto layout = [&](const std::string& label, const std::string& method, std::function<In(Rng&)> make) {
    Case& c = t.add(label, method, std::move(make));
    c.fp32.exact = true;
    c.fp16.half_ulps = 1;
  };
  layout("permute/0231", "permute", [](Rng& r) { return In{fin("x", {2, 3, 4, 5}, r), ival("perm", {4}, {0, 2, 3, 1})}; });
  layout("permute/3102", "permute", [](Rng& r) { return In{fin("x", {2, 3, 4, 5}, r), ival("perm", {4}, {3, 1, 0, 2})}; });
  layout("permute/nchw_tokens", "permute",
         [](Rng& r) { return In{fin("x", {2, 320, 16, 16}, r), ival("perm", {4}, {0, 2, 3, 1})}; });
  layout("slice/step2", "slice", [](Rng& r) { return In{fin("x", {4, 6, 10}, r), ival("params", {4}, {1, 1, 6, 2})}; });
  layout("slice/last", "slice", [](Rng& r) { return In{fin("x", {4, 6, 10}, r), ival("params", {4}, {-1, 3, 10, 1})}; });
  layout("concat/dim1", "concat",
         [](Rng& r) { return In{fin("a", {2, 3, 5}, r), fin("b", {2, 4, 5}, r), ival("dim", {1}, {1})}; });
  layout("concat/dim-1", "concat",
         [](Rng& r) { return In{fin("a", {2, 3, 5}, r), fin("b", {2, 3, 2}, r), ival("dim", {1}, {-1})}; });
  // dense
  t.add("linear/clip", "linear", [](Rng& r) {
    return In{fin("x", {2, 77, 768}, r), fin("w", {320, 768}, r, -0.05f, 0.05f), fin("b", {320}, r)};
  });
  t.add("linear/odd_nobias", "linear", [](Rng& r) { return In{fin("x", {5, 13}, r), fin("w", {7, 13}, r)}; });
  t.add("linear/m1", "linear", [](Rng& r) { return In{fin("x", {1, 40}, r), fin("w", {33, 40}, r), fin("b", {33}, r)}; });
  t.add("linear/big", "linear", [](Rng& r) {
    return In{fin("x", {4096, 320}, r), fin("w", {640, 320}, r, -0.1f, 0.1f), fin("b", {640}, r)};
  });
  // linear + residual in one op (transformer attention output / feed-forward output + skip)
  t.add("linear_add/attn_out", "linear_add", [](Rng& r) {
    return In{fin("x", {2, 256, 320}, r), fin("w", {320, 320}, r, -0.05f, 0.05f), fin("b", {320}, r),
              fin("r", {2, 256, 320}, r)};
  });
  t.add("linear_add/odd_nobias", "linear_add",
        [](Rng& r) { return In{fin("x", {5, 13}, r), fin("w", {7, 13}, r), fin("r", {5, 7}, r)}; });
  t.add("matmul/batched", "matmul", [](Rng& r) { return In{fin("a", {3, 33, 17}, r), fin("b", {3, 17, 45}, r)}; });
  t.add("matmul/bcast_a", "matmul", [](Rng& r) { return In{fin("a", {1, 64, 40}, r), fin("b", {4, 40, 70}, r)}; });
  t.add("matmul/bcast_b", "matmul", [](Rng& r) { return In{fin("a", {2, 130, 72}, r), fin("b", {1, 72, 150}, r)}; });
  t.add("conv2d/3x3_p1", "conv2d", [](Rng& r) {
    return In{fin("x", {2, 4, 17, 19}, r), fin("w", {8, 4, 3, 3}, r), fin("b", {8}, r), conv_params(1, 1)};
  });
  t.add("conv2d/s2_asym", "conv2d", [](Rng& r) {
    return In{fin("x", {2, 5, 16, 15}, r), fin("w", {6, 5, 3, 3}, r), ival("params", {6}, {2, 2, 0, 1, 0, 1})};
  });
  t.add("conv2d/1x1", "conv2d", [](Rng& r) {
    return In{fin("x", {2, 12, 9, 7}, r), fin("w", {10, 12, 1, 1}, r), fin("b", {10}, r), conv_params(1, 0)};
  });
  t.add("conv2d/big", "conv2d", [](Rng& r) {
    return In{fin("x", {1, 64, 64, 64}, r), fin("w", {64, 64, 3, 3}, r, -0.05f, 0.05f), fin("b", {64}, r), conv_params(1, 1)};
  });
  t.add("conv2d/patch16", "conv2d", [](Rng& r) {
    return In{fin("x", {1, 3, 64, 48}, r), fin("w", {32, 3, 16, 16}, r, -0.1f, 0.1f), conv_params(16, 0)};
  });
  t.add("conv_transpose2d/k2", "conv_transpose2d", [](Rng& r) {
    return In{fin("x", {2, 8, 5, 6}, r), fin("w", {8, 4, 2, 2}, r), fin("b", {4}, r), ival("stride", {1}, {2})};
  });
  t.add("conv_transpose2d/k4", "conv_transpose2d",
        [](Rng& r) { return In{fin("x", {1, 16, 7, 3}, r), fin("w", {16, 5, 4, 4}, r), ival("stride", {1}, {4})}; });
  // norms
  t.add("group_norm/small", "group_norm", [](Rng& r) {
    return In{fin("x", {2, 64, 9, 11}, r, -2, 3), fin("gamma", {64}, r), fin("beta", {64}, r), fval("params", {3}, {32, 1e-5f, 0})};
  });
  t.add("group_norm/silu", "group_norm", [](Rng& r) {
    return In{fin("x", {2, 320, 32, 32}, r, -2, 3), fin("gamma", {320}, r), fin("beta", {320}, r),
              fval("params", {3}, {32, 1e-6f, 1})};
  });
  t.add("group_norm/3d", "group_norm", [](Rng& r) {
    return In{fin("x", {2, 64, 3, 5, 7}, r), fin("gamma", {64}, r), fin("beta", {64}, r), fval("params", {3}, {8, 1e-5f, 0})};
  });
  t.add("layer_norm/clip", "layer_norm", [](Rng& r) {
    return In{fin("x", {3, 77, 768}, r, -2, 3), fin("gamma", {768}, r), fin("beta", {768}, r), fval("eps", {1}, {1e-5f})};
  });
  t.add("layer_norm/small", "layer_norm", [](Rng& r) {
    return In{fin("x", {5, 40}, r), fin("gamma", {40}, r), fin("beta", {40}, r), fval("eps", {1}, {1e-6f})};
  });
  // attention: [B, L, H*D], params [heads, causal]
  t.add("attention/cross_d40_bcast", "attention", [](Rng& r) {
    return In{fin("q", {2, 100, 320}, r), fin("k", {1, 77, 320}, r), fin("v", {1, 77, 320}, r), ival("params", {2}, {8, 0})};
  });
  t.add("attention/causal_d64", "attention", [](Rng& r) {
    return In{fin("q", {1, 77, 768}, r), fin("k", {1, 77, 768}, r), fin("v", {1, 77, 768}, r), ival("params", {2}, {12, 1})};
  });
  t.add("attention/self_d160", "attention", [](Rng& r) {
    return In{fin("q", {2, 64, 320}, r), fin("k", {2, 300, 320}, r), fin("v", {2, 300, 320}, r), ival("params", {2}, {2, 0})};
  });
  t.add("attention/d80", "attention", [](Rng& r) {
    return In{fin("q", {1, 33, 400}, r), fin("k", {1, 33, 400}, r), fin("v", {1, 33, 400}, r), ival("params", {2}, {5, 0})};
  });
  // resampling
  t.add("upsample_nearest/x2", "upsample_nearest",
        [](Rng& r) { return In{fin("x", {2, 3, 7, 9}, r), ival("size", {2}, {14, 18})}; });
  t.add("upsample_nearest/frac", "upsample_nearest",
        [](Rng& r) { return In{fin("x", {2, 3, 7, 9}, r), ival("size", {2}, {10, 13})}; });
  t.add("resize_bilinear/up", "resize_bilinear",
        [](Rng& r) { return In{fin("x", {1, 3, 17, 23}, r), ival("size", {3}, {32, 40, 0})}; });
  t.add("resize_bilinear/up_ac", "resize_bilinear",
        [](Rng& r) { return In{fin("x", {1, 3, 17, 23}, r), ival("size", {3}, {32, 40, 1})}; });
  t.add("resize_bilinear/down", "resize_bilinear",
        [](Rng& r) { return In{fin("x", {2, 2, 17, 23}, r), ival("size", {3}, {5, 7, 0})}; });
  t.add("max_pool2d/k3s2p1", "max_pool2d",
        [](Rng& r) { return In{fin("x", {2, 3, 17, 19}, r), ival("params", {6}, {3, 2, 1, 1, 1, 1})}; });
  t.add("max_pool2d/k2s2", "max_pool2d",
        [](Rng& r) { return In{fin("x", {2, 3, 16, 18}, r), ival("params", {6}, {2, 2, 0, 0, 0, 0})}; });
  // lookup / reduce; the error case checks the device error flag and that the next run is clean
  auto ids = [](Rng& r, int64_t bad) {
    std::vector<int64_t> v(2 * 77);
    for (auto& x : v) x = int64_t(r.next() % 1000);
    if (bad >= 0) v[5] = bad;
    return ival("ids", {2, 77}, v);
  };
  t.add("embedding", "embedding", [ids](Rng& r) { return In{ids(r, -1), fin("table", {1000, 64}, r)}; });
  t.add("embedding/out_of_range", "embedding", [ids](Rng& r) { return In{ids(r, 1000), fin("table", {1000, 64}, r)}; })
      .expect_status = 1;  // L2D_ERR_INVALID_ARGUMENT
  t.add("embedding/after_error", "embedding", [ids](Rng& r) { return In{ids(r, 7), fin("table", {1000, 64}, r)}; });
  t.add("minmax_normalize/small", "minmax_normalize", [](Rng& r) { return In{fin("x", {2, 1, 37, 41}, r, -3, 5)}; });
  t.add("minmax_normalize/big", "minmax_normalize", [](Rng& r) { return In{fin("x", {1, 1, 384, 384}, r, -3, 5)}; });
  // streaming temporal attention, small (the sanitizer shape)
  t.add("stream_temporal_attention/small", "stream_temporal_attention", [](Rng& r) {
     const int64_t R = 2, P = 37, C = 320, W = 16, L = 24;
     std::vector<int64_t> pe(size_t(R * W)), upd = {3, 15};
     for (auto& v : pe) v = int64_t(r.next() % L);
     std::vector<float> bias(size_t(R * W), 0.f);
     for (int64_t i = 0; i < R * W; ++i)
       if (r.next() % 3 == 0 && i % W != upd[size_t(i / W)]) bias[size_t(i)] = -INFINITY;
     return In{fin("q", {R, P, C}, r), fin("k", {R, P, C}, r), fin("v", {R, P, C}, r), fin("cache", {R, 2, P, W, C}, r),
               fin("qpe", {L, C}, r), fin("kpe", {L, C}, r), fin("vpe", {L, C}, r), ival("pe_idx", {R, W}, pe),
               ival("update_idx", {R}, upd), fval("bias", {R, W}, bias), ival("heads", {1}, {8})};
   }).outputs = {"y", "cache_out"};
}


// Exact-answer inputs (op_test_harness.h fgrid): fp32 must be bit-exact, fp16 within one rounding.
void exact_bounds(Case& c, double half_ulps) {
  c.fp32.exact = true;
  c.fp16.half_ulps = half_ulps;
}

// The temporal-attention case generator (KV-cache ring of W slots, PE table of L rows).
In stream_inputs(Rng& r, int64_t R, int64_t P, int64_t C, int64_t W, int64_t heads) {
  const int64_t L = 24;
  std::vector<int64_t> pe(size_t(R * W)), upd(static_cast<size_t>(R));
  for (auto& v : pe) v = int64_t(r.next() % L);
  for (auto& v : upd) v = int64_t(r.next() % uint32_t(W));
  std::vector<float> bias(size_t(R * W), 0.f);
  for (int64_t i = 0; i < R * W; ++i)
    if (r.next() % 3 == 0 && i % W != upd[size_t(i / W)]) bias[size_t(i)] = -INFINITY;
  return In{fin("q", {R, P, C}, r), fin("k", {R, P, C}, r), fin("v", {R, P, C}, r), fin("cache", {R, 2, P, W, C}, r),
            fin("qpe", {L, C}, r), fin("kpe", {L, C}, r), fin("vpe", {L, C}, r), ival("pe_idx", {R, W}, pe),
            ival("update_idx", {R}, upd), fval("bias", {R, W}, bias), ival("heads", {1}, {heads})};
}

// The shapes the networks run (SD1.5 UNet at a 64x64 latent with 2-3 rows, motion modules, MiDaS),
// which select the kernels' large configurations (128x128 GEMM tile, hundreds of K slices, 4096
// pixels in grid.z) that the small cases never reach.
void network_cases(Table& t) {
  auto big = [&](const std::string& label, const std::string& method, const std::string& shape, const std::string& note,
                 std::function<In(Rng&)> make) -> Case& {
    Case& c = t.add(label, method, std::move(make));
    c.big = true;
    c.shape = shape;
    c.note = note;
    return c;
  };
  // GEMM: UNet feed-forward at the 64x64 level, rows 2 (M = 2 x 4096 tokens).
  big("linear/unet_ff_geglu_8192x2560", "linear", "M=8192 N=2560 K=320 " + gemm_tile(8192, 2560, 1),
      "UNet FF GEGLU projection (320 ch)", [](Rng& r) {
        return In{fin("x", {8192, 320}, r), fin("w", {2560, 320}, r, -0.06f, 0.06f), fin("b", {2560}, r)};
      });
  big("linear/unet_ff_out_8192x320_k1280", "linear", "M=8192 N=320 K=1280 " + gemm_tile(8192, 320, 1),
      "UNet FF output projection", [](Rng& r) {
        return In{fin("x", {8192, 1280}, r), fin("w", {320, 1280}, r, -0.03f, 0.03f), fin("b", {320}, r)};
      });
  exact_bounds(big("linear/tc_exact_8192x2560", "linear", "M=8192 N=2560 K=320 " + gemm_tile(8192, 2560, 1),
                   "tensor-core path to one fp16 rounding (exact inputs)",
                   [](Rng& r) {
                     return In{fgrid("x", {8192, 320}, r, 5, 0.5f), fgrid("w", {2560, 320}, r, 5, 0.5f),
                               fgrid("b", {2560}, r, 5, 0.5f)};
                   }),
               0.5);
  // The feed-forward output + its residual connection in one GEMM (the residual in the epilogue).
  exact_bounds(big("linear_add/tc_exact_unet_ff_out_8192x320_k1280", "linear_add",
                   "M=8192 N=320 K=1280 " + gemm_tile(8192, 320, 1), "UNet FF output + residual (exact inputs)",
                   [](Rng& r) {
                     return In{fgrid("x", {8192, 1280}, r, 5, 0.5f), fgrid("w", {320, 1280}, r, 5, 0.5f),
                               fgrid("b", {320}, r, 5, 0.5f), fgrid("r", {8192, 320}, r, 5, 0.5f)};
                   }),
               0.5);
  // Implicit-GEMM convs: M = out channels, N = pixels, batch = rows.
  big("conv2d/unet_640to320_64x64_b3", "conv2d", "M=320 N=4096 K=5760 batch=3 " + gemm_tile(320, 4096, 3),
      "UNet up_blocks.3 resnet conv (640 in)", [](Rng& r) {
        return In{fin("x", {3, 640, 64, 64}, r), fin("w", {320, 640, 3, 3}, r, -0.02f, 0.02f), fin("b", {320}, r),
                  conv_params(1, 1)};
      });
  exact_bounds(big("conv2d/tc_exact_640to320_64x64_b3", "conv2d",
                   "M=320 N=4096 K=5760 batch=3 " + gemm_tile(320, 4096, 3),
                   "tensor-core conv to one fp16 rounding (exact inputs)",
                   [](Rng& r) {
                     return In{fgrid("x", {3, 640, 64, 64}, r, 5, 0.5f), fgrid("w", {320, 640, 3, 3}, r, 5, 0.5f),
                               fgrid("b", {320}, r, 5, 0.5f), conv_params(1, 1)};
                   }),
               0.5);
  big("conv2d/unet_1280to640_32x32_k11520", "conv2d", "M=640 N=1024 K=11520 batch=2 " + gemm_tile(640, 1024, 2),
      "UNet up_blocks.2 conv, 360 K slices", [](Rng& r) {
        return In{fin("x", {2, 1280, 32, 32}, r), fin("w", {640, 1280, 3, 3}, r, -0.01f, 0.01f), fin("b", {640}, r),
                  conv_params(1, 1)};
      });
  big("conv2d/unet_k11520_16x16", "conv2d", "M=1280 N=256 K=11520 batch=2 " + gemm_tile(1280, 256, 2),
      "UNet 16x16 level conv", [](Rng& r) {
        return In{fin("x", {2, 1280, 16, 16}, r), fin("w", {1280, 1280, 3, 3}, r, -0.01f, 0.01f), fin("b", {1280}, r),
                  conv_params(1, 1)};
      });
  big("conv2d/unet_k23040_8x8", "conv2d", "M=1280 N=64 K=23040 batch=2 " + gemm_tile(1280, 64, 2),
      "UNet up_blocks.0 resnet conv (2560 in), 720 K slices", [](Rng& r) {
        return In{fin("x", {2, 2560, 8, 8}, r), fin("w", {1280, 2560, 3, 3}, r, -0.01f, 0.01f), fin("b", {1280}, r),
                  conv_params(1, 1)};
      });
  big("conv2d/unet_k2880_8x8", "conv2d", "M=640 N=64 K=2880 batch=2 " + gemm_tile(640, 64, 2), "K = 320 x 9 at 8x8",
      [](Rng& r) {
        return In{fin("x", {2, 320, 8, 8}, r), fin("w", {640, 320, 3, 3}, r, -0.03f, 0.03f), fin("b", {640}, r),
                  conv_params(1, 1)};
      });
  big("conv2d/1x1_s2", "conv2d", "M=640 N=1024 K=320 stride=2 " + gemm_tile(640, 1024, 2),
      "1x1 stride-2 projection (ResNet downsample)", [](Rng& r) {
        return In{fin("x", {2, 320, 64, 64}, r), fin("w", {640, 320, 1, 1}, r, -0.05f, 0.05f), fin("b", {640}, r),
                  conv_params(2, 0)};
      });
  big("conv_transpose2d/k4_large_tile", "conv_transpose2d", "M=4096 N=2304 K=256 " + gemm_tile(4096, 2304, 1),
      "MiDaS reassemble upsampling (k=s=4)", [](Rng& r) {
        return In{fin("x", {1, 256, 48, 48}, r), fin("w", {256, 256, 4, 4}, r, -0.06f, 0.06f), fin("b", {256}, r),
                  ival("stride", {1}, {4})};
      });
  big("conv_transpose2d/midas_k2", "conv_transpose2d", "M=1024 N=576 K=512 " + gemm_tile(1024, 576, 1),
      "MiDaS reassemble (k=s=2)", [](Rng& r) {
        return In{fin("x", {1, 512, 24, 24}, r), fin("w", {512, 256, 2, 2}, r, -0.05f, 0.05f), fin("b", {256}, r),
                  ival("stride", {1}, {2})};
      });
  // Attention, [B, L, H*D] with params [heads, causal].
  big("attention/unet_self_4096_d40_r2", "attention", "B=2 Lq=4096 Lk=4096 D=40", "UNet spatial self-attention",
      [](Rng& r) {
        return In{fin("q", {2, 4096, 320}, r), fin("k", {2, 4096, 320}, r), fin("v", {2, 4096, 320}, r),
                  ival("params", {2}, {8, 0})};
      });
  big("attention/unet_cross_4096x77_d40", "attention", "B=2 Lq=4096 Lk=77 Bk=1 D=40", "UNet cross-attention",
      [](Rng& r) {
        return In{fin("q", {2, 4096, 320}, r), fin("k", {1, 77, 320}, r), fin("v", {1, 77, 320}, r),
                  ival("params", {2}, {8, 0})};
      });
  // (d80 is covered by the streaming and small cases; d40 is the real one, d160 the largest kernel)
  for (const int64_t d : {40, 160}) {
    const int64_t heads = d == 40 ? 8 : 2;
    big("attention/warmup_temporal_8f_4096px_d" + std::to_string(d), "attention",
        "B=4096 L=8 D=" + std::to_string(d) + " grid.z=4096", "warm-up temporal attention (8 frames per pixel)",
        [heads](Rng& r) {
          return In{fin("q", {4096, 8, 320}, r), fin("k", {4096, 8, 320}, r), fin("v", {4096, 8, 320}, r),
                    ival("params", {2}, {heads, 0})};
        });
  }
  big("attention/midas_577_d64", "attention", "B=1 L=577 D=64", "MiDaS ViT self-attention (576 patches + cls)",
      [](Rng& r) {
        return In{fin("q", {1, 577, 1024}, r), fin("k", {1, 577, 1024}, r), fin("v", {1, 577, 1024}, r),
                  ival("params", {2}, {16, 0})};
      });
  // Streaming temporal attention over the KV-cache ring at 4096 pixels. A short window (W=4) keeps the
  // cache (R x 2 x P x W x C floats, copied in and out) at tens of MB; the kernels' grid is over pixels.
  big("stream_temporal_attention/d80_4096px_r2", "stream_temporal_attention", "R=2 P=4096 C=320 W=4 D=80",
      "motion module, streaming, head_dim 80", [](Rng& r) { return stream_inputs(r, 2, 4096, 320, 4, 4); })
      .outputs = {"y", "cache_out"};
  big("stream_temporal_attention/d160_4096px_r3", "stream_temporal_attention", "R=3 P=4096 C=320 W=4 D=160",
      "motion module, streaming, head_dim 160", [](Rng& r) { return stream_inputs(r, 3, 4096, 320, 4, 2); })
      .outputs = {"y", "cache_out"};
  big("stream_temporal_attention/d40_4096px_r3", "stream_temporal_attention", "R=3 P=4096 C=320 W=4 D=40",
      "motion module, streaming, head_dim 40", [](Rng& r) { return stream_inputs(r, 3, 4096, 320, 4, 8); })
      .outputs = {"y", "cache_out"};
}

// Streaming I/O: the noise must be the CPU's Philox bit for bit (fp16: rounded once), the frame
// conversions exact.
void io_cases(Table& t) {
  Case& rn = t.add("random_normal/bitexact", "random_normal", [](Rng&) {
    return In{ival("shape", {4}, {2, 4, 64, 64}), ival("params", {3}, {1234567, 3, 17})};
  });
  rn.shape = "[2,4,64,64]";
  rn.note = "diffusion noise vs the CPU Philox";
  exact_bounds(rn, 0.5);
  exact_bounds(t.add("image_from_u8/rgb", "image_from_u8", [](Rng& r) { return In{u8val("frames", {2, 64, 48, 3}, r)}; }),
               0.5);
  exact_bounds(t.add("image_from_u8/rgba", "image_from_u8", [](Rng& r) { return In{u8val("frames", {1, 33, 40, 4}, r)}; }),
               0.5);
  // Values on a 2^-10 grid in [-1, 1] (exact in fp16), so even the uint8 frame is exact in fp16.
  Case& th = t.add("image_to_host/f32_u8", "image_to_host",
                   [](Rng& r) { return In{fgrid("x", {2, 3, 40, 56}, r, 10, 1.f)}; });
  th.outputs = {"y", "u8"};
  th.fp32.exact = true;
  th.fp16.exact = true;
}

// fp16 range stress: |x| up to 1e4 and normalisation over large means, on values exactly
// representable in fp16 (the fp16 device then sees the same inputs as the CPU oracle).
void stress_cases(Table& t) {
  for (const int op : {0, 2}) {  // silu, gelu_erf
    Case& c = t.add(std::string("stress/unary_") + (op ? "gelu_erf" : "silu") + "_1e4", "unary", [op](Rng& r) {
      return In{fgrid("x", {4, 1024}, r, -3, 1e4f), fval("params", {3}, {float(op), 0.f, 0.f})};
    });
    c.fp16.half_ulps = 1;
    c.note = "|x| <= 1e4";
  }
  Case& gg = t.add("stress/geglu_100", "geglu", [](Rng& r) { return In{fgrid("x", {64, 640}, r, 3, 100.f)}; });
  gg.fp16.half_ulps = 1;
  gg.note = "products up to 1e4";
  Case& gn = t.add("stress/group_norm_mean1e4", "group_norm", [](Rng& r) {
    Input x = fgrid("x", {2, 320, 32, 32}, r, -3, 40.f);  // multiples of 8 in [-40, 40]
    for (float& v : x.f) v += 1e4f;                        // still exact in fp16 (ulp 8 there)
    return In{x, fin("gamma", {320}, r), fin("beta", {320}, r), fval("params", {3}, {32, 1e-5f, 0})};
  });
  gn.note = "mean 1e4, std ~25: cancellation in the variance";
  Case& ln = t.add("stress/layer_norm_mean1e3", "layer_norm", [](Rng& r) {
    Input x = fgrid("x", {2, 77, 768}, r, 1, 8.f);  // multiples of 0.5 in [-8, 8]
    for (float& v : x.f) v += 1000.f;               // exact in fp16 (ulp 0.5 there)
    return In{x, fin("gamma", {768}, r), fin("beta", {768}, r), fval("eps", {1}, {1e-5f})};
  });
  ln.note = "mean 1e3, std ~4.6";
  // x multiples of 8 up to 1e4, w multiples of 2^-10 up to 1/64: every partial sum is exact in fp32.
  exact_bounds(t.add("stress/linear_1e4_exact", "linear",
                     [](Rng& r) {
                       return In{fgrid("x", {512, 320}, r, -3, 1e4f), fgrid("w", {256, 320}, r, 10, 1.f / 64),
                                 fgrid("b", {256}, r, 3, 8.f)};
                     }),
               0.5);
  Case& at = t.add("stress/attention_large_logits", "attention", [](Rng& r) {
    return In{fgrid("q", {2, 128, 256}, r, 4, 8.f), fgrid("k", {2, 128, 256}, r, 4, 8.f), fin("v", {2, 128, 256}, r),
              ival("params", {2}, {4, 0})};
  });
  at.note = "logits up to ~500: softmax near one-hot";
}

}  // namespace

int main(int argc, char** argv) {
  Harness h("test_cuda_ops", argc, argv);
  Table t;
  small_cases(t);
  io_cases(t);
  stress_cases(t);
  network_cases(t);
  return h.run(t.cases);
}
