#include "tools/checkpoint/convert.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "kernels/numerics.hpp"
#include "plan/error.hpp"
#include "plan/weights_file.hpp"
#include "tools/checkpoint/safetensors.hpp"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

// How one converted tensor is made from the checkpoint (spec §3 post-processing).
enum class Transform { Copy, HeadShard, DequantWoA };

struct Job {
  const plan::Weight* w;
  std::string src;         // checkpoint tensor name
  Transform how;
  const st::Checkpoint::Entry* in;
  const st::Checkpoint::Entry* scale = nullptr;  // wo_a's block scale
};

bool ends_with(const std::string& s, const char* suf) {
  const size_t n = std::strlen(suf);
  return s.size() >= n && s.compare(s.size() - n, n, suf) == 0;
}

HfDtype source_dtype(plan::DType t) {
  switch (t) {
    case plan::DType::BF16: return HfDtype::BF16;
    case plan::DType::F32: return HfDtype::F32;
    case plan::DType::I32: return HfDtype::I32;
    case plan::DType::I64: return HfDtype::I64;
    case plan::DType::F8_E4M3: return HfDtype::F8_E4M3;
    case plan::DType::F8_E8M0: return HfDtype::F8_E8M0;
    case plan::DType::FP4_X2: return HfDtype::I8;
    case plan::DType::U8: return HfDtype::U8;
  }
  return HfDtype::U8;
}

std::vector<int64_t> shape_of(const plan::Weight& w) { return {w.shape, w.shape + w.ndim}; }

void expect(const st::Checkpoint::Entry* e, const std::string& name, HfDtype dt, const std::vector<int64_t>& shape,
            const std::string& hf_dir, const std::string& why) {
  if (!e) throw Error(hf_dir + ": tensor " + name + " is missing (" + why + ")");
  if (e->info->dtype != dt || e->info->shape != shape)
    throw Error(e->file->path() + ": tensor " + name + ": expected " + hf_dtype_name(dt) + " " + shape_str(shape) +
                " (" + why + "), got " + hf_dtype_name(e->info->dtype) + " " + shape_str(e->info->shape));
}

// Resolves and checks every source tensor of one file before anything is written.
std::vector<Job> plan_jobs(const st::Checkpoint& ck, const WeightsTarget& t, plan::WeightFile file, int64_t rank,
                           const std::string& hf_dir) {
  std::vector<Job> jobs;
  for (const auto& w : t.manifest) {
    if (w.file != file) continue;
    Job j{&w, source_name(w, rank, t.experts_per_rank), Transform::Copy, nullptr};
    j.in = ck.find(j.src);
    std::vector<int64_t> shape = shape_of(w);
    HfDtype dt = source_dtype(w.dtype);
    if (w.shard == plan::Shard::VocabParallel) {
      j.how = Transform::HeadShard;
      shape[0] = t.vocab_size;
    } else if (ends_with(j.src, ".wo_a.weight")) {
      j.how = Transform::DequantWoA;
      dt = HfDtype::F8_E4M3;
      const std::string sname = j.src.substr(0, j.src.size() - 6) + "scale";
      j.scale = ck.find(sname);
      expect(j.scale, sname, HfDtype::F8_E8M0, {hf_manifest_detail::ceil_div(shape[0], 128), hf_manifest_detail::ceil_div(shape[1], 128)}, hf_dir,
             "wo_a block scale, dequantised into bf16 at conversion");
    }
    expect(j.in, j.src, dt, shape, hf_dir, "plan " + t.config_name + " tensor " + w.name);
    jobs.push_back(j);
  }
  return jobs;
}

class Progress {
 public:
  Progress(uint64_t total, bool on) : total_(total), on_(on), t0_(clock::now()), last_(t0_) {}
  void add(uint64_t n, const std::string& what) {
    done_ += n;
    const auto now = clock::now();
    if (!on_ || (now - last_ < std::chrono::milliseconds(500) && done_ < total_)) return;
    last_ = now;
    const double s = std::chrono::duration<double>(now - t0_).count();
    const double rate = done_ / std::max(s, 1e-9);
    const double eta = rate > 0 ? (total_ - done_) / rate : 0;
    const int width = 30, fill = total_ ? int(width * double(done_) / total_) : width;
    std::fprintf(stderr, "\rconvert [%.*s%*s] %6.2f / %.2f GiB  %6.1f MiB/s  ETA %4.0fs  %-40.40s", fill,
                 "##############################", width - fill, "", done_ / 1073741824.0, total_ / 1073741824.0,
                 rate / 1048576.0, eta, what.c_str());
    if (done_ >= total_) std::fputc('\n', stderr);
  }

 private:
  using clock = std::chrono::steady_clock;
  uint64_t total_, done_ = 0;
  bool on_;
  clock::time_point t0_, last_;
};

void pwrite_all(int fd, const void* p, size_t n, uint64_t off, const std::string& path) {
  const char* c = static_cast<const char*>(p);
  while (n) {
    const ssize_t k = ::pwrite(fd, c, n, off);
    if (k <= 0) throw Error(path + ": write failed at offset " + std::to_string(off) + ": " + std::strerror(errno));
    c += k, n -= size_t(k), off += uint64_t(k);
  }
}

// Produces one tensor's payload in chunks and writes them; returns the payload's XXH3.
uint64_t write_tensor(int fd, const std::string& path, uint64_t data_off, const Job& j, const WeightsTarget& t,
                      int64_t rank, Progress& prog) {
  XXH3_state_t* h = XXH3_createState();
  XXH3_64bits_reset(h);
  const plan::Weight& w = *j.w;
  uint64_t off = data_off + w.offset;
  auto emit = [&](const void* p, size_t n) {
    pwrite_all(fd, p, n, off, path);
    XXH3_64bits_update(h, p, n);
    off += n;
    prog.add(n, w.name);
  };
  const auto src = j.in->file->data(*j.in->info);
  switch (j.how) {
    case Transform::Copy: {
      for (size_t done = 0; done < src.size(); done += 64u << 20) emit(src.data() + done, std::min<size_t>(64u << 20, src.size() - done));
      break;
    }
    case Transform::HeadShard: {  // rows [rank*shard, +shard) of head.weight; rows past the vocabulary are zero
      const int64_t row_bytes = w.shape[1] * 2;
      std::vector<uint8_t> zero(static_cast<size_t>(row_bytes), 0);
      for (int64_t r = 0; r < w.shape[0]; ++r) {
        const int64_t g = rank * t.vocab_shard + r;
        emit(g < t.vocab_size ? src.data() + g * row_bytes : zero.data(), size_t(row_bytes));
      }
      break;
    }
    case Transform::DequantWoA: {  // convert.py: bf16(fp8 x 2^(s-127)) per 128x128 block (exact)
      const int64_t out = w.shape[0], in = w.shape[1], sc_cols = hf_manifest_detail::ceil_div(in, 128);
      const auto sc = j.scale->file->data(*j.scale->info);
      std::vector<bf16> row(static_cast<size_t>(in));
      for (int64_t o = 0; o < out; ++o) {
        for (int64_t i = 0; i < in; ++i)
          row[i] = f32_to_bf16(e4m3_to_f32(src[o * in + i]) * e8m0_to_f32(sc[(o / 128) * sc_cols + i / 128]));
        emit(row.data(), row.size() * 2);
      }
      break;
    }
  }
  const uint64_t d = XXH3_64bits_digest(h);
  XXH3_freeState(h);
  return d;
}

// Writes one converted file to `path` (already inside the partial folder) and verifies it.
void write_file(const std::string& path, uint32_t kind, int64_t rank, const std::vector<Job>& jobs,
                const WeightsTarget& t, uint64_t data_bytes, Progress& prog) {
  wfile::FileHeader hdr{};
  std::memcpy(hdr.magic, wfile::kMagic, 8);
  hdr.version = wfile::kVersion;
  hdr.kind = kind;
  hdr.plan_hash = t.plan_hash;
  hdr.rank = uint32_t(rank);
  hdr.ranks = uint32_t(t.ranks);
  hdr.n_tensors = jobs.size();
  hdr.table_offset = sizeof(hdr);
  hdr.data_offset = (sizeof(hdr) + jobs.size() * sizeof(wfile::TensorEntry) + wfile::kDataAlign - 1) /
                    wfile::kDataAlign * wfile::kDataAlign;
  hdr.data_bytes = data_bytes;
  std::snprintf(hdr.config_name, sizeof hdr.config_name, "%s", t.config_name.c_str());

  const int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
  if (fd < 0) throw Error(path + ": cannot create: " + std::strerror(errno));
  std::vector<wfile::TensorEntry> table(jobs.size());
  try {
    if (::ftruncate(fd, off_t(hdr.data_offset + data_bytes)) != 0) throw Error(path + ": cannot size file");
    for (size_t i = 0; i < jobs.size(); ++i) {
      const plan::Weight& w = *jobs[i].w;
      wfile::TensorEntry& e = table[i];
      if (jobs[i].src.size() >= sizeof e.name) throw Error("tensor name too long: " + jobs[i].src);
      std::snprintf(e.name, sizeof e.name, "%s", jobs[i].src.c_str());
      e.dtype = uint32_t(w.dtype);
      e.ndim = uint32_t(w.ndim);
      for (int d = 0; d < 4; ++d) e.shape[d] = w.shape[d];
      e.offset = uint64_t(w.offset);
      e.bytes = uint64_t(w.bytes);
      e.xxh3 = write_tensor(fd, path, hdr.data_offset, jobs[i], t, rank, prog);
    }
    pwrite_all(fd, table.data(), table.size() * sizeof(wfile::TensorEntry), hdr.table_offset, path);
    pwrite_all(fd, &hdr, sizeof hdr, 0, path);
    if (::fsync(fd) != 0) throw Error(path + ": fsync failed");
    ::close(fd);
  } catch (...) {
    ::close(fd);
    throw;
  }
  // Verify: map the written file and re-hash every payload.
  const int rfd = ::open(path.c_str(), O_RDONLY);
  const size_t size = size_t(hdr.data_offset + data_bytes);
  void* m = size ? ::mmap(nullptr, size, PROT_READ, MAP_SHARED, rfd, 0) : nullptr;
  ::close(rfd);
  if (m == MAP_FAILED) throw Error(path + ": cannot map for verification");
  const auto* base = static_cast<const uint8_t*>(m) + hdr.data_offset;
  for (const auto& e : table)
    if (XXH3_64bits(base + e.offset, e.bytes) != e.xxh3) {
      ::munmap(m, size);
      throw Error(path + ": tensor " + e.name + ": checksum mismatch after writing");
    }
  if (m) ::munmap(m, size);
}

}  // namespace

std::string replicated_file_name() { return "replicated.dsv4w"; }

std::string rank_file_name(int64_t rank, int64_t ranks) {
  char b[64];
  std::snprintf(b, sizeof b, "rank-%05lld-of-%05lld.dsv4w", (long long)rank, (long long)ranks);
  return b;
}

std::string source_name(const plan::Weight& w, int64_t rank, int64_t experts_per_rank) {
  std::string n = w.name;
  if (w.expert_local < 0) return n;
  const int64_t e = (w.shard == plan::Shard::ExpertParallel ? rank * experts_per_rank : 0) + w.expert_local;
  const auto at = n.find("{e}");
  DSV4_ASSERT(at != std::string::npos, "expert weight without {e}: " + n);
  return n.replace(at, 3, std::to_string(e));
}

void convert_checkpoint(const std::string& hf_dir, const std::string& out_dir, const WeightsTarget& t,
                        const ConvertOptions& opt) {
  if (fs::exists(out_dir)) throw Error(out_dir + ": already exists; remove it or choose another output folder");
  const st::Checkpoint ck = st::Checkpoint::open(hf_dir, true);

  // Check everything first: a bad checkpoint fails before a byte is written.
  const auto rep = plan_jobs(ck, t, plan::WeightFile::Replicated, 0, hf_dir);
  std::vector<std::vector<Job>> ranks;
  for (int64_t r = 0; r < t.ranks; ++r) ranks.push_back(plan_jobs(ck, t, plan::WeightFile::Rank, r, hf_dir));
  uint64_t total = uint64_t(t.replicated_bytes);
  for (int64_t r = 0; r < t.ranks; ++r) total += uint64_t(t.rank_bytes);

  const std::string partial = out_dir + ".partial";
  fs::remove_all(partial);
  fs::create_directories(partial);
  try {
    Progress prog(total, opt.progress);
    write_file(partial + "/" + replicated_file_name(), wfile::kKindReplicated, 0, rep, t, uint64_t(t.replicated_bytes), prog);
    for (int64_t r = 0; r < t.ranks; ++r)
      write_file(partial + "/" + rank_file_name(r, t.ranks), wfile::kKindRank, r, ranks[r], t, uint64_t(t.rank_bytes), prog);
    fs::rename(partial, out_dir);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(partial, ec);
    throw;
  }
}

}  // namespace dsv4
