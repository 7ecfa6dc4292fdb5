#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <thread>
#include <exception>
#include <string>

#include "model.hpp"
#include "runtime/cli/commands.hpp"

namespace dsv4::cli {
namespace {
std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free, "the handler's store must be async-signal-safe");
// The first signal asks for a stop at the next step boundary; a second one (the user insists, or the
// first came while loading weights) ends the process the default way. signal() and raise() are
// async-signal-safe.
extern "C" void on_stop_signal(int sig) {
  if (g_stop.exchange(true)) {
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}
}  // namespace

std::atomic<bool>& install_stop_handlers() {
  struct sigaction sa{};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // file and socket calls of other threads are not cut short by EINTR
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  return g_stop;
}

int on_ranks(ProcessArgs args, int threads, const std::function<int(const Comm&)>& body) {
  Comm comm(args.argc, args.argv);
  if (comm.size() != gen::kRanks) {
    // Every rank sees this; rank 0 alone says so (the others wait to be ended by its abort).
    if (comm.rank() != 0) std::this_thread::sleep_for(std::chrono::seconds(30));
    comm.abort("the plan is built for " + std::to_string(gen::kRanks) + " ranks (config " + gen::kConfigName +
               "), the job has " + std::to_string(comm.size()) + ": start it with `mpirun -np " +
               std::to_string(gen::kRanks) + " dsv4 ...`, or build for another config (dsv4 info)");
  }
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
