// GGUF reader: header, metadata and tensor infos (model/gguf.cpp), then every
// typed getter over the metadata it accepted.
#include "fuzz_util.h"
#include "model/gguf.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ckv::fuzz::init_threads();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = ckv::fuzz::put_file("in.gguf", {reinterpret_cast<const char*>(data), size});
  try {
    ckv::GGUFFile f(path);
    for (const auto& [key, v] : f.metadata()) {
      // Each getter either returns or names the key; never anything else.
      for (int g = 0; g < 6; ++g) {
        try {
          switch (g) {
            case 0: (void)f.get_int(key); break;
            case 1: (void)f.get_float(key); break;
            case 2: (void)f.get_str(key); break;
            case 3: (void)f.get_str_array(key); break;
            case 4: (void)f.get_float_array(key); break;
            case 5: (void)f.get_int_array(key); break;
          }
        } catch (const ckv::Error&) {
        }
      }
    }
    for (const ckv::Tensor& t : f.tensors()) {
      // Accepted tensors lie inside the file.
      const uint8_t* b = f.file()->data();
      const uint8_t* p = static_cast<const uint8_t*>(t.data);
      if (p < b || t.nbytes > size_t(b + f.file()->size() - p)) __builtin_trap();
    }
  } catch (const ckv::Error& e) {
    ckv::fuzz::refused(e);
  }
  return 0;
}
