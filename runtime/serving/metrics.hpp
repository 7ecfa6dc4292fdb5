// Server counters and latency histograms, rendered as Prometheus text (GET /metrics). Thread-safe;
// updated by the HTTP handlers, read by the scrape. Gauges of the engine's state come from
// BackendStats at scrape time.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/serving/backend.hpp"

namespace dsv4 {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);  // upper bounds, ascending (seconds)
  void observe(double v);
  // Prometheus lines for `name` (cumulative buckets, +Inf, _sum, _count); caller holds the lock.
  void render(std::string& out, const std::string& name) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; last = above every bound
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  Metrics();
  void http_response(int status);
  // A generation request ended: endpoint "chat" / "completion"; outcome "stop", "length", "abort"
  // (client gone or server cancelled), "error".
  void request_finished(const std::string& endpoint, const std::string& outcome, int64_t prompt_tokens,
                        int64_t completion_tokens, double e2e_seconds);
  void first_token(double seconds);      // time to first token (from submit)
  void inter_token(double seconds);      // between successive tokens of one request
  void queue_rejected(const std::string& why);  // "queue_full", "draining", "invalid"
  std::string render(const BackendStats& s, bool ready, bool draining, int64_t in_flight) const;

 private:
  mutable std::mutex mu_;
  std::map<int, uint64_t> http_;
  std::map<std::pair<std::string, std::string>, uint64_t> requests_;
  std::map<std::string, uint64_t> rejected_;
  uint64_t prompt_tokens_ = 0, generation_tokens_ = 0;
  Histogram ttft_, itl_, e2e_;
};

}  // namespace dsv4
