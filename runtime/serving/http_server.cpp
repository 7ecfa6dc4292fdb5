#include "runtime/serving/http_server.hpp"

#include <httplib.h>

#include <pthread.h>
#include <signal.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>

#include "plan/error.hpp"
#include "runtime/serving/metrics.hpp"
#include "runtime/serving/openai_output.hpp"
#include "runtime/serving/openai_request.hpp"
#include "runtime/serving/openai_response.hpp"
#include "runtime/text/chat.hpp"

namespace dsv4 {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  if (e.status == 401) res.set_header("WWW-Authenticate", "Bearer");
  if (e.status == 429 || e.status == 503) res.set_header("Retry-After", "1");
  res.set_content(dump_json(error_json(e)), "application/json");
}

struct State {
  State(GenerationBackend& b, const Tokenizer& t, const HttpOptions& o, std::atomic<bool>& r)
      : backend(b), tok(t), opt(o), ready(r) {}
  GenerationBackend& backend;
  const Tokenizer& tok;
  const HttpOptions& opt;
  std::atomic<bool>& ready;
  std::atomic<bool> draining{false};
  std::atomic<bool> abort_all{false};  // drain timed out: cancel what still runs
  std::atomic<int64_t> in_flight{0};
  Metrics metrics;
  int32_t eos_id = -1, think_end_id = -1;
  int64_t started = 0;  // unix seconds, the model's "created"
};

// One accepted generation request, owned by its response's content provider. Whatever way the
// response ends (finished, client gone, server stopped), the destructor cancels an unfinished stream.
struct Job {
  State& s;
  ApiRequest req;
  ResponseMeta meta;
  std::shared_ptr<RequestStream> stream;
  OutputAssembler out;
  Clock::time_point submitted;
  bool ended = false;

  Job(State& st, ApiRequest r, std::shared_ptr<RequestStream> rs)
      : s(st),
        req(std::move(r)),
        meta(make_meta(req, st.opt.model_name, st.opt.fingerprint)),
        stream(std::move(rs)),
        out(st.tok, req.thinking, st.think_end_id, req.stop),
        submitted(Clock::now()) {
    s.in_flight.fetch_add(1);
  }
  ~Job() {
    if (!ended) stream->cancel();
    s.in_flight.fetch_sub(1);
  }
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;

  const char* endpoint_name() const { return req.endpoint == Endpoint::Chat ? "chat" : "completion"; }
  void record(const char* outcome) {
    s.metrics.request_finished(endpoint_name(), outcome, int64_t(req.prompt.size()), out.completion_tokens(),
                               seconds_since(submitted));
  }

  // Runs the request to its end, writing to `sink`. Returns false if the client went away.
  bool run(httplib::DataSink& sink);
};

void append(OutputDelta& into, OutputDelta&& d) {
  into.reasoning += d.reasoning;
  into.content += d.content;
  for (SentToken& t : d.tokens) into.tokens.push_back(std::move(t));
}

bool Job::run(httplib::DataSink& sink) {
  const bool streaming = req.stream;
  const bool usage = req.include_usage;
  OutputDelta acc;  // non-streaming: everything so far
  auto client_gone = [&] {
    stream->cancel();
    ended = true;
    record("abort");
    return false;
  };
  if (streaming && req.endpoint == Endpoint::Chat) {
    const std::string first = sse_event(role_chunk(meta, usage));
    if (!sink.write(first.data(), first.size())) return client_gone();
  }
  FinishReason finish = FinishReason::None;
  bool server_cancelled = false;
  Clock::time_point cancelled_at{}, last_token{}, last_poll = Clock::now();
  while (finish == FinishReason::None) {
    if (s.abort_all.load() && !server_cancelled) {
      stream->cancel();
      server_cancelled = true;
      cancelled_at = Clock::now();
    }
    TokenEvent ev;
    if (!stream->next(ev, std::chrono::milliseconds(50))) {
      if (!sink.is_writable()) return client_gone();
      // A backend that never sends the Cancelled event it owes must not hold the drain forever.
      if (server_cancelled && seconds_since(cancelled_at) > 5) finish = FinishReason::Cancelled;
      continue;
    }
    OutputDelta d;
    if (ev.token >= 0) {
      const auto now = Clock::now();
      if (last_token == Clock::time_point{}) s.metrics.first_token(std::chrono::duration<double>(now - submitted).count());
      else s.metrics.inter_token(std::chrono::duration<double>(now - last_token).count());
      last_token = now;
      d = out.push(ev);
    }
    finish = ev.finish;
    if (out.stop_matched()) {
      stream->cancel();  // the engine frees the slot; its Cancelled event is not waited for
      finish = FinishReason::Stop;
    } else if (finish != FinishReason::None) {
      append(d, out.finish());
      if (out.stop_matched()) finish = FinishReason::Stop;
    }
    if (finish == FinishReason::Rejected) break;
    if (streaming) {
      if (!d.empty()) {
        const std::string text = sse_event(delta_chunk(meta, s.tok, d, usage));
        if (!sink.write(text.data(), text.size())) return client_gone();
      }
    } else {
      append(acc, std::move(d));
      // Nothing is written until the end: look at the connection now and then.
      if (seconds_since(last_poll) > 0.2) {
        if (!sink.is_writable()) return client_gone();
        last_poll = Clock::now();
      }
    }
  }
  ended = true;
  std::string tail;
  if (finish == FinishReason::Rejected) {
    const ApiError e(500, "the engine rejected the request after accepting it", "", "rejected", "server_error");
    tail = streaming ? sse_event(error_json(e)) + kSseDone : dump_json(error_json(e));
    record("error");
  } else {
    if (streaming) {
      tail = sse_event(finish_chunk(meta, finish, usage));
      if (usage) tail += sse_event(usage_chunk(meta, int64_t(req.prompt.size()), out.completion_tokens()));
      tail += kSseDone;
    } else {
      FullOutput full{std::move(acc.reasoning), std::move(acc.content), std::move(acc.tokens), finish,
                      int64_t(req.prompt.size()), out.completion_tokens()};
      tail = dump_json(full_response(meta, s.tok, full));
    }
    record(openai_finish_reason(finish));
  }
  if (!sink.write(tail.data(), tail.size())) return false;
  sink.done();
  return true;
}

class Routes {
 public:
  explicit Routes(State& s) : s_(s) {}

  void install(httplib::Server& svr) {
    svr.Post("/v1/chat/completions", wrap([this](auto& q, auto& r) { generate(q, r, Endpoint::Chat); }));
    svr.Post("/v1/completions", wrap([this](auto& q, auto& r) { generate(q, r, Endpoint::Completion); }));
    svr.Post("/tokenize", wrap([this](auto& q, auto& r) { tokenize(q, r); }));
    svr.Post("/detokenize", wrap([this](auto& q, auto& r) { detokenize(q, r); }));
    svr.Get("/v1/models", wrap([this](auto&, auto& r) { models(r, ""); }));
    svr.Get(R"(/v1/models/(.+))", wrap([this](auto& q, auto& r) { models(r, q.matches[1].str()); }));
    svr.Get("/health", [this](const httplib::Request&, httplib::Response& r) { health(r); });
    svr.Get("/metrics", wrap([this](auto&, auto& r) { metrics(r); }));
    // Known routes with the wrong method: 405 naming the allowed one.
    for (const char* p : {"/v1/chat/completions", "/v1/completions", "/tokenize", "/detokenize"}) {
      svr.Get(p, not_allowed("POST"));
      svr.Put(p, not_allowed("POST"));
      svr.Delete(p, not_allowed("POST"));
      svr.Patch(p, not_allowed("POST"));
    }
    for (const char* p : {"/v1/models", "/health", "/metrics"}) {
      svr.Post(p, not_allowed("GET"));
      svr.Put(p, not_allowed("GET"));
      svr.Delete(p, not_allowed("GET"));
      svr.Patch(p, not_allowed("GET"));
    }
  }

 private:
  using Fn = std::function<void(const httplib::Request&, httplib::Response&)>;

  // Authentication, then the handler; every failure becomes an OpenAI error body.
  Fn wrap(Fn fn) {
    return [this, fn = std::move(fn)](const httplib::Request& q, httplib::Response& r) {
      try {
        authorize(q);
        fn(q, r);
      } catch (const ApiError& e) {
        send_error(r, e);
      } catch (const std::exception& e) {
        send_error(r, ApiError(500, std::string("internal error: ") + e.what(), "", "", "server_error"));
      }
    };
  }

  Fn not_allowed(std::string allow) {
    return [allow](const httplib::Request& q, httplib::Response& r) {
      r.set_header("Allow", allow);
      send_error(r, ApiError(405, "method " + q.method + " is not allowed on " + q.path + " (use " + allow + ")", "", "method_not_allowed"));
    };
  }

  void authorize(const httplib::Request& q) const {
    if (s_.opt.api_key.empty()) return;
    const std::string h = q.get_header_value("Authorization");
    const std::string want = "Bearer " + s_.opt.api_key;
    // Constant-time compare: the key's length leaks, its bytes do not.
    bool ok = h.size() == want.size();
    unsigned char diff = 0;
    for (size_t i = 0; ok && i < h.size(); ++i) diff |= (unsigned char)(h[i] ^ want[i]);
    if (!ok || diff != 0)
      throw ApiError(401, h.empty() ? "missing API key: send \"Authorization: Bearer <key>\"" : "incorrect API key provided",
                     "", "invalid_api_key");
  }

  void available() const {
    if (s_.draining.load()) throw ApiError(503, "the server is shutting down", "", "server_draining", "server_error");
    if (!s_.ready.load()) throw ApiError(503, "the model is loading", "", "model_loading", "server_error");
  }

  PromptLimits limits(int64_t max_context) const { return PromptLimits{s_.tok.size(), max_context}; }

  void generate(const httplib::Request& q, httplib::Response& res, Endpoint ep) {
    available();
    const json body = parse_json_body(q.body);
    const BackendStats st = s_.backend.stats();
    ApiRequest r;
    try {
      r = ep == Endpoint::Chat ? parse_chat_request(body, s_.tok, limits(st.max_context))
                               : parse_completion_request(body, s_.tok, limits(st.max_context));
    } catch (const Error& e) {  // the tokenizer's complaints (e.g. text it cannot encode)
      throw ApiError(400, e.what());
    }
    SubmitStatus status = SubmitStatus::Invalid;
    std::string why;
    std::shared_ptr<RequestStream> stream = s_.backend.submit(to_generation_request(r, s_.eos_id), status, why);
    if (status != SubmitStatus::Accepted || !stream) {
      switch (status) {
        case SubmitStatus::QueueFull:
          s_.metrics.queue_rejected("queue_full");
          throw ApiError(429, "the request queue is full (" + why + "); retry later", "", "rate_limit_exceeded", "rate_limit_error");
        case SubmitStatus::Draining:
          s_.metrics.queue_rejected("draining");
          throw ApiError(503, "the server is shutting down (" + why + ")", "", "server_draining", "server_error");
        default:
          s_.metrics.queue_rejected("invalid");
          throw ApiError(400, why.empty() ? "the request was refused" : why);
      }
    }
    auto job = std::make_shared<Job>(s_, std::move(r), std::move(stream));
    const bool streaming = job->req.stream;
    if (streaming) {
      res.set_header("Cache-Control", "no-cache");
      res.set_header("X-Accel-Buffering", "no");
    }
    // Both kinds go out through a chunked provider: it is the only place this httplib version lets us
    // notice a client that closed its connection (sink.is_writable), so the request can be cancelled.
    res.set_chunked_content_provider(streaming ? "text/event-stream" : "application/json",
                                     [job](size_t, httplib::DataSink& sink) { return job->run(sink); },
                                     [job](bool) {});
  }

  void tokenize(const httplib::Request& q, httplib::Response& res) {
    const json body = parse_json_body(q.body);
    std::vector<int32_t> ids;
    try {
      ids = parse_tokenize_request(body, s_.tok);
    } catch (const Error& e) {
      throw ApiError(400, e.what());
    }
    const int64_t max_context = s_.backend.stats().max_context;
    json j = {{"tokens", ids}, {"count", ids.size()}};
    if (max_context > 0) j["max_model_len"] = max_context;
    res.set_content(dump_json(j), "application/json");
  }

  void detokenize(const httplib::Request& q, httplib::Response& res) {
    const json body = parse_json_body(q.body);
    const std::vector<int32_t> ids = parse_detokenize_request(body, limits(0));
    res.set_content(dump_json(json{{"prompt", s_.tok.decode(ids)}}), "application/json");
  }

  void models(httplib::Response& res, const std::string& id) {
    const json list = models_json(s_.opt.model_name, s_.started, s_.backend.stats().max_context);
    if (id.empty()) {
      res.set_content(dump_json(list), "application/json");
      return;
    }
    if (id != s_.opt.model_name)
      throw ApiError(404, "The model '" + id + "' does not exist", "model", "model_not_found");
    res.set_content(dump_json(list["data"][0]), "application/json");
  }

  void health(httplib::Response& res) {
    if (s_.draining.load()) {
      res.status = 503;
      res.set_content(R"({"status":"draining"})", "application/json");
    } else if (!s_.ready.load()) {
      res.status = 503;
      res.set_content(R"({"status":"loading"})", "application/json");
    } else {
      res.set_content(R"({"status":"ok"})", "application/json");
    }
  }

  void metrics(httplib::Response& res) {
    res.set_content(s_.metrics.render(s_.backend.stats(), s_.ready.load(), s_.draining.load(), s_.in_flight.load()),
                    "text/plain; version=0.0.4");
  }

  State& s_;
};

// httplib 0.11 listens with a backlog of 5: a burst of clients connecting at once overflows it and
// some of them fail. listen() again on the bound socket widens the queue (Linux takes a second call).
class Listener : public httplib::Server {
 public:
  bool widen_backlog(int n) { return ::listen(svr_sock_.load(), n) == 0; }
};

int32_t required_token(const Tokenizer& tok, const char* text) {
  const auto id = tok.token_id(text);
  if (!id) throw Error(std::string("serve: the tokenizer has no token '") + text + "'");
  return *id;
}

// httplib writes with send(..., 0): a client that resets its connection between httplib's liveness check
// and the write raises SIGPIPE, which would end the whole server. The HTTP threads inherit this thread's
// signal mask, so SIGPIPE is blocked here for the call (the write then fails with EPIPE and the request is
// cancelled) and the caller's mask is restored after, with nothing left pending.
class BlockSigpipe {
 public:
  BlockSigpipe() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~BlockSigpipe() {
    timespec zero{0, 0};
    while (sigtimedwait(&pipe_, nullptr, &zero) > 0) {
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }

 private:
  sigset_t pipe_, old_;
};

}  // namespace

void serve_http(GenerationBackend& backend, const Tokenizer& tok, const HttpOptions& opt, std::atomic<bool>& stop,
                std::atomic<bool>& ready) {
  const BlockSigpipe no_sigpipe;
  State s(backend, tok, opt, ready);
  s.eos_id = required_token(tok, chat::kEos);
  s.think_end_id = required_token(tok, chat::kThinkEnd);
  s.started = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();

  Listener svr;
  const size_t threads = size_t(std::max(opt.threads, 2));
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  svr.set_payload_max_length(size_t(std::max<int64_t>(opt.max_body_bytes, 1)));
  svr.set_keep_alive_timeout(std::max(opt.keep_alive_s, 1));
  // httplib's default also sets SO_REUSEPORT, which would let a second server bind the same port and
  // silently share its connections: SO_REUSEADDR alone (restart without waiting out TIME_WAIT).
  svr.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  Routes routes(s);
  routes.install(svr);
  // Responses httplib makes itself (unknown route 404, body too large 413, unparsable request 400) get
  // an OpenAI error body; responses our handlers made already have one.
  svr.set_error_handler(httplib::Server::HandlerWithResponse([&opt](const httplib::Request& q, httplib::Response& r) {
    if (!r.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    if (r.status == 404) send_error(r, ApiError(404, "Invalid URL (" + q.method + " " + q.path + ")", "", "unknown_url"));
    else if (r.status == 413) send_error(r, ApiError(413, "the request body is larger than the limit of " +
                                                              std::to_string(opt.max_body_bytes) + " bytes", "", "request_too_large"));
    else send_error(r, ApiError(r.status, "bad request: " + std::to_string(r.status)));
    return httplib::Server::HandlerResponse::Handled;
  }));
  svr.set_logger([&s](const httplib::Request&, const httplib::Response& r) { s.metrics.http_response(r.status); });

  int port = opt.port;
  bool bound = false;
  errno = 0;
  if (opt.port == 0) {
    port = svr.bind_to_any_port(opt.host);
    bound = port > 0;
  } else {
    bound = svr.bind_to_port(opt.host, opt.port);
  }
  const int bind_errno = errno;
  if (!bound)
    throw Error("serve: cannot listen on " + opt.host + ":" + std::to_string(opt.port) + ": " +
                (bind_errno ? std::strerror(bind_errno) : "the address is in use or not available"));
  if (!svr.widen_backlog(1024))
    throw Error("serve: cannot listen on " + opt.host + ":" + std::to_string(port) + ": " + std::strerror(errno));
  if (opt.on_listening) opt.on_listening(opt.host, port);

  std::atomic<bool> listen_done{false};
  std::thread watcher([&] {
    while (!stop.load() && !listen_done.load()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (listen_done.load()) return;
    s.draining.store(true);
    const auto deadline = Clock::now() + std::chrono::seconds(std::max(opt.drain_timeout_s, 0));
    while (s.in_flight.load() > 0 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (s.in_flight.load() > 0) {
      s.abort_all.store(true);
      const auto hard = Clock::now() + std::chrono::seconds(10);
      while (s.in_flight.load() > 0 && Clock::now() < hard) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    svr.stop();
  });
  svr.listen_after_bind();
  listen_done.store(true);
  watcher.join();
}

}  // namespace dsv4
