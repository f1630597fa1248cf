#include "config.h"

#include <cmath>
#include <sstream>

namespace l2d {

namespace {

const Json& empty_object() {
  static const Json empty = Json::parse("{}");
  return empty;
}

const char* type_name(Json::Type t) {
  switch (t) {
    case Json::Type::Null: return "null";
    case Json::Type::Bool: return "a boolean";
    case Json::Type::Number: return "a number";
    case Json::Type::String: return "a string";
    case Json::Type::Array: return "an array";
    case Json::Type::Object: return "an object";
  }
  return "?";
}

// Integral values in full (4294967298, not 4.29497e+09), so the message shows what was read.
std::string shown(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9.0e18) return std::to_string(int64_t(v));
  std::ostringstream os;
  os << v;
  return os.str();
}

}  // namespace

ConfigReader::ConfigReader(const Json& json, std::string where, l2d_status status)
    : ConfigReader(&json, std::move(where), "", status) {}

ConfigReader::ConfigReader(const Json* json, std::string where, std::string path, l2d_status status)
    : json_(json->is_null() ? &empty_object() : json), where_(std::move(where)), path_(std::move(path)),
      status_(status) {
  if (json_->type() != Json::Type::Object)
    fail(status_, where_, path_.empty() ? "" : ": ", path_, path_.empty() ? "" : " ", "must be a JSON object, got ",
         type_name(json_->type()));
}

std::string ConfigReader::name(const std::string& key) const { return where_ + ": " + path_ + key; }

const Json* ConfigReader::value(const std::string& key) const {
  if (!json_->has(key)) return nullptr;
  const Json& v = (*json_)[key];
  return v.is_null() ? nullptr : &v;
}

bool ConfigReader::has(const std::string& key) const { return value(key) != nullptr; }

Json::Type ConfigReader::type_of(const std::string& key) const {
  const Json* v = value(key);
  return v ? v->type() : Json::Type::Null;
}

ConfigReader ConfigReader::object(const std::string& key) const {
  const Json* v = value(key);
  if (v && v->type() != Json::Type::Object) error(key, "must be an object, got ", type_name(v->type()));
  return ConfigReader(v ? v : &empty_object(), where_, path_ + key + ".", status_);
}

// Integral and within lo..hi, checked on the double so that no conversion can wrap.
static bool integral_in(double v, int64_t lo, int64_t hi) {
  return std::isfinite(v) && v == std::floor(v) && v >= double(lo) && v <= double(hi);
}

int64_t ConfigReader::integer(const std::string& key, int64_t def, int64_t lo, int64_t hi) const {
  const Json* v = value(key);
  if (!v) return def;
  if (v->type() != Json::Type::Number) error(key, "must be an integer, got ", type_name(v->type()));
  const double d = v->number();
  if (!integral_in(d, lo, hi)) error(key, "must be an integer in ", lo, "..", hi, ", got ", shown(d));
  return int64_t(d);
}

int64_t ConfigReader::integer(const std::string& key, int64_t lo, int64_t hi) const {
  if (!has(key)) error(key, "is missing (an integer in ", lo, "..", hi, ")");
  return integer(key, 0, lo, hi);
}

double ConfigReader::number(const std::string& key, double def, double lo, double hi) const {
  const Json* v = value(key);
  if (!v) return def;
  if (v->type() != Json::Type::Number) error(key, "must be a number, got ", type_name(v->type()));
  const double d = v->number();
  if (!std::isfinite(d) || d < lo || d > hi) error(key, "must be a finite number in [", lo, ", ", hi, "], got ", shown(d));
  return d;
}

bool ConfigReader::boolean(const std::string& key, bool def) const {
  const Json* v = value(key);
  if (!v) return def;
  if (v->type() != Json::Type::Bool) error(key, "must be true or false, got ", type_name(v->type()));
  return v->boolean();
}

std::string ConfigReader::string(const std::string& key, const std::string& def) const {
  const Json* v = value(key);
  if (!v) return def;
  if (v->type() != Json::Type::String) error(key, "must be a string, got ", type_name(v->type()));
  return v->str();
}

std::vector<int64_t> ConfigReader::integers(const std::string& key, size_t min_n, size_t max_n, int64_t lo,
                                            int64_t hi) const {
  const Json* v = value(key);
  if (!v) error(key, "is missing (an array of ", min_n, "..", max_n, " integers)");
  if (v->type() != Json::Type::Array) error(key, "must be an array of integers, got ", type_name(v->type()));
  const std::vector<Json>& items = v->array();
  if (items.size() < min_n || items.size() > max_n)
    error(key, "must have ", min_n, "..", max_n, " entries, got ", items.size());
  std::vector<int64_t> out;
  for (size_t i = 0; i < items.size(); ++i) {
    const Json& item = items[i];
    if (item.type() != Json::Type::Number || !integral_in(item.number(), lo, hi))
      error(key, "[", i, "] must be an integer in ", lo, "..", hi, ", got ",
            item.type() == Json::Type::Number ? shown(item.number()) : type_name(item.type()));
    out.push_back(int64_t(item.number()));
  }
  return out;
}

std::vector<std::string> ConfigReader::strings(const std::string& key, size_t min_n, size_t max_n) const {
  const Json* v = value(key);
  if (!v) error(key, "is missing (an array of ", min_n, "..", max_n, " strings)");
  if (v->type() != Json::Type::Array) error(key, "must be an array of strings, got ", type_name(v->type()));
  const std::vector<Json>& items = v->array();
  if (items.size() < min_n || items.size() > max_n)
    error(key, "must have ", min_n, "..", max_n, " entries, got ", items.size());
  std::vector<std::string> out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].type() != Json::Type::String) error(key, "[", i, "] must be a string, got ", type_name(items[i].type()));
    out.push_back(items[i].str());
  }
  return out;
}

void ConfigReader::require_divisible(const std::string& key, int64_t value, const std::string& divisor_key,
                                     int64_t divisor) const {
  if (divisor < 1) error(divisor_key, "must be positive, got ", divisor);  // never divide by it otherwise
  if (value % divisor != 0) error(key, value, " is not divisible by ", divisor_key, " ", divisor);
}

void require_bytes_at_most(const std::string& what, double bytes, double limit, l2d_status status) {
  if (!(bytes <= limit))
    fail(status, what, " would need ", bytes / kGiB, " GiB, more than the limit of ", limit / kGiB, " GiB");
}

}  // namespace l2d
