// A converted weights file (runtime/engine/weight_store.cpp, built for the tiny plan) through
// WeightStore::open. At start-up the golden tiny checkpoint is converted once into a tmpfs dir. Each
// input's first byte is a control byte, the rest is laid over the start of a real converted file:
//   bit 0: which file (0: replicated.dsv4w, 1: the rank file);
//   bit 1: the file is the input alone (truncated), else the input over the real file's bytes
//          (so small inputs reach the tensor table and checksum checks with a real data section);
//   bit 2: verify checksums.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "fuzz/fuzz_util.hpp"
#include "runtime/engine/weight_store.hpp"
#include "tools/checkpoint/convert.hpp"

namespace fs = std::filesystem;

namespace {

// Three dirs: `over` holds the real files and gets the input laid over one of them (restored after);
// `trunc_rep` / `trunc_rank` hold the input alone as that file and the other file real.
struct Setup {
  std::string over, trunc[2];
  std::vector<uint8_t> real[2];  // the converted files' bytes
  std::string name[2];
};

std::vector<uint8_t> slurp(const std::string& p) {
  std::vector<uint8_t> v(fs::file_size(p));
  const int fd = ::open(p.c_str(), O_RDONLY);
  if (fd < 0 || ::pread(fd, v.data(), v.size(), 0) != ssize_t(v.size())) std::abort();
  ::close(fd);
  return v;
}

// Writes `n` bytes at offset 0 of `p` and sets its size to `len`.
void put(const std::string& p, const uint8_t* a, size_t n, size_t len) {
  const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT, 0644);
  if (fd < 0 || ::ftruncate(fd, off_t(len)) != 0 || (n && ::pwrite(fd, a, n, 0) != ssize_t(n))) std::abort();
  ::close(fd);
}

Setup make() {
  char tmpl[] = "/dev/shm/dsv4-fuzz-weights-XXXXXX";
  if (!::mkdtemp(tmpl)) std::abort();
  const std::string root = tmpl;
  Setup s;
  s.over = root + "/w";
  dsv4::convert_checkpoint(DSV4_SOURCE_DIR "/tests/golden/tiny/tiny_ckpt", s.over, dsv4::plan_weights_target(),
                           {.progress = false, .warnings = false});
  s.name[0] = "/" + dsv4::replicated_file_name();
  s.name[1] = "/" + dsv4::rank_file_name(0, 1);
  for (int i = 0; i < 2; ++i) s.real[i] = slurp(s.over + s.name[i]);
  for (int i = 0; i < 2; ++i) {
    s.trunc[i] = root + "/t" + std::to_string(i);
    fs::create_directory(s.trunc[i]);
    const int other = 1 - i;
    put(s.trunc[i] + s.name[other], s.real[other].data(), s.real[other].size(), s.real[other].size());
  }
  static std::string cleanup = root;
  std::atexit([] { fs::remove_all(cleanup); });
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Setup s = make();
  if (size == 0) return 0;
  const uint8_t ctl = data[0];
  ++data, --size;
  const int which = ctl & 1;
  const bool truncated = ctl & 2;
  const auto& real = s.real[which];
  const std::string dir = truncated ? s.trunc[which] : s.over;
  put(dir + s.name[which], data, size, truncated ? size : std::max(size, real.size()));
  dsv4::fuzz::expect_clean([&] {
    const auto w = dsv4::WeightStore::open(dir, 0, ctl & 4);
    volatile uint8_t sink = 0;
    for (uint32_t id = 0; id < 4; ++id) sink = sink + *w.data(id);  // mapped pages must be readable
  });
  if (!truncated) put(dir + s.name[which], real.data(), std::min(size, real.size()), real.size());  // restore
  return 0;
}
