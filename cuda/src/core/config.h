// config.h: the one checked layer every model, session, stream and backend config passes through
// before any arithmetic. Configs come from engine files and callers nobody vouches for, so each
// read states the type and the range it accepts, and a value outside them is an l2d::Error naming
// the key (with its path, "unet config: motion.motion_module_kwargs.num_attention_heads") and the
// value, never a division by zero, an int wrap (4294967298 read as 2) or an absurd allocation.
//
// A model's config code then reads as its schema:
//   ConfigReader u(json["unet"], "unet config");
//   const int groups = u.integer("norm_num_groups", 32, 1, 1024);
//   u.require_divisible("block_out_channels", ch, "norm_num_groups", groups);
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "error.h"
#include "json.h"

namespace l2d {

class ConfigReader {
 public:
  // `json` must be an object, or null (read as {}). `where` starts every message ("unet config");
  // `status` is what a bad value throws: L2D_ERR_FORMAT for model configs (they come with the
  // weights), L2D_ERR_INVALID_ARGUMENT for per-call options (stream and session configs).
  ConfigReader(const Json& json, std::string where, l2d_status status = L2D_ERR_FORMAT);

  // Present and not null (null means "use the default", like an absent key).
  bool has(const std::string& key) const;
  Json::Type type_of(const std::string& key) const;  // Null when absent
  // A nested object (absent or null: an empty one); messages then name "parent.key".
  ConfigReader object(const std::string& key) const;

  // An integer in lo..hi: a JSON number that is finite and integral (4.5 and 1e300 are refused),
  // checked against the range before any conversion so nothing wraps.
  int64_t integer(const std::string& key, int64_t def, int64_t lo, int64_t hi) const;
  int64_t integer(const std::string& key, int64_t lo, int64_t hi) const;  // required
  // A finite number in lo..hi (NaN, Infinity and out-of-range values are refused).
  double number(const std::string& key, double def, double lo, double hi) const;
  bool boolean(const std::string& key, bool def) const;
  std::string string(const std::string& key, const std::string& def) const;
  // An array of min_n..max_n integers, each in lo..hi.
  std::vector<int64_t> integers(const std::string& key, size_t min_n, size_t max_n, int64_t lo, int64_t hi) const;
  std::vector<std::string> strings(const std::string& key, size_t min_n, size_t max_n) const;

  // value % divisor == 0 (the divisor already checked positive), else the error names both keys.
  void require_divisible(const std::string& key, int64_t value, const std::string& divisor_key,
                         int64_t divisor) const;

  // "where: path.key" for messages.
  std::string name(const std::string& key) const;
  // Throws `status` with "where: path.key <parts...>".
  template <typename... Parts>
  [[noreturn]] void error(const std::string& key, const Parts&... parts) const {
    fail(status_, name(key), " ", parts...);
  }

 private:
  ConfigReader(const Json* json, std::string where, std::string path, l2d_status status);
  const Json* value(const std::string& key) const;  // nullptr when absent or null

  const Json* json_;
  std::string where_, path_;
  l2d_status status_;
};

// Refuses (L2D_ERR_FORMAT unless told otherwise) a size whose bytes exceed `limit`, stating the
// size in GiB: configs that would need absurd memory fail before anything is allocated.
void require_bytes_at_most(const std::string& what, double bytes, double limit, l2d_status status = L2D_ERR_FORMAT);

constexpr double kGiB = double(1ull << 30);

}  // namespace l2d
