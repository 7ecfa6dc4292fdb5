// A shape config file's text (config/<name>.json: HF model block + deploy block) through the strict
// parser and validator. An accepted config must survive the canonical write and re-read unchanged.
#include <string>

#include "fuzz/fuzz_util.hpp"
#include "tools/config/config_json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  dsv4::fuzz::expect_clean([&] {
    const dsv4::ShapeConfig c = dsv4::parse_shape_config(text, "fuzz", "fuzz.json");
    const std::string once = dsv4::shape_config_to_text(c);
    const std::string twice = dsv4::shape_config_to_text(dsv4::parse_shape_config(once, "fuzz", "canonical.json"));
    dsv4::fuzz::check(once == twice, "canonical config text does not round-trip");
    (void)dsv4::vocab_shard_rows(c);
  });
  return 0;
}
