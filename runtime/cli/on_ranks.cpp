#include <cstdio>
#include <exception>
#include <string>

#include "model.hpp"
#include "runtime/cli/commands.hpp"

namespace dsv4::cli {

int on_ranks(ProcessArgs args, int threads, const std::function<int(const Comm&)>& body) {
  Comm comm(args.argc, args.argv);
  if (comm.size() != gen::kRanks)
    comm.abort("the plan is built for " + std::to_string(gen::kRanks) + " ranks (config " + gen::kConfigName +
               "), the job has " + std::to_string(comm.size()));
  comm.configure_threads(threads);
  try {
    return body(comm);
  } catch (const std::exception& e) {
    if (comm.size() > 1) comm.abort(e.what());  // ends every rank, none waits in a collective
    std::fprintf(stderr, "dsv4: error: %s\n", e.what());
    return 1;
  }
}

}  // namespace dsv4::cli
