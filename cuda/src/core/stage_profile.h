// stage_profile.h: milliseconds per named pipeline stage ("encode", "depth", "unet", "decode"),
// summed over the frames while a context profiles its stages (l2d_context_profile; the bench's
// device milliseconds per stage). Backend owns one StageTimes; StageTimer brackets the stages in
// pipeline code. Header-only host C++.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <sstream>
#include <string>

namespace l2d {

class StageTimes {
 public:
  void add(const std::string& stage, double ms) {
    std::lock_guard<std::mutex> lock(mutex_);
    Entry& e = entries_[stage];
    ++e.calls;
    e.ms += ms;
  }
  // {"unet": {"calls": 12, "ms": 103.25}, ...}
  std::string json() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::ostringstream os;
    os.precision(6);
    os << std::fixed << '{';
    bool first = true;
    for (const auto& [name, e] : entries_) {
      os << (first ? "" : ",") << '"' << name << "\":{\"calls\":" << e.calls << ",\"ms\":" << e.ms << '}';
      first = false;
    }
    os << '}';
    return os.str();
  }

 private:
  struct Entry {
    uint64_t calls = 0;
    double ms = 0;
  };
  mutable std::mutex mutex_;
  std::map<std::string, Entry> entries_;  // stage names are code literals (no JSON escaping needed)
};

}  // namespace l2d
