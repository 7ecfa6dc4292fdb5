#include "runtime/engine/weight_store.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <utility>

#include "model.hpp"
#include "plan/error.hpp"
#include "plan/weights_file.hpp"
#include "tools/checkpoint/convert.hpp"
#include "weights.hpp"

namespace dsv4 {
namespace {

std::string hex(uint64_t h) {
  char b[20];
  std::snprintf(b, sizeof b, "%016llx", (unsigned long long)h);
  return b;
}

// RAII for one mapping while it is checked: a file that fails a check is unmapped again.
struct Mapping {
  const uint8_t* base = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (base) ::munmap(const_cast<uint8_t*>(base), size);
  }
};

// Maps one file and checks it against the manifest entries of its kind. Every header field is checked
// against the file size in overflow-safe arithmetic (wfile::layout_error) before it is used as an offset.
void map_and_check(const std::string& path, uint32_t kind, int64_t rank, WeightVerify verify, const uint8_t*& base,
                   size_t& size, const uint8_t*& data, WeightStore::FileSummary& sum) {
  auto fail = [&](const std::string& what) { throw Error(path + ": " + what); };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const std::string dir = std::filesystem::path(path).parent_path().string();
    const bool hf = std::filesystem::exists(std::filesystem::path(dir) / "model.safetensors.index.json");
    throw Error(path + ": cannot open weights file: " + std::strerror(errno) +
                (hf ? " (" + dir + " is a Hugging Face checkpoint: convert it first with `dsv4 convert --hf " + dir +
                          " -o WEIGHTS`)"
                    : ""));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("not a regular file");
  }
  Mapping m;
  m.size = size_t(st.st_size);
  if (m.size < sizeof(wfile::FileHeader)) {
    ::close(fd);
    fail("file is " + std::to_string(m.size) + " bytes, shorter than the 256-byte header");
  }
  void* p = ::mmap(nullptr, m.size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) fail(std::string("mmap failed: ") + std::strerror(errno));
  m.base = static_cast<const uint8_t*>(p);

  wfile::FileHeader h;
  std::memcpy(&h, m.base, sizeof h);
  if (std::memcmp(h.magic, wfile::kMagic, 8) != 0) fail("not a dsv4 weights file (bad magic)");
  if (h.version != wfile::kVersion)
    fail("format version: expected " + std::to_string(wfile::kVersion) + ", got " + std::to_string(h.version));
  if (h.plan_hash != gen::kPlanHash)
    fail(std::string("plan hash: this binary is built for plan ") + hex(gen::kPlanHash) + " (config " + gen::kConfigName +
         "), the file was converted for plan " + hex(h.plan_hash) + " (config " +
         std::string(h.config_name, strnlen(h.config_name, sizeof h.config_name)) + ", " + std::to_string(h.ranks) +
         " ranks); convert again with this binary");
  if (h.kind != kind) fail("file kind: expected " + std::to_string(kind) + ", got " + std::to_string(h.kind));
  if (h.ranks != uint32_t(gen::kRanks))
    fail("rank count: expected " + std::to_string(gen::kRanks) + ", got " + std::to_string(h.ranks));
  if (h.rank != uint32_t(rank)) fail("rank: expected " + std::to_string(rank) + ", got " + std::to_string(h.rank));
  const uint64_t want_bytes = uint64_t(kind == wfile::kKindRank ? gen::kRankWeightBytes : gen::kReplicatedWeightBytes);
  if (h.data_bytes != want_bytes)
    fail("data bytes: expected " + std::to_string(want_bytes) + ", got " + std::to_string(h.data_bytes));
  if (const std::string e = wfile::layout_error(h, m.size); !e.empty()) fail(e);
  // From here table_offset + n_tensors * sizeof(TensorEntry) <= data_offset <= size holds without overflow.
  const uint64_t table_end = h.table_offset + h.n_tensors * sizeof(wfile::TensorEntry);
  for (uint64_t b = table_end; b < h.data_offset; ++b)
    if (m.base[b]) fail("layout: padding byte " + std::to_string(b) + " before the data section is not zero");
  data = m.base + h.data_offset;

  const plan::WeightFile want_file = kind == wfile::kKindRank ? plan::WeightFile::Rank : plan::WeightFile::Replicated;
  const auto t0 = std::chrono::steady_clock::now();
  uint64_t i = 0;
  for (const auto& w : gen::kWeights) {
    if (w.file != want_file) continue;
    if (i >= h.n_tensors) fail("tensor table has " + std::to_string(h.n_tensors) + " entries, the plan needs more");
    wfile::TensorEntry e;
    std::memcpy(&e, m.base + h.table_offset + i * sizeof e, sizeof e);
    const std::string name(e.name, strnlen(e.name, sizeof e.name));
    const std::string want = source_name(w, rank, gen::kExpertsPerRank);
    if (name != want) fail("tensor " + std::to_string(i) + ": expected " + want + ", got " + name);
    bool shape_ok = e.ndim == uint32_t(w.ndim);
    for (int d = 0; d < 4 && shape_ok; ++d) shape_ok = e.shape[d] == w.shape[d];
    if (e.dtype != uint32_t(w.dtype) || !shape_ok) {
      auto dims = [](const int64_t* s, uint32_t n) {
        std::string r = "[";
        for (uint32_t d = 0; d < n && d < 4; ++d) r += (d ? ", " : "") + std::to_string(s[d]);
        return r + "]";
      };
      const std::string got_dt = e.dtype <= uint32_t(plan::DType::FP4_X2) ? plan::dtype_name(plan::DType(e.dtype))
                                                                          : "dtype " + std::to_string(e.dtype);
      fail("tensor " + name + ": expected " + plan::dtype_name(w.dtype) + " " + dims(w.shape, uint32_t(w.ndim)) +
           ", got " + got_dt + " " + dims(e.shape, e.ndim));
    }
    if (e.offset != uint64_t(w.offset) || e.bytes != uint64_t(w.bytes))
      fail("tensor " + name + ": expected offset " + std::to_string(w.offset) + " bytes " + std::to_string(w.bytes) +
           ", got offset " + std::to_string(e.offset) + " bytes " + std::to_string(e.bytes));
    for (uint8_t b : e.reserved)
      if (b) fail("tensor " + name + ": reserved bytes of its table entry are not zero (corrupt table)");
    // The manifest lies inside the data section (plangen sized it), so these reads stay in the mapping.
    DSV4_ASSERT(e.offset <= h.data_bytes && e.bytes <= h.data_bytes - e.offset, "manifest tensor outside the data section");
    const bool check = verify == WeightVerify::Full || (verify == WeightVerify::Small && cheap_to_verify(w));
    if (check) {
      if (XXH3_64bits(data + e.offset, e.bytes) != e.xxh3)
        fail("tensor " + name + ": checksum mismatch (the file is corrupt: convert again)");
      // Hashing touched every page: drop them from this process (they stay in the page cache and fault
      // back on first use), so verifying a large file does not make its whole size resident.
      const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
      const uintptr_t b = (uintptr_t(data + e.offset) + page - 1) / page * page;
      const uintptr_t end = uintptr_t(data + e.offset + e.bytes) / page * page;
      if (end > b) ::madvise(reinterpret_cast<void*>(b), end - b, MADV_DONTNEED);
      ++sum.tensors_verified;
      sum.bytes_verified += e.bytes;
    }
    sum.bytes += e.bytes;
    ++i;
  }
  if (i != h.n_tensors) fail("tensor table has " + std::to_string(h.n_tensors) + " entries, the plan needs " + std::to_string(i));
  sum.verify_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  sum.path = path;
  sum.tensors = i;
  sum.checksums_verified = sum.tensors_verified == i;
  base = m.base;
  size = m.size;
  m.base = nullptr;  // the store owns the mapping now
}

}  // namespace

WeightsTarget plan_weights_target() {
  using namespace gen;
  return {std::span(kWeights), kPlanHash, kConfigName, kRanks, kNumExperts, kExpertsPerRank, kVocabSize, kVocabShard,
          kReplicatedWeightBytes, kRankWeightBytes};
}

bool cheap_to_verify(const plan::Weight& w) {
  switch (w.dtype) {
    case plan::DType::F8_E4M3:
    case plan::DType::FP4_X2: return false;
    case plan::DType::BF16: return w.ndim == 1;
    default: return true;
  }
}

WeightStore WeightStore::open(const std::string& dir, int64_t rank, bool verify_checksums) {
  return open(dir, rank, verify_checksums ? WeightVerify::Full : WeightVerify::Small);
}

WeightStore WeightStore::open(const std::string& dir, int64_t rank, WeightVerify verify) {
  if (rank < 0 || rank >= gen::kRanks)
    throw Error("rank " + std::to_string(rank) + " is outside the plan's " + std::to_string(gen::kRanks) + " ranks");
  WeightStore w;
  w.rank_ = rank;
  w.summaries_.resize(2);
  map_and_check(dir + "/" + replicated_file_name(), wfile::kKindReplicated, 0, verify, w.rep_.base, w.rep_.size,
                w.rep_.data, w.summaries_[0]);
  map_and_check(dir + "/" + rank_file_name(rank, gen::kRanks), wfile::kKindRank, rank, verify, w.rank_file_.base,
                w.rank_file_.size, w.rank_file_.data, w.summaries_[1]);
  return w;
}

WeightStore::WeightStore(WeightStore&& o) noexcept { *this = std::move(o); }

WeightStore& WeightStore::operator=(WeightStore&& o) noexcept {
  std::swap(rep_, o.rep_);
  std::swap(rank_file_, o.rank_file_);
  std::swap(rank_, o.rank_);
  std::swap(summaries_, o.summaries_);
  return *this;
}

WeightStore::~WeightStore() {
  if (rep_.base) ::munmap(const_cast<uint8_t*>(rep_.base), rep_.size);
  if (rank_file_.base) ::munmap(const_cast<uint8_t*>(rank_file_.base), rank_file_.size);
}

const uint8_t* WeightStore::data(uint32_t id) const {
  const plan::Weight& w = gen::kWeights[id];
  return (w.file == plan::WeightFile::Rank ? rank_file_.data : rep_.data) + w.offset;
}

}  // namespace dsv4
