#include "runtime/eval.hpp"

#include <sys/resource.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "layout.hpp"
#include "model.hpp"
#include "plan.hpp"
#include "plan/error.hpp"
#include "runtime/engine.hpp"
#include "runtime/npy.hpp"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

std::vector<int32_t> read_ids(const std::string& path, const char* what) {
  const npy::Array a = npy::read(path);
  if (a.shape.size() != 1) throw Error(path + ": " + what + " must be 1-D, got shape " + a.shape_str());
  if (a.descr == "<i8") {
    const auto v = a.as<int64_t>(path);
    return {v.begin(), v.end()};
  }
  if (a.descr != "<i4") throw Error(path + ": " + what + " must be int32 or int64, got " + a.descr);
  return a.as<int32_t>(path);
}

// "L03.attn.kv" -> "L3.attn.kv" (the golden dumps' layer names); other names are unchanged.
std::string golden_name(const std::string& name) {
  if (name.size() > 4 && name[0] == 'L' && name[3] == '.' && std::isdigit(static_cast<unsigned char>(name[1])))
    return "L" + std::to_string(std::stoi(name.substr(1, 2))) + name.substr(3);
  return name;
}

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

// Index lists use our KV-row space, not the reference's; they are traced but never injected.
bool injectable(const std::string& g, bool ops) {
  if (ends_with(g, "topk_idxs") || ends_with(g, "indexer.scores")) return false;
  return ops || ends_with(g, ".block_out");
}

// Per-op trace and golden injection for one step of one request (slab rows [0, n)).
class StepHook {
 public:
  StepHook(Arena& arena, const EvalOptions& opt, const std::string& step, int64_t n, int64_t last_pos)
      : arena_(arena), n_(n), last_pos_(last_pos) {
    if (!opt.trace_out.empty()) {
      trace_dir_ = opt.trace_out + "/" + opt.prefix + step;
      fs::create_directories(trace_dir_);
    }
    if (!opt.inject_from.empty()) {
      const std::string d = opt.inject_from + "/" + opt.prefix + step;
      if (fs::is_directory(d)) inject_dir_ = d;
    }
    inject_ops_ = opt.inject_ops;
  }
  bool active() const { return !trace_dir_.empty() || !inject_dir_.empty(); }

  void operator()(uint32_t op_index) {
    for (uint32_t b : gen::kOps[op_index].out) {
      if (b == plan::kNone) break;
      const plan::Buffer& buf = gen::kBuffers[b];
      const std::string g = golden_name(buf.name);
      if (buf.lifetime != plan::Lifetime::Step) {
        // Caches are traced whole after the op that fills them (no golden counterpart; for debugging).
        if (!trace_dir_.empty() && buf.dtype == plan::DType::BF16 && gen::kOps[op_index].kind == plan::OpKind::Compressor)
          write(trace_dir_ + "/" + g + ".npy", buf.dtype, arena_.data(b), {buf.shape[0], buf.shape[1]});
        continue;
      }
      std::vector<int64_t> shape = {1, n_};
      for (int d = 1; d < buf.ndim; ++d) shape.push_back(buf.shape[d]);
      if (g.find(".gate.") != std::string::npos)
        shape.erase(shape.begin());  // gate tensors are dumped without the batch dim
      if (ends_with(g, "indexer.scores")) shape = {1, n_, (last_pos_ + 1) / 4};
      int64_t count = 1;
      for (int64_t s : shape) count *= s;
      uint8_t* data = arena_.data(b);
      if (!trace_dir_.empty()) write(trace_dir_ + "/" + g + ".npy", buf.dtype, data, shape);
      if (!inject_dir_.empty() && injectable(g, inject_ops_) && fs::exists(inject_dir_ + "/" + g + ".npy"))
        inject(inject_dir_ + "/" + g + ".npy", buf, data, count);
    }
  }

 private:
  static void write(const std::string& path, plan::DType t, const uint8_t* data, const std::vector<int64_t>& shape) {
    switch (t) {
      case plan::DType::BF16: npy::write(path, reinterpret_cast<const uint16_t*>(data), shape); break;
      case plan::DType::F32: npy::write(path, reinterpret_cast<const float*>(data), shape); break;
      case plan::DType::I32: npy::write(path, reinterpret_cast<const int32_t*>(data), shape); break;
      default: break;  // FP8 codes and packed rows have no golden counterpart
    }
  }
  static void inject(const std::string& path, const plan::Buffer& buf, uint8_t* data, int64_t count) {
    const npy::Array a = npy::read(path);
    const char* want = buf.dtype == plan::DType::BF16 ? "<u2" : buf.dtype == plan::DType::F32 ? "<f4" : "<i4";
    if (a.descr != want || a.numel() != count)
      throw Error(path + ": cannot inject into " + buf.name + ": expected " + want + " with " + std::to_string(count) +
                  " elements, got " + a.descr + " " + a.shape_str());
    std::memcpy(data, a.bytes.data(), a.bytes.size());
  }

  Arena& arena_;
  int64_t n_, last_pos_;
  std::string trace_dir_, inject_dir_;
  bool inject_ops_ = false;
};

int64_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return int64_t(u.ru_maxrss) * 1024;
}

}  // namespace

int run_eval(const Comm& comm, const EvalOptions& opt) {
  const bool owner = comm.rank() == 0;  // attention DP: the request lives on rank 0, the others run empty steps
  const std::vector<int32_t> prompt = read_ids(opt.input_ids, "input ids");
  const std::vector<int32_t> forced = opt.forced_tokens.empty() ? std::vector<int32_t>{} : read_ids(opt.forced_tokens, "forced tokens");
  if (prompt.empty()) throw Error(opt.input_ids + ": empty prompt");
  const int64_t steps = opt.forced_tokens.empty() ? opt.decode_steps : int64_t(forced.size()) - 1;
  if (steps < 0) throw Error(opt.forced_tokens + ": needs at least one token");
  const int64_t chunk = opt.chunk > 0 ? std::min(opt.chunk, gen::kMaxTokensPerStep) : gen::kMaxTokensPerStep;
  if ((!opt.trace_out.empty() || !opt.inject_from.empty()) && int64_t(prompt.size()) > chunk)
    throw Error("--trace-out / --inject-from need the prompt (" + std::to_string(prompt.size()) +
                " tokens) in one prefill step; the slab holds " + std::to_string(chunk));

  Engine engine(comm, opt.weights, opt.verify_checksums);
  const int32_t slot = owner ? engine.start_request() : -1;
  std::vector<float> logits;  // [1 + steps, vocab] on the owner
  std::vector<int32_t> tokens;
  auto keep_row = [&]() {
    const auto row = engine.logits(0);
    logits.insert(logits.end(), row.begin(), row.end());
    tokens.push_back(engine.greedy_token(0));
  };

  const double t0 = comm.wtime();
  double comm_s = 0;
  // Prefill, in chunks of at most `chunk` tokens; only the last chunk asks for logits.
  for (int64_t s = 0; s < int64_t(prompt.size()); s += chunk) {
    const int64_t len = std::min<int64_t>(chunk, int64_t(prompt.size()) - s);
    const bool last = s + len == int64_t(prompt.size());
    std::vector<StepWork> work;
    if (owner) work.push_back({slot, s, std::span(prompt).subspan(size_t(s), size_t(len)), last});
    StepHook hook(engine.arena(), opt, "prefill", owner ? len : 0, s + len - 1);
    engine.step(work, owner && hook.active() ? Executor::OpHook(std::ref(hook)) : Executor::OpHook{});
    comm_s += engine.executor().last_comm_seconds();
    if (owner && last) keep_row();
  }
  const double ttft = comm.wtime() - t0;

  const double t1 = comm.wtime();
  for (int64_t i = 1; i <= steps; ++i) {
    const int32_t tok = forced.empty() ? tokens.back() : forced[size_t(i - 1)];
    const int64_t pos = int64_t(prompt.size()) + i - 1;
    std::vector<StepWork> work;
    const std::vector<int32_t> one = {tok};
    if (owner) work.push_back({slot, pos, one, true});
    StepHook hook(engine.arena(), opt, "decode" + std::to_string(i - 1), owner ? 1 : 0, pos);
    engine.step(work, owner && hook.active() ? Executor::OpHook(std::ref(hook)) : Executor::OpHook{});
    comm_s += engine.executor().last_comm_seconds();
    if (owner) keep_row();
  }
  const double decode_s = comm.wtime() - t1;

  if (owner) {
    npy::write(opt.logits_out, logits.data(), {1 + steps, gen::kVocabSize});
    std::string tok_path = opt.tokens_out;
    if (tok_path.empty() && forced.empty()) {
      tok_path = opt.logits_out;
      if (ends_with(tok_path, ".npy")) tok_path.resize(tok_path.size() - 4);
      tok_path += ".tokens.npy";
    }
    if (!tok_path.empty()) npy::write(tok_path, tokens.data(), {int64_t(tokens.size())});
    nlohmann::ordered_json r;
    r["config"] = gen::kConfigName;
    r["ranks"] = comm.size();
    r["prompt_tokens"] = prompt.size();
    r["decode_steps"] = steps;
    r["ttft_s"] = ttft;
    r["prefill_tokens_per_s"] = double(prompt.size()) / std::max(ttft, 1e-9);
    r["decode_tokens_per_s"] = steps ? double(steps) / std::max(decode_s, 1e-9) : 0.0;
    r["collective_s"] = comm_s;
    r["arena_bytes"] = gen::kArenaBytes;
    r["peak_rss_bytes"] = peak_rss_bytes();
    std::fprintf(stderr, "eval: %zu prompt tokens, %lld decode steps on %d rank(s): TTFT %.3f s, decode %.2f tok/s, "
                 "collectives %.3f s, arena %.1f MiB, peak RSS %.1f MiB\n",
                 prompt.size(), (long long)steps, comm.size(), ttft, r["decode_tokens_per_s"].get<double>(), comm_s,
                 gen::kArenaBytes / 1048576.0, peak_rss_bytes() / 1048576.0);
    if (!opt.report_json.empty()) std::ofstream(opt.report_json) << r.dump(2) << "\n";
  }
  return 0;
}

}  // namespace dsv4
