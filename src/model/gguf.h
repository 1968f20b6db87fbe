// GGUF v3 reader (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md).
// Strict: every offset, size, count and type is checked against the file, and
// any problem throws ckv::Error("PATH: what, expected X, found Y").
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "model/tensor.h"
#include "util/mmap_file.h"

namespace ckv {

// One metadata value. Arrays keep their element type's natural C++ type.
struct GGUFValue {
  using Array = std::variant<std::vector<int64_t>, std::vector<double>, std::vector<bool>,
                             std::vector<std::string>>;
  std::variant<int64_t, uint64_t, double, bool, std::string, Array> v;
};

class GGUFFile {
 public:
  // Parses header, metadata and tensor infos; maps the file. Throws ckv::Error.
  explicit GGUFFile(const std::string& path);

  const std::string& path() const { return file_->path(); }
  uint32_t version() const { return version_; }
  const std::map<std::string, GGUFValue>& metadata() const { return kv_; }
  bool has(const std::string& key) const { return kv_.count(key) != 0; }

  // Typed getters: throw ckv::Error naming the key when missing (without a
  // default) or of the wrong type. Integer getters accept any integer type.
  int64_t get_int(const std::string& key) const;
  int64_t get_int(const std::string& key, int64_t dflt) const;
  double get_float(const std::string& key) const;  // accepts ints too
  double get_float(const std::string& key, double dflt) const;
  bool get_bool(const std::string& key, bool dflt) const;
  std::string get_str(const std::string& key) const;
  std::string get_str(const std::string& key, const std::string& dflt) const;
  std::vector<std::string> get_str_array(const std::string& key) const;
  std::vector<double> get_float_array(const std::string& key) const;
  std::vector<int64_t> get_int_array(const std::string& key) const;

  const std::vector<Tensor>& tensors() const { return tensors_; }
  const Tensor* find(const std::string& name) const;  // nullptr if absent
  const std::shared_ptr<MappedFile>& file() const { return file_; }

 private:
  const GGUFValue& at(const std::string& key) const;
  std::shared_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  std::map<std::string, GGUFValue> kv_;
  std::vector<Tensor> tensors_;
  std::map<std::string, size_t> index_;
};

}  // namespace ckv
