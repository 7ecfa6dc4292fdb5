#pragma once
#include <string>

#include "tools/plangen/program.hpp"

namespace dsv4::plangen {

// Writes model.hpp, layout.hpp, weights.hpp, plan.hpp, plan.txt and plan.hash into out_dir.
// `source` is the config path as shown in the banners (relative for shipped configs, so output
// does not depend on where the tree is checked out).
void emit_all(const Program& p, const std::string& source, const std::string& out_dir);

}  // namespace dsv4::plangen
