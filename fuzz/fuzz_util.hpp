// Shared by the libFuzzer targets: input bytes as a file the code under test opens by path, and the one
// rule every target checks: bad input ends in dsv4::Error (or the std::runtime_error of npy.hpp) with a
// message, never in a crash, a sanitizer report, another exception type, a hang or unbounded memory.
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>

namespace dsv4::fuzz {

// A memory file (memfd, never on disk) rewritten with each input; open() it by path() like a real file.
class MemFile {
 public:
  explicit MemFile(const char* name) : fd_(::memfd_create(name, 0)) {
    if (fd_ < 0) std::abort();
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  const std::string& set(const uint8_t* data, size_t size) {
    if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, data, size, 0) != ssize_t(size)) std::abort();
    return path_;
  }
  const std::string& path() const { return path_; }

 private:
  int fd_;
  std::string path_;
};

// Runs `f`; an expected error (a located message) is fine, anything else escaping is a finding.
template <class F>
void expect_clean(F&& f) {
  try {
    f();
  } catch (const std::runtime_error& e) {  // dsv4::Error derives from it; npy.hpp throws it directly
    if (std::getenv("DSV4_FUZZ_VERBOSE")) std::fprintf(stderr, "error: %s\n", e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "FINDING: unexpected exception type escaped: %s\n", e.what());
    std::abort();
  }
}

// A property of valid input failed (e.g. a round trip): a finding.
inline void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "FINDING: %s\n", what);
    std::abort();
  }
}

}  // namespace dsv4::fuzz
