#include "tools/checkpoint/synth.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string_view>

#include <nlohmann/json.hpp>

#include "kernels/numerics.hpp"
#include "plan/error.hpp"
#include "plan/hf_manifest.hpp"
#include "tools/config/hf_config.hpp"
#include "tools/checkpoint/safetensors.hpp"

namespace dsv4 {
namespace fs = std::filesystem;

namespace {

// ---- deterministic PRNG: splitmix64 seeding, xoshiro256** streams ------------------------------------

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

struct Xoshiro256 {
  uint64_t s[4];
  explicit Xoshiro256(uint64_t seed) {
    for (auto& w : s) w = splitmix64(seed);
  }
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t next() {
    const uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
  }
};

// One independent stream per (tensor, row): values do not depend on chunking, sharding or threads.
uint64_t tensor_seed(uint64_t seed, std::string_view name) {
  uint64_t x = seed ^ fnv1a64(name);
  return splitmix64(x);
}
Xoshiro256 row_stream(uint64_t tseed, uint64_t row) {
  uint64_t x = tseed + row * 0xd1b54a32d192ed03ull;
  return Xoshiro256(splitmix64(x));
}

// 8 interleaved xoshiro256** lanes (structure of arrays, so the compiler vectorizes next()).
struct Lanes8 {
  uint64_t s0[8], s1[8], s2[8], s3[8];
  explicit Lanes8(Xoshiro256& g) {
    for (int l = 0; l < 8; ++l) {
      Xoshiro256 lane(g.next());
      s0[l] = lane.s[0], s1[l] = lane.s[1], s2[l] = lane.s[2], s3[l] = lane.s[3];
    }
  }
  void next(uint64_t* out) {
    for (int l = 0; l < 8; ++l) {
      const uint64_t a = s1[l] * 5, r = ((a << 7) | (a >> 57)) * 9, t = s1[l] << 17;
      s2[l] ^= s0[l];
      s3[l] ^= s1[l];
      s1[l] ^= s2[l];
      s0[l] ^= s3[l];
      s2[l] ^= t;
      s3[l] = (s3[l] << 45) | (s3[l] >> 19);
      out[l] = r;
    }
  }
};

inline float f_as(uint32_t u) { return std::bit_cast<float>(u); }
inline uint32_t u_as(float f) { return std::bit_cast<uint32_t>(f); }

// ln(x) for normal x > 0 from basic IEEE operations only (no libm: identical on every platform and
// vectorizable): x = 2^e * m, m in [sqrt(1/2), sqrt(2)), minimax polynomial in f = m - 1 (rel. err ~1e-7).
inline float log_poly(float x) {
  const uint32_t b = u_as(x);
  int32_t e = int32_t((b >> 23) & 0xff) - 127;
  float m = f_as((b & 0x7fffffu) | 0x3f800000u);  // [1, 2)
  const bool big = m > 1.41421356f;
  m = big ? m * 0.5f : m;
  e = big ? e + 1 : e;
  const float f = m - 1.0f, z = f * f;
  float p = 7.0376836292e-2f;
  p = p * f - 1.1514610310e-1f;
  p = p * f + 1.1676998740e-1f;
  p = p * f - 1.2420140846e-1f;
  p = p * f + 1.4249322787e-1f;
  p = p * f - 1.6668057665e-1f;
  p = p * f + 2.0000714765e-1f;
  p = p * f - 2.4999993993e-1f;
  p = p * f + 3.3333331174e-1f;
  const float y = f * z * p - 0.5f * z + f;
  return y + float(e) * 0.693147180559945f;
}

// sin and cos of 2*pi*u for u in [0, 1): quadrant q = round(4u), phase phi = (4u - q) * pi/2 in
// [-pi/4, pi/4] (4u - q is exact), minimax polynomials on that interval.
inline void sincos_2pi(float u, float& sn, float& cs) {
  const float t = 4.0f * u;
  const float qf = float(int32_t(t + 0.5f));
  const float phi = (t - qf) * 1.57079632679f, z = phi * phi;
  const float s = phi + phi * z * (-1.6666654611e-1f + z * (8.3321608736e-3f + z * -1.9515295891e-4f));
  const float c = 1.0f - 0.5f * z + z * z * (4.166664568298827e-2f + z * (-1.388731625493765e-3f + z * 2.443315711809948e-5f));
  const int32_t q = int32_t(qf) & 3;
  // quadrant q: (sin, cos) = (s, c), (c, -s), (-s, -c), (-c, s)
  sn = q == 0 ? s : q == 1 ? c : q == 2 ? -s : -c;
  cs = q == 0 ? c : q == 1 ? -s : q == 2 ? -c : s;
}

// Box–Muller on 24-bit uniforms (u1 in (0, 1], u2 in [0, 1)), both outputs used; 16 values per step of
// 8 lanes. Not std::normal_distribution (implementation-defined) and not libm: basic IEEE ops and sqrt
// only, so the values are the same on every platform and ISA (built with -ffp-contract=off).
// |z| <= sqrt(48 ln 2) = 5.77.
void fill_normal(Xoshiro256& g, float* out, int64_t n, float mean, float sd) {
  Lanes8 L(g);
  uint64_t r[8];
  float z[16];
  for (int64_t i = 0; i < n; i += 16) {
    L.next(r);
    for (int l = 0; l < 8; ++l) {
      const float u1 = float(uint32_t(r[l] >> 40) + 1u) * 0x1p-24f;
      const float u2 = float(uint32_t(r[l] >> 16) & 0xffffffu) * 0x1p-24f;
      const float rad = std::sqrt(-2.0f * log_poly(u1));
      float sn, cs;
      sincos_2pi(u2, sn, cs);
      z[l] = mean + sd * (rad * cs);
      z[l + 8] = mean + sd * (rad * sn);
    }
    if (n - i >= 16) std::memcpy(out + i, z, sizeof z);
    else std::memcpy(out + i, z, size_t(n - i) * sizeof(float));
  }
}

void fill_uniform(Xoshiro256& g, float* out, int64_t n, float lo, float hi) {
  for (int64_t i = 0; i < n; ++i) out[i] = lo + (hi - lo) * (float(g.next() >> 40) * 0x1p-24f);
}

// `k` distinct ids in [0, n): partial Fisher–Yates (multiply-shift range reduction).
void distinct_ids(Xoshiro256& g, int64_t* out, int64_t k, int64_t n, std::vector<int64_t>& perm) {
  perm.resize(size_t(n));
  for (int64_t e = 0; e < n; ++e) perm[size_t(e)] = e;
  for (int64_t j = 0; j < k; ++j) {
    const uint64_t span = uint64_t(n - j);
    const int64_t pick = j + int64_t(((g.next() >> 32) * span) >> 32);
    std::swap(perm[size_t(j)], perm[size_t(pick)]);
    out[j] = perm[size_t(j)];
  }
}

// ---- value recipes ----------------------------------------------------------------------------------

struct Dist {
  enum Kind { Normal, Uniform, Distinct } kind;
  float a, b;  // Normal: mean, sd; Uniform: [a, b)
};


Dist dist_for(const HfTensor& t) {
  const std::string_view n = t.name;
  const float in = float(t.in > 0 ? t.in : t.shape.back());
  switch (t.role) {
    case HfRole::Fp8Weight:
    case HfRole::Fp8Scale:
    case HfRole::Fp4Weight:
    case HfRole::Fp4Scale: return {Dist::Normal, 0.f, 1.f / std::sqrt(in)};
    case HfRole::I64: return {Dist::Distinct, 0, 0};
    case HfRole::Bf16:
      if (n == "embed.weight") return {Dist::Normal, 0.f, 1.f};
      if (n == "head.weight") return {Dist::Normal, 0.f, 4.f / std::sqrt(in)};  // logits std ~4
      if (n.ends_with("norm.weight")) return {Dist::Normal, 1.f, 0.1f};
      return {Dist::Normal, 0.f, 1.f / std::sqrt(in)};  // gate.weight, compressor wkv/wgate, weights_proj
    case HfRole::F32:
      if (n.ends_with("_fn")) return {Dist::Normal, 0.f, 1.f / std::sqrt(in)};
      if (n.ends_with("_base")) return {Dist::Normal, 0.f, 0.5f};
      if (n.ends_with("_scale")) return {Dist::Uniform, 0.25f, 1.f};
      if (n.ends_with("attn_sink")) return {Dist::Normal, 0.f, 0.5f};
      if (n.ends_with(".ape")) return {Dist::Normal, 0.f, 0.5f};
      if (n.ends_with("gate.bias")) return {Dist::Normal, 0.f, 0.1f};
      break;
  }
  throw Error("synth: no value recipe for tensor '" + t.name + "' (" + hf_role_name(t.role) + ")");
}

// ---- generation -------------------------------------------------------------------------------------

constexpr uint64_t kChunkBytes = 32ull << 20;  // target size of one generated chunk
// Chunks below this many values run on one thread: OpenMP start-up and spin-waiting cost more than
// they save on small tensors (and a lot on an oversubscribed machine).
constexpr int64_t kParallelMin = 1 << 20;

struct Ctx {
  st::SafetensorsWriter* w;
  uint64_t seed;
  int64_t n_experts = 0;
  uint64_t done = 0, total = 0;
  const SynthOptions* opt;

  void put(const std::string& name, uint64_t off, const std::vector<uint8_t>& buf, size_t n) {
    w->write(name, off, std::span<const uint8_t>(buf.data(), n));
    done += n;
    if (opt->progress) opt->progress(done, total);
  }
};

// BF16 / F32 / I64 tensor: rows of the last dim (a 1-D tensor is one row).
void gen_plain(Ctx& cx, const HfTensor& t) {
  const Dist d = dist_for(t);
  const int64_t cols = t.shape.back(), rows = t.numel() / std::max<int64_t>(cols, 1);
  const int64_t es = hf_dtype_size(t.dtype), row_bytes = cols * es;
  const int64_t step = std::max<int64_t>(1, int64_t(kChunkBytes) / std::max<int64_t>(row_bytes, 1));
  const uint64_t ts = tensor_seed(cx.seed, t.name);
  std::vector<uint8_t> buf;
  for (int64_t r0 = 0; r0 < rows; r0 += step) {
    const int64_t r1 = std::min(rows, r0 + step);
    buf.resize(size_t((r1 - r0) * row_bytes));
#pragma omp parallel if ((r1 - r0) * cols >= kParallelMin)
    {
      std::vector<float> v(static_cast<size_t>(cols));
      std::vector<int64_t> perm;
#pragma omp for schedule(static)
      for (int64_t r = r0; r < r1; ++r) {
        Xoshiro256 g = row_stream(ts, uint64_t(r));
        uint8_t* dst = buf.data() + (r - r0) * row_bytes;
        if (d.kind == Dist::Distinct) {
          distinct_ids(g, reinterpret_cast<int64_t*>(dst), cols, cx.n_experts, perm);
          continue;
        }
        if (d.kind == Dist::Normal) fill_normal(g, v.data(), cols, d.a, d.b);
        else fill_uniform(g, v.data(), cols, d.a, d.b);
        if (t.dtype == HfDtype::F32) {
          std::memcpy(dst, v.data(), size_t(row_bytes));
        } else {
          auto* out = reinterpret_cast<uint16_t*>(dst);
          for (int64_t c = 0; c < cols; ++c) out[c] = f32_to_bf16(v[size_t(c)]).bits;
        }
      }
    }
    cx.put(t.name, uint64_t(r0 * row_bytes), buf, buf.size());
  }
}

// numerics.hpp f32_to_e2m1 without branches (vectorizable), for finite x: RNE on the e2m1 grid after a
// clamp to ±6 (the tests compare it with f32_to_e2m1).
inline uint8_t e2m1_code(float x) {
  const float a = std::fabs(x);
  const int c = int(a > 0.25f) + int(a >= 0.75f) + int(a > 1.25f) + int(a >= 1.75f) + int(a > 2.5f) +
                int(a >= 3.5f) + int(a > 5.0f);
  return uint8_t(c | ((u_as(x) >> 28) & 8));
}

// e8m0 byte of the power-of-two scale 2^ceil(log2(amax / qmax)).
inline int scale_exp(float amax, float qmax) {
  const float t = std::max(amax, 0x1p-100f) / qmax;
  return ceil_log2_bits(t);
}

// FP8 linear: weight [out, in] e4m3 + scale [ceil(out/128), ceil(in/128)], generated once per 128-row
// band and written to both tensors.
void gen_fp8(Ctx& cx, const HfTensor& wt, const HfTensor& sc) {
  const Dist d = dist_for(wt);
  const int64_t O = wt.out, I = wt.in, SO = sc.shape[0], SI = sc.shape[1];
  const uint64_t ts = tensor_seed(cx.seed, wt.name);
  const int64_t bands = std::max<int64_t>(1, int64_t(kChunkBytes) / (128 * I * 4));  // 128-row bands per chunk
  std::vector<float> f;
  std::vector<uint8_t> wbuf, sbuf;
  for (int64_t b0 = 0; b0 < SO; b0 += bands) {
    const int64_t b1 = std::min(SO, b0 + bands), r0 = b0 * 128, r1 = std::min(O, b1 * 128);
    f.resize(size_t((r1 - r0) * I));
    wbuf.resize(f.size());
    sbuf.resize(size_t((b1 - b0) * SI));
    const bool par = (r1 - r0) * I >= kParallelMin;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t r = r0; r < r1; ++r) {
      Xoshiro256 g = row_stream(ts, uint64_t(r));
      fill_normal(g, f.data() + (r - r0) * I, I, d.a, d.b);
    }
#pragma omp parallel for schedule(static) collapse(2) if (par)
    for (int64_t bo = b0; bo < b1; ++bo)
      for (int64_t bi = 0; bi < SI; ++bi) {
        const int64_t ra = bo * 128, rb = std::min(O, ra + 128), ca = bi * 128, cb = std::min(I, ca + 128);
        float amax = 0;
        for (int64_t r = ra; r < rb; ++r)
          for (int64_t c = ca; c < cb; ++c) amax = std::max(amax, std::fabs(f[size_t((r - r0) * I + c)]));
        const int e = scale_exp(amax, 448.f);
        sbuf[size_t((bo - b0) * SI + bi)] = uint8_t(e + 127);
        const float inv = std::ldexp(1.0f, -e);  // exact: dividing by a power of two
        for (int64_t r = ra; r < rb; ++r)
          for (int64_t c = ca; c < cb; ++c) {
            const size_t i = size_t((r - r0) * I + c);
            wbuf[i] = f32_to_e4m3(f[i] * inv);
          }
      }
    cx.put(wt.name, uint64_t(r0 * I), wbuf, wbuf.size());
    cx.put(sc.name, uint64_t(b0 * SI), sbuf, sbuf.size());
  }
}

// FP4 linear (routed experts): weight [out, in/2] packed e2m1 (low nibble = even element) + scale
// [out, in/32] e8m0, row by row.
void gen_fp4(Ctx& cx, const HfTensor& wt, const HfTensor& sc) {
  const Dist d = dist_for(wt);
  const int64_t O = wt.out, I = wt.in, WB = I / 2, SB = I / 32;
  const uint64_t ts = tensor_seed(cx.seed, wt.name);
  const int64_t step = std::max<int64_t>(1, int64_t(kChunkBytes) / (I * 4));
  std::vector<uint8_t> wbuf, sbuf;
  for (int64_t r0 = 0; r0 < O; r0 += step) {
    const int64_t r1 = std::min(O, r0 + step);
    wbuf.resize(size_t((r1 - r0) * WB));
    sbuf.resize(size_t((r1 - r0) * SB));
#pragma omp parallel if ((r1 - r0) * I >= kParallelMin)
    {
      std::vector<float> v(static_cast<size_t>(I));
#pragma omp for schedule(static)
      for (int64_t r = r0; r < r1; ++r) {
        Xoshiro256 g = row_stream(ts, uint64_t(r));
        fill_normal(g, v.data(), I, d.a, d.b);
        uint8_t* wrow = wbuf.data() + (r - r0) * WB;
        uint8_t* srow = sbuf.data() + (r - r0) * SB;
        for (int64_t blk = 0; blk < SB; ++blk) {
          const float* x = v.data() + blk * 32;
          uint32_t abits = 0;  // max |x| via the bits: for non-NaN floats |x| orders like its bit pattern
          for (int k = 0; k < 32; ++k) abits = std::max(abits, u_as(x[k]) & 0x7fffffffu);
          const int e = scale_exp(f_as(abits), 6.f);
          srow[blk] = uint8_t(e + 127);
          const float inv = std::ldexp(1.0f, -e);
          uint8_t code[32];
          for (int k = 0; k < 32; ++k) code[k] = e2m1_code(x[k] * inv);
          for (int k = 0; k < 16; ++k) wrow[blk * 16 + k] = uint8_t(code[2 * k] | (code[2 * k + 1] << 4));
        }
      }
    }
    cx.put(wt.name, uint64_t(r0 * WB), wbuf, wbuf.size());
    cx.put(sc.name, uint64_t(r0 * SB), sbuf, sbuf.size());
  }
}

// A weight and its scale are generated together, so they share a shard.
struct Unit {
  size_t first, count;
  uint64_t bytes;
};

std::string shard_name(int64_t i, int64_t n) {
  if (n == 1) return "model.safetensors";
  char b[64];
  std::snprintf(b, sizeof b, "model-%05lld-of-%05lld.safetensors", (long long)(i + 1), (long long)n);
  return b;
}

void copy_file_checked(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  if (!fs::is_regular_file(from, ec)) throw Error("synth: tokenizer file " + from.string() + " does not exist");
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec) throw Error("synth: cannot copy " + from.string() + " to " + to.string() + ": " + ec.message());
}

void write_text_atomic(const fs::path& p, const std::string& text) {
  const fs::path tmp = p.string() + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary);
    if (!f) throw Error(tmp.string() + ": cannot create");
    f << text;
    if (!f.flush()) throw Error(tmp.string() + ": write failed");
  }
  std::error_code ec;
  fs::rename(tmp, p, ec);
  if (ec) throw Error(tmp.string() + ": rename failed: " + ec.message());
}

bool is_our_output(const std::string& n) {
  return (n.rfind("model", 0) == 0 && (n.ends_with(".safetensors") || n.ends_with(".safetensors.tmp"))) ||
         n == "model.safetensors.index.json" || n == "config.json" || n == "tokenizer.json" ||
         n == "tokenizer_config.json";
}

}  // namespace

SynthSummary write_synthetic_checkpoint(const ModelConfig& cfg, uint64_t seed, const std::string& out_dir,
                                        const SynthOptions& opt) {
  const std::vector<HfTensor> m = hf_tensor_manifest(cfg, opt.include_mtp);
  const bool real_vocab = cfg.vocab_size == 129280;
  if (real_vocab && opt.tokenizer_dir.empty())
    throw Error("synth: vocab_size 129280 (the real vocabulary) needs SynthOptions::tokenizer_dir with tokenizer.json");

  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) throw Error("synth: cannot create " + out_dir + ": " + ec.message());
  for (auto& e : fs::directory_iterator(out_dir)) {
    const std::string n = e.path().filename().string();
    if (!opt.overwrite) throw Error("synth: output directory " + out_dir + " is not empty (found " + n + ")");
    if (!is_our_output(n))
      throw Error("synth: output directory " + out_dir + " holds " + n + ", which synth would not write; refusing to overwrite");
    fs::remove(e.path());
  }

  // Pair each quantized weight with its scale (the manifest lists them back to back).
  std::vector<Unit> units;
  for (size_t i = 0; i < m.size();) {
    const bool pair = m[i].role == HfRole::Fp8Weight || m[i].role == HfRole::Fp4Weight;
    if (pair) DSV4_ASSERT(i + 1 < m.size() && m[i + 1].out == m[i].out && m[i + 1].in == m[i].in, "weight without scale");
    const size_t n = pair ? 2 : 1;
    uint64_t b = 0;
    for (size_t k = i; k < i + n; ++k) b += uint64_t(m[k].bytes());
    units.push_back({i, n, b});
    i += n;
  }
  // Greedy shards in model order.
  std::vector<std::vector<size_t>> shards(1);
  uint64_t cur = 0, total = 0;
  for (size_t u = 0; u < units.size(); ++u) {
    if (cur > 0 && cur + units[u].bytes > opt.max_shard_bytes) {
      shards.emplace_back();
      cur = 0;
    }
    shards.back().push_back(u);
    cur += units[u].bytes;
    total += units[u].bytes;
  }

  SynthSummary sum;
  sum.shards = int64_t(shards.size());
  sum.tensor_bytes = total;
  nlohmann::json index;
  index["metadata"]["total_size"] = total;
  index["weight_map"] = nlohmann::json::object();
  uint64_t done = 0;
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::string fname = shard_name(int64_t(s), int64_t(shards.size()));
    std::vector<st::TensorSpec> specs;
    for (size_t u : shards[s])
      for (size_t k = units[u].first; k < units[u].first + units[u].count; ++k) {
        specs.push_back({m[k].name, m[k].dtype, m[k].shape});
        index["weight_map"][m[k].name] = fname;
      }
    st::SafetensorsWriter w((fs::path(out_dir) / fname).string(), std::move(specs), opt.data_align);
    Ctx cx{&w, seed, cfg.n_routed_experts, done, total, &opt};
    for (size_t u : shards[s]) {
      const HfTensor& t = m[units[u].first];
      if (t.role == HfRole::Fp8Weight) gen_fp8(cx, t, m[units[u].first + 1]);
      else if (t.role == HfRole::Fp4Weight) gen_fp4(cx, t, m[units[u].first + 1]);
      else gen_plain(cx, t);
      sum.tensors += int64_t(units[u].count);
    }
    w.finish();
    done = cx.done;
  }

  save_hf_config(cfg, (fs::path(out_dir) / "config.json").string());
  if (real_vocab)
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
      copy_file_checked(fs::path(opt.tokenizer_dir) / f, fs::path(out_dir) / f);
  // The index last: a directory without it is visibly incomplete.
  write_text_atomic(fs::path(out_dir) / "model.safetensors.index.json", index.dump(2));
  return sum;
}

std::vector<float> synth_row_values(const HfTensor& t, const ModelConfig& cfg, uint64_t seed, int64_t row) {
  const bool quant = t.role == HfRole::Fp8Weight || t.role == HfRole::Fp8Scale || t.role == HfRole::Fp4Weight ||
                     t.role == HfRole::Fp4Scale;
  std::string name = t.name;  // a scale's values are its weight's
  if ((t.role == HfRole::Fp8Scale || t.role == HfRole::Fp4Scale) && name.ends_with(".scale"))
    name = name.substr(0, name.size() - 6) + ".weight";
  const int64_t cols = quant ? t.in : t.shape.back();
  const Dist d = dist_for(t);
  Xoshiro256 g = row_stream(tensor_seed(seed, name), uint64_t(row));
  std::vector<float> v(static_cast<size_t>(cols));
  if (d.kind == Dist::Distinct) {
    std::vector<int64_t> ids(static_cast<size_t>(cols)), perm;
    distinct_ids(g, ids.data(), cols, cfg.n_routed_experts, perm);
    for (int64_t c = 0; c < cols; ++c) v[size_t(c)] = float(ids[size_t(c)]);
  } else if (d.kind == Dist::Normal) {
    fill_normal(g, v.data(), cols, d.a, d.b);
  } else {
    fill_uniform(g, v.data(), cols, d.a, d.b);
  }
  return v;
}

}  // namespace dsv4
