// plangen: shape config -> generated/<config>/ (build time), or HF config.json + deploy options ->
// a new shape config (user workflow, README "New shape configs").
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "plan/error.hpp"
#include "tools/config/config_json.hpp"
#include "tools/config/hf_config.hpp"
#include "tools/plangen/emit.hpp"
#include "tools/plangen/program.hpp"

int main(int argc, char** argv) {
  CLI::App app{"dsv4 plan generator"};
  std::string config, out, source, from_hf;
  dsv4::DeployConfig dep;
  app.add_option("--config", config, "shape config (config/<name>.json)");
  app.add_option("--source-name", source, "config path as printed in generated banners (default: --config)");
  app.add_option("--from-hf", from_hf, "HF config.json of a DeepSeek-V4 model: write a new shape config to -o");
  app.add_option("-o,--out", out, "output folder (--config) or output .json (--from-hf)")->required();
  app.add_option("--ranks", dep.ranks, "deploy.ranks");
  app.add_option("--attn-dp", dep.attn_dp, "deploy.attn_dp (default: ranks)");
  app.add_option("--moe-ep", dep.moe_ep, "deploy.moe_ep (default: ranks)");
  app.add_option("--lmhead-tp", dep.lmhead_tp, "deploy.lmhead_tp (default: ranks)");
  app.add_option("--max-tokens-per-step", dep.max_tokens_per_step, "deploy.max_tokens_per_step");
  app.add_option("--max-requests-per-rank", dep.max_requests_per_rank, "deploy.max_requests_per_rank");
  app.add_option("--max-context", dep.max_context, "deploy.max_context");
  app.add_option("--kv-block", dep.kv_block, "deploy.kv_block");
  CLI11_PARSE(app, argc, argv);

  try {
    if (!from_hf.empty()) {
      dsv4::ShapeConfig c;
      c.model = dsv4::load_hf_config(from_hf);
      for (auto* v : {&dep.attn_dp, &dep.moe_ep, &dep.lmhead_tp})
        if (app.count(v == &dep.attn_dp ? "--attn-dp" : v == &dep.moe_ep ? "--moe-ep" : "--lmhead-tp") == 0) *v = dep.ranks;
      c.deploy = dep;
      dsv4::validate_shape_config(c, out);
      std::ofstream o(out);
      o << dsv4::shape_config_to_text(c);
      if (!o) throw dsv4::Error(out + ": cannot write");
      std::printf("wrote %s (%lld ranks)\n", out.c_str(), (long long)dep.ranks);
      return 0;
    }
    if (config.empty()) throw dsv4::Error("plangen: give --config FILE or --from-hf FILE");
    const dsv4::ShapeConfig c = dsv4::load_shape_config(config);
    const dsv4::plangen::Program p = dsv4::plangen::build_program(c);
    dsv4::plangen::emit_all(p, source.empty() ? config : source, out);
    std::printf("plangen: %s -> %s: %zu ops, %zu buffers, %zu weights, arena %lld bytes, hash %016llx\n",
                config.c_str(), out.c_str(), p.ops.size(), p.buffers.size(), p.weights.size(),
                (long long)p.arena_bytes, (unsigned long long)p.hash);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "plangen: error: %s\n", e.what());
    return 1;
  }
}
