#include "model/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include <nlohmann/json.hpp>

#include "util/error.h"

namespace ckv {

using nlohmann::json;

int safetensors_dtype_size(const std::string& dtype) {
  if (dtype == "F32") return 4;
  if (dtype == "F16" || dtype == "BF16") return 2;
  return 0;
}

static DType to_dtype(const std::string& s) {
  if (s == "F32") return DType::F32;
  if (s == "F16") return DType::F16;
  return DType::BF16;
}

// A JSON value for an error message, cut short: a corrupt header can hold
// megabytes in one value.
static std::string brief(const std::string& text, size_t limit = 80) {
  return text.size() <= limit ? text : text.substr(0, limit) + "...";
}
static std::string brief(const json& v) { return brief(v.dump(-1, ' ', false, json::error_handler_t::replace)); }

// A JSON value as a non-negative integer; anything else (negative, float,
// string) is refused with `what` in the message.
static uint64_t get_u64(const json& v, const std::string& path, const std::string& what) {
  if (!v.is_number_unsigned()) throw file_error(path, what + " must be a non-negative integer, found " + brief(v));
  return v.get<uint64_t>();
}

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(MappedFile::open(path)) {
  const uint8_t* base = file_->data();
  const uint64_t size = file_->size();
  if (size < 8)
    throw file_error(path, "not a safetensors file: " + std::to_string(size) +
                               " bytes, too short for the 8-byte header length");
  uint64_t hlen = 0;
  std::memcpy(&hlen, base, 8);  // little-endian on every target we build for
  if (hlen > kMaxHeaderBytes)
    throw file_error(path, "header length " + std::to_string(hlen) + " is absurd (limit " +
                               std::to_string(kMaxHeaderBytes) + ")");
  if (hlen > size - 8)
    throw file_error(path, "header length " + std::to_string(hlen) + " runs past the end of the file (" +
                               std::to_string(size) + " bytes)");

  json header;
  try {
    header = json::parse(base + 8, base + 8 + hlen);
  } catch (const json::exception& e) {
    throw file_error(path, "header is not valid JSON: " + brief(e.what(), 240));
  }
  if (!header.is_object()) throw file_error(path, "header is not a JSON object");

  const uint8_t* data = base + 8 + hlen;
  const uint64_t data_size = size - 8 - hlen;
  struct Span {
    uint64_t begin, end;
    size_t idx;
  };
  std::vector<Span> spans;

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& info = it.value();
    if (name == "__metadata__") {
      if (!info.is_object()) throw file_error(path, "__metadata__ is not an object");
      for (auto m = info.begin(); m != info.end(); ++m)
        if (m.value().is_string()) metadata_[m.key()] = m.value().get<std::string>();
      continue;
    }
    const std::string where = "tensor '" + brief(name) + "'";
    if (!info.is_object()) throw file_error(path, where + ": entry is not an object");
    for (const char* key : {"dtype", "shape", "data_offsets"})
      if (!info.contains(key)) throw file_error(path, where + ": missing " + key);

    const json& jd = info["dtype"];
    if (!jd.is_string()) throw file_error(path, where + ": dtype is not a string");
    const std::string dtype = jd.get<std::string>();
    const int esize = safetensors_dtype_size(dtype);
    if (esize == 0)
      throw file_error(path, where + ": dtype " + brief(dtype) + " is not supported (only F32, F16 and BF16)");

    const json& js = info["shape"];
    if (!js.is_array()) throw file_error(path, where + ": shape is not an array");
    std::vector<int64_t> shape;
    uint64_t numel = 1;
    for (const json& d : js) {
      uint64_t n = get_u64(d, path, where + ": shape entry");
      // Each dimension must fit int64 on its own (a zero elsewhere would hide it).
      if (n > uint64_t(std::numeric_limits<int64_t>::max()) || __builtin_mul_overflow(numel, n, &numel))
        throw file_error(path, where + ": shape " + brief(js) + " is too large");
      shape.push_back(static_cast<int64_t>(n));
    }
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(numel, uint64_t(esize), &nbytes))
      throw file_error(path, where + ": shape " + brief(js) + " is too large");

    const json& jo = info["data_offsets"];
    if (!jo.is_array() || jo.size() != 2) throw file_error(path, where + ": data_offsets is not [begin, end]");
    uint64_t b = get_u64(jo[0], path, where + ": data_offsets begin");
    uint64_t e = get_u64(jo[1], path, where + ": data_offsets end");
    if (b > e)
      throw file_error(path, where + ": data_offsets out of order [" + std::to_string(b) + ", " + std::to_string(e) + "]");
    if (e > data_size)
      throw file_error(path, where + ": data_offsets end " + std::to_string(e) + " is past the end of the data (" +
                                 std::to_string(data_size) + " bytes)");
    if (e - b != nbytes)
      throw file_error(path, where + ": " + dtype + " " + brief(js) + " needs " + std::to_string(nbytes) +
                                 " bytes, data_offsets give " + std::to_string(e - b));

    Tensor t;
    t.name = name;
    t.type = to_dtype(dtype);
    t.shape = std::move(shape);
    t.data = data + b;
    t.nbytes = static_cast<size_t>(nbytes);
    spans.push_back({b, e, tensors_.size()});
    index_[name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }

  // Tensors may not share bytes: overlapping ranges mean a corrupt header.
  std::sort(spans.begin(), spans.end(), [](const Span& x, const Span& y) {
    return x.begin != y.begin ? x.begin < y.begin : x.end < y.end;  // empty tensors first
  });
  for (size_t i = 1; i < spans.size(); ++i)
    if (spans[i].begin < spans[i - 1].end)
      throw file_error(path, "tensors '" + tensors_[spans[i - 1].idx].name + "' and '" + tensors_[spans[i].idx].name +
                                 "' overlap");
}

const Tensor* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace ckv
