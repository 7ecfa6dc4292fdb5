#include "runtime/engine/arena.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "plan/error.hpp"

namespace dsv4 {

Arena::Arena() {
  void* p = ::mmap(nullptr, size_t(gen::kArenaBytes), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    throw Error("cannot allocate the arena of " + std::to_string(gen::kArenaBytes) + " bytes: " + std::strerror(errno));
  base_ = static_cast<uint8_t*>(p);
}

Arena::~Arena() {
  if (base_) ::munmap(base_, size_t(gen::kArenaBytes));
}

}  // namespace dsv4
