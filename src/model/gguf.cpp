#include "model/gguf.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "util/error.h"

namespace ckv {

namespace {

enum GGUFType : uint32_t {
  T_UINT8 = 0, T_INT8 = 1, T_UINT16 = 2, T_INT16 = 3, T_UINT32 = 4, T_INT32 = 5, T_FLOAT32 = 6,
  T_BOOL = 7, T_STRING = 8, T_ARRAY = 9, T_UINT64 = 10, T_INT64 = 11, T_FLOAT64 = 12,
};

// Smallest encoding of one value of a scalar type; lets a count be checked
// against the bytes left before anything is allocated for it.
uint64_t min_size(uint32_t t) {
  switch (t) {
    case T_UINT8: case T_INT8: case T_BOOL: return 1;
    case T_UINT16: case T_INT16: return 2;
    case T_UINT32: case T_INT32: case T_FLOAT32: return 4;
    case T_UINT64: case T_INT64: case T_FLOAT64: return 8;
    case T_STRING: return 8;  // the length
    default: return 0;        // unknown or array: not a scalar
  }
}

constexpr uint32_t kMaxDims = 4;
constexpr int64_t kMaxElems = int64_t(1) << 40;

// Bounds-checked little-endian cursor over the mapped bytes. Reads go
// through memcpy because nothing in a GGUF header is aligned.
struct Reader {
  const std::string& path;
  const uint8_t* data;
  uint64_t size;
  uint64_t pos = 0;

  uint64_t left() const { return size - pos; }
  [[noreturn]] void fail(const std::string& what) const {
    throw file_error(path, what + " (at offset " + std::to_string(pos) + ")");
  }
  void need(uint64_t n, const std::string& what) const {
    if (n > left())
      fail("truncated " + what + ": expected " + std::to_string(n) + " bytes, found " + std::to_string(left()));
  }
  template <typename T>
  T get(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string str(const std::string& what) {
    uint64_t n = get<uint64_t>(what + " length");
    need(n, what + " (string of " + std::to_string(n) + " bytes)");
    std::string s(reinterpret_cast<const char*>(data + pos), size_t(n));
    pos += n;
    return s;
  }
  // A count of elements each at least elem_size bytes must fit in what is left.
  void check_count(uint64_t count, uint64_t elem_size, const std::string& what) const {
    if (elem_size != 0 && count > left() / elem_size)
      fail(what + ": expected at most " + std::to_string(left() / elem_size) + " (each takes at least " +
           std::to_string(elem_size) + " of the " + std::to_string(left()) + " bytes left), found " +
           std::to_string(count));
  }
};

std::string type_desc(uint32_t t) {
  static const char* const names[] = {"uint8", "int8",  "uint16", "int16",  "uint32", "int32", "float32",
                                      "bool",  "string", "array", "uint64", "int64",  "float64"};
  return t < 13 ? names[t] : "type " + std::to_string(t);
}

bool read_bool(Reader& r, const std::string& what) {
  uint8_t b = r.get<uint8_t>(what);
  if (b > 1) r.fail(what + ": bool expected 0 or 1, found " + std::to_string(b));
  return b == 1;
}

// Any integer scalar as int64 (uint64 beyond int64 is refused: callers read counts and ids).
int64_t read_int(Reader& r, uint32_t t, const std::string& what) {
  switch (t) {
    case T_UINT8: return r.get<uint8_t>(what);
    case T_INT8: return r.get<int8_t>(what);
    case T_UINT16: return r.get<uint16_t>(what);
    case T_INT16: return r.get<int16_t>(what);
    case T_UINT32: return r.get<uint32_t>(what);
    case T_INT32: return r.get<int32_t>(what);
    case T_INT64: return r.get<int64_t>(what);
    case T_UINT64: {
      uint64_t v = r.get<uint64_t>(what);
      if (v > uint64_t(std::numeric_limits<int64_t>::max()))
        r.fail(what + ": expected a value below 2^63, found " + std::to_string(v));
      return int64_t(v);
    }
  }
  r.fail(what + ": expected an integer type, found " + type_desc(t));
}

GGUFValue::Array read_array(Reader& r, const std::string& key) {
  const std::string what = "metadata " + key;
  uint32_t et = r.get<uint32_t>(what + " array type");
  uint64_t n = r.get<uint64_t>(what + " array count");
  if (et == T_ARRAY) r.fail(what + ": nested arrays are not supported, found an array of arrays");
  uint64_t es = min_size(et);
  if (es == 0) r.fail(what + ": unknown array element type, expected 0..12, found " + std::to_string(et));
  r.check_count(n, es, what + " array count");
  switch (et) {
    case T_STRING: {
      std::vector<std::string> v;
      v.reserve(size_t(n));
      for (uint64_t i = 0; i < n; ++i) v.push_back(r.str(what + "[" + std::to_string(i) + "]"));
      return v;
    }
    case T_FLOAT32: case T_FLOAT64: {
      std::vector<double> v(static_cast<size_t>(n));
      for (auto& x : v) x = et == T_FLOAT32 ? double(r.get<float>(what)) : r.get<double>(what);
      return v;
    }
    case T_BOOL: {
      std::vector<bool> v(static_cast<size_t>(n));
      for (uint64_t i = 0; i < n; ++i) v[i] = read_bool(r, what);
      return v;
    }
    default: {
      std::vector<int64_t> v(static_cast<size_t>(n));
      for (auto& x : v) x = read_int(r, et, what);
      return v;
    }
  }
}

GGUFValue read_value(Reader& r, uint32_t t, const std::string& key) {
  const std::string what = "metadata " + key;
  GGUFValue out;
  switch (t) {
    case T_UINT64: out.v = r.get<uint64_t>(what); break;
    case T_FLOAT32: out.v = double(r.get<float>(what)); break;
    case T_FLOAT64: out.v = r.get<double>(what); break;
    case T_BOOL: out.v = read_bool(r, what); break;
    case T_STRING: out.v = r.str(what); break;
    case T_ARRAY: out.v = read_array(r, key); break;
    case T_UINT8: case T_INT8: case T_UINT16: case T_INT16: case T_UINT32: case T_INT32: case T_INT64:
      out.v = read_int(r, t, what);
      break;
    default:
      r.fail(what + ": unknown value type, expected 0..12, found " + std::to_string(t));
  }
  return out;
}

struct TensorInfo {
  Tensor t;
  uint64_t offset;
};

TensorInfo read_tensor_info(Reader& r, uint64_t index) {
  TensorInfo ti;
  ti.t.name = r.str("tensor " + std::to_string(index) + " name");
  if (ti.t.name.empty()) r.fail("tensor " + std::to_string(index) + ": expected a name, found an empty string");
  const std::string what = "tensor " + ti.t.name;
  uint32_t nd = r.get<uint32_t>(what + " n_dims");
  if (nd < 1 || nd > kMaxDims)
    r.fail(what + ": n_dims expected 1.." + std::to_string(kMaxDims) + ", found " + std::to_string(nd));
  std::vector<uint64_t> ne(nd);
  int64_t numel = 1;
  for (uint32_t i = 0; i < nd; ++i) {
    ne[i] = r.get<uint64_t>(what + " dims");
    // Checked one at a time (by division) so the running product never overflows.
    if (ne[i] == 0 || ne[i] > uint64_t(kMaxElems / numel))
      r.fail(what + ": dimension " + std::to_string(i) + " expected 1.." + std::to_string(kMaxElems / numel) +
             " (at most 2^40 elements in all), found " + std::to_string(ne[i]));
    numel *= int64_t(ne[i]);
  }
  uint32_t type = r.get<uint32_t>(what + " type");
  if (!dtype_supported(type)) r.fail(what + ": unsupported tensor type " + (dtype_name(type).rfind("type ", 0) == 0 ? std::to_string(type) : dtype_name(type)));
  ti.t.type = DType(type);
  const int64_t qk = dtype_block_elems(ti.t.type);
  if (int64_t(ne[0]) % qk != 0)
    r.fail(what + ": row length (ne[0]) expected a multiple of " + std::to_string(qk) + " for " +
           dtype_name(type) + ", found " + std::to_string(ne[0]));
  ti.offset = r.get<uint64_t>(what + " offset");
  ti.t.shape.assign(ne.rbegin(), ne.rend());  // outermost first
  ti.t.nbytes = size_t(numel / qk * dtype_block_bytes(ti.t.type));
  return ti;
}

}  // namespace

GGUFFile::GGUFFile(const std::string& p) : file_(MappedFile::open(p)) {
  const std::string& path = file_->path();
  Reader r{path, file_->data(), file_->size()};

  // Header: magic, version, tensor count, kv count.
  if (r.size < 4 || std::memcmp(r.data, "GGUF", 4) != 0) {
    std::string found;
    for (uint64_t i = 0; i < 4 && i < r.size; ++i) {
      const uint8_t c = r.data[i];
      const char hex[] = {'\\', 'x', "0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 15], 0};
      found += (c >= 32 && c < 127) ? std::string(1, char(c)) : std::string(hex);
    }
    throw file_error(path, "not a GGUF file: magic expected \"GGUF\", found \"" + found + "\"");
  }
  r.pos = 4;
  version_ = r.get<uint32_t>("header version");
  if (version_ != 2 && version_ != 3) {
    std::string hint = (version_ == 0x02000000u || version_ == 0x03000000u) ? " (a big-endian file?)" : "";
    throw file_error(path, "unsupported GGUF version: expected 2 or 3, found " + std::to_string(version_) + hint);
  }
  uint64_t n_tensors = r.get<uint64_t>("header tensor count");
  uint64_t n_kv = r.get<uint64_t>("header metadata count");
  // Smallest kv: key length + type + 1-byte value; smallest tensor info:
  // name length + n_dims + one dim + type + offset.
  r.check_count(n_kv, 8 + 4 + 1, "metadata count");
  r.check_count(n_tensors, 8 + 4 + 8 + 4 + 8, "tensor count");

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = r.str("metadata key " + std::to_string(i));
    if (key.empty()) r.fail("metadata key " + std::to_string(i) + ": expected a name, found an empty string");
    if (kv_.count(key)) r.fail("metadata " + key + ": expected unique keys, found a duplicate");
    uint32_t t = r.get<uint32_t>("metadata " + key + " type");
    kv_[key] = read_value(r, t, key);
  }

  uint64_t alignment = 32;
  if (has("general.alignment")) {
    const auto& v = kv_.at("general.alignment").v;
    int64_t a = std::holds_alternative<int64_t>(v) ? std::get<int64_t>(v) : 0;
    if (std::holds_alternative<uint64_t>(v)) a = int64_t(std::min<uint64_t>(std::get<uint64_t>(v), 1ull << 62));
    // At least 4: F32 tensors are read in place as float, so their data must
    // be 4-byte aligned (writers use 32; the spec's values are powers of two).
    if (a <= 0 || (a & (a - 1)) != 0 || a > (1 << 30) || a % 4 != 0)
      throw file_error(path, "general.alignment: expected a power of two from 4 to 2^30 (a multiple of 4, so "
                             "that tensor data can be read in place), found " +
                                 (a > 0 ? std::to_string(a) : std::string("a non-positive or non-integer value")));
    alignment = uint64_t(a);
  }

  std::vector<TensorInfo> infos;
  infos.reserve(size_t(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    infos.push_back(read_tensor_info(r, i));
    const std::string& name = infos.back().t.name;
    if (index_.count(name)) r.fail("tensor " + name + ": expected unique names, found a duplicate");
    index_[name] = i;
  }

  // Tensor data starts at the next multiple of the alignment.
  const uint64_t data_start = (r.pos + alignment - 1) / alignment * alignment;
  for (auto& ti : infos) {
    const std::string what = "tensor " + ti.t.name;
    if (ti.offset % alignment != 0)
      throw file_error(path, what + ": data offset expected a multiple of " + std::to_string(alignment) +
                                 ", found " + std::to_string(ti.offset));
    // data_start <= size is not assumed: a file of only metadata may end unpadded.
    uint64_t avail = data_start <= r.size ? r.size - data_start : 0;
    if (ti.offset > avail || ti.t.nbytes > avail - ti.offset)
      throw file_error(path, what + ": data past end of file: expected offset + size <= " + std::to_string(avail) +
                                 " (bytes after the data start at " + std::to_string(data_start) + "), found " +
                                 std::to_string(ti.offset) + " + " + std::to_string(ti.t.nbytes));
    ti.t.data = file_->data() + data_start + ti.offset;
  }
  // No two tensors may share bytes: each one's data must end before the next begins.
  std::vector<const TensorInfo*> by_offset;
  for (const auto& ti : infos) by_offset.push_back(&ti);
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* x, const TensorInfo* y) {
    return x->offset != y->offset ? x->offset < y->offset : x->t.nbytes < y->t.nbytes;
  });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorInfo& a = *by_offset[i - 1];
    const TensorInfo& b = *by_offset[i];
    if (b.offset < a.offset + a.t.nbytes)
      throw file_error(path, "tensor " + b.t.name + ": data at offset " + std::to_string(b.offset) +
                                 " overlaps tensor " + a.t.name + " (" + dtype_name(a.t.type) + ", " +
                                 std::to_string(a.t.nbytes) + " bytes at offset " + std::to_string(a.offset) +
                                 "): expected offset >= " + std::to_string(a.offset + a.t.nbytes));
  }
  for (auto& ti : infos) tensors_.push_back(std::move(ti.t));
}

const Tensor* GGUFFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const GGUFValue& GGUFFile::at(const std::string& key) const {
  auto it = kv_.find(key);
  if (it == kv_.end()) throw file_error(path(), "metadata key " + key + " missing");
  return it->second;
}

namespace {
[[noreturn]] void wrong_type(const std::string& path, const std::string& key, const char* expected) {
  throw file_error(path, "metadata " + key + ": expected " + expected + ", found another type");
}
}  // namespace

int64_t GGUFFile::get_int(const std::string& key) const {
  const auto& v = at(key).v;
  if (auto* i = std::get_if<int64_t>(&v)) return *i;
  if (auto* u = std::get_if<uint64_t>(&v)) {
    if (*u > uint64_t(std::numeric_limits<int64_t>::max()))
      throw file_error(path(), "metadata " + key + ": expected an integer below 2^63, found " + std::to_string(*u));
    return int64_t(*u);
  }
  wrong_type(path(), key, "an integer");
}
int64_t GGUFFile::get_int(const std::string& key, int64_t dflt) const { return has(key) ? get_int(key) : dflt; }

double GGUFFile::get_float(const std::string& key) const {
  const auto& v = at(key).v;
  if (auto* d = std::get_if<double>(&v)) return *d;
  if (auto* i = std::get_if<int64_t>(&v)) return double(*i);
  if (auto* u = std::get_if<uint64_t>(&v)) return double(*u);
  wrong_type(path(), key, "a number");
}
double GGUFFile::get_float(const std::string& key, double dflt) const { return has(key) ? get_float(key) : dflt; }

bool GGUFFile::get_bool(const std::string& key, bool dflt) const {
  if (!has(key)) return dflt;
  if (auto* b = std::get_if<bool>(&at(key).v)) return *b;
  wrong_type(path(), key, "a bool");
}

std::string GGUFFile::get_str(const std::string& key) const {
  if (auto* s = std::get_if<std::string>(&at(key).v)) return *s;
  wrong_type(path(), key, "a string");
}
std::string GGUFFile::get_str(const std::string& key, const std::string& dflt) const {
  return has(key) ? get_str(key) : dflt;
}

std::vector<std::string> GGUFFile::get_str_array(const std::string& key) const {
  if (auto* a = std::get_if<GGUFValue::Array>(&at(key).v))
    if (auto* s = std::get_if<std::vector<std::string>>(a)) return *s;
  wrong_type(path(), key, "an array of strings");
}

std::vector<double> GGUFFile::get_float_array(const std::string& key) const {
  if (auto* a = std::get_if<GGUFValue::Array>(&at(key).v)) {
    if (auto* d = std::get_if<std::vector<double>>(a)) return *d;
    if (auto* i = std::get_if<std::vector<int64_t>>(a)) return std::vector<double>(i->begin(), i->end());
  }
  wrong_type(path(), key, "an array of numbers");
}

std::vector<int64_t> GGUFFile::get_int_array(const std::string& key) const {
  if (auto* a = std::get_if<GGUFValue::Array>(&at(key).v))
    if (auto* i = std::get_if<std::vector<int64_t>>(a)) return *i;
  wrong_type(path(), key, "an array of integers");
}

}  // namespace ckv
