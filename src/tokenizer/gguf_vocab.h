// Tokenizer data from a GGUF file's tokenizer.ggml.* metadata.
#pragma once
#include "model/gguf.h"
#include "tokenizer/vocab.h"

namespace ckv {

// kind from tokenizer.ggml.model ("gpt2" -> "bpe", "llama" -> "spm"); a file
// without tokenizer.ggml.model gives kind "". Throws ckv::Error naming the
// file and key for an unknown model or pre-tokenizer or inconsistent arrays.
TokenizerData read_gguf_tokenizer(const GGUFFile& f);

// Ids of well-known end-of-turn token texts (<|eot_id|>, <|im_end|>, ...)
// among d's control tokens, as llama.cpp adds them to the EOG set.
void add_known_eog(TokenizerData& d);

}  // namespace ckv
