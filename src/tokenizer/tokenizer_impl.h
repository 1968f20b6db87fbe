// Constructors of the concrete tokenizers, for make_tokenizer.
#pragma once
#include <memory>

#include "tokenizer/tokenizer.h"

namespace ckv {

std::unique_ptr<Tokenizer> make_bpe_tokenizer(const TokenizerData& d);
std::unique_ptr<Tokenizer> make_spm_tokenizer(const TokenizerData& d);

}  // namespace ckv
