// safetensors reader / writer: official layout, round trips, and every malformed-input message.
#include <cstring>

#include "ckpt_test_util.hpp"

namespace dsv4::test {
namespace {

// Deterministic test payload for a tensor: byte i = hash(name) + i.
void fill_pattern(const st::TensorSpec& t, uint64_t off, std::span<uint8_t> out) {
  const uint8_t h = uint8_t(std::hash<std::string>{}(t.name));
  for (size_t i = 0; i < out.size(); ++i) out[i] = uint8_t(h + off + i);
}

std::vector<st::TensorSpec> mixed_specs() {
  return {{"b.bf16", HfDtype::BF16, {3, 5}},  {"a.e4m3", HfDtype::F8_E4M3, {7, 3}}, {"z.i64", HfDtype::I64, {2}},
          {"s.e8m0", HfDtype::F8_E8M0, {2, 2}}, {"f.f32", HfDtype::F32, {3}},       {"q.i8", HfDtype::I8, {5}},
          {"u.u8", HfDtype::U8, {1}},           {"i.i32", HfDtype::I32, {2, 1}},    {"a.f32", HfDtype::F32, {1, 1}},
          {"empty", HfDtype::BF16, {0, 4}}};
}

TEST(Safetensors, WriterOfficialOrderAndLayout) {
  TempDir d;
  const std::string p = d / "x.safetensors";
  st::write_safetensors(p, mixed_specs(), fill_pattern);
  EXPECT_FALSE(fs::exists(p + ".tmp"));
  const std::string raw = read_file(p);
  uint64_t n = 0;
  std::memcpy(&n, raw.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  const std::string header = raw.substr(8, n);
  EXPECT_EQ(header.rfind("{\"__metadata__\":{\"format\":\"pt\"},\"z.i64\":{\"dtype\":\"I64\",\"shape\":[2],"
                         "\"data_offsets\":[0,16]},",
                         0),
            0u)
      << header;
  EXPECT_EQ(header.find_last_not_of(' '), header.find_last_of('}'));

  const auto f = st::SafetensorsFile::open(p);
  std::vector<std::string> order;
  uint64_t expect_begin = 0;
  for (auto& t : f.tensors()) {
    order.push_back(t.name);
    EXPECT_EQ(t.begin, expect_begin) << t.name;  // back to back
    expect_begin = t.end;
    std::vector<uint8_t> want(t.bytes());
    fill_pattern({t.name, t.dtype, t.shape}, 0, want);
    auto got = f.data(t);
    EXPECT_TRUE(std::equal(got.begin(), got.end(), want.begin(), want.end())) << t.name;
  }
  // I64, F32 (by name), I32, BF16 (by name), F8_E8M0, F8_E4M3, I8, U8
  EXPECT_EQ(order, (std::vector<std::string>{"z.i64", "a.f32", "f.f32", "i.i32", "b.bf16", "empty", "s.e8m0",
                                             "a.e4m3", "q.i8", "u.u8"}));
  EXPECT_EQ(f.file_size(), 8 + n + expect_begin);
  EXPECT_EQ(f.metadata().at("format"), "pt");
}

TEST(Safetensors, WriterReproducesGoldenTinyFileByteExact) {
  const auto src = st::SafetensorsFile::open(kTinyCkpt + "/model.safetensors");
  std::vector<st::TensorSpec> specs;
  for (auto& t : src.tensors()) specs.push_back({t.name, t.dtype, t.shape});
  std::reverse(specs.begin(), specs.end());  // input order must not matter
  TempDir d;
  st::write_safetensors(
      d / "model.safetensors", specs,
      [&](const st::TensorSpec& t, uint64_t off, std::span<uint8_t> out) {
        auto data = src.data(*src.find(t.name));
        std::memcpy(out.data(), data.data() + off, out.size());
      },
      1, 4096);  // small chunks: exercises the chunked path
  EXPECT_TRUE(read_file(d / "model.safetensors") == read_file(kTinyCkpt + "/model.safetensors"));
}

TEST(Safetensors, Align64PadsBetweenTensors) {
  TempDir d;
  const std::string p = d / "a.safetensors";
  st::write_safetensors(p, mixed_specs(), fill_pattern, 64);
  const auto f = st::SafetensorsFile::open(p);
  EXPECT_EQ(f.data_offset() % 64, 0u);
  const std::string raw = read_file(p);
  uint64_t prev_end = 0;
  for (auto& t : f.tensors()) {
    EXPECT_EQ(t.begin % 64, 0u) << t.name;
    for (uint64_t b = prev_end; b < t.begin; ++b) EXPECT_EQ(raw[f.data_offset() + b], '\0');  // zero gaps
    prev_end = t.end;
    std::vector<uint8_t> want(t.bytes());
    fill_pattern({t.name, t.dtype, t.shape}, 0, want);
    auto got = f.data(t);
    EXPECT_TRUE(std::equal(got.begin(), got.end(), want.begin(), want.end())) << t.name;
  }
}

TEST(Safetensors, WriterChecksCompletenessAndOrder) {
  TempDir d;
  const std::string p = d / "w.safetensors";
  {
    st::SafetensorsWriter w(p, {{"t", HfDtype::F32, {4}}});
    const uint8_t b[8] = {};
    expect_error([&] { w.write("t", 4, b); }, {"'t' written at byte 4", "expected the next byte 0"});
    expect_error([&] { w.write("nope", 0, b); }, {"'nope' is not in this file"});
    w.write("t", 0, b);
    expect_error([&] { w.finish(); }, {"'t' has 8 of 16 bytes written"});
  }
  EXPECT_FALSE(fs::exists(p));
  EXPECT_FALSE(fs::exists(p + ".tmp"));
  expect_error([&] { st::plan_safetensors({{"t", HfDtype::F32, {1}}, {"t", HfDtype::BF16, {1}}}); },
               {"duplicate tensor 't'"});
}

// ---- malformed files --------------------------------------------------------------------------------

const char* kOne = R"({"t":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";

TEST(SafetensorsBad, Truncated) {
  TempDir d;
  write_file(d / "x.safetensors", "abc");
  expect_error([&] { st::SafetensorsFile::open(d / "x.safetensors"); }, {"x.safetensors", "truncated", "3 bytes"});
}

TEST(SafetensorsBad, HeaderLengthBeyondFile) {
  TempDir d;
  write_raw_st(d / "x.safetensors", kOne, 16, 5000);
  expect_error([&] { st::SafetensorsFile::open(d / "x.safetensors"); },
               {"header length 5000 runs past the end of the file"});
  write_raw_st(d / "y.safetensors", kOne, 16, int64_t(200'000'000));
  expect_error([&] { st::SafetensorsFile::open(d / "y.safetensors"); },
               {"header length 200000000 exceeds the limit of 100000000"});
}

TEST(SafetensorsBad, InvalidJson) {
  TempDir d;
  write_raw_st(d / "x.safetensors", R"({"t":{"dtype":"F32",)", 16);
  expect_error([&] { st::SafetensorsFile::open(d / "x.safetensors"); }, {"x.safetensors", "invalid JSON"});
  write_raw_st(d / "y.safetensors", R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"t":{}})", 16);
  expect_error([&] { st::SafetensorsFile::open(d / "y.safetensors"); }, {"duplicate key 't'"});
  write_raw_st(d / "z.safetensors", "[1,2]", 0);
  expect_error([&] { st::SafetensorsFile::open(d / "z.safetensors"); }, {"expected a JSON object"});
}

TEST(SafetensorsBad, UnknownDtype) {
  TempDir d;
  write_raw_st(d / "x.safetensors", R"({"t":{"dtype":"F8_E5M2","shape":[4],"data_offsets":[0,4]}})", 4);
  expect_error([&] { st::SafetensorsFile::open(d / "x.safetensors"); },
               {"tensor 't'", "field 'dtype'", "unknown dtype \"F8_E5M2\""});
}

TEST(SafetensorsBad, BadFields) {
  TempDir d;
  write_raw_st(d / "a.safetensors", R"({"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4);
  expect_error([&] { st::SafetensorsFile::open(d / "a.safetensors"); }, {"field 'shape'", "non-negative"});
  write_raw_st(d / "b.safetensors", R"({"t":{"dtype":"F32","shape":[1]}})", 4);
  expect_error([&] { st::SafetensorsFile::open(d / "b.safetensors"); }, {"field 'data_offsets' missing"});
  write_raw_st(d / "c.safetensors", R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", 4);
  expect_error([&] { st::SafetensorsFile::open(d / "c.safetensors"); }, {"begin 4 > end 0"});
  write_raw_st(d / "e.safetensors", R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", 4);
  expect_error([&] { st::SafetensorsFile::open(d / "e.safetensors"); }, {"unknown field 'x'"});
}

TEST(SafetensorsBad, OffsetOutsideFile) {
  TempDir d;
  write_raw_st(d / "x.safetensors", kOne, 12);
  expect_error([&] { st::SafetensorsFile::open(d / "x.safetensors"); },
               {"tensor 't'", "field 'data_offsets'", "end 16 is outside the file", "data section is 12 bytes"});
}

TEST(SafetensorsBad, OverlappingTensors) {
  TempDir d;
  write_raw_st(d / "x.safetensors",
               R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
               12);
  expect_error([&] { st::SafetensorsFile::open(d / "x.safetensors"); }, {"'a' [0, 8)", "'b' [4, 12)", "overlap"});
}

TEST(SafetensorsBad, SizeShapeMismatch) {
  TempDir d;
  write_raw_st(d / "x.safetensors", R"({"t":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,8]}})", 8);
  expect_error([&] { st::SafetensorsFile::open(d / "x.safetensors"); },
               {"tensor 't'", "size mismatch", "span 8 bytes", "[2, 3] x BF16 needs 12"});
  write_raw_st(d / "y.safetensors",
               R"({"t":{"dtype":"I64","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8);
  expect_error([&] { st::SafetensorsFile::open(d / "y.safetensors"); }, {"overflows 64 bits"});
}

// Gaps are alignment padding only (the project's --align files): every offset and the data start a
// multiple of one power of two, each tensor at the first such multiple after the previous one, and the
// last tensor ending at the end of the file. Other gaps and trailing bytes are rejected (test_trust.cpp).
TEST(SafetensorsBad, AlignmentGapsAreAccepted) {
  TempDir d;
  std::string h = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[64,68]}})";
  h.append((64 - (8 + h.size()) % 64) % 64, ' ');
  write_raw_st(d / "x.safetensors", h, 68);
  const auto f = st::SafetensorsFile::open(d / "x.safetensors");
  EXPECT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.find("b")->begin, 64u);
}

// ---- index ------------------------------------------------------------------------------------------

void small_sharded(const TempDir& d) {
  st::write_safetensors(d / "s1.safetensors", {{"a", HfDtype::F32, {2}}}, fill_pattern);
  st::write_safetensors(d / "s2.safetensors", {{"b", HfDtype::BF16, {3}}}, fill_pattern);
}

TEST(SafetensorsIndex, OpensShards) {
  TempDir d;
  small_sharded(d);
  write_file(d / "model.safetensors.index.json",
             R"({"metadata":{"total_size":14},"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}})");
  const auto ck = st::Checkpoint::open(d.path.string());
  EXPECT_EQ(ck.files().size(), 2u);
  EXPECT_EQ(ck.total_bytes(), 14u);
  ASSERT_NE(ck.find("b"), nullptr);
  EXPECT_EQ(ck.find("b")->file->path(), d / "s2.safetensors");
  EXPECT_EQ(ck.find("b")->file->data(*ck.find("b")->info).size(), 6u);
}

TEST(SafetensorsIndex, MissingShard) {
  TempDir d;
  small_sharded(d);
  write_file(d / "model.safetensors.index.json", R"({"weight_map":{"a":"s1.safetensors","b":"s9.safetensors"}})");
  expect_error([&] { st::Checkpoint::open(d.path.string()); },
               {"model.safetensors.index.json", "weight_map['b']", "shard 's9.safetensors'", "does not exist"});
}

TEST(SafetensorsIndex, InconsistentIndex) {
  TempDir d;
  small_sharded(d);
  const std::string ip = d / "model.safetensors.index.json";
  write_file(ip, R"({"weight_map":{"a":"s1.safetensors","b":"s1.safetensors"}})");
  expect_error([&] { st::Checkpoint::open(d.path.string()); }, {"'b' is mapped to shard 's1.safetensors'", "does not hold it"});
  write_file(ip, R"({"weight_map":{"a":"s1.safetensors"}})");
  st::write_safetensors(d / "s1.safetensors", {{"a", HfDtype::F32, {2}}, {"c", HfDtype::F32, {1}}}, fill_pattern);
  expect_error([&] { st::Checkpoint::open(d.path.string()); }, {"holds tensor 'c'", "does not list"});
  small_sharded(d);
  write_file(ip, R"({"metadata":{"total_size":15},"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}})");
  expect_error([&] { st::Checkpoint::open(d.path.string()); }, {"metadata.total_size is 15", "total 14 bytes"});
  write_file(ip, R"({"weight_map":{"a":"../s1.safetensors"}})");
  expect_error([&] { st::Checkpoint::open(d.path.string()); }, {"not a plain file name"});
  write_file(ip, R"({"weight_map":{"a":"s1.safetensors"})");
  expect_error([&] { st::Checkpoint::open(d.path.string()); }, {"model.safetensors.index.json", "invalid JSON"});
}

TEST(SafetensorsIndex, NoCheckpoint) {
  TempDir d;
  expect_error([&] { st::Checkpoint::open(d.path.string()); },
               {"neither model.safetensors.index.json nor model.safetensors"});
}

}  // namespace
}  // namespace dsv4::test
