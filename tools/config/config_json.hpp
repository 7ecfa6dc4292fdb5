// Shape config files (config/<name>.json) and HF config.json: strict parsing, validation, writing.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "plan/config.hpp"

namespace dsv4 {

// The model part is the HF config.json (tools/config/hf_config.hpp); this file adds the deploy block.
DeployConfig deploy_from_json(const nlohmann::ordered_json& j, const std::string& where);
nlohmann::ordered_json deploy_to_json(const DeployConfig& d);

// A whole shape config file: {"model": {...}, "deploy": {...}}; validated (validate_shape_config).
ShapeConfig load_shape_config(const std::string& path);
ShapeConfig parse_shape_config(const std::string& text, const std::string& name, const std::string& where);
std::string shape_config_to_text(const ShapeConfig& c);  // canonical, deterministic JSON text

// Every constraint the reference's block sizes and our parallel modes impose; throws dsv4::Error
// naming the field, the expected and the found value.
void validate_shape_config(const ShapeConfig& c, const std::string& where);

// Rows of head.weight each lm_head TP rank holds: ceil(vocab / tp). The last shard is padded with
// rows that produce no logits (documented in README "Shape configs").
int64_t vocab_shard_rows(const ShapeConfig& c);

}  // namespace dsv4
