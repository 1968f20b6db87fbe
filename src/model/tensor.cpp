#include "model/tensor.h"

#include "model/quant_blocks.h"
#include "util/error.h"

namespace ckv {

// GGML's full type table, so an unsupported file names its type ("Q5_0")
// rather than a bare number. Ids 4, 5, 31-33 and 36-38 are retired in ggml
// but still name what old files meant by them.
static const char* const kGGMLNames[] = {
    "F32",     "F16",      "Q4_0",     "Q4_1",       "Q4_2",       "Q4_3",       "Q5_0",    "Q5_1",
    "Q8_0",    "Q8_1",     "Q2_K",     "Q3_K",       "Q4_K",       "Q5_K",       "Q6_K",    "Q8_K",
    "IQ2_XXS", "IQ2_XS",   "IQ3_XXS",  "IQ1_S",      "IQ4_NL",     "IQ3_S",      "IQ2_S",   "IQ4_XS",
    "I8",      "I16",      "I32",      "I64",        "F64",        "IQ1_M",      "BF16",    "Q4_0_4_4",
    "Q4_0_4_8", "Q4_0_8_8", "TQ1_0",   "TQ2_0",      "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4",
};

std::string dtype_name(uint32_t id) {
  if (id < sizeof(kGGMLNames) / sizeof(kGGMLNames[0])) return kGGMLNames[id];
  return "type " + std::to_string(id);
}

bool dtype_supported(uint32_t id) {
  switch (static_cast<DType>(id)) {
    case DType::F32: case DType::F16: case DType::BF16: case DType::Q8_0: case DType::Q4_0:
    case DType::Q4_1: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
      return true;
  }
  return false;
}

int64_t dtype_block_elems(DType t) {
  switch (t) {
    case DType::F32: case DType::F16: case DType::BF16: return 1;
    case DType::Q8_0: return QK8_0;
    case DType::Q4_0: return QK4_0;
    case DType::Q4_1: return QK4_1;
    case DType::Q4_K: case DType::Q5_K: case DType::Q6_K: return QK_K;
  }
  throw Error("unsupported tensor type " + dtype_name(t));
}

int64_t dtype_block_bytes(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F16: case DType::BF16: return 2;
    case DType::Q8_0: return sizeof(block_q8_0);
    case DType::Q4_0: return sizeof(block_q4_0);
    case DType::Q4_1: return sizeof(block_q4_1);
    case DType::Q4_K: return sizeof(block_q4_K);
    case DType::Q5_K: return sizeof(block_q5_K);
    case DType::Q6_K: return sizeof(block_q6_K);
  }
  throw Error("unsupported tensor type " + dtype_name(t));
}

}  // namespace ckv
