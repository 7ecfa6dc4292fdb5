// `dsv4 serve`: the OpenAI-compatible HTTP server. Every rank runs the engine loop on its main thread
// (MPI stays there); rank 0 also loads the tokenizer and runs the HTTP front end on a second thread,
// which submits requests through the GenerationBackend the loop implements. SIGTERM / SIGINT start a
// drain: no new requests (503), running ones finish within --drain-timeout, the rest are cancelled,
// then every rank exits 0.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <thread>

#include "model.hpp"
#include "plan/error.hpp"
#include "runtime/cli/commands.hpp"
#include "runtime/cli/run.hpp"
#include "runtime/engine/engine.hpp"
#include "runtime/engine/profile.hpp"
#include "runtime/serving/engine_loop.hpp"
#include "runtime/serving/http_server.hpp"
#include "runtime/text/tokenizer.hpp"

namespace dsv4 {
namespace {

struct ServeOptions {
  std::string weights;
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string api_key;          // empty: no authentication
  int64_t max_queue = 256;      // queued requests beyond this get HTTP 429
  double drain_timeout = 30;    // seconds running requests may take after SIGTERM
  std::string tokenizer;
  bool verify_checksums = false;
  bool profile = false;  // per-op timing of every step, printed at shutdown
};

// The engine loop once it exists: rank 0's HTTP front end starts before the weights load (and refuses
// generation with 503 "loading" until `ready`), so it needs a backend before the loop is built.
class DeferredBackend final : public GenerationBackend {
 public:
  void set(GenerationBackend* b) { b_.store(b); }
  std::shared_ptr<RequestStream> submit(GenerationRequest req, SubmitStatus& status, std::string& why) override {
    if (GenerationBackend* b = b_.load()) return b->submit(std::move(req), status, why);
    status = SubmitStatus::Draining;
    why = "the model is loading";
    return nullptr;
  }
  BackendStats stats() const override {
    const GenerationBackend* b = b_.load();
    BackendStats s = b ? b->stats() : BackendStats{};
    if (!b) s.max_context = gen::kMaxContext;
    return s;
  }

 private:
  std::atomic<GenerationBackend*> b_{nullptr};
};

int run_serve(const Comm& comm, const ServeOptions& opt) {
  if (opt.port < 0 || opt.port > 65535) throw Error("--port: expected 0..65535, got " + std::to_string(opt.port));
  if (opt.max_queue < 1) throw Error("--max-queue must be at least 1, got " + std::to_string(opt.max_queue));
  if (!(opt.drain_timeout >= 0)) throw Error("--drain-timeout must be >= 0 seconds");
  // The first SIGTERM/SIGINT to any rank (mpirun forwards them to all) starts the drain; rank 0
  // broadcasts "exit" when it is done, which ends the others. A second one ends the process at once.
  std::atomic<bool>& g_stop = cli::install_stop_handlers();
  const bool root = comm.rank() == 0;

  std::unique_ptr<Tokenizer> tok;
  if (root) {
    const std::string path = resolve_tokenizer_path(opt.tokenizer, opt.weights);
    tok = std::make_unique<Tokenizer>(Tokenizer::load(path));
    std::fprintf(stderr, "%s: tokenizer %s\n", "serve", path.c_str());
    if (tok->size() > gen::kVocabSize)
      throw Error(path + ": the tokenizer has " + std::to_string(tok->size()) + " ids, the model's vocabulary " +
                  std::to_string(gen::kVocabSize));
  }
  // Rank 0 listens before the weights load, so /health answers 503 "loading" until the engine is ready.
  DeferredBackend backend;
  std::atomic<bool> ready{false};
  std::thread http;
  int http_rc = 0;
  if (root) {
    std::fprintf(stderr, "serve: config %s on %d rank(s), max_context %lld\n", gen::kConfigName, comm.size(),
                 (long long)gen::kMaxContext);
    http = std::thread([&] {
      try {
        HttpOptions h;
        h.host = opt.host, h.port = opt.port, h.api_key = opt.api_key;
        h.drain_timeout_s = int(opt.drain_timeout);
        // A streaming or waiting request holds an HTTP thread for its whole life.
        h.threads = int(std::max<int64_t>(64, opt.max_queue + gen::kRanks * gen::kMaxRequestsPerRank + 16));
        char hash[32];
        std::snprintf(hash, sizeof hash, "dsv4-%016llx", (unsigned long long)gen::kPlanHash);
        h.fingerprint = hash;
        h.on_listening = [](const std::string& host, int port) {
          std::fprintf(stderr, "serve: listening on http://%s:%d\n", host.c_str(), port);
        };
        serve_http(backend, *tok, h, g_stop, ready);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "dsv4: error: serve: %s\n", e.what());
        http_rc = 1;
      }
      g_stop.store(true);  // the front end ended (stop, or an error such as a port in use): drain and exit
    });
  }
  // A failed load on rank 0 must not leave the HTTP thread joinable (std::terminate): stop and join it first.
  const auto join_http = [&] {
    if (!http.joinable()) return;
    g_stop.store(true);
    http.join();
  };
  std::unique_ptr<Engine> engine;
  std::unique_ptr<EngineLoop> loop;
  try {
    engine = std::make_unique<Engine>(comm, opt.weights, opt.verify_checksums);
    LoopOptions lo;
    lo.max_queue = opt.max_queue;
    lo.drain_timeout_s = opt.drain_timeout;
    loop = std::make_unique<EngineLoop>(comm, *engine, plan_limits(comm.size()), lo);
  } catch (...) {
    join_http();
    throw;
  }
  backend.set(loop.get());
  ready.store(true);
  if (root) std::fprintf(stderr, "serve: ready\n");

  engine->executor().set_profiling(opt.profile);
  loop->run(&g_stop);
  const std::vector<double> prof =
      opt.profile ? profile_mean_over_ranks(comm, engine->executor().op_seconds()) : std::vector<double>{};
  if (root) {
    g_stop.store(true);  // the loop may have stopped for another rank's signal: end the front end too
    http.join();
    std::fprintf(stderr, "serve: stopped (%lld steps)\n", (long long)loop->loop_stats().steps);
    if (opt.profile) print_profile(stderr, "every step served", prof, engine->executor().profiled_steps());
  }
  return http_rc;
}

}  // namespace
}  // namespace dsv4

namespace dsv4::cli {

Subcommand add_serve(CLI::App& app) {
  struct Opt {
    ServeOptions s;
    int threads = 0;
  };
  auto o = std::make_shared<Opt>();
  ServeOptions& s = o->s;
  auto* c = app.add_subcommand("serve", "OpenAI-compatible HTTP server (run under mpirun with the plan's ranks)");
  c->add_option("-w,--weights", s.weights, "converted weights folder")->required();
  c->add_option("--host", s.host, "address to listen on (default 127.0.0.1)");
  c->add_option("--port", s.port, "TCP port (default 8000; 0: any free port)");
  c->add_option("--api-key", s.api_key, "require this bearer token (default: none)");
  c->add_option("--max-queue", s.max_queue, "requests waiting for a slot beyond which new ones get HTTP 429 (default 256)");
  c->add_option("--drain-timeout", s.drain_timeout, "seconds running requests may take after SIGTERM (default 30)");
  c->add_option("--tokenizer", s.tokenizer, "tokenizer.json or its folder (default: <weights>/tokenizer.json, else data/tokenizer)");
  c->add_flag("--checksums", s.verify_checksums, "verify weight checksums at start-up");
  c->add_flag("--profile", s.profile, "time every op; the table (by op kind, layer kind and op) is printed at shutdown");
  c->add_option("--threads", o->threads, kThreadsHelp);
  return {c, [o](ProcessArgs args) {
            return on_ranks(args, o->threads, [&](const Comm& comm) { return run_serve(comm, o->s); });
          }};
}

}  // namespace dsv4::cli
