// The boundary between the HTTP front end (serving/http_*, rank 0, many threads) and the engine loop
// (serving/engine_loop, the MPI main thread of every rank). The front end submits requests and reads
// their token events; the engine loop implements this on rank 0 over the scheduler. Tests of the
// front end use a fake implementation; nothing here knows MPI or the plan.
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "runtime/serving/request.hpp"

namespace dsv4 {

// One submitted request as its front end sees it. Thread-safe: next() and cancel() may be called from
// the HTTP thread while the engine loop pushes events.
class RequestStream {
 public:
  virtual ~RequestStream() = default;
  // Waits up to `timeout` for the next event. Returns false on timeout (ev untouched). After the event
  // whose finish != None, no more events come.
  virtual bool next(TokenEvent& ev, std::chrono::milliseconds timeout) = 0;
  // The client went away or a stop string matched: the engine frees the request's slot and KV blocks
  // at the next step; a final event with FinishReason::Cancelled follows unless the request already ended.
  virtual void cancel() = 0;
};

struct BackendStats {
  int64_t queued = 0;          // submitted, not yet admitted
  int64_t running = 0;         // admitted (prefilling or decoding)
  int64_t kv_blocks_used = 0;  // KV blocks held by running requests, all ranks
  int64_t kv_blocks_total = 0;
  int64_t max_context = 0;     // prompt + max_new_tokens must fit
  int64_t queue_capacity = 0;  // submit() beyond this is refused (HTTP 429)
};

enum class SubmitStatus { Accepted, QueueFull, Draining, Invalid };

class GenerationBackend {
 public:
  virtual ~GenerationBackend() = default;
  // Queues the request in arrival order. On anything but Accepted the stream is null and `why` says why
  // (QueueFull -> 429, Draining -> 503, Invalid -> 400, e.g. prompt + max_new_tokens over max_context).
  virtual std::shared_ptr<RequestStream> submit(GenerationRequest req, SubmitStatus& status, std::string& why) = 0;
  virtual BackendStats stats() const = 0;
};

}  // namespace dsv4
