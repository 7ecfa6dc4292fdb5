// Arena planning (TFLite-Micro style): persistent buffers first, then step buffers placed greedily
// (largest first, lowest offset free for its live range). An independent verifier re-checks the result.
#include <algorithm>
#include <numeric>
#include <sstream>

#include <xxhash.h>

#include "plan/error.hpp"
#include "tools/config/config_json.hpp"
#include "tools/plangen/program.hpp"

namespace dsv4::plangen {
namespace {

int64_t align_up(int64_t v, int64_t a) { return (v + a - 1) / a * a; }

bool lives_overlap(const BufferSpec& a, const BufferSpec& b) {
  if (a.lifetime == plan::Lifetime::Persistent || b.lifetime == plan::Lifetime::Persistent) return true;
  return a.first_op <= b.last_op && b.first_op <= a.last_op;
}

}  // namespace

void compute_liveness(Program& p) {
  for (int32_t i = 0; i < int32_t(p.ops.size()); ++i) {
    auto touch = [&](uint32_t id) {
      BufferSpec& b = p.buffers.at(id);
      if (b.lifetime == plan::Lifetime::Persistent) return;
      if (b.first_op < 0) b.first_op = i;
      b.last_op = i;
    };
    for (uint32_t id : p.ops[i].in) touch(id);
    for (uint32_t id : p.ops[i].out) touch(id);
  }
  for (const auto& b : p.buffers)
    if (b.lifetime == plan::Lifetime::Step && b.first_op < 0)
      throw Error("plangen: buffer " + b.name + " is declared but no op uses it");
}

void plan_arena(Program& p) {
  int64_t off = 0;
  for (auto& b : p.buffers)
    if (b.lifetime == plan::Lifetime::Persistent) {
      off = align_up(off, b.align);
      b.offset = off;
      off += b.bytes;
    }
  p.persistent_bytes = off = align_up(off, 4096);

  std::vector<size_t> order;
  for (size_t i = 0; i < p.buffers.size(); ++i)
    if (p.buffers[i].lifetime == plan::Lifetime::Step) order.push_back(i);
  // Largest first; ties by first use then name, so the layout is deterministic.
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const auto &x = p.buffers[a], &y = p.buffers[b];
    if (x.bytes != y.bytes) return x.bytes > y.bytes;
    if (x.first_op != y.first_op) return x.first_op < y.first_op;
    return x.name < y.name;
  });
  std::vector<size_t> placed;
  int64_t end = off;
  for (size_t i : order) {
    BufferSpec& b = p.buffers[i];
    // Occupied intervals of placed buffers whose live ranges overlap this one, by offset.
    std::vector<std::pair<int64_t, int64_t>> busy;
    for (size_t j : placed)
      if (lives_overlap(b, p.buffers[j])) busy.push_back({p.buffers[j].offset, p.buffers[j].offset + p.buffers[j].bytes});
    std::sort(busy.begin(), busy.end());
    int64_t cand = align_up(off, b.align);
    for (auto [lo, hi] : busy) {
      if (cand + b.bytes <= lo) break;
      cand = std::max(cand, align_up(hi, b.align));
    }
    b.offset = cand;
    end = std::max(end, cand + b.bytes);
    placed.push_back(i);
  }
  p.arena_bytes = align_up(end, 4096);
}

void verify_arena(const Program& p) {
  const auto& bs = p.buffers;
  for (const auto& b : bs) {
    if (b.offset < 0 || b.offset % b.align != 0 || b.offset + b.bytes > p.arena_bytes)
      throw Error("plangen arena verifier: buffer " + b.name + " at offset " + std::to_string(b.offset) +
                  " (" + std::to_string(b.bytes) + " bytes) is misaligned or outside the arena of " +
                  std::to_string(p.arena_bytes) + " bytes");
  }
  // Sweep by offset: any two buffers whose byte ranges intersect must have disjoint live ranges.
  std::vector<size_t> idx(bs.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return bs[a].offset < bs[b].offset; });
  for (size_t a = 0; a < idx.size(); ++a) {
    const BufferSpec& x = bs[idx[a]];
    for (size_t b = a + 1; b < idx.size() && bs[idx[b]].offset < x.offset + x.bytes; ++b) {
      const BufferSpec& y = bs[idx[b]];
      if (x.bytes == 0 || y.bytes == 0) continue;
      if (lives_overlap(x, y))
        throw Error("plangen arena verifier: live buffers overlap: " + x.name + " [" + std::to_string(x.offset) +
                    ", +" + std::to_string(x.bytes) + ") and " + y.name + " [" + std::to_string(y.offset) + ", +" +
                    std::to_string(y.bytes) + ")");
    }
  }
}

void assign_weight_offsets(Program& p) {
  int64_t rep = 0, rank = 0;
  for (auto& w : p.weights) {
    int64_t& off = w.file == plan::WeightFile::Replicated ? rep : rank;
    off = align_up(off, 64);
    w.offset = off;
    off += w.bytes;
  }
  p.replicated_weight_bytes = rep;
  p.rank_weight_bytes = rank;
}

std::string canonical_text(const Program& p) {
  std::ostringstream s;
  s << "dsv4 plan format " << plan::kFormatVersion << "\n" << shape_config_to_text(p.cfg);
  s << "arena " << p.arena_bytes << " persistent " << p.persistent_bytes << "\n";
  for (const auto& b : p.buffers) {
    s << "buffer " << b.name << " " << plan::dtype_name(b.dtype);
    for (auto d : b.shape) s << " " << d;
    s << " @" << b.offset << " a" << b.align << " " << int(b.lifetime) << " " << b.first_op << ".." << b.last_op << "\n";
  }
  for (const auto& w : p.weights) {
    s << "weight " << w.name << " " << plan::dtype_name(w.dtype);
    for (auto d : w.shape) s << " " << d;
    s << " f" << int(w.file) << " @" << w.offset << " s" << int(w.shard) << " L" << w.layer << " e" << w.expert_local << "\n";
  }
  for (const auto& o : p.ops) {
    s << "op " << int(o.kind) << " " << o.layer << " " << o.label << " in";
    for (auto i : o.in) s << " " << i;
    s << " out";
    for (auto i : o.out) s << " " << i;
    s << " w";
    for (auto i : o.w) s << " " << i;
    s << " p " << o.p.ratio << " " << o.p.dim << " " << o.p.rope_table << " " << o.p.flags << " " << o.p.eps << "\n";
  }
  return s.str();
}

uint64_t plan_hash(const Program& p) {
  const std::string t = canonical_text(p);
  return XXH3_64bits(t.data(), t.size());
}

}  // namespace dsv4::plangen
