#include "runtime/serving/metrics.hpp"

#include <algorithm>
#include <cstdio>

namespace dsv4 {

namespace {
std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}
}  // namespace

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  const size_t b = size_t(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  ++counts_[b];
  sum_ += v;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name) const {
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    out += name + "_bucket{le=\"" + num(bounds_[i]) + "\"} " + std::to_string(cum) + "\n";
  }
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(count_) + "\n";
  out += name + "_sum " + num(sum_) + "\n";
  out += name + "_count " + std::to_string(count_) + "\n";
}

Metrics::Metrics()
    : ttft_({0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      itl_({0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5}),
      e2e_({0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}) {}

void Metrics::http_response(int status) {
  std::lock_guard<std::mutex> lk(mu_);
  ++http_[status];
}

void Metrics::request_finished(const std::string& endpoint, const std::string& outcome, int64_t prompt_tokens,
                               int64_t completion_tokens, double e2e_seconds) {
  std::lock_guard<std::mutex> lk(mu_);
  ++requests_[{endpoint, outcome}];
  prompt_tokens_ += uint64_t(std::max<int64_t>(prompt_tokens, 0));
  generation_tokens_ += uint64_t(std::max<int64_t>(completion_tokens, 0));
  e2e_.observe(e2e_seconds);
}

void Metrics::first_token(double s) {
  std::lock_guard<std::mutex> lk(mu_);
  ttft_.observe(s);
}

void Metrics::inter_token(double s) {
  std::lock_guard<std::mutex> lk(mu_);
  itl_.observe(s);
}

void Metrics::queue_rejected(const std::string& why) {
  std::lock_guard<std::mutex> lk(mu_);
  ++rejected_[why];
}

std::string Metrics::render(const BackendStats& s, bool ready, bool draining, int64_t in_flight) const {
  std::lock_guard<std::mutex> lk(mu_);
  std::string o;
  o += "# HELP dsv4_requests_total Generation requests that ended, by endpoint and outcome.\n";
  o += "# TYPE dsv4_requests_total counter\n";
  for (const auto& [k, v] : requests_)
    o += "dsv4_requests_total{endpoint=\"" + k.first + "\",outcome=\"" + k.second + "\"} " + std::to_string(v) + "\n";
  o += "# HELP dsv4_requests_refused_total Requests the backend refused at submit, by reason.\n";
  o += "# TYPE dsv4_requests_refused_total counter\n";
  for (const auto& [k, v] : rejected_) o += "dsv4_requests_refused_total{reason=\"" + k + "\"} " + std::to_string(v) + "\n";
  o += "# HELP dsv4_http_responses_total HTTP responses by status code.\n";
  o += "# TYPE dsv4_http_responses_total counter\n";
  for (const auto& [k, v] : http_) o += "dsv4_http_responses_total{code=\"" + std::to_string(k) + "\"} " + std::to_string(v) + "\n";
  o += "# HELP dsv4_prompt_tokens_total Prompt tokens of finished requests.\n";
  o += "# TYPE dsv4_prompt_tokens_total counter\n";
  o += "dsv4_prompt_tokens_total " + std::to_string(prompt_tokens_) + "\n";
  o += "# HELP dsv4_generation_tokens_total Generated tokens of finished requests.\n";
  o += "# TYPE dsv4_generation_tokens_total counter\n";
  o += "dsv4_generation_tokens_total " + std::to_string(generation_tokens_) + "\n";
  o += "# HELP dsv4_time_to_first_token_seconds From submit to the first generated token.\n";
  o += "# TYPE dsv4_time_to_first_token_seconds histogram\n";
  ttft_.render(o, "dsv4_time_to_first_token_seconds");
  o += "# HELP dsv4_inter_token_latency_seconds Between successive tokens of one request.\n";
  o += "# TYPE dsv4_inter_token_latency_seconds histogram\n";
  itl_.render(o, "dsv4_inter_token_latency_seconds");
  o += "# HELP dsv4_e2e_request_latency_seconds From submit to the end of the request.\n";
  o += "# TYPE dsv4_e2e_request_latency_seconds histogram\n";
  e2e_.render(o, "dsv4_e2e_request_latency_seconds");
  const std::pair<const char*, int64_t> gauges[] = {
      {"dsv4_requests_queued", s.queued},         {"dsv4_requests_running", s.running},
      {"dsv4_kv_blocks_used", s.kv_blocks_used},  {"dsv4_kv_blocks_total", s.kv_blocks_total},
      {"dsv4_queue_capacity", s.queue_capacity},  {"dsv4_max_context", s.max_context},
      {"dsv4_http_in_flight", in_flight},         {"dsv4_ready", ready && !draining ? 1 : 0},
  };
  for (const auto& [name, v] : gauges) {
    o += std::string("# TYPE ") + name + " gauge\n";
    o += std::string(name) + " " + std::to_string(v) + "\n";
  }
  return o;
}

}  // namespace dsv4
