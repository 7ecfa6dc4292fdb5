// `dsv4 info`: what the binary was built for, read from the generated plan alone (no weights).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace dsv4 {

nlohmann::ordered_json plan_info();         // config, plan hash, bytes per rank, op counts per layer kind
std::string plan_info_text(const nlohmann::ordered_json& info);

}  // namespace dsv4
