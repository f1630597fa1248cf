// test_device_guard: the CUDA backend's device guard (backends/cuda/guarded_backend.h), checked on
// any machine: Guarded<> is instantiated over a mock backend whose every op records which device
// was current on the calling thread, with a mock "runtime" whose current device is per thread
// (like CUDA's). It fails if an entry point skips the guard: every pure-virtual Backend entry point
// listed in core/backend.h (except the documented exemptions) must have been called here and must
// have run on the context's device, from the main thread and from fresh threads, with two contexts
// on devices 0 and 1 interleaved. Also checks the L2D_CUDA_SYNC op attribution and error messages.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "backends/cuda/guarded_backend.h"

using namespace l2d;
using l2d::cuda::DeviceApi;
using l2d::cuda::Guarded;

namespace {

thread_local int t_current = 0;  // the mock runtime's current device of this thread (CUDA's default: 0)
std::atomic<int> g_set_calls{0};
int mock_current() { return t_current; }
void mock_make_current(int device) {
  t_current = device;
  ++g_set_calls;
}
const DeviceApi kMockApi{mock_current, mock_make_current};

int failures = 0;
#define CHECK(cond, ...)                                      \
  do {                                                        \
    if (!(cond)) {                                            \
      ++failures;                                             \
      std::printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      std::printf(__VA_ARGS__);                               \
      std::printf("\n");                                      \
    }                                                         \
  } while (0)

// A backend that does nothing but record (op, device current at the call). Protected constructor,
// like CudaBackend: only Guarded<MockImpl> can exist.
class MockImpl : public Backend {
 protected:
  explicit MockImpl(int device) : device_(device) {}

 public:
  std::vector<std::pair<std::string, int>> calls;
  bool sync = false;
  int checks = 0;
  std::string fail_op;               // this op throws L2D_ERR_BACKEND
  bool fail_check = false;           // check_after_op throws (a fault found by the debug sync)
  bool invalid_arg = false;          // fail_op throws L2D_ERR_INVALID_ARGUMENT instead
  bool detect_overlap = false;       // count ops that start while another op of this context runs
  std::atomic<int> overlaps{0};

  int device() const { return device_; }
  const DeviceApi& device_api() const { return kMockApi; }
  bool sync_each_op() const { return sync; }
  void check_after_op() {
    ++checks;
    if (fail_check) fail(L2D_ERR_BACKEND, "CUDA error in cudaStreamSynchronize(stream_): an illegal memory access");
  }

  std::string name() const override { return "mock"; }
  DType float_dtype() const override { return DType::F16; }
  void* raw_alloc(size_t bytes) override {
    rec("raw_alloc");
    return std::malloc(bytes ? bytes : 1);
  }
  void raw_free(void* ptr, size_t) override { std::free(ptr); }
  size_t bytes_in_use() const override { return 0; }
  size_t peak_bytes() const override { return 0; }
  Tensor from_host(const HostTensor&) override {
    rec("from_host");
    synchronize();  // nested, like CudaBackend::from_host
    return Tensor();
  }
  HostTensor to_host(const Tensor&) override { return rec("to_host"), HostTensor(); }
  void synchronize() override { rec("synchronize"); }
  Tensor zeros(const Shape&, DType) override { return rec("zeros"); }
  void fill(Tensor&, float) override { rec("fill"); }
  Tensor conv2d(const Tensor&, const Tensor&, const Tensor*, const Conv2dParams&) override { return rec("conv2d"); }
  Tensor conv2d_fused(const Tensor&, const Tensor&, const Tensor*, const Tensor*, const Tensor*,
                      const Conv2dParams&) override {
    return rec("conv2d_fused");
  }
  Tensor conv_transpose2d(const Tensor&, const Tensor&, const Tensor*, int) override { return rec("conv_transpose2d"); }
  Tensor linear(const Tensor&, const Tensor&, const Tensor*) override { return rec("linear"); }
  Tensor linear_add(const Tensor&, const Tensor&, const Tensor*, const Tensor&) override { return rec("linear_add"); }
  Tensor linear_geglu(const Tensor&, const Tensor&, const Tensor*) override { return rec("linear_geglu"); }
  Tensor matmul(const Tensor&, const Tensor&) override { return rec("matmul"); }
  Tensor linear_to_image(const Tensor&, const Tensor&, const Tensor*, const Tensor*, int64_t, int64_t) override {
    return rec("linear_to_image");
  }
  Tensor group_norm_tokens(const Tensor&, int, const Tensor&, const Tensor&, float, bool) override {
    return rec("group_norm_tokens");
  }
  Tensor group_norm(const Tensor&, int, const Tensor&, const Tensor&, float, bool) override { return rec("group_norm"); }
  Tensor layer_norm(const Tensor&, const Tensor&, const Tensor&, float) override { return rec("layer_norm"); }
  Tensor attention(const Tensor&, const Tensor&, const Tensor&, int, AttnMask) override { return rec("attention"); }
  Tensor stream_temporal_attention(const Tensor&, const Tensor&, const Tensor&, Tensor&, const Tensor&, const Tensor&,
                                   const Tensor&, const Tensor&, const Tensor&, const Tensor&, int) override {
    return rec("stream_temporal_attention");
  }
  Tensor self_attention(const Tensor&, int, AttnMask) override { return rec("self_attention"); }
  Tensor stream_temporal_attention_qkv(const Tensor&, Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                       const Tensor&, const Tensor&, const Tensor&, int) override {
    return rec("stream_temporal_attention_qkv");
  }
  Tensor unary(const Tensor&, Unary, float, float) override { return rec("unary"); }
  Tensor binary(const Tensor&, const Tensor&, Binary) override { return rec("binary"); }
  Tensor geglu(const Tensor&) override { return rec("geglu"); }
  Tensor permute(const Tensor&, const std::vector<int>&) override { return rec("permute"); }
  Tensor slice(const Tensor&, int, int64_t, int64_t, int64_t) override { return rec("slice"); }
  void write_slice(Tensor&, const Tensor&, const std::vector<int64_t>&) override { rec("write_slice"); }
  Tensor upsample_nearest(const Tensor&, int, int) override { return rec("upsample_nearest"); }
  Tensor resize_bilinear(const Tensor&, int, int, bool) override { return rec("resize_bilinear"); }
  Tensor max_pool2d(const Tensor&, int, const Conv2dParams&) override { return rec("max_pool2d"); }
  Tensor embedding(const Tensor&, const Tensor&) override { return rec("embedding"); }
  Tensor minmax_normalize(const Tensor&) override { return rec("minmax_normalize"); }
  Tensor random_normal(const Shape&, uint32_t, uint32_t, uint32_t) override { return rec("random_normal"); }
  Tensor random_normal_counter(const Shape&, uint32_t, uint32_t, const Tensor&, int32_t) override {
    return rec("random_normal_counter");
  }
  void counter_add(Tensor&, int32_t) override { rec("counter_add"); }
  void kv_advance(Tensor&, Tensor&, Tensor&, int) override { rec("kv_advance"); }
  Tensor image_fit_from_u8(const uint8_t*, int64_t, int64_t, int, int64_t, int64_t) override {
    return rec("image_fit_from_u8");
  }
  Tensor image_from_u8(const uint8_t*, int64_t, int64_t, int64_t, int) override { return rec("image_from_u8"); }
  void image_to_host(const Tensor&, float*, uint8_t*) override { rec("image_to_host"); }
  void upload_bytes(Tensor&, const uint8_t*, size_t) override { rec("upload_bytes"); }
  Tensor image_fit_from_bytes(const Tensor&, int64_t, int64_t, int, int64_t, int64_t) override {
    return rec("image_fit_from_bytes");
  }
  void image_to_u8(const Tensor&, Tensor&) override { rec("image_to_u8"); }
  void download_bytes(const Tensor&, uint8_t*, size_t) override { rec("download_bytes"); }
  double image_cosine_similarity(const Tensor&, const Tensor&) override {
    rec("image_cosine_similarity");
    return 1.0;
  }
  int64_t capture(const std::function<void()>& region, std::string* why) override {
    rec("capture");
    return Backend::capture(region, why);
  }
  void replay(int64_t) override { rec("replay"); }
  void release_capture(int64_t) noexcept override {
    std::lock_guard<std::mutex> lock(calls_mutex_);
    calls.emplace_back("release_capture", t_current);
  }

 private:
  Tensor rec(const char* op) {
    {
      // Two threads drive one context in test_two_contexts_on_two_devices_interleaved (as two Deno
      // worker threads may): the log itself must not race.
      std::lock_guard<std::mutex> lock(calls_mutex_);
      calls.emplace_back(op, t_current);
    }
    if (detect_overlap) {
      // Host state of a CUDA backend (dense-path maps, vendor handles, staging buffers) is not
      // safe under two ops at once: an op that finds another op of this context running fails.
      if (active_.fetch_add(1) != 0) overlaps.fetch_add(1);
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      active_.fetch_sub(1);
    }
    if (fail_op == op) fail(invalid_arg ? L2D_ERR_INVALID_ARGUMENT : L2D_ERR_BACKEND, "mock fault in ", op);
    return Tensor();
  }
  std::atomic<int> active_{0};
  int device_;
  std::mutex calls_mutex_;
};

using MockBackend = Guarded<MockImpl>;

// Calls every entry point once; before each, another "context" leaves device 0 current on this
// thread (what a Deno worker thread that served a context on device 0 looks like).
void call_everything(Backend& be, const Tensor& x) {
  Tensor t = x, cache = x;
  const std::vector<std::function<void()>> calls = {
      [&] { be.raw_free(be.raw_alloc(16), 16); },
      [&] { be.from_host(HostTensor()); },
      [&] { be.to_host(x); },
      [&] { be.synchronize(); },
      [&] { be.zeros({2}, DType::F16); },
      [&] { be.fill(t, 1.f); },
      [&] { be.conv2d(x, x, nullptr, Conv2dParams{}); },
      [&] { be.conv2d_fused(x, x, &x, &x, &x, Conv2dParams{}); },
      [&] { be.conv_transpose2d(x, x, &x, 2); },
      [&] { be.linear(x, x, nullptr); },
      [&] { be.linear_add(x, x, &x, x); },
      [&] { be.linear_geglu(x, x, &x); },
      [&] { be.matmul(x, x); },
      [&] { be.linear_to_image(x, x, &x, &x, 1, 1); },
      [&] { be.group_norm_tokens(x, 1, x, x, 1e-5f, false); },
      [&] { be.group_norm(x, 1, x, x, 1e-5f, false); },
      [&] { be.layer_norm(x, x, x, 1e-5f); },
      [&] { be.attention(x, x, x, 1, AttnMask::None); },
      [&] { be.stream_temporal_attention(x, x, x, cache, x, x, x, x, x, x, 1); },
      [&] { be.self_attention(x, 1, AttnMask::None); },
      [&] { be.stream_temporal_attention_qkv(x, cache, x, x, x, x, x, x, 1); },
      [&] { be.unary(x, Unary::Silu); },
      [&] { be.binary(x, x, Binary::Add); },
      [&] { be.geglu(x); },
      [&] { be.permute(x, {0}); },
      [&] { be.slice(x, 0, 0, 1); },
      [&] { be.write_slice(t, x, {0}); },
      [&] { be.upsample_nearest(x, 2, 2); },
      [&] { be.resize_bilinear(x, 2, 2, false); },
      [&] { be.max_pool2d(x, 2, Conv2dParams{}); },
      [&] { be.embedding(x, x); },
      [&] { be.minmax_normalize(x); },
      [&] { be.random_normal({4}, 1, 2, 3); },
      [&] { be.random_normal_counter({4}, 1, 2, x, 0); },
      [&] { be.counter_add(t, 1); },
      [&] { be.kv_advance(t, t, t, 8); },
      [&] { be.image_fit_from_u8(nullptr, 0, 0, 3, 2, 2); },
      [&] { be.image_from_u8(nullptr, 0, 0, 0, 3); },
      [&] { be.image_to_host(x, nullptr, nullptr); },
      [&] { be.upload_bytes(t, nullptr, 0); },
      [&] { be.image_fit_from_bytes(x, 2, 2, 3, 2, 2); },
      [&] { be.image_to_u8(x, t); },
      [&] { be.download_bytes(x, nullptr, 0); },
      [&] { be.image_cosine_similarity(x, x); },
      [&] {
        std::string why;
        be.capture([&] { be.unary(x, Unary::Relu); }, &why);
      },
      [&] { be.replay(1); },
      [&] { be.release_capture(1); },
  };
  for (const auto& call : calls) {
    t_current = 0;
    call();
  }
}

// The entry points core/backend.h declares pure virtual, minus those that never touch the device.
std::set<std::string> required_entry_points() {
  std::ifstream in(std::string(L2D_SRC_DIR) + "/core/backend.h");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  std::set<std::string> names;
  // "virtual <type> name(<args>) [const] = 0;" possibly over several lines
  const std::regex re(R"(virtual\s+[\w:<>,\s\*&]+?\b(\w+)\s*\([^;]*?\)\s*(const\s*)?=\s*0\s*;)");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator(); ++it)
    names.insert((*it)[1].str());
  // name/float_dtype/bytes_in_use/peak_bytes read host fields; raw_free only returns a block to the
  // host-side pool (and runs in destructors, where a device check must not throw).
  for (const char* exempt : {"name", "float_dtype", "bytes_in_use", "peak_bytes", "raw_free"}) names.erase(exempt);
  return names;
}

void test_every_entry_point_runs_on_the_context_device() {
  const std::set<std::string> required = required_entry_points();
  CHECK(required.size() >= 25, "parsed only %zu entry points from core/backend.h", required.size());
  for (int device : {1, 3}) {
    for (bool on_new_thread : {false, true}) {
      MockBackend be(device);
      Tensor x(&be, DType::F16, {2, 3});  // allocated through the guard too
      auto run = [&] { call_everything(be, x); };
      if (on_new_thread) std::thread(run).join();
      else run();
      std::set<std::string> seen;
      for (const auto& [op, dev] : be.calls) {
        seen.insert(op);
        CHECK(dev == device, "%s ran on device %d, the context is on device %d (%s thread)", op.c_str(), dev, device,
              on_new_thread ? "new" : "main");
      }
      for (const std::string& name : required)
        CHECK(seen.count(name), "entry point %s was not exercised (add it to call_everything and the mock)",
              name.c_str());
    }
  }
}

void test_two_contexts_on_two_devices_interleaved() {
  MockBackend a(0), b(1);
  Tensor xa(&a, DType::F16, {4}), xb(&b, DType::F16, {4});
  auto worker = [&](int rounds) {
    for (int i = 0; i < rounds; ++i) {
      a.unary(xa, Unary::Relu);
      b.unary(xb, Unary::Relu);
      b.attention(xb, xb, xb, 1, AttnMask::None);
      a.synchronize();
    }
  };
  std::thread t1(worker, 50), t2(worker, 50);
  t1.join();
  t2.join();
  // The logs are read after both threads finished: only the device of each recorded call matters.
  for (const auto& [op, dev] : a.calls) CHECK(dev == 0, "context A (device 0): %s ran on device %d", op.c_str(), dev);
  for (const auto& [op, dev] : b.calls) CHECK(dev == 1, "context B (device 1): %s ran on device %d", op.c_str(), dev);
}

// Two sessions of one context pushing from two threads (two streams on one engine): their ops
// must not run inside the backend at the same time, because its host-side state (the dense
// router's per-shape maps, cuDNN handles, staging buffers, the error word) is shared.
void test_ops_of_two_threads_never_overlap() {
  MockBackend be(1);
  Tensor x(&be, DType::F16, {4});
  be.detect_overlap = true;
  auto worker = [&] {
    for (int i = 0; i < 40; ++i) {
      be.unary(x, Unary::Relu);
      be.linear(x, x, nullptr);
      be.synchronize();
    }
  };
  std::thread t1(worker), t2(worker);
  t1.join();
  t2.join();
  CHECK(be.overlaps.load() == 0, "%d ops of one context ran at the same time on two threads", be.overlaps.load());
}

// While one thread captures (the per-frame region of a stream), an op of another session of the
// same context on another thread must not run: on CUDA it would be recorded into the graph.
void test_capture_excludes_other_threads() {
  MockBackend be(1);
  Tensor x(&be, DType::F16, {4});
  std::atomic<bool> in_region{false};
  std::thread other;
  std::string why;
  be.capture(
      [&] {
        be.unary(x, Unary::Relu);
        in_region = true;
        other = std::thread([&] { be.binary(x, x, Binary::Add); });
        // Long enough for the other thread to reach the op if nothing held it back.
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        be.unary(x, Unary::Tanh);
      },
      &why);
  other.join();
  std::vector<std::string> order;
  for (const auto& [op, dev] : be.calls) order.push_back(op);
  const auto pos = [&](const std::string& op) { return std::find(order.begin(), order.end(), op) - order.begin(); };
  CHECK(in_region.load(), "the region did not run");
  CHECK(pos("binary") > pos("unary") && size_t(pos("binary")) < order.size(), "binary was not recorded");
  int unaries = 0;
  for (size_t i = 0; i < size_t(pos("binary")); ++i) unaries += order[i] == "unary";
  CHECK(unaries == 2, "the other thread's op ran inside the capture (after %d of the region's 2 ops)", unaries);
}

void test_guard_sets_the_device_only_when_needed() {
  MockBackend be(2);
  Tensor x(&be, DType::F16, {4});
  t_current = 2;
  const int before = g_set_calls.load();
  for (int i = 0; i < 10; ++i) be.unary(x, Unary::Relu);
  CHECK(g_set_calls.load() == before, "the device was set %d times although it was current", g_set_calls.load() - before);
}

void test_faults_name_the_op() {
  {
    MockBackend be(1);
    Tensor x(&be, DType::F16, {1, 320, 64, 64}), w(&be, DType::F16, {320, 320, 3, 3});
    be.fail_op = "conv2d";
    try {
      be.conv2d(x, w, nullptr, Conv2dParams{});
      CHECK(false, "conv2d should have thrown");
    } catch (const Error& e) {
      const std::string m = e.what();
      CHECK(e.status() == L2D_ERR_BACKEND, "status %d", int(e.status()));
      CHECK(m.find("mock fault in conv2d") != std::string::npos, "original message lost: %s", m.c_str());
      CHECK(m.find("conv2d(x f16[1,320,64,64], w f16[320,320,3,3])") != std::string::npos, "no op description: %s",
            m.c_str());
      CHECK(m.find("L2D_CUDA_SYNC=1 to attribute") != std::string::npos, "no hint: %s", m.c_str());
    }
  }
  {  // debug mode: the sync after the op finds the fault and names the op
    MockBackend be(1);
    be.sync = true;
    Tensor x(&be, DType::F32, {2, 77, 768});
    be.layer_norm(x, x, x, 1e-5f);
    CHECK(be.checks == 1, "check_after_op ran %d times for one op", be.checks);
    be.from_host(HostTensor());  // nests synchronize(): still one check
    CHECK(be.checks == 2, "nested ops checked %d times (want once per outermost op)", be.checks - 1);
    be.fail_check = true;
    try {
      be.attention(x, x, x, 12, AttnMask::Causal);
      CHECK(false, "attention should have thrown");
    } catch (const Error& e) {
      const std::string m = e.what();
      CHECK(m.find("attention(q f32[2,77,768], k f32[2,77,768], v f32[2,77,768])") != std::string::npos,
            "no op description: %s", m.c_str());
      CHECK(m.find("L2D_CUDA_SYNC=1: this op made the fault") != std::string::npos, "no attribution: %s", m.c_str());
    }
  }
  {  // data errors keep their message in the normal mode
    MockBackend be(1);
    Tensor ids(&be, DType::I32, {2, 77});
    be.fail_op = "embedding";
    be.invalid_arg = true;
    try {
      be.embedding(ids, ids);
      CHECK(false, "embedding should have thrown");
    } catch (const Error& e) {
      CHECK(e.status() == L2D_ERR_INVALID_ARGUMENT && std::string(e.what()) == "mock fault in embedding",
            "data error changed: %d %s", int(e.status()), e.what());
    }
  }
}

}  // namespace

int main() {
  test_every_entry_point_runs_on_the_context_device();
  test_two_contexts_on_two_devices_interleaved();
  test_capture_excludes_other_threads();
  test_ops_of_two_threads_never_overlap();
  test_guard_sets_the_device_only_when_needed();
  test_faults_name_the_op();
  if (failures) {
    std::printf("test_device_guard: %d FAILED\n", failures);
    return 1;
  }
  std::printf("test_device_guard: all ok\n");
  return 0;
}
