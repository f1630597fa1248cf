#include "json.h"

#include <cmath>
#include <cstdlib>

#include "error.h"

namespace l2d {

class JsonParser {
 public:
  explicit JsonParser(const std::string& s) : s_(s) {}

  Json parse_document() {
    Json v = parse_value(0);
    skip_ws();
    if (pos_ != s_.size()) error("trailing characters");
    return v;
  }

 private:
  const std::string& s_;
  size_t pos_ = 0;

  [[noreturn]] void error(const char* what) {
    fail(L2D_ERR_FORMAT, "invalid JSON at offset ", pos_, ": ", what);
  }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\t' || s_[pos_] == '\r')) ++pos_;
  }
  bool consume(char c) {
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!consume(c)) error("unexpected character");
  }

  Json parse_value(int depth) {
    if (depth > 256) error("nesting too deep");
    skip_ws();
    if (pos_ >= s_.size()) error("unexpected end");
    Json v;
    const char c = s_[pos_];
    if (c == '{') {
      ++pos_;
      v.type_ = Json::Type::Object;
      if (consume('}')) return v;
      do {
        skip_ws();
        std::string key = parse_string();
        expect(':');
        v.object_[key] = parse_value(depth + 1);
      } while (consume(','));
      expect('}');
    } else if (c == '[') {
      ++pos_;
      v.type_ = Json::Type::Array;
      if (consume(']')) return v;
      do v.array_.push_back(parse_value(depth + 1));
      while (consume(','));
      expect(']');
    } else if (c == '"') {
      v.type_ = Json::Type::String;
      v.string_ = parse_string();
    } else if (s_.compare(pos_, 4, "true") == 0) {
      pos_ += 4;
      v.type_ = Json::Type::Bool;
      v.bool_ = true;
    } else if (s_.compare(pos_, 5, "false") == 0) {
      pos_ += 5;
      v.type_ = Json::Type::Bool;
    } else if (s_.compare(pos_, 4, "null") == 0) {
      pos_ += 4;
    } else if (s_.compare(pos_, 8, "Infinity") == 0 || s_.compare(pos_, 9, "-Infinity") == 0 ||
               s_.compare(pos_, 3, "NaN") == 0) {
      error("non-finite numbers are not JSON");
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      v.number_ = parse_number();
      v.type_ = Json::Type::Number;
    } else {
      error("unexpected character");
    }
    return v;
  }

  bool digit_at(size_t i) const { return i < s_.size() && s_[i] >= '0' && s_[i] <= '9'; }

  // Exactly the JSON number grammar: strtod alone would also take "-nan", "-inf", hex and
  // "1e999" (Infinity), none of which may reach a config.
  double parse_number() {
    const size_t begin = pos_;
    size_t i = pos_;
    if (i < s_.size() && s_[i] == '-') ++i;
    if (!digit_at(i)) error("bad number");
    if (s_[i] == '0') ++i;
    else while (digit_at(i)) ++i;
    if (i < s_.size() && s_[i] == '.') {
      if (!digit_at(++i)) error("bad number");
      while (digit_at(i)) ++i;
    }
    if (i < s_.size() && (s_[i] == 'e' || s_[i] == 'E')) {
      ++i;
      if (i < s_.size() && (s_[i] == '+' || s_[i] == '-')) ++i;
      if (!digit_at(i)) error("bad number");
      while (digit_at(i)) ++i;
    }
    const std::string text = s_.substr(begin, i - begin);
    const double v = std::strtod(text.c_str(), nullptr);
    if (!std::isfinite(v)) error("number out of range");
    pos_ = i;
    return v;
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  uint32_t parse_hex4() {
    if (pos_ + 4 > s_.size()) error("bad \\u escape");
    uint32_t cp = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = s_[pos_++];
      cp <<= 4;
      if (h >= '0' && h <= '9') cp |= uint32_t(h - '0');
      else if (h >= 'a' && h <= 'f') cp |= uint32_t(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') cp |= uint32_t(h - 'A' + 10);
      else error("bad \\u escape");
    }
    return cp;
  }

  std::string parse_string() {
    if (pos_ >= s_.size() || s_[pos_] != '"') error("expected a string");
    ++pos_;
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) error("unterminated string");
      const char c = s_[pos_++];
      if (c == '"') break;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size()) error("unterminated string");
      const char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = parse_hex4();
          // A surrogate must be a high one followed by a low one: a lone half has no UTF-8 form.
          if (cp >= 0xDC00 && cp < 0xE000) error("lone low surrogate");
          if (cp >= 0xD800 && cp < 0xDC00) {
            if (!(pos_ + 6 <= s_.size() && s_[pos_] == '\\' && s_[pos_ + 1] == 'u')) error("lone high surrogate");
            pos_ += 2;
            const uint32_t lo = parse_hex4();
            if (lo < 0xDC00 || lo >= 0xE000) error("high surrogate without a low one");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default: error("bad escape");
      }
    }
    return out;
  }
};

Json Json::parse(const std::string& text) { return JsonParser(text).parse_document(); }

bool Json::has(const std::string& key) const { return type_ == Type::Object && object_.count(key) != 0; }

const Json& Json::operator[](const std::string& key) const {
  if (type_ != Type::Object) fail(L2D_ERR_FORMAT, "config: expected an object holding \"", key, "\"");
  auto it = object_.find(key);
  if (it == object_.end()) fail(L2D_ERR_FORMAT, "config: missing key \"", key, "\"");
  return it->second;
}

const Json& Json::operator[](size_t index) const {
  if (type_ != Type::Array || index >= array_.size()) fail(L2D_ERR_FORMAT, "config: array index ", index, " out of range");
  return array_[index];
}

size_t Json::size() const {
  if (type_ == Type::Array) return array_.size();
  if (type_ == Type::Object) return object_.size();
  return 0;
}

double Json::number() const {
  if (type_ != Type::Number) fail(L2D_ERR_FORMAT, "config: expected a number");
  return number_;
}

int64_t Json::integer() const {
  const double v = number();
  if (v != std::floor(v) || std::fabs(v) > 9.0e15) fail(L2D_ERR_FORMAT, "config: expected an integer, got ", v);
  return int64_t(v);
}

bool Json::boolean() const {
  if (type_ != Type::Bool) fail(L2D_ERR_FORMAT, "config: expected true or false");
  return bool_;
}

const std::string& Json::str() const {
  if (type_ != Type::String) fail(L2D_ERR_FORMAT, "config: expected a string");
  return string_;
}

const std::map<std::string, Json>& Json::object() const {
  if (type_ != Type::Object) fail(L2D_ERR_FORMAT, "config: expected an object");
  return object_;
}

const std::vector<Json>& Json::array() const {
  if (type_ != Type::Array) fail(L2D_ERR_FORMAT, "config: expected an array");
  return array_;
}

int64_t Json::get_int(const std::string& key, int64_t def) const {
  return has(key) && !object_.at(key).is_null() ? object_.at(key).integer() : def;
}
double Json::get_number(const std::string& key, double def) const {
  return has(key) && !object_.at(key).is_null() ? object_.at(key).number() : def;
}
bool Json::get_bool(const std::string& key, bool def) const {
  return has(key) && !object_.at(key).is_null() ? object_.at(key).boolean() : def;
}
std::string Json::get_str(const std::string& key, const std::string& def) const {
  return has(key) && !object_.at(key).is_null() ? object_.at(key).str() : def;
}
std::vector<int64_t> Json::int_array() const {
  std::vector<int64_t> out;
  for (const Json& v : array()) out.push_back(v.integer());
  return out;
}

}  // namespace l2d
