// Safetensors file reader (https://huggingface.co/docs/safetensors): an 8-byte
// little-endian header length, a JSON header, then the raw tensor bytes.
// Strict: every dtype, shape and offset is checked against the file, and any
// problem throws ckv::Error("PATH: what").
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/tensor.h"
#include "util/mmap_file.h"

namespace ckv {

class SafetensorsFile {
 public:
  // Largest header accepted; the reference implementation uses the same cap.
  static constexpr uint64_t kMaxHeaderBytes = 100u << 20;

  // Maps the file and parses its header. Only F32, F16 and BF16 tensors are
  // accepted; any other dtype is refused by name.
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return file_->path(); }
  const std::vector<Tensor>& tensors() const { return tensors_; }  // sorted by name
  const Tensor* find(const std::string& name) const;               // nullptr if absent
  // String entries of "__metadata__" (e.g. format: pt).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::shared_ptr<MappedFile>& file() const { return file_; }

 private:
  std::shared_ptr<MappedFile> file_;
  std::vector<Tensor> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Element size of a safetensors dtype name this engine reads, or 0.
int safetensors_dtype_size(const std::string& dtype);

}  // namespace ckv
