// The `dsv4` command line: one file per subcommand. Each add_<name>() declares its subcommand's options
// on the app and returns the function that runs it once parsed; main() only dispatches.
#pragma once
#include <CLI/CLI.hpp>
#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "runtime/engine/comm.hpp"

namespace dsv4::cli {

// MPI_Init needs the process's argc/argv.
struct ProcessArgs {
  int* argc;
  char*** argv;
};

struct Subcommand {
  CLI::App* app;                           // the parsed subcommand, if it was given
  std::function<int(ProcessArgs)> run;     // returns the exit code; errors are thrown as dsv4::Error
};

// Plan-only and checkpoint commands (one process, no MPI).
Subcommand add_info(CLI::App& app);
Subcommand add_synth(CLI::App& app);
Subcommand add_convert(CLI::App& app);
Subcommand add_check(CLI::App& app);
Subcommand add_check_hf(CLI::App& app);
Subcommand add_tokenize(CLI::App& app);
Subcommand add_detokenize(CLI::App& app);
// Engine commands (every rank of the job runs them in lockstep).
Subcommand add_eval(CLI::App& app);
Subcommand add_run(CLI::App& app);
Subcommand add_serve(CLI::App& app);
Subcommand add_bench(CLI::App& app);
Subcommand add_loop_check(CLI::App& app);  // hidden: engine loop test driver

inline constexpr const char* kThreadsHelp =
    "kernel threads per rank (default: its share of the CPUs in its affinity mask)";

// Starts MPI, checks the job's rank count against the plan, sets the kernel threads and runs `body` on
// every rank; an error on any rank ends the whole job (MPI_Abort), so no rank waits in a collective.
int on_ranks(ProcessArgs args, int threads, const std::function<int(const Comm&)>& body);

// SIGTERM / SIGINT (a service manager, a batch system, mpirun forwarding Ctrl-C) set the returned flag
// instead of killing the rank; a second one kills it. The commands that call this (run, eval, serve)
// pass it to the engine loop, which ends at a step boundary on every rank (a follower's flag reaches
// rank 0 with its next step's records); run and eval then exit with kStoppedExit.
std::atomic<bool>& install_stop_handlers();
inline constexpr int kStoppedExit = 143;  // 128 + SIGTERM, as shells report a process the signal ended

}  // namespace dsv4::cli
