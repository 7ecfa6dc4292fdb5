#include "tools/checkpoint/convert.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>
#include <vector>

#include "plan/error.hpp"
#include "plan/weights_file.hpp"
#include "tools/checkpoint/check_hf.hpp"
#include "tools/checkpoint/safetensors.hpp"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

constexpr size_t kChunk = 64u << 20;  // bytes per write of a copied tensor

// How one converted tensor is made from the checkpoint (spec §3 post-processing).
enum class Transform { Copy, HeadShard };

struct Job {
  const plan::Weight* w;
  std::string src;         // checkpoint tensor name
  Transform how;
  const st::Checkpoint::Entry* in;
};

// dsv4 keeps wo_a in FP8 and computes with its exact dequantised value. convert.py's bf16(e4m3 x 2^(s-127)) is
// that value when every block scale is NaN (0xFF) or lies in [2^-117, 2^119]: 2^-9 (the least e4m3) x 2^-117
// is bf16's least normal, and 448 x 2^119 is below its largest finite value.
void check_wo_a_scale(const st::Checkpoint::Entry& e, const std::string& name) {
  const auto s = e.file->data(*e.info);
  const int64_t cols = e.info->shape[1];
  for (size_t i = 0; i < s.size(); ++i)
    if (s[i] != 0xff && (s[i] < 127 - 117 || s[i] > 127 + 119))
      throw Error(e.file->path() + ": tensor " + name + " block [" + std::to_string(int64_t(i) / cols) + ", " +
                  std::to_string(int64_t(i) % cols) + "]: scale 2^" + std::to_string(int(s[i]) - 127) +
                  " is outside [2^-117, 2^119], where dequantising wo_a to bf16 (as convert.py does) is exact; "
                  "dsv4 keeps wo_a in FP8 and relies on that");
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

// Drops a source tensor's pages from this process (they stay in the page cache): the converter's
// resident memory stays at a few buffers however large the checkpoint is.
void release(std::span<const uint8_t> s) {
  if (s.empty()) return;
  const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t b = uintptr_t(s.data()) / page * page, e = uintptr_t(s.data() + s.size());
  ::madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
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
    }
    expect(j.in, j.src, dt, shape, hf_dir, "plan " + t.config_name + " tensor " + w.name);
    if (j.src.ends_with(".wo_a.scale")) check_wo_a_scale(*j.in, j.src);
    if (must_be_finite(j.src, dt)) {
      const auto bytes = j.in->file->data(*j.in->info);
      const std::string bad = first_nonfinite(dt, bytes);
      release(bytes);
      if (!bad.empty())
        throw Error(j.in->file->path() + ": tensor " + j.src + ": " + bad +
                    " (norm weights, F32 parameters and block scales must be finite)");
    }
    jobs.push_back(j);
  }
  return jobs;
}

class Progress {
 public:
  Progress(uint64_t total, bool on) : total_(total), on_(on), t0_(clock::now()), last_(t0_) {}
  ~Progress() {  // an unfinished bar (an error) ends its line, so the message starts on a fresh one
    if (on_ && shown_ && done_ < total_) std::fputc('\n', stderr);
  }
  void add(uint64_t n, const std::string& what) {
    done_ += n;
    const auto now = clock::now();
    if (!on_ || (now - last_ < std::chrono::milliseconds(500) && done_ < total_)) return;
    last_ = now;
    shown_ = true;
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
  bool on_, shown_ = false;
  clock::time_point t0_, last_;
};

std::string mib(uint64_t b) {
  char s[32];
  std::snprintf(s, sizeof s, "%.1f MiB", b / 1048576.0);
  return s;
}

// An I/O failure while producing the weights dir, with disk-full and file-size-limit spelled out.
[[noreturn]] void io_error(const std::string& path, const std::string& what, int err, uint64_t need_total) {
  std::string m = path + ": " + what + ": " + std::strerror(err);
  if (err == ENOSPC || err == EDQUOT)
    m += " (disk full: the weights dir needs " + std::to_string(need_total) + " bytes, " + mib(need_total) + ")";
  else if (err == EFBIG)
    m += " (the file would exceed the file size limit: check `ulimit -f` and the filesystem's maximum file size)";
  throw Error(m);
}

void pwrite_all(int fd, const void* p, size_t n, uint64_t off, const std::string& path, uint64_t need_total) {
  const char* c = static_cast<const char*>(p);
  while (n) {
    const ssize_t k = ::pwrite(fd, c, n, off_t(off));
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) io_error(path, "write failed at offset " + std::to_string(off), k < 0 ? errno : ENOSPC, need_total);
    c += k, n -= size_t(k), off += uint64_t(k);
  }
}

void pread_all(int fd, void* p, size_t n, uint64_t off, const std::string& path) {
  char* c = static_cast<char*>(p);
  while (n) {
    const ssize_t k = ::pread(fd, c, n, off_t(off));
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0)
      throw Error(path + ": read-back failed at offset " + std::to_string(off) + ": " +
                  (k < 0 ? std::strerror(errno) : "unexpected end of file"));
    c += k, n -= size_t(k), off += uint64_t(k);
  }
}

// The file offset of the data section (plan/weights_file.hpp: the loader requires exactly this).
uint64_t data_offset_for(size_t n_tensors) {
  uint64_t off = 0;
  DSV4_ASSERT(wfile::data_offset_for(n_tensors, off), "tensor table size overflows");
  return off;
}

// Writes ignore SIGXFSZ while alive: past `ulimit -f` a write then fails with EFBIG, which is reported
// as an error (and the partial folder removed), instead of the signal killing the process.
struct IgnoreSigxfsz {
  struct sigaction old {};
  IgnoreSigxfsz() {
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    ::sigaction(SIGXFSZ, &ign, &old);
  }
  ~IgnoreSigxfsz() { ::sigaction(SIGXFSZ, &old, nullptr); }
};

// Produces one tensor's payload in chunks and writes them; returns the payload's XXH3.
uint64_t write_tensor(int fd, const std::string& path, uint64_t data_off, const Job& j, const WeightsTarget& t,
                      int64_t rank, uint64_t need_total, Progress& prog) {
  std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> state(XXH3_createState(), XXH3_freeState);
  XXH3_state_t* h = state.get();
  XXH3_64bits_reset(h);
  const plan::Weight& w = *j.w;
  uint64_t off = data_off + w.offset;
  auto emit = [&](const void* p, size_t n) {
    pwrite_all(fd, p, n, off, path, need_total);
    XXH3_64bits_update(h, p, n);
    off += n;
    prog.add(n, j.src);
  };
  const auto src = j.in->file->data(*j.in->info);
  switch (j.how) {
    case Transform::Copy: {
      for (size_t done = 0; done < src.size(); done += kChunk) {
        const size_t n = std::min(kChunk, src.size() - done);
        emit(src.data() + done, n);
        release(src.subspan(done, n));
      }
      break;
    }
    case Transform::HeadShard: {  // rows [rank*shard, +shard) of head.weight; rows past the vocabulary are zero
      const int64_t row_bytes = w.shape[1] * 2;
      const int64_t g0 = std::min(rank * t.vocab_shard, t.vocab_size), g1 = std::min(g0 + w.shape[0], t.vocab_size);
      const size_t real = size_t((g1 - g0) * row_bytes);
      for (size_t done = 0; done < real; done += kChunk) {
        const size_t n = std::min(kChunk, real - done);
        emit(src.data() + g0 * row_bytes + done, n);
        release(src.subspan(size_t(g0 * row_bytes) + done, n));
      }
      std::vector<uint8_t> zero(static_cast<size_t>(row_bytes), 0);
      for (int64_t r = g1 - g0; r < w.shape[0]; ++r) emit(zero.data(), zero.size());
      break;
    }
  }
  release(src);
  return XXH3_64bits_digest(h);
}

// Writes one converted file to `path` (already inside the partial folder) and verifies it by reading
// it back: header and table byte for byte, every payload against its XXH3.
void write_file(const std::string& path, uint32_t kind, int64_t rank, const std::vector<Job>& jobs,
                const WeightsTarget& t, uint64_t data_bytes, uint64_t need_total, Progress& prog) {
  wfile::FileHeader hdr{};
  std::memcpy(hdr.magic, wfile::kMagic, 8);
  hdr.version = wfile::kVersion;
  hdr.kind = kind;
  hdr.plan_hash = t.plan_hash;
  hdr.rank = uint32_t(rank);
  hdr.ranks = uint32_t(t.ranks);
  hdr.n_tensors = jobs.size();
  hdr.table_offset = sizeof(hdr);
  hdr.data_offset = data_offset_for(jobs.size());
  hdr.data_bytes = data_bytes;
  std::snprintf(hdr.config_name, sizeof hdr.config_name, "%s", t.config_name.c_str());
  const uint64_t size = hdr.data_offset + data_bytes;

  const int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) io_error(path, "cannot create", errno, need_total);
  std::vector<wfile::TensorEntry> table(jobs.size());
  try {
    // Reserve the whole file first: a full disk or `ulimit -f` fails here, before the data is streamed.
    if (const int e = ::posix_fallocate(fd, 0, off_t(size)); e != 0)
      io_error(path, "cannot reserve " + std::to_string(size) + " bytes", e, need_total);
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
      e.xxh3 = write_tensor(fd, path, hdr.data_offset, jobs[i], t, rank, need_total, prog);
    }
    if (!table.empty())
      pwrite_all(fd, table.data(), table.size() * sizeof(wfile::TensorEntry), hdr.table_offset, path, need_total);
    pwrite_all(fd, &hdr, sizeof hdr, 0, path, need_total);
    if (::fsync(fd) != 0) io_error(path, "fsync failed", errno, need_total);
  } catch (...) {
    ::close(fd);
    throw;
  }
  if (::close(fd) != 0) io_error(path, "close failed", errno, need_total);

  // Verify by reading back through a small buffer (no mapping: resident memory stays small).
  const int rfd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (rfd < 0) throw Error(path + ": cannot reopen for verification: " + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{rfd};
  std::vector<uint8_t> buf(std::max<size_t>(kChunk / 4, sizeof hdr + table.size() * sizeof(wfile::TensorEntry)));
  pread_all(rfd, buf.data(), sizeof hdr + table.size() * sizeof(wfile::TensorEntry), 0, path);
  // An empty table's data() may be null, which memcmp must not be given even for 0 bytes.
  if (std::memcmp(buf.data(), &hdr, sizeof hdr) != 0 ||
      (!table.empty() &&
       std::memcmp(buf.data() + sizeof hdr, table.data(), table.size() * sizeof(wfile::TensorEntry)) != 0))
    throw Error(path + ": header or tensor table differs from what was written");
  std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> state(XXH3_createState(), XXH3_freeState);
  for (const auto& e : table) {
    XXH3_64bits_reset(state.get());
    for (uint64_t done = 0; done < e.bytes;) {
      const size_t n = size_t(std::min<uint64_t>(buf.size(), e.bytes - done));
      pread_all(rfd, buf.data(), n, hdr.data_offset + e.offset + done, path);
      XXH3_64bits_update(state.get(), buf.data(), n);
      done += n;
    }
    if (XXH3_64bits_digest(state.get()) != e.xxh3)
      throw Error(path + ": tensor " + e.name + ": checksum mismatch after writing");
  }
}

// One convert per output folder at a time: an advisory lock (flock) on OUT.lock, held for the whole run.
// The kernel drops it when the process dies, so a killed convert never blocks the next one. The file
// holds a recognisable line; we remove it at the end only when it holds that line (a file of that name
// the user made is left alone).
class OutputLock {
 public:
  explicit OutputLock(const std::string& out) : path_(out + ".lock") {
    for (int attempt = 0; attempt < 8; ++attempt) {
      fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
      if (fd_ < 0) throw Error(path_ + ": cannot create the output folder's lock file: " + std::strerror(errno));
      if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
        const int err = errno;
        const std::string who = contents();
        ::close(fd_);
        fd_ = -1;
        if (err == EWOULDBLOCK)
          throw Error(out + ": another convert is writing this output folder (" + path_ + " is locked" +
                      (who.empty() ? std::string() : ": " + who) + "); wait for it, or choose another output folder");
        throw Error(path_ + ": cannot lock: " + std::strerror(err));
      }
      // The holder before us may have removed the file between our open and our lock: lock the file
      // that is at the path now.
      struct stat a {}, b {};
      if (::fstat(fd_, &a) == 0 && ::stat(path_.c_str(), &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev) {
        const std::string c = contents();
        ours_ = c.empty() || c.rfind(kTag, 0) == 0;
        if (ours_) {
          const std::string line = std::string(kTag) + " pid " + std::to_string(::getpid()) + "\n";
          if (::ftruncate(fd_, 0) == 0) (void)!::pwrite(fd_, line.data(), line.size(), 0);
        }
        return;
      }
      ::close(fd_);
      fd_ = -1;
    }
    throw Error(path_ + ": the lock file keeps changing; is another convert starting and stopping?");
  }
  ~OutputLock() {
    if (fd_ < 0) return;
    if (ours_ && contents().rfind(kTag, 0) == 0) ::unlink(path_.c_str());  // while still holding the lock
    ::close(fd_);
  }
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;

 private:
  static constexpr const char* kTag = "dsv4 convert lock";
  std::string contents() const {
    char b[128] = {};
    const ssize_t n = ::pread(fd_, b, sizeof b - 1, 0);
    std::string s(b, n > 0 ? size_t(n) : 0);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\0')) s.pop_back();
    return s;
  }
  std::string path_;
  int fd_ = -1;
  bool ours_ = false;
};

// Folders named OUT.partial* beside OUT: left by an earlier convert that was killed (one running now
// holds the lock). Never ours to delete: named in a warning so the user can remove them.
std::vector<std::string> stale_partials(const fs::path& out_abs) {
  std::vector<std::string> r;
  std::error_code ec;
  const std::string stem = out_abs.filename().string() + ".partial";
  for (fs::directory_iterator it(out_abs.parent_path(), ec), end; !ec && it != end; it.increment(ec))
    if (it->path().filename().string().rfind(stem, 0) == 0) r.push_back(it->path().string());
  std::sort(r.begin(), r.end());
  return r;
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

ConvertSummary convert_checkpoint(const std::string& hf_dir, const std::string& out_dir, const WeightsTarget& t,
                                  const ConvertOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  ConvertSummary sum;
  std::error_code ec;
  // The output: a new folder in an existing one, never inside the input checkpoint.
  fs::path out_abs = fs::absolute(out_dir, ec).lexically_normal();
  if (out_abs.filename().empty()) out_abs = out_abs.parent_path();  // "OUT/"
  const fs::path parent = out_abs.parent_path();
  if (!fs::is_directory(parent, ec))
    throw Error(out_dir + ": cannot create the output folder: " + parent.string() +
                (fs::exists(parent, ec) ? " is not a directory" : " does not exist"));
  if (fs::exists(fs::symlink_status(out_abs, ec)))
    throw Error(out_dir + ": already exists; remove it or choose another output folder");
  const fs::path in_dir = fs::is_regular_file(hf_dir, ec) ? fs::absolute(hf_dir, ec).parent_path() : fs::path(hf_dir);
  const fs::path in_canon = fs::weakly_canonical(in_dir, ec), out_canon = fs::weakly_canonical(out_abs, ec);
  {
    const std::string a = in_canon.string() + "/", b = out_canon.string() + "/";
    if (b.compare(0, a.size(), a) == 0)
      throw Error(out_dir + ": the output folder is inside the input checkpoint folder " + hf_dir +
                  "; the converter never writes into its input");
  }

  const st::Checkpoint ck = st::Checkpoint::open(hf_dir, true);

  // Check everything first: a bad checkpoint fails before a byte is written.
  const auto rep = plan_jobs(ck, t, plan::WeightFile::Replicated, 0, hf_dir);
  std::vector<std::vector<Job>> ranks;
  for (int64_t r = 0; r < t.ranks; ++r) ranks.push_back(plan_jobs(ck, t, plan::WeightFile::Rank, r, hf_dir));
  // payload: tensor bytes produced (the progress bar's total); need: bytes of the files on disk.
  uint64_t payload = 0, need = data_offset_for(rep.size()) + uint64_t(t.replicated_bytes);
  for (const Job& j : rep) payload += uint64_t(j.w->bytes);
  for (int64_t r = 0; r < t.ranks; ++r) {
    need += data_offset_for(ranks[size_t(r)].size()) + uint64_t(t.rank_bytes);
    for (const Job& j : ranks[size_t(r)]) payload += uint64_t(j.w->bytes);
  }

  // Checkpoint tensors the plan does not read: MTP blocks are expected (skipped, counted); anything else
  // is named in a warning and skipped.
  std::set<std::string> used;
  auto mark = [&](const std::vector<Job>& js) {
    for (const Job& j : js) used.insert(j.src);
  };
  mark(rep);
  for (const auto& js : ranks) mark(js);
  for (const auto& [name, e] : ck.tensors()) {
    if (used.count(name)) continue;
    if (name.rfind("mtp.", 0) == 0) ++sum.mtp_skipped;
    else sum.unknown.push_back(name);
  }
  if (opt.warnings)
    for (size_t i = 0; i < sum.unknown.size(); ++i) {
      if (i == 20) {
        std::fprintf(stderr, "dsv4: warning: ... and %zu more unknown tensors, skipped\n", sum.unknown.size() - 20);
        break;
      }
      const auto* e = ck.find(sum.unknown[i]);
      std::fprintf(stderr, "dsv4: warning: %s: tensor %s is not part of plan %s (unknown tensor); skipped\n",
                   e->file->path().c_str(), sum.unknown[i].c_str(), t.config_name.c_str());
    }

  // Free space, before the first byte: a full disk is a clear error, not a half-written folder.
  struct statvfs vfs {};
  if (::statvfs(parent.c_str(), &vfs) == 0) {
    const uint64_t avail = uint64_t(vfs.f_bavail) * uint64_t(vfs.f_frsize);
    if (avail < need)
      throw Error(parent.string() + ": not enough free space: the weights dir needs " + std::to_string(need) +
                  " bytes (" + mib(need) + "), " + std::to_string(avail) + " bytes (" + mib(avail) + ") are available");
  }

  // From here on we write: one convert per output folder (the lock), into a folder of our own that no
  // other run can have created (mkdtemp), and nothing is ever deleted that this run did not create.
  const OutputLock lock(out_abs.string());
  if (fs::exists(fs::symlink_status(out_abs, ec)))
    throw Error(out_dir + ": already exists; remove it or choose another output folder");
  if (opt.warnings)
    for (const std::string& p : stale_partials(out_abs))
      std::fprintf(stderr,
                   "dsv4: warning: %s: left by an interrupted convert (not used, not removed); delete it to free "
                   "its space\n",
                   p.c_str());
  std::string partial = out_abs.string() + ".partial-" + std::to_string(::getpid()) + "-XXXXXX";
  if (!::mkdtemp(partial.data())) throw Error(partial + ": cannot create the output folder: " + std::strerror(errno));
  ::chmod(partial.c_str(), 0755);
  try {
    const IgnoreSigxfsz no_sigxfsz;
    Progress prog(payload, opt.progress);
    write_file(partial + "/" + replicated_file_name(), wfile::kKindReplicated, 0, rep, t, uint64_t(t.replicated_bytes),
               need, prog);
    for (int64_t r = 0; r < t.ranks; ++r)
      write_file(partial + "/" + rank_file_name(r, t.ranks), wfile::kKindRank, r, ranks[size_t(r)], t,
                 uint64_t(t.rank_bytes), need, prog);
    // The checkpoint's own tokenizer goes with the weights (run / serve prefer WEIGHTS/tokenizer.json).
    for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
      const fs::path from = fs::path(hf_dir) / name;
      if (!fs::is_regular_file(from)) continue;
      std::error_code ec;
      fs::copy_file(from, fs::path(partial) / name, ec);
      if (ec) throw Error(from.string() + ": cannot copy into the weights folder: " + ec.message());
    }
    // RENAME_NOREPLACE: an OUT created meanwhile (even an empty folder, which rename() would replace)
    // makes this fail instead of being replaced.
    if (::renameat2(AT_FDCWD, partial.c_str(), AT_FDCWD, out_abs.c_str(), RENAME_NOREPLACE) != 0)
      throw Error(partial + ": rename to " + out_abs.string() + " failed: " + std::strerror(errno));
  } catch (...) {
    fs::remove_all(partial, ec);
    throw;
  }

  sum.files = 1 + t.ranks;
  sum.tensors = int64_t(rep.size());
  for (const auto& js : ranks) sum.tensors += int64_t(js.size());
  sum.bytes = need;
  sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  sum.mb_per_s = double(need) / 1e6 / std::max(sum.seconds, 1e-9);
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  sum.peak_rss_bytes = uint64_t(ru.ru_maxrss) * 1024;
  return sum;
}

}  // namespace dsv4
