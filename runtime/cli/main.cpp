// dsv4: the static inference binary, built for one shape config (see `dsv4 info`).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "runtime/cli/commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"dsv4: DeepSeek-V4-Flash inference engine (static plan)"};
  app.require_subcommand(1);
  using namespace dsv4::cli;
  const Subcommand commands[] = {add_info(app), add_synth(app),    add_convert(app), add_check(app),
                                 add_check_hf(app), add_eval(app), add_run(app),
                                 add_tokenize(app), add_detokenize(app), add_serve(app), add_bench(app),
                                 add_loop_check(app)};
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
