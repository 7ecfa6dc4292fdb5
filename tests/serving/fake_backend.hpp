// A GenerationBackend for the HTTP front end's tests: each request "generates" a fixed token script
// (one token per `token_ms`), ending with EOS when the script runs out or with Length at
// max_new_tokens. At most `slots` requests run at once, the rest queue; beyond `queue_capacity` queued,
// submit says QueueFull. It records what it was given and every cancel().
#pragma once
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/serving/backend.hpp"

namespace dsv4::test {

class FakeBackend;

class FakeStream : public RequestStream {
 public:
  bool next(TokenEvent& ev, std::chrono::milliseconds timeout) override {
    std::unique_lock<std::mutex> lk(mu_);
    if (!cv_.wait_for(lk, timeout, [&] { return !events_.empty(); })) return false;
    ev = std::move(events_.front());
    events_.pop_front();
    return true;
  }
  void cancel() override {
    std::lock_guard<std::mutex> lk(mu_);
    ++cancels_;
    if (!finished_) {
      cancelled_ = true;
      finished_ = true;
      TokenEvent ev;
      ev.finish = FinishReason::Cancelled;
      events_.push_back(ev);
      cv_.notify_all();
    }
  }
  // Producer side.
  bool push(TokenEvent ev) {  // false once cancelled
    std::lock_guard<std::mutex> lk(mu_);
    if (finished_) return false;
    if (ev.finish != FinishReason::None) finished_ = true;
    events_.push_back(std::move(ev));
    cv_.notify_all();
    return true;
  }
  bool cancelled() const {
    std::lock_guard<std::mutex> lk(mu_);
    return cancelled_;
  }
  int cancels() const {
    std::lock_guard<std::mutex> lk(mu_);
    return cancels_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<TokenEvent> events_;
  bool finished_ = false, cancelled_ = false;
  int cancels_ = 0;
};

class FakeBackend : public GenerationBackend {
 public:
  FakeBackend(std::vector<int32_t> script, int32_t eos) : script_(std::move(script)), eos_(eos) {}
  ~FakeBackend() override {
    std::vector<std::thread> ts;
    {
      std::lock_guard<std::mutex> lk(mu_);
      ts.swap(threads_);
    }
    for (auto& t : ts) t.join();
  }

  // Settings (tests set them before submitting).
  std::chrono::milliseconds token_ms{2};
  int slots = 8;
  int64_t queue_capacity = 64;
  int64_t max_context = 4096;
  bool draining = false;
  bool hold = false;  // admitted requests wait (do not generate) while true

  void set_script(std::vector<int32_t> s) {
    std::lock_guard<std::mutex> lk(mu_);
    script_ = std::move(s);
  }
  void release_hold() {
    std::lock_guard<std::mutex> lk(mu_);
    hold = false;
    cv_.notify_all();
  }

  std::shared_ptr<RequestStream> submit(GenerationRequest req, SubmitStatus& status, std::string& why) override {
    std::lock_guard<std::mutex> lk(mu_);
    if (draining) {
      status = SubmitStatus::Draining;
      why = "draining";
      return nullptr;
    }
    if (int64_t(req.prompt.size()) + req.max_new_tokens > max_context) {
      status = SubmitStatus::Invalid;
      why = "prompt + max_new_tokens over max_context";
      return nullptr;
    }
    if (queued_ >= queue_capacity) {
      status = SubmitStatus::QueueFull;
      why = std::to_string(queued_) + " queued";
      return nullptr;
    }
    status = SubmitStatus::Accepted;
    auto stream = std::make_shared<FakeStream>();
    requests_.push_back(req);
    streams_.push_back(stream);
    ++queued_;
    threads_.emplace_back([this, stream, req = std::move(req), script = script_] { run(stream, req, script); });
    return stream;
  }

  BackendStats stats() const override {
    std::lock_guard<std::mutex> lk(mu_);
    BackendStats s;
    s.queued = queued_;
    s.running = running_;
    s.kv_blocks_used = running_ * 2;
    s.kv_blocks_total = slots * 2;
    s.max_context = max_context;
    s.queue_capacity = queue_capacity;
    return s;
  }

  std::vector<GenerationRequest> requests() const {
    std::lock_guard<std::mutex> lk(mu_);
    return requests_;
  }
  std::vector<std::shared_ptr<FakeStream>> streams() const {
    std::lock_guard<std::mutex> lk(mu_);
    return streams_;
  }
  int completed() const {
    std::lock_guard<std::mutex> lk(mu_);
    return completed_;
  }
  int64_t running() const {
    std::lock_guard<std::mutex> lk(mu_);
    return running_ + queued_;
  }

 private:
  void run(std::shared_ptr<FakeStream> stream, GenerationRequest req, std::vector<int32_t> script) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      // cancel() does not notify cv_: poll for it.
      while (!((running_ < slots && !hold) || stream->cancelled())) cv_.wait_for(lk, std::chrono::milliseconds(5));
      --queued_;
      ++running_;
    }
    for (int64_t i = 0;; ++i) {
      std::this_thread::sleep_for(token_ms);
      TokenEvent ev;
      const bool script_done = i >= int64_t(script.size());
      ev.token = script_done ? eos_ : script[size_t(i)];
      if (req.sampling.top_logprobs >= 0) {
        ev.logprob = -0.25f * float(i % 4);
        for (int k = 0; k < req.sampling.top_logprobs; ++k) ev.top.push_back({ev.token + k, -0.25f * float(k)});
      }
      const bool stop_token = std::find(req.stop_tokens.begin(), req.stop_tokens.end(), ev.token) != req.stop_tokens.end();
      if (stop_token) ev.finish = FinishReason::Stop;
      else if (i + 1 >= req.max_new_tokens) ev.finish = FinishReason::Length;
      if (!stream->push(ev) || ev.finish != FinishReason::None) break;
    }
    std::lock_guard<std::mutex> lk(mu_);
    --running_;
    ++completed_;
    cv_.notify_all();
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int32_t> script_;
  int32_t eos_;
  int64_t queued_ = 0, running_ = 0;
  int completed_ = 0;
  std::vector<GenerationRequest> requests_;
  std::vector<std::shared_ptr<FakeStream>> streams_;
  std::vector<std::thread> threads_;
};

}  // namespace dsv4::test
