// Hugging Face config.json -> ModelConfig for the architectures the engine
// runs (llama, mistral, qwen2, qwen3). Both rope layouts are read: the older
// rope_theta + rope_scaling and the newer rope_parameters.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "model/model.h"

namespace ckv {

// Reads and parses the file; errors name the path and the field.
ModelConfig read_hf_config(const std::string& path);
// Same from already-parsed JSON; `path` is only used in error messages.
// tied_output is set from tie_word_embeddings (the loader also ties when
// lm_head.weight is absent).
ModelConfig parse_hf_config(const nlohmann::json& j, const std::string& path);

}  // namespace ckv
