// The OpenAI-compatible HTTP front end of `dsv4 serve` (rank 0): POST /v1/chat/completions,
// /v1/completions (streaming as server-sent events or not), /tokenize, /detokenize; GET /v1/models,
// /v1/models/{id}, /health, /metrics (Prometheus). It parses and validates requests, submits them to a
// GenerationBackend, and formats what comes back; it knows nothing of MPI or the plan.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "runtime/serving/backend.hpp"
#include "runtime/text/tokenizer.hpp"

namespace dsv4 {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                    // 0: an ephemeral port, reported through on_listening
  std::string api_key;                // non-empty: every route but /health needs "Authorization: Bearer <key>"
  std::string model_name = "deepseek-v4-flash";  // the id in /v1/models and every response's "model"
  std::string fingerprint = "dsv4";   // every response's "system_fingerprint" (e.g. the plan hash)
  int64_t max_body_bytes = 4 << 20;   // larger request bodies get 413
  // HTTP worker threads. A streaming or waiting request holds one for its whole life, and an idle
  // keep-alive connection for up to keep_alive_s: use at least (running + queue capacity) plus headroom.
  // Connections beyond it wait unread until a thread frees.
  int threads = 64;
  int keep_alive_s = 5;               // idle keep-alive connections are closed after this long
  int drain_timeout_s = 60;           // after `stop`, in-flight requests get this long before they are cancelled
  std::function<void(const std::string& host, int port)> on_listening;  // called once, when bound
};

// Serves until `stop` becomes true, then drains: /health and new generation requests answer 503 while
// in-flight requests finish (those still running after drain_timeout_s are cancelled and end with
// finish_reason "abort"); returns when the listener has closed. While `ready` is false, /health and
// generation requests answer 503 "loading". Throws dsv4::Error if it cannot bind (the message names
// host:port). `backend` and `tok` must outlive the call; the backend's max_context (BackendStats) bounds
// prompt + max_tokens, and its EOS is the tokenizer's "<｜end▁of▁sentence｜>".
void serve_http(GenerationBackend& backend, const Tokenizer& tok, const HttpOptions& opt, std::atomic<bool>& stop,
                std::atomic<bool>& ready);

}  // namespace dsv4
