// HF config.json <-> ModelConfig: every key of the official file (spec §1), in its order and number style.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "plan/config.hpp"

namespace dsv4 {

// The official key order; floats the official file writes as integers (rope_theta 10000, factor 16, ...)
// are written as integers when integral. dump(2) of the result reproduces the official text layout.
nlohmann::ordered_json model_config_to_json(const ModelConfig& c);

// Strict: every key required, no unknown keys, integer fields must be JSON integers.
// `where` names the source (file path) in error messages. Throws dsv4::Error.
ModelConfig model_config_from_json(const nlohmann::json& j, const std::string& where);

// Read / write a config.json file (written with indent 2, no trailing newline).
ModelConfig load_hf_config(const std::string& path);
void save_hf_config(const ModelConfig& c, const std::string& path);

}  // namespace dsv4
