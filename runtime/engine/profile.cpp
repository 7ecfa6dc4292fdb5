#include "runtime/engine/profile.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <string_view>

#include "model.hpp"
#include "plan.hpp"
#include "plan/error.hpp"
#include "weights.hpp"

namespace dsv4 {
namespace {

using plan::DType;
using plan::OpKind;

// Bytes of weight `id` plus its block scales (stored right after an FP8 / FP4 weight).
int64_t with_scales(uint32_t id) {
  const plan::Weight& w = gen::kWeights[id];
  int64_t b = w.bytes;
  if (w.dtype == DType::F8_E4M3 || w.dtype == DType::FP4_X2) {
    DSV4_ASSERT(id + 1 < gen::kNumWeights && std::string_view(gen::kWeights[id + 1].name).ends_with(".scale"),
                "a quantised weight is followed by its scale");
    b += gen::kWeights[id + 1].bytes;
  }
  return b;
}

// MACs of a linear with weight `id` for one row: out x in (FP4_X2 stores two values per byte).
double macs(uint32_t id) {
  const plan::Weight& w = gen::kWeights[id];
  return double(w.shape[0]) * double(w.shape[1]) * (w.dtype == DType::FP4_X2 ? 2.0 : 1.0);
}

std::vector<ProfileRow> sorted(std::map<std::string, ProfileRow> rows) {
  double total = 0;
  for (const auto& [k, r] : rows) total += r.seconds;
  std::vector<ProfileRow> out;
  for (auto& [k, r] : rows) {
    r.name = k;
    r.share = total > 0 ? r.seconds / total : 0;
    out.push_back(r);
  }
  std::stable_sort(out.begin(), out.end(), [](const ProfileRow& a, const ProfileRow& b) { return a.seconds > b.seconds; });
  return out;
}

template <class Key>
std::vector<ProfileRow> group(std::span<const double> s, Key key) {
  DSV4_ASSERT(s.size() == gen::kNumOps, "one time per plan op");
  std::map<std::string, ProfileRow> rows;
  for (uint32_t i = 0; i < gen::kNumOps; ++i) {
    ProfileRow& r = rows[key(gen::kOps[i])];
    r.seconds += s[i];
    ++r.ops;
  }
  return sorted(std::move(rows));
}

}  // namespace

PlanCost plan_cost() {
  PlanCost c;
  const int64_t D = gen::kHiddenSize, K = gen::kNumActivated;
  for (uint32_t i = 0; i < gen::kNumOps; ++i) {
    const plan::Op& op = gen::kOps[i];
    switch (op.kind) {
      case OpKind::Embed:
        c.bytes_rows += D * 2;  // the token's row
        continue;
      case OpKind::GateScores:
        if (op.p.flags & plan::kFlagHash) c.bytes_rows += K * 8;  // the token's tid2eid row
        else c.bytes_replicated += gen::kWeights[op.w[0]].bytes;  // the bias
        continue;
      case OpKind::Experts: {  // the k routed experts: w1, w2, w3 (FP4) and their scales, at slot 0
        int64_t one = 0;
        double m = 0;
        for (uint32_t j = 0; j < 6; j += 2) one += with_scales(op.w[0] + j), m += macs(op.w[0] + j);
        c.bytes_per_expert_sum += one;
        c.bytes_experts += K * one;
        c.flop_f32 += 2 * double(K) * m;
        continue;
      }
      case OpKind::LmHeadShard:  // every vocabulary row (all shards, padding excluded)
        c.bytes_lm_head += gen::kVocabSize * D * 2;
        c.flop_lm_head += 2.0 * double(gen::kVocabSize) * double(D);
        c.flop_f32 += 2.0 * double(gen::kVocabSize) * double(D);
        continue;
      default:
        break;
    }
    for (uint32_t id : op.w)
      if (id != plan::kNone) c.bytes_replicated += with_scales(id);
    switch (op.kind) {
      case OpKind::LinearFp8:
      case OpKind::LinearGroupedFp8w:
      case OpKind::LinearBf16:
        c.flop_f64 += 2 * macs(op.w[0]);
        break;
      case OpKind::SharedExpert:
        c.flop_f64 += 2 * (macs(op.w[0]) + macs(op.w[1]) + macs(op.w[2]));
        break;
      case OpKind::LinearF32:
      case OpKind::HcPre:
      case OpKind::HcHead:
        c.flop_f32 += 2 * macs(op.w[0]);
        break;
      default:
        break;
    }
  }
  c.bytes_token = c.bytes_rows + c.bytes_replicated + c.bytes_experts + c.bytes_lm_head;
  return c;
}

double PlanCost::step_bytes(int64_t tokens_per_rank, int64_t ranks) const {
  const double n = double(tokens_per_rank * ranks), E = double(gen::kNumExperts), k = double(gen::kNumActivated);
  const double distinct = E * (1 - std::pow(1 - k / E, n));
  const double rows_per_token = double(bytes_rows);
  return double(ranks) * double(bytes_replicated) + n * rows_per_token + distinct * double(bytes_per_expert_sum) +
         double(bytes_lm_head);
}


std::string layer_kind_name(int32_t layer) {
  if (layer < 0 || layer >= gen::kNumLayers) return "embed+head";
  const int32_t r = gen::kCompressRatio[layer];
  return r == 0 ? "window" : r == 4 ? "csa" : r == 128 ? "hca" : "ratio " + std::to_string(r);
}

std::vector<ProfileRow> profile_by_kind(std::span<const double> s) {
  return group(s, [](const plan::Op& op) { return std::string(plan::op_kind_name(op.kind)); });
}

std::vector<ProfileRow> profile_by_layer_kind(std::span<const double> s) {
  return group(s, [](const plan::Op& op) { return layer_kind_name(op.layer); });
}

std::vector<ProfileRow> profile_by_op(std::span<const double> s) {
  return group(s, [](const plan::Op& op) { return std::string(op.label); });
}

namespace {
nlohmann::ordered_json rows_json(const std::vector<ProfileRow>& rows, size_t top) {
  auto a = nlohmann::ordered_json::array();
  for (size_t i = 0; i < rows.size() && i < top; ++i)
    a.push_back({{"name", rows[i].name}, {"seconds", rows[i].seconds}, {"share", rows[i].share}, {"ops", rows[i].ops}});
  return a;
}
}  // namespace

std::vector<double> profile_mean_over_ranks(const Comm& comm, std::span<const double> s) {
  const int P = comm.size();
  std::vector<double> all(size_t(P) * s.size()), mean(s.size(), 0.0);
  comm.allgather(s.data(), int64_t(s.size() * sizeof(double)), all.data());
  for (size_t k = 0; k < s.size(); ++k) {
    for (int r = 0; r < P; ++r) mean[k] += all[size_t(r) * s.size() + k];
    mean[k] /= P;
  }
  return mean;
}

void print_profile(std::FILE* out, const char* title, std::span<const double> s, int64_t steps) {
  double total = 0;
  for (double x : s) total += x;
  if (total <= 0) return;
  std::fprintf(out, "\nprofile: %s (%lld profiled steps, %.3f s, mean over ranks)\n", title, (long long)steps, total);
  std::fprintf(out, "  by layer kind:");
  for (const auto& r : profile_by_layer_kind(s)) std::fprintf(out, "  %s %.1f%%", r.name.c_str(), 100 * r.share);
  std::fprintf(out, "\n  %-20s %6s %10s %5s    %-28s %6s\n", "op kind", "share", "ms/step", "ops", "op", "share");
  const auto kinds = profile_by_kind(s), ops = profile_by_op(s);
  for (size_t i = 0; i < 12 && (i < kinds.size() || i < ops.size()); ++i) {
    if (i < kinds.size() && kinds[i].seconds > 0)
      std::fprintf(out, "  %-20s %5.1f%% %10.3f %5lld", kinds[i].name.c_str(), 100 * kinds[i].share,
                   1e3 * kinds[i].seconds / double(std::max<int64_t>(steps, 1)), (long long)kinds[i].ops);
    else
      std::fprintf(out, "  %-20s %6s %10s %5s", "", "", "", "");
    if (i < ops.size()) std::fprintf(out, "    %-28s %5.1f%%", ops[i].name.c_str(), 100 * ops[i].share);
    std::fprintf(out, "\n");
  }
}

nlohmann::ordered_json profile_json(std::span<const double> s) {
  return {{"by_kind", rows_json(profile_by_kind(s), 64)},
          {"by_layer_kind", rows_json(profile_by_layer_kind(s), 64)},
          {"top_ops", rows_json(profile_by_op(s), 20)}};
}

}  // namespace dsv4
