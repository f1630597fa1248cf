// json.h: a small JSON reader for model configs and options (no writer needed). Values are a tagged
// tree; lookups of missing keys or wrong types throw l2d::Error(L2D_ERR_FORMAT) naming the key, so a
// bad config gives a clear message instead of a crash.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace l2d {

class Json {
 public:
  enum class Type { Null, Bool, Number, String, Array, Object };

  static Json parse(const std::string& text);  // throws L2D_ERR_FORMAT with the offset

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::Null; }
  bool has(const std::string& key) const;
  const Json& operator[](const std::string& key) const;  // throws if missing
  const Json& operator[](size_t index) const;
  size_t size() const;  // array or object length

  double number() const;
  int64_t integer() const;
  bool boolean() const;
  const std::string& str() const;
  const std::map<std::string, Json>& object() const;
  const std::vector<Json>& array() const;

  // Lookups with defaults for optional config fields.
  int64_t get_int(const std::string& key, int64_t def) const;
  double get_number(const std::string& key, double def) const;
  bool get_bool(const std::string& key, bool def) const;
  std::string get_str(const std::string& key, const std::string& def) const;
  std::vector<int64_t> int_array() const;

 private:
  friend class JsonParser;
  Type type_ = Type::Null;
  bool bool_ = false;
  double number_ = 0;
  std::string string_;
  std::vector<Json> array_;
  std::map<std::string, Json> object_;
};

}  // namespace l2d
