// The CPU backend's capture audit (backend_cpu.h): the CPU cannot record a CUDA graph, but it can
// check that a region would survive being recorded. A CUDA graph replays exactly the device work
// issued while capturing: no host transfer or wait can be part of it, and every allocation must
// get the block it got then, and host scalars passed to ops are baked in. So inside an audited
// region a host-side op throws, and a replay must make the same allocations (order and sizes) and
// pass the same host scalars (audit_value) as the capture did.
#include <cstdlib>
#include <cstring>
#include <string>

#include "backend_cpu.h"

namespace l2d::cpu {
namespace {

// The audited region running on this thread (one at a time per thread; other threads' ops on the
// same context are not part of it, as with CUDA's thread-local capture mode).
struct AuditState {
  const CpuBackend* backend = nullptr;
  std::vector<uint64_t>* record = nullptr;       // capture: audit_value()s appended
  std::vector<const char*>* record_ops = nullptr;  // ... with the op making each
  const std::vector<uint64_t>* expect = nullptr;  // replay: compared
  const std::vector<const char*>* expect_ops = nullptr;
  size_t next = 0;
};
thread_local AuditState t_audit;

// " in conv2d" for messages; empty outside any CPU op (a base-class composition's own allocation).
std::string in_op(const char* op) { return op ? std::string(" in ") + op : std::string(); }

}  // namespace

bool CpuBackend::capture_audit_from_env() {
  const char* env = std::getenv("L2D_CAPTURE_AUDIT");
  if (!env || !*env || std::strcmp(env, "0") == 0) return false;
  if (std::strcmp(env, "1") == 0) return true;
  fail(L2D_ERR_INVALID_ARGUMENT, "L2D_CAPTURE_AUDIT must be 0 or 1, got \"", env, "\"");
}

void CpuBackend::audit_host_op(const char* op) const {
  if (t_audit.backend != this) return;
  fail(L2D_ERR_INTERNAL, "capture audit: ", op,
       " inside the captured per-frame region (a CUDA graph cannot contain a host transfer or a wait)");
}

void CpuBackend::audit_value(const char* what, uint64_t value) {
  if (t_audit.backend != this) return;
  AuditState& a = t_audit;
  const char* op = CpuOpScope::current();
  if (a.record) {
    a.record->push_back(value);
    a.record_ops->push_back(op);
  }
  if (!a.expect) return;
  if (a.next >= a.expect->size())
    fail(L2D_ERR_INTERNAL, "capture audit: the replayed region does more than the captured one (", what, " ", value,
         in_op(op), " after ", a.expect->size(), " recorded values)");
  if ((*a.expect)[a.next] != value)
    fail(L2D_ERR_INTERNAL, "capture audit: ", what, " #", a.next + 1, " of the replayed region is ", value, in_op(op),
         ", the captured region's was ", (*a.expect)[a.next], in_op((*a.expect_ops)[a.next]),
         " (a graph replays the captured sizes and arguments)");
  ++a.next;
}

void CpuBackend::run_audited(const std::function<void()>& region, Recorded* record, const Recorded* expect) {
  L2D_REQUIRE(t_audit.backend == nullptr, "capture audit: regions do not nest");
  t_audit = AuditState{this,
                       record ? &record->values : nullptr,
                       record ? &record->ops : nullptr,
                       expect ? &expect->values : nullptr,
                       expect ? &expect->ops : nullptr,
                       0};
  struct Restore {
    ~Restore() { t_audit = AuditState{}; }
  } restore;
  region();
  if (expect && t_audit.next != expect->values.size())
    fail(L2D_ERR_INTERNAL, "capture audit: the replayed region stopped after ", t_audit.next,
         " recorded values (allocations, host arguments), the captured one made ", expect->values.size(),
         " (the next: ", expect->values[t_audit.next], in_op(expect->ops[t_audit.next]), ")");
}

int64_t CpuBackend::capture(const std::function<void()>& region, std::string* why) {
  if (!audit_captures_) return Backend::capture(region, why);
  Recorded r;
  r.region = region;
  // An audit failure is a bug in the region: it throws (no eager fallback hides it).
  run_audited(region, &r, nullptr);
  if (why) why->clear();
  std::lock_guard<std::mutex> lock(recorded_mutex_);
  const int64_t handle = next_handle_++;
  recorded_.emplace(handle, std::move(r));
  return handle;
}

void CpuBackend::replay(int64_t handle) {
  Recorded r;
  {
    std::lock_guard<std::mutex> lock(recorded_mutex_);
    auto it = recorded_.find(handle);
    if (it == recorded_.end()) fail(L2D_ERR_INTERNAL, "replay(", handle, "): no such captured region");
    r = it->second;
  }
  run_audited(r.region, nullptr, &r);
}

void CpuBackend::release_capture(int64_t handle) noexcept {
  std::lock_guard<std::mutex> lock(recorded_mutex_);
  recorded_.erase(handle);
}

}  // namespace l2d::cpu
