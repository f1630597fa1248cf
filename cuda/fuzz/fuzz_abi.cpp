// fuzz_abi.cpp: libFuzzer target for the C ABI (l2d.h) as a hostile caller uses it: a sequence of
// tensor-map calls with fuzzed names, dtypes, ranks, shapes and byte counts, model creation of
// every kind from a fuzzed config over that map, runs of fuzzed methods, and sessions. Every call
// must return a status (never crash, hang or leak); a status outside the enum is a finding.
//
// Sizes: the ABI accepts any tensor the caller can pay for, so the harness keeps what it asks to
// be allocated small (<= kMaxBytes per tensor) to fuzz logic, not the host allocator.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <string>
#include <vector>

#include "l2d.h"

namespace {

constexpr uint64_t kMaxBytes = 1 << 16;
const char* const kKinds[] = {"unet", "taesd", "clip_text", "midas", "ops", "nope"};
const char* const kOpsMethods[] = {"identity", "linear", "matmul", "conv2d", "conv_transpose2d", "group_norm",
                                   "layer_norm", "geglu", "unary", "binary", "attention", "embedding",
                                   "minmax_normalize", "permute", "slice", "concat", "upsample_nearest",
                                   "max_pool2d", "resize_bilinear", "fit_frame", "stream_temporal_attention",
                                   "linear_geglu", "conv2d_fused", "group_norm_tokens", "linear_to_image",
                                   "self_attention", "stream_temporal_attention_qkv"};
const char* const kNames[] = {"x", "w", "b", "a", "params", "perm", "dim", "size", "op", "ids", "table",
                              "gamma", "beta", "eps", "frame", "stride", "q", "k", "v", "heads", "cache",
                              "qpe", "kpe", "vpe", "pe_idx", "update_idx", "bias", "conv_in.weight",
                              "qkv", "t", "r", "bn", "hw"};

void check(l2d_status s) {
  if (s < L2D_OK || s > L2D_ERR_INTERNAL) __builtin_trap();
  if (s != L2D_OK && l2d_last_error()[0] == '\0') __builtin_trap();  // every failure says why
}

std::string name(FuzzedDataProvider& in) {
  if (in.ConsumeBool()) return kNames[in.ConsumeIntegralInRange<size_t>(0, std::size(kNames) - 1)];
  return in.ConsumeRandomLengthString(64);
}

std::vector<int64_t> shape(FuzzedDataProvider& in, int32_t ndim) {
  std::vector<int64_t> s(L2D_MAX_DIMS + 1, 1);
  for (int32_t i = 0; i < ndim && i < int32_t(s.size()); ++i)
    s[size_t(i)] = in.ConsumeBool() ? in.ConsumeIntegralInRange<int64_t>(0, 8) : in.ConsumeIntegral<int64_t>();
  return s;
}

// Sets `name` to a small tensor the way a test of the ops model would: F32 or I64, rank 0..5,
// sides 0..4, values from the input (integers small, so they land on edges like 0, -1, rank).
void small_tensor(FuzzedDataProvider& in, l2d_tmap* map, const char* name) {
  const bool ints = in.ConsumeBool();
  const int32_t ndim = in.ConsumeIntegralInRange<int32_t>(0, 5);
  int64_t shape[5];
  int64_t n = 1;
  for (int32_t i = 0; i < ndim; ++i) n *= shape[i] = in.ConsumeIntegralInRange<int64_t>(0, 4);
  std::vector<float> f(static_cast<size_t>(n));
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    if (ints) v[size_t(i)] = in.ConsumeIntegralInRange<int64_t>(-2, 8);
    else f[size_t(i)] = in.ConsumeBool() ? float(in.ConsumeIntegralInRange<int>(-2, 8)) : in.ConsumeFloatingPoint<float>();
  }
  check(ints ? l2d_tmap_set(map, name, L2D_I64, ndim, shape, v.data(), uint64_t(n) * 8)
             : l2d_tmap_set(map, name, L2D_F32, ndim, shape, f.data(), uint64_t(n) * 4));
}

uint64_t numel_or_max(const std::vector<int64_t>& s, int32_t ndim) {
  uint64_t n = 1;
  for (int32_t i = 0; i < ndim; ++i) {
    if (s[size_t(i)] < 0) return UINT64_MAX;
    if (s[size_t(i)] != 0 && n > UINT64_MAX / uint64_t(s[size_t(i)])) return UINT64_MAX;
    n *= uint64_t(s[size_t(i)]);
  }
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  l2d_context* ctx = nullptr;
  check(l2d_context_create("cpu", "{\"threads\": 1}", &ctx));
  l2d_tmap* map = nullptr;
  check(l2d_tmap_create(&map));
  l2d_model* model = nullptr;
  std::vector<uint8_t> buf;

  for (int op = 0; op < 48 && in.remaining_bytes() > 0; ++op) {
    switch (in.ConsumeIntegralInRange<int>(0, 9)) {
      case 0: {  // tmap_set
        const std::string n = name(in);
        const int32_t dtype = in.ConsumeIntegralInRange<int32_t>(-1, 8);
        const int32_t ndim = in.ConsumeIntegralInRange<int32_t>(-1, L2D_MAX_DIMS + 1);
        const std::vector<int64_t> s = shape(in, ndim);
        const int dsize = dtype == L2D_F32 || dtype == L2D_I32 ? 4 : dtype == L2D_I64 ? 8 : dtype == L2D_F16 || dtype == L2D_BF16 ? 2 : 1;
        const uint64_t count = numel_or_max(s, ndim < 0 ? 0 : ndim);
        uint64_t nbytes = count <= kMaxBytes / 8 ? count * uint64_t(dsize) : in.ConsumeIntegralInRange<uint64_t>(0, kMaxBytes);
        if (in.ConsumeIntegralInRange<int>(0, 15) == 0) nbytes = in.ConsumeIntegral<uint64_t>();  // a lie
        buf.assign(size_t(std::min<uint64_t>(nbytes, kMaxBytes)), 0);
        const std::vector<uint8_t> bytes = in.ConsumeBytes<uint8_t>(buf.size());
        std::copy(bytes.begin(), bytes.end(), buf.begin());
        // Never claim more bytes than the buffer holds unless the call must refuse on the shape.
        const uint64_t claimed = nbytes <= buf.size() || count * uint64_t(dsize) != nbytes ? nbytes : buf.size();
        check(l2d_tmap_set(map, n.c_str(), dtype, ndim, s.data(), buf.data(), claimed));
        break;
      }
      case 1: {  // tmap_set_philox
        const std::string n = name(in);
        const int32_t ndim = in.ConsumeIntegralInRange<int32_t>(-1, L2D_MAX_DIMS + 1);
        const std::vector<int64_t> s = shape(in, ndim);
        if (numel_or_max(s, ndim < 0 ? 0 : ndim) > kMaxBytes / 4 && numel_or_max(s, ndim < 0 ? 0 : ndim) != UINT64_MAX &&
            ndim >= 0 && ndim <= L2D_MAX_DIMS)
          break;  // a valid but big request: the allocator's business
        check(l2d_tmap_set_philox(map, n.c_str(), ndim, s.data(), in.ConsumeIntegralInRange<int32_t>(-1, 2),
                                  in.ConsumeIntegral<uint32_t>(), in.ConsumeIntegral<uint32_t>(),
                                  in.ConsumeIntegral<uint32_t>()));
        break;
      }
      case 2: {  // tmap_info
        int32_t dtype = 0, ndim = 0;
        int64_t out_shape[L2D_MAX_DIMS];
        check(l2d_tmap_info(map, name(in).c_str(), &dtype, &ndim, out_shape));
        break;
      }
      case 3: {  // tmap_get with a fuzzed buffer size
        const uint64_t nbytes = in.ConsumeIntegralInRange<uint64_t>(0, kMaxBytes);
        buf.assign(size_t(nbytes), 0);
        check(l2d_tmap_get(map, name(in).c_str(), buf.data(), nbytes));
        break;
      }
      case 4: check(l2d_tmap_remove(map, name(in).c_str())); break;
      case 5: {  // count + name with fuzzed index and buffer size
        int32_t count = 0;
        check(l2d_tmap_count(map, &count));
        const uint64_t cap = in.ConsumeIntegralInRange<uint64_t>(0, 128);
        std::vector<char> out(size_t(cap) + 1);
        check(l2d_tmap_name(map, in.ConsumeIntegralInRange<int32_t>(-2, count + 1), out.data(), cap));
        break;
      }
      case 6: {  // model_create from a fuzzed config over the map
        const char* kind = kKinds[in.ConsumeIntegralInRange<size_t>(0, std::size(kKinds) - 1)];
        const std::string config = in.ConsumeRandomLengthString(2048);
        l2d_model* m = nullptr;
        const l2d_status s = l2d_model_create(ctx, kind, config.c_str(), in.ConsumeBool() ? map : nullptr, &m);
        check(s);
        if (s == L2D_OK) {
          l2d_model_free(model);
          model = m;
        }
        break;
      }
      case 7: {  // run a method of the last model on the map
        if (!model) break;
        const std::string method = in.ConsumeBool()
                                       ? kOpsMethods[in.ConsumeIntegralInRange<size_t>(0, std::size(kOpsMethods) - 1)]
                                       : in.ConsumeRandomLengthString(32);
        check(l2d_model_run(model, method.c_str(), map));
        break;
      }
      case 9: {  // an ops-model call with every input it reads set to a small fuzzed tensor
        l2d_model* ops = nullptr;
        if (l2d_model_create(ctx, "ops", "{}", nullptr, &ops) != L2D_OK) __builtin_trap();
        const char* method = kOpsMethods[in.ConsumeIntegralInRange<size_t>(0, std::size(kOpsMethods) - 1)];
        for (const char* n : kNames)
          if (in.ConsumeBool()) small_tensor(in, map, n);
        check(l2d_model_run(ops, method, map));
        l2d_model_free(ops);
        break;
      }
      case 8: {  // a session of the last model
        if (!model) break;
        const std::string config = in.ConsumeRandomLengthString(256);
        l2d_session* session = nullptr;
        const l2d_status s = l2d_session_create(model, config.c_str(), &session);
        check(s);
        if (s == L2D_OK) check(l2d_session_free(session));
        break;
      }
    }
  }
  l2d_model_free(model);
  l2d_tmap_free(map);
  l2d_context_free(ctx);
  return 0;
}
