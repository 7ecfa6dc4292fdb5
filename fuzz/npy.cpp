// runtime/io/npy.hpp: npy::read of arbitrary bytes (as a memory file), then the typed views the
// front ends use. An accepted array's byte count must match its shape and dtype.
#include "fuzz/fuzz_util.hpp"
#include "runtime/io/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static dsv4::fuzz::MemFile file("npy");
  const std::string& path = file.set(data, size);
  dsv4::fuzz::expect_clean([&] {
    const auto a = dsv4::npy::read(path);
    dsv4::fuzz::check(a.numel() >= 0, "negative element count accepted");
    if (a.descr == "<i4") (void)a.as<int32_t>(path);
    if (a.descr == "<i8") (void)a.as<int64_t>(path);
    if (a.descr == "<f4") (void)a.as<float>(path);
    if (a.descr == "<u2") (void)a.as<uint16_t>(path);
  });
  return 0;
}
