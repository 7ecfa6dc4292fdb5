// serve_http end to end over loopback (127.0.0.1, ephemeral ports) with a FakeBackend: httplib's
// client, raw sockets (disconnects), curl and the OpenAI Node SDK as clients.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <future>
#include <sstream>

#include <nlohmann/json.hpp>

#include "plan/error.hpp"
#include "runtime/serving/http_server.hpp"
#include "runtime/text/chat.hpp"
#include "tests/serving/fake_backend.hpp"
#include "tests/serving/test_tokenizer.hpp"

namespace dsv4 {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

const Tokenizer& tok() { return test::shared_tokenizer(); }
int32_t eos() { return *tok().token_id(chat::kEos); }
const std::string kAnswer = "The quick brown fox jumps over the lazy dog.";
std::vector<int32_t> answer_ids() { return tok().encode(kAnswer); }

// One serve_http on its own thread over its own FakeBackend.
class TestServer {
 public:
  explicit TestServer(HttpOptions opt = {}, bool start_now = true) : backend(answer_ids(), eos()), opt_(std::move(opt)) {
    opt_.host = "127.0.0.1";
    opt_.port = 0;
    opt_.model_name = "dsv4-test";
    opt_.keep_alive_s = 1;
    if (opt_.max_body_bytes == HttpOptions{}.max_body_bytes) opt_.max_body_bytes = 64 << 10;
    if (start_now) start();
  }
  void start() {
    std::promise<int> bound;
    auto port = bound.get_future();
    opt_.on_listening = [&bound](const std::string&, int p) { bound.set_value(p); };
    thread_ = std::thread([this] {
      try {
        serve_http(backend, tok(), opt_, stop, ready);
      } catch (const std::exception& e) {
        ADD_FAILURE() << "serve_http threw: " << e.what();
      }
      returned = true;
    });
    ASSERT_EQ(port.wait_for(5s), std::future_status::ready);
    port_ = port.get();
  }
  ~TestServer() { shutdown(); }
  void shutdown() {
    stop = true;
    if (thread_.joinable()) thread_.join();
  }
  int port() const { return port_; }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(10, 0);
    return c;
  }
  httplib::Result post(const std::string& path, const std::string& body) const {
    return client().Post(path.c_str(), body, "application/json");
  }
  httplib::Result get(const std::string& path) const { return client().Get(path.c_str()); }

  test::FakeBackend backend;
  std::atomic<bool> stop{false}, ready{true}, returned{false};

 private:
  HttpOptions opt_;
  std::thread thread_;
  int port_ = 0;
};

// "data: ..." payloads of an SSE body, in order.
std::vector<std::string> sse_data(const std::string& body) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < body.size()) {
    const size_t end = body.find("\n\n", at);
    if (end == std::string::npos) break;
    const std::string ev = body.substr(at, end - at);
    EXPECT_EQ(ev.rfind("data: ", 0), 0u) << ev;
    out.push_back(ev.substr(6));
    at = end + 2;
  }
  EXPECT_EQ(at, body.size()) << "trailing bytes after the last event";
  return out;
}

struct Streamed {
  std::string content, reasoning, finish;
  json usage;
  bool done = false;
  int chunks = 0;
};

Streamed parse_stream(const std::string& body, bool chat) {
  Streamed s;
  for (const std::string& d : sse_data(body)) {
    EXPECT_FALSE(s.done) << "event after [DONE]";
    if (d == "[DONE]") {
      s.done = true;
      continue;
    }
    const json c = json::parse(d);
    ++s.chunks;
    if (c.contains("usage") && !c["usage"].is_null()) s.usage = c["usage"];
    for (const json& ch : c["choices"]) {
      if (chat) {
        s.content += ch["delta"].value("content", "");
        s.reasoning += ch["delta"].value("reasoning_content", "");
      } else {
        s.content += ch["text"].get<std::string>();
      }
      if (!ch["finish_reason"].is_null()) s.finish = ch["finish_reason"];
    }
  }
  return s;
}

const std::string kChat = R"({"model":"dsv4-test","messages":[{"role":"user","content":"Say something."}])";
std::string chat_body(const std::string& extra = "") { return kChat + (extra.empty() ? "" : "," + extra) + "}"; }

void expect_error(const httplib::Result& r, int status, const std::string& needle) {
  ASSERT_TRUE(r) << "no response (" << httplib::to_string(r.error()) << ")";
  EXPECT_EQ(r->status, status) << r->body;
  const json j = json::parse(r->body, nullptr, false);
  ASSERT_TRUE(j.is_object() && j.contains("error")) << r->body;
  for (const char* k : {"message", "type", "param", "code"}) EXPECT_TRUE(j["error"].contains(k)) << k << " " << r->body;
  EXPECT_NE(j["error"]["message"].get<std::string>().find(needle), std::string::npos) << r->body;
}

bool wait_for(const std::function<bool()>& cond, std::chrono::milliseconds limit = 3000ms) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return cond();
}

TEST(HttpE2E, ChatNotStreamed) {
  TestServer s;
  auto r = s.post("/v1/chat/completions", chat_body(R"("temperature":0,"seed":5)"));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
  const json j = json::parse(r->body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["model"], "dsv4-test");
  EXPECT_EQ(j["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_TRUE(j["created"].is_number_integer());
  EXPECT_EQ(j["system_fingerprint"], "dsv4");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["message"]["content"], kAnswer);
  EXPECT_FALSE(j["choices"][0]["message"].contains("reasoning_content"));
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  const auto reqs = s.backend.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(j["usage"]["prompt_tokens"], reqs[0].prompt.size());
  EXPECT_EQ(j["usage"]["completion_tokens"], answer_ids().size() + 1);  // + EOS
  EXPECT_EQ(reqs[0].sampling.seed, 5u);
  EXPECT_EQ(reqs[0].sampling.temperature, 0.0);
  EXPECT_EQ(reqs[0].stop_tokens, std::vector<int32_t>{eos()});
  EXPECT_EQ(reqs[0].max_new_tokens, 4096 - int64_t(reqs[0].prompt.size()));
}

TEST(HttpE2E, ChatStreamedWithUsage) {
  TestServer s;
  auto r = s.post("/v1/chat/completions", chat_body(R"("stream":true,"stream_options":{"include_usage":true})"));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/event-stream");
  const Streamed st = parse_stream(r->body, true);
  EXPECT_EQ(st.content, kAnswer);
  EXPECT_EQ(st.finish, "stop");
  EXPECT_TRUE(st.done);
  EXPECT_GE(st.chunks, int(answer_ids().size()));  // one chunk per decodable piece (+ role, finish, usage)
  EXPECT_EQ(st.usage["completion_tokens"], answer_ids().size() + 1);
  const auto data = sse_data(r->body);
  const json last = json::parse(data[data.size() - 2]);  // before [DONE]: usage, empty choices
  EXPECT_TRUE(last["choices"].empty());
  EXPECT_EQ(json::parse(data[0])["choices"][0]["delta"]["role"], "assistant");
}

TEST(HttpE2E, CompletionsLengthStopAndLogprobs) {
  TestServer s;
  auto r = s.post("/v1/completions", R"({"prompt":"Once","max_tokens":3,"logprobs":2})");
  ASSERT_TRUE(r && r->status == 200) << (r ? r->body : "");
  json j = json::parse(r->body);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  const std::vector<int32_t> ids = answer_ids();
  EXPECT_EQ(j["choices"][0]["text"], tok().decode(std::vector<int32_t>(ids.begin(), ids.begin() + 3)));
  const json& lp = j["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"].size(), 3u);
  EXPECT_EQ(lp["top_logprobs"][0].size(), 2u);
  EXPECT_EQ(lp["text_offset"][0], 0);
  EXPECT_EQ(j["usage"]["completion_tokens"], 3);

  // A stop string: cut before it, finish "stop", and the request is cancelled in the backend.
  s.backend.token_ms = 5ms;
  r = s.post("/v1/completions", R"({"prompt":[100,200],"stop":["fox","zebra"],"stream":true,"max_tokens":100})");
  ASSERT_TRUE(r && r->status == 200);
  const Streamed st = parse_stream(r->body, false);
  EXPECT_EQ(st.content, "The quick brown ");
  EXPECT_EQ(st.finish, "stop");
  EXPECT_TRUE(wait_for([&] { return s.backend.streams().back()->cancels() > 0; }));
  EXPECT_EQ(s.backend.requests().back().prompt, (std::vector<int32_t>{100, 200}));
}

TEST(HttpE2E, ChatLogprobsAndThinking) {
  TestServer s;
  auto r = s.post("/v1/chat/completions", chat_body(R"("logprobs":true,"top_logprobs":2)"));
  ASSERT_TRUE(r && r->status == 200) << (r ? r->body : "");
  json j = json::parse(r->body);
  const json& content = j["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), answer_ids().size());  // EOS is not listed
  EXPECT_EQ(content[0]["token"], tok().decode(std::vector<int32_t>{answer_ids()[0]}));
  EXPECT_EQ(content[0]["top_logprobs"].size(), 2u);
  EXPECT_TRUE(content[0]["bytes"].is_array());

  std::vector<int32_t> script = tok().encode("First, think.");
  script.push_back(*tok().token_id(chat::kThinkEnd));
  for (int32_t id : answer_ids()) script.push_back(id);
  s.backend.set_script(script);
  r = s.post("/v1/chat/completions", chat_body(R"("chat_template_kwargs":{"thinking":true})"));
  ASSERT_TRUE(r && r->status == 200);
  j = json::parse(r->body);
  EXPECT_EQ(j["choices"][0]["message"]["reasoning_content"], "First, think.");
  EXPECT_EQ(j["choices"][0]["message"]["content"], kAnswer);
  EXPECT_EQ(s.backend.requests().back().prompt.back(), *tok().token_id(chat::kThinkBegin));
  r = s.post("/v1/chat/completions", chat_body(R"("reasoning_effort":"high","stream":true)"));
  ASSERT_TRUE(r && r->status == 200);
  const Streamed st = parse_stream(r->body, true);
  EXPECT_EQ(st.reasoning, "First, think.");
  EXPECT_EQ(st.content, kAnswer);
}

TEST(HttpE2E, SixteenConcurrentStreams) {
  TestServer s;
  s.backend.slots = 16;
  s.backend.token_ms = 5ms;
  std::vector<std::future<std::string>> fs;
  for (int i = 0; i < 16; ++i)
    fs.push_back(std::async(std::launch::async, [&, i] {
      auto r = s.post("/v1/chat/completions", chat_body(i % 2 ? R"("stream":true)" : ""));
      if (!r) return "no response (request " + std::to_string(i) + "): " + httplib::to_string(r.error());
      if (r->status != 200) return "status " + std::to_string(r->status) + ": " + r->body;
      return i % 2 ? parse_stream(r->body, true).content
                   : json::parse(r->body)["choices"][0]["message"]["content"].get<std::string>();
    }));
  for (auto& f : fs) EXPECT_EQ(f.get(), kAnswer);
  EXPECT_EQ(s.backend.completed(), 16);
}

TEST(HttpE2E, BadRequestsAndTheServerKeepsServing) {
  TestServer s;
  expect_error(s.post("/v1/chat/completions", "{not json"), 400, "malformed JSON");
  expect_error(s.post("/v1/chat/completions", chat_body(R"("temperature":"hot")")), 400, "must be a number");
  expect_error(s.post("/v1/chat/completions", R"({"model":"x"})"), 400, "'messages' is required");
  expect_error(s.post("/v1/chat/completions", chat_body(R"("n":3)")), 400, "'n' must be 1");
  expect_error(s.post("/v1/chat/completions", chat_body(R"("max_tokens":100000)")), 400, "maximum context length");
  expect_error(s.post("/v1/completions", R"({"prompt":[1,2,99999999]})"), 400, "outside the vocabulary");
  expect_error(s.post("/v1/completions", R"({"prompt":["a","b"]})"), 400, "batch of 2");
  expect_error(s.get("/v1/nothing"), 404, "Invalid URL");
  auto r = s.get("/v1/chat/completions");
  expect_error(r, 405, "not allowed");
  EXPECT_EQ(r->get_header_value("Allow"), "POST");
  expect_error(s.post("/v1/models", "{}"), 405, "not allowed");
  expect_error(s.post("/v1/completions", std::string(100 << 10, ' ')), 413, "larger than the limit");
  expect_error(s.post("/detokenize", R"({"tokens":[-4]})"), 400, "outside the vocabulary");
  EXPECT_TRUE(s.backend.requests().empty());  // nothing malformed reached the backend
  r = s.get("/health");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  r = s.post("/v1/chat/completions", chat_body());
  ASSERT_TRUE(r && r->status == 200);
}

TEST(HttpE2E, QueueFullIs429AndDrainingBackendIs503) {
  TestServer s;
  s.backend.slots = 1;
  s.backend.queue_capacity = 1;
  s.backend.hold = true;  // the first request stays queued
  auto first = std::async(std::launch::async, [&] { return s.post("/v1/chat/completions", chat_body()); });
  ASSERT_TRUE(wait_for([&] { return s.backend.stats().queued == 1; }));
  auto r = s.post("/v1/chat/completions", chat_body());
  expect_error(r, 429, "queue is full");
  EXPECT_EQ(json::parse(r->body)["error"]["code"], "rate_limit_exceeded");
  s.backend.release_hold();
  auto r1 = first.get();
  ASSERT_TRUE(r1 && r1->status == 200);
  s.backend.draining = true;
  expect_error(s.post("/v1/chat/completions", chat_body()), 503, "shutting down");
  const std::string m = s.get("/metrics")->body;
  EXPECT_NE(m.find("dsv4_requests_refused_total{reason=\"queue_full\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("dsv4_requests_refused_total{reason=\"draining\"} 1"), std::string::npos) << m;
}

TEST(HttpE2E, ApiKeyAndLoading) {
  HttpOptions opt;
  opt.api_key = "sekret";
  TestServer s(opt);
  expect_error(s.post("/v1/chat/completions", chat_body()), 401, "missing API key");
  auto c = s.client();
  c.set_bearer_token_auth("wrong");
  expect_error(c.Post("/v1/chat/completions", chat_body(), "application/json"), 401, "incorrect API key");
  expect_error(c.Get("/v1/models"), 401, "incorrect API key");
  expect_error(c.Get("/metrics"), 401, "incorrect API key");
  EXPECT_EQ(s.get("/health")->status, 200);  // no key needed
  c.set_bearer_token_auth("sekret");
  auto r = c.Post("/v1/chat/completions", chat_body(), "application/json");
  ASSERT_TRUE(r && r->status == 200);
  s.ready = false;
  r = s.get("/health");
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(json::parse(r->body)["status"], "loading");
  expect_error(c.Post("/v1/chat/completions", chat_body(), "application/json"), 503, "loading");
}

// A raw HTTP/1.1 request on its own socket (for clients that go away).
int raw_request(int port, const std::string& path, const std::string& body) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -1;
  const std::string req = "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body;
  if (::send(fd, req.data(), req.size(), 0) != ssize_t(req.size())) return -1;
  return fd;
}

TEST(HttpE2E, DisconnectingClientsAreCancelled) {
  TestServer s;
  std::vector<int32_t> long_script;
  for (int i = 0; i < 40; ++i)
    for (int32_t id : answer_ids()) long_script.push_back(id);
  s.backend.set_script(long_script);
  s.backend.token_ms = 10ms;  // ~5 s of tokens: the test must end long before
  // Streaming: read the first event, then hang up.
  int fd = raw_request(s.port(), "/v1/chat/completions", chat_body(R"("stream":true)"));
  ASSERT_GE(fd, 0);
  char buf[4096];
  std::string got;
  while (got.find("data: ") == std::string::npos) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    ASSERT_GT(n, 0);
    got.append(buf, size_t(n));
  }
  ::close(fd);
  ASSERT_TRUE(wait_for([&] { return s.backend.streams().size() == 1 && s.backend.streams()[0]->cancels() > 0; }))
      << "the streaming request was not cancelled";
  // Not streaming: hang up while it generates.
  fd = raw_request(s.port(), "/v1/chat/completions", chat_body());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(wait_for([&] { return s.backend.streams().size() == 2; }));
  std::this_thread::sleep_for(50ms);
  ::close(fd);
  ASSERT_TRUE(wait_for([&] { return s.backend.streams()[1]->cancels() > 0; })) << "the non-streaming request was not cancelled";
  EXPECT_TRUE(wait_for([&] { return s.backend.completed() == 2; }));
  const std::string m = s.get("/metrics")->body;
  EXPECT_NE(m.find("dsv4_requests_total{endpoint=\"chat\",outcome=\"abort\"} 2"), std::string::npos) << m;
}

// 200 clients that reset their connection mid-stream: each request is cancelled, the server lives on.
// (SIGPIPE, which a write racing the reset would raise, is blocked in the HTTP threads; this test only
// rarely hits that window.)
TEST(HttpE2E, ResetClientsDoNotKillTheServer) {
  TestServer s;
  std::vector<int32_t> long_script;
  for (int i = 0; i < 200; ++i) long_script.push_back(answer_ids()[size_t(i) % answer_ids().size()]);
  s.backend.set_script(long_script);
  s.backend.token_ms = 0ms;
  s.backend.slots = 32;
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        const int fd = raw_request(s.port(), "/v1/completions", R"({"prompt":"x","max_tokens":200,"stream":true})");
        if (fd < 0) continue;
        char buf[256];
        (void)::recv(fd, buf, sizeof buf, 0);
        linger lg{1, 0};  // close with RST
        ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        ::close(fd);
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_TRUE(wait_for([&] { return s.backend.completed() == 200; }, 5000ms));
  auto r = s.get("/health");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST(HttpE2E, StopFlagDrainsInFlightStreams) {
  TestServer s;
  s.backend.token_ms = 30ms;  // the stream lasts ~0.4 s
  auto stream = std::async(std::launch::async, [&] { return s.post("/v1/chat/completions", chat_body(R"("stream":true)")); });
  ASSERT_TRUE(wait_for([&] { return s.backend.running() == 1; }));
  s.stop = true;
  ASSERT_TRUE(wait_for([&] {
    auto h = s.get("/health");
    return h && h->status == 503;
  }));
  EXPECT_EQ(json::parse(s.get("/health")->body)["status"], "draining");
  expect_error(s.post("/v1/chat/completions", chat_body()), 503, "shutting down");
  auto r = stream.get();
  ASSERT_TRUE(r && r->status == 200);
  const Streamed st = parse_stream(r->body, true);
  EXPECT_EQ(st.content, kAnswer);  // the in-flight stream finished whole
  EXPECT_TRUE(st.done);
  EXPECT_TRUE(wait_for([&] { return s.returned.load(); }, 5000ms)) << "serve_http did not return";
}

TEST(HttpE2E, DrainTimeoutCancelsWhatStillRuns) {
  HttpOptions opt;
  opt.drain_timeout_s = 1;
  TestServer s(opt);
  s.backend.hold = true;  // never generates
  auto stream = std::async(std::launch::async, [&] { return s.post("/v1/chat/completions", chat_body(R"("stream":true)")); });
  ASSERT_TRUE(wait_for([&] { return s.backend.stats().queued == 1; }));
  s.stop = true;
  auto r = stream.get();
  ASSERT_TRUE(r && r->status == 200);
  const Streamed st = parse_stream(r->body, true);
  EXPECT_EQ(st.finish, "abort");
  EXPECT_TRUE(st.done);
  EXPECT_TRUE(wait_for([&] { return s.returned.load(); }, 5000ms));
  EXPECT_GT(s.backend.streams()[0]->cancels(), 0);
}

TEST(HttpE2E, BindFailureNamesTheAddress) {
  TestServer a;
  test::FakeBackend b(answer_ids(), eos());
  HttpOptions opt;
  opt.host = "127.0.0.1";
  opt.port = a.port();  // taken
  std::atomic<bool> stop{false}, ready{true};
  try {
    serve_http(b, tok(), opt, stop, ready);
    ADD_FAILURE() << "bound a port in use";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(a.port())), std::string::npos) << e.what();
  }
}

TEST(HttpE2E, ModelsTokenizeDetokenizeMetrics) {
  TestServer s;
  json j = json::parse(s.get("/v1/models")->body);
  EXPECT_EQ(j["object"], "list");
  EXPECT_EQ(j["data"][0]["id"], "dsv4-test");
  EXPECT_EQ(j["data"][0]["max_model_len"], 4096);
  EXPECT_EQ(json::parse(s.get("/v1/models/dsv4-test")->body)["id"], "dsv4-test");
  expect_error(s.get("/v1/models/other"), 404, "does not exist");
  j = json::parse(s.post("/tokenize", R"({"prompt":"Hello world"})")->body);
  EXPECT_EQ(j["tokens"].get<std::vector<int32_t>>(), tok().encode("Hello world"));
  EXPECT_EQ(j["count"], j["tokens"].size());
  j = json::parse(s.post("/tokenize", kChat + "}")->body);
  EXPECT_EQ(j["tokens"][0], *tok().token_id(chat::kBos));
  j = json::parse(s.post("/detokenize", json{{"tokens", tok().encode("Hello world")}}.dump())->body);
  EXPECT_EQ(j["prompt"], "Hello world");
  ASSERT_EQ(s.post("/v1/chat/completions", chat_body())->status, 200);
  const std::string m = s.get("/metrics")->body;
  for (const char* line : {"dsv4_requests_total{endpoint=\"chat\",outcome=\"stop\"} 1", "dsv4_time_to_first_token_seconds_count 1",
                           "dsv4_kv_blocks_total 16", "dsv4_requests_running 0"})
    EXPECT_NE(m.find(line), std::string::npos) << line << "\n" << m;
}

TEST(HttpE2E, LoadTwoHundredRequestsSixteenConcurrent) {
  TestServer s;
  s.backend.slots = 8;
  s.backend.token_ms = 1ms;
  std::atomic<int> next{0}, ok{0};
  std::vector<std::thread> ts;
  std::mutex mu;
  std::vector<std::string> errors;
  for (int t = 0; t < 16; ++t)
    ts.emplace_back([&] {
      for (int i; (i = next.fetch_add(1)) < 200;) {
        const bool stream = i % 2;
        const bool chat = i % 3;
        auto r = chat ? s.post("/v1/chat/completions", chat_body(stream ? R"("stream":true)" : ""))
                      : s.post("/v1/completions", std::string(R"({"prompt":"x","max_tokens":64)") + (stream ? R"(,"stream":true})" : "}"));
        std::string text;
        if (r && r->status == 200)
          text = stream ? parse_stream(r->body, chat).content
                        : chat ? json::parse(r->body)["choices"][0]["message"]["content"].get<std::string>()
                               : json::parse(r->body)["choices"][0]["text"].get<std::string>();
        if (text == kAnswer) {
          ++ok;
        } else {
          std::lock_guard<std::mutex> lk(mu);
          errors.push_back("request " + std::to_string(i) + ": " + (r ? std::to_string(r->status) + " " + r->body : "no response"));
        }
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok.load(), 200) << (errors.empty() ? "" : errors[0]);
  EXPECT_TRUE(wait_for([&] { return s.backend.completed() == 200; }));
  const std::string m = s.get("/metrics")->body;
  EXPECT_NE(m.find("dsv4_e2e_request_latency_seconds_count 200"), std::string::npos) << m;
}

// A command's stdout and exit status.
std::pair<std::string, int> run(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return {"", -1};
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int st = ::pclose(p);
  return {out, WIFEXITED(st) ? WEXITSTATUS(st) : -1};
}

TEST(HttpE2E, Curl) {
  if (run("command -v curl").second != 0) GTEST_SKIP() << "curl is not installed";
  TestServer s;
  const std::string url = "http://127.0.0.1:" + std::to_string(s.port());
  auto [out, rc] = run("curl -sS " + url + "/v1/chat/completions -H 'Content-Type: application/json' -d '" + chat_body() + "'");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(json::parse(out)["choices"][0]["message"]["content"], kAnswer);
  std::tie(out, rc) = run("curl -sS -N " + url + "/v1/chat/completions -H 'Content-Type: application/json' -d '" +
                          chat_body(R"("stream":true)") + "'");
  ASSERT_EQ(rc, 0) << out;
  const Streamed st = parse_stream(out, true);
  EXPECT_EQ(st.content, kAnswer);
  EXPECT_TRUE(st.done);
  std::tie(out, rc) = run("curl -sS -o /dev/null -w '%{http_code}' " + url + "/v1/completions -d '{\"prompt\":7}'");
  EXPECT_EQ(out, "400");
  std::tie(out, rc) = run("curl -sS -w ' %{http_code}' " + url + "/health");
  EXPECT_EQ(out, R"({"status":"ok"} 200)");
}

TEST(HttpE2E, OpenAINodeSdk) {
  const std::string dir = DSV4_NODE_CLIENT_DIR;
  std::ifstream skip(dir + "/SKIP");
  if (skip) {
    std::stringstream why;
    why << skip.rdbuf();
    GTEST_SKIP() << "OpenAI Node SDK not installed: " << why.str();
  }
  if (!std::ifstream(dir + "/node_modules/openai/package.json"))
    GTEST_SKIP() << "OpenAI Node SDK not installed: run `ctest -R serving.npm_ci` (tests/serving/client/setup.sh) first";
  TestServer s;
  const std::string cmd = "node " + dir + "/openai_client_test.mjs http://127.0.0.1:" + std::to_string(s.port()) +
                          "/v1 dsv4-test '" + kAnswer + "' " + std::to_string(answer_ids().size()) + " 2>&1";
  const auto [out, rc] = run(cmd);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("all checks passed"), std::string::npos) << out;
}

}  // namespace
}  // namespace dsv4
