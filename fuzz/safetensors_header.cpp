// One .safetensors file (header + data) through SafetensorsFile::open, header-only and mapped; every
// accepted tensor's first and last byte is read, so an entry that points outside the mapping is an
// ASan report.
#include "fuzz/fuzz_util.hpp"
#include "tools/checkpoint/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static dsv4::fuzz::MemFile file("st");
  const std::string& path = file.set(data, size);
  dsv4::fuzz::expect_clean([&] { dsv4::st::SafetensorsFile::open(path, false); });
  dsv4::fuzz::expect_clean([&] {
    const auto f = dsv4::st::SafetensorsFile::open(path, true);
    volatile uint8_t sink = 0;
    for (const auto& t : f.tensors()) {
      const auto bytes = f.data(t);
      dsv4::fuzz::check(bytes.size() == t.bytes(), "data() size differs from the entry's byte count");
      if (!bytes.empty()) sink = sink + bytes.front() + bytes.back();
      dsv4::fuzz::check(f.find(t.name) == &t, "find() does not return the listed entry");
    }
  });
  return 0;
}
