// model.safetensors.index.json through Checkpoint::open, in a scratch checkpoint dir (tmpfs) that
// holds two small valid shards, a.safetensors (tensors x, y) and b.safetensors (tensor z).
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "fuzz/fuzz_util.hpp"
#include "tools/checkpoint/safetensors.hpp"

namespace {

std::string make_dir() {
  char tmpl[] = "/dev/shm/dsv4-fuzz-index-XXXXXX";
  if (!::mkdtemp(tmpl)) std::abort();
  const std::string dir = tmpl;
  auto fill = [](const dsv4::st::TensorSpec&, uint64_t off, std::span<uint8_t> out) {
    for (size_t i = 0; i < out.size(); ++i) out[i] = uint8_t(off + i);
  };
  using dsv4::HfDtype;
  dsv4::st::write_safetensors(dir + "/a.safetensors", {{"x", HfDtype::BF16, {2, 3}}, {"y", HfDtype::F32, {4}}}, fill);
  dsv4::st::write_safetensors(dir + "/b.safetensors", {{"z", HfDtype::I64, {1}}}, fill);
  static std::string cleanup = dir;
  std::atexit([] { std::filesystem::remove_all(cleanup); });
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = make_dir();
  {
    std::ofstream f(dir + "/model.safetensors.index.json", std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), std::streamsize(size));
  }
  dsv4::fuzz::expect_clean([&] {
    const auto c = dsv4::st::Checkpoint::open(dir, true);
    for (const auto& [name, e] : c.tensors()) {
      dsv4::fuzz::check(e.file && e.info && e.info->name == name, "index entry without its shard tensor");
      (void)e.file->data(*e.info);
    }
    (void)c.total_bytes();
  });
  return 0;
}
