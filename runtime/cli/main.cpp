// dsv4: the static inference binary, built for one shape config (see `dsv4 info`).
#include <CLI/CLI.hpp>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "model.hpp"
#include "runtime/cli/commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"dsv4: DeepSeek-V4-Flash inference engine (static plan)"};
  app.require_subcommand(1);
  using namespace dsv4::cli;
  const Subcommand commands[] = {add_info(app), add_synth(app),    add_convert(app), add_check(app),
                                 add_check_hf(app), add_eval(app), add_run(app),
                                 add_tokenize(app), add_detokenize(app), add_serve(app), add_bench(app),
                                 add_loop_check(app)};
  char version[160];
  std::snprintf(version, sizeof version, "dsv4, config %s, plan %016" PRIx64, dsv4::gen::kConfigName, dsv4::gen::kPlanHash);
  app.set_version_flag("--version", std::string(version));
  // A mistyped subcommand is named as such (CLI11 would only say that a subcommand is required).
  if (argc > 1 && argv[1][0] != '-') {
    std::string known;
    bool found = false;
    for (const Subcommand& c : commands) {
      found = found || c.app->get_name() == argv[1];
      if (c.app->get_group() != "") known += (known.empty() ? "" : ", ") + c.app->get_name();
    }
    if (!found) {
      std::fprintf(stderr, "dsv4: error: unknown subcommand '%s' (expected one of: %s; see dsv4 --help)\n", argv[1],
                   known.c_str());
      return 2;
    }
  }
  CLI11_PARSE(app, argc, argv);
  for (const Subcommand& c : commands) {
    if (!c.app->parsed()) continue;
    try {
      return c.run({&argc, &argv});
    } catch (const std::exception& e) {
      std::fprintf(stderr, "dsv4: error: %s\n", e.what());
      return 1;
    }
  }
  return 1;  // unreachable: CLI11 requires one subcommand
}
