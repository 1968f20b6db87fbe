// One safetensors file: header length, header JSON, dtypes, shapes, offsets
// and overlaps (model/safetensors.cpp).
#include "fuzz_util.h"
#include "model/safetensors.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ckv::fuzz::init_threads();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = ckv::fuzz::put_file("in.safetensors", {reinterpret_cast<const char*>(data), size});
  try {
    ckv::SafetensorsFile f(path);
    const uint8_t* b = f.file()->data();
    for (const ckv::Tensor& t : f.tensors()) {
      const uint8_t* p = static_cast<const uint8_t*>(t.data);
      if (p < b || t.nbytes > size_t(b + f.file()->size() - p)) __builtin_trap();
      if (f.find(t.name) == nullptr) __builtin_trap();
    }
  } catch (const ckv::Error& e) {
    ckv::fuzz::refused(e);
  }
  return 0;
}
