// A read-only memory-mapped file. Weights stay in the page cache and are
// shared between processes; nothing is copied at load time.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace ckv {

class MappedFile {
 public:
  // Throws ckv::Error naming the path when it cannot be opened or mapped.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace ckv
