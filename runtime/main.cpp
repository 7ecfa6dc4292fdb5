// dsv4: the static inference binary, built for one shape config (see `dsv4 info`).
#include <CLI/CLI.hpp>
#include <cstdio>

#include "plan/error.hpp"
#include "runtime/plan_info.hpp"

int main(int argc, char** argv) {
  CLI::App app{"dsv4: DeepSeek-V4-Flash inference engine (static plan)"};
  app.require_subcommand(1);

  bool info_json = false;
  auto* info = app.add_subcommand("info", "print the built-in config, plan hash, bytes per rank, ops per layer kind");
  info->add_flag("--json", info_json, "print as JSON");

  CLI11_PARSE(app, argc, argv);
  try {
    if (info->parsed()) {
      const auto j = dsv4::plan_info();
      std::fputs(info_json ? (j.dump(2) + "\n").c_str() : dsv4::plan_info_text(j).c_str(), stdout);
      return 0;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dsv4: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
