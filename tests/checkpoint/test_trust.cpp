// Hostile files, without the per-config binaries: converted-weights headers whose sizes wrap, safetensors
// headers that would shift every tensor, NaN / Inf where a value scales every token, .npy shapes that
// overflow. Each case is a defect a user found (issue 23) or a sibling of one.
#include <cmath>
#include <cstring>

#include "ckpt_test_util.hpp"
#include "plan/weights_file.hpp"
#include "runtime/io/npy.hpp"
#include "tools/checkpoint/check_hf.hpp"

namespace dsv4::test {
namespace {

// ---- converted weights header (defect 1) ------------------------------------------------------------

wfile::FileHeader good_header(uint64_t n, uint64_t data_bytes) {
  wfile::FileHeader h{};
  h.n_tensors = n;
  h.table_offset = sizeof(wfile::FileHeader);
  EXPECT_TRUE(wfile::data_offset_for(n, h.data_offset));
  h.data_bytes = data_bytes;
  return h;
}

TEST(WeightsFileLayout, AGoodLayoutPasses) {
  const wfile::FileHeader h = good_header(3, 1000);
  EXPECT_EQ(h.data_offset, 4096u);
  EXPECT_EQ(wfile::layout_error(h, 4096 + 1000), "");
  EXPECT_EQ(good_header(16, 0).data_offset, 8192u);  // 256 + 16 * 256 bytes round up to two pages
}

// table_offset + n_tensors * 256 wraps to a small number: the old check passed it and the table read ran
// off the mapping (SIGSEGV in check, eval, run).
TEST(WeightsFileLayout, WrappingTableOffsetIsRejected) {
  wfile::FileHeader h = good_header(3, 1000);
  h.table_offset = ~uint64_t(0) - 3 * sizeof(wfile::TensorEntry) + 1;  // + 3 * 256 == 0 mod 2^64
  const std::string e = wfile::layout_error(h, 4096 + 1000);
  EXPECT_NE(e.find("layout: table_offset is 18446744073709550848, expected 256"), std::string::npos) << e;
}

TEST(WeightsFileLayout, WrappingTensorCountIsRejected) {
  wfile::FileHeader h = good_header(3, 1000);
  h.n_tensors = uint64_t(1) << 56;  // n * 256 == 0 mod 2^64
  const std::string e = wfile::layout_error(h, 4096 + 1000);
  EXPECT_NE(e.find("n_tensors 72057594037927936 tensor entries cannot fit a file of 5096 bytes"), std::string::npos) << e;
  uint64_t off = 0;
  EXPECT_FALSE(wfile::data_offset_for(~uint64_t(0) / 256, off));
}

TEST(WeightsFileLayout, DataSectionMustEndExactlyAtTheEndOfTheFile) {
  wfile::FileHeader h = good_header(3, 1000);
  h.data_bytes = ~uint64_t(0);  // data_offset + data_bytes wraps (the old check added them)
  EXPECT_NE(wfile::layout_error(h, 5096).find("does not fit the file of 5096 bytes exactly"), std::string::npos);
  h = good_header(3, 1000);
  EXPECT_NE(wfile::layout_error(h, 5097).find("does not fit"), std::string::npos);  // a trailing byte
  EXPECT_NE(wfile::layout_error(h, 5095).find("does not fit"), std::string::npos);  // truncated
  h.data_offset = 8192;  // slack between table and data
  EXPECT_NE(wfile::layout_error(h, 8192 + 1000).find("data_offset is 8192, expected 4096"), std::string::npos);
  h = good_header(3, 1000);
  h.reserved[7] = 1;
  EXPECT_NE(wfile::layout_error(h, 5096).find("reserved header bytes"), std::string::npos);
}

// ---- safetensors coverage (defect 2) ----------------------------------------------------------------

const std::vector<st::TensorSpec> kSpecs = {
    {"a", HfDtype::F32, {3}}, {"b", HfDtype::BF16, {5}}, {"c", HfDtype::U8, {7}}};

void fill(const st::TensorSpec&, uint64_t off, std::span<uint8_t> out) {
  for (size_t i = 0; i < out.size(); ++i) out[i] = uint8_t(off + i + 1);
}

// An official-layout file whose header text ends in `pad` spaces, with its length field `short_by` bytes
// short: the JSON still parses, and every tensor would be read `short_by` bytes early.
std::string short_header_file(const TempDir& d, uint64_t short_by) {
  const st::SafetensorsLayout l = st::plan_safetensors(kSpecs);
  std::string h = l.header;
  while (h.size() < 3 || h.compare(h.size() - 3, 3, "   ") != 0) h += "        ";  // stays a multiple of 8
  uint64_t data = 0;
  for (auto& t : l.tensors) data = std::max(data, t.end);
  const std::string p = d / ("short" + std::to_string(short_by) + ".safetensors");
  write_raw_st(p, h, data, int64_t(h.size() - short_by));
  return p;
}

TEST(SafetensorsCoverage, HeaderLengthAFewBytesShortIsRejected) {
  TempDir d;
  for (uint64_t k = 1; k <= 3; ++k)
    expect_error([&] { st::SafetensorsFile::open(short_header_file(d, k)); },
                 {"short" + std::to_string(k) + ".safetensors: the tensors end at data byte",
                  "the safetensors format requires the tensors to cover the data section exactly"});
  // The same file with the right length opens.
  const std::string ok = short_header_file(d, 0);
  EXPECT_EQ(st::SafetensorsFile::open(ok).tensors().size(), 3u);
}

TEST(SafetensorsCoverage, TrailingBytesAreRejected) {
  TempDir d;
  write_raw_st(d / "t.safetensors", R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", 5);
  expect_error([&] { st::SafetensorsFile::open(d / "t.safetensors"); },
               {"the tensors end at data byte 4 but the data section is 5 bytes"});
}

TEST(SafetensorsCoverage, GapsOnlyAsAlignmentPadding) {
  TempDir d;
  // Our own --align 64 layout opens (synth --align 64 writes this).
  st::write_safetensors(d / "aligned.safetensors", kSpecs, fill, 64);
  const auto f = st::SafetensorsFile::open(d / "aligned.safetensors");
  EXPECT_EQ(f.find("c")->begin % 64, 0u);
  EXPECT_EQ(f.data_offset() % 64, 0u);
  // A gap that is no alignment: [0, 4) then [10, 14).
  write_raw_st(d / "gap.safetensors",
               R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[10,14]}})",
               14);
  expect_error([&] { st::SafetensorsFile::open(d / "gap.safetensors"); },
               {"tensor 'b' begins at data byte 10, expected 4 (right after 'a')",
                "gaps are allowed only below a common power-of-two alignment"});
  // A data section that does not start at the first tensor.
  write_raw_st(d / "lead.safetensors", R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[3,7]}})", 7);
  expect_error([&] { st::SafetensorsFile::open(d / "lead.safetensors"); }, {"tensor 'a' begins at data byte 3, expected 0"});
  // Aligned offsets but a gap of a whole alignment unit: [0, 4) then [128, 132) with every offset a multiple of 64.
  std::string h = R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[128,132]}})";
  h.append((128 - (8 + h.size()) % 128) % 128 + 64, ' ');  // data start a multiple of 64, not of 128
  write_raw_st(d / "wide.safetensors", h, 132);
  expect_error([&] { st::SafetensorsFile::open(d / "wide.safetensors"); },
               {"tensor 'b' begins at data byte 128, expected 64", "aligned to 64"});
}

// The index is read whole: bounded like a header (a sparse file, no disk cost).
TEST(SafetensorsCoverage, OversizedIndexIsRejectedBeforeReading) {
  TempDir d;
  const std::string p = d / "model.safetensors.index.json";
  write_file(p, "{");
  ASSERT_EQ(::truncate(p.c_str(), off_t(st::kMaxHeaderBytes + 1)), 0);
  expect_error([&] { st::Checkpoint::open(d.path.string()); },
               {p + ": 100000001 bytes, more than the 100000000-byte limit of an index"});
}

// ---- values that scale every token (defect 3, convert / check-hf part) -------------------------------

TEST(Finite, ClassesAndFirstBadElement) {
  EXPECT_TRUE(must_be_finite("layers.0.attn_norm.weight", HfDtype::BF16));
  EXPECT_TRUE(must_be_finite("norm.weight", HfDtype::BF16));
  EXPECT_TRUE(must_be_finite("layers.0.ffn.gate.bias", HfDtype::F32));
  EXPECT_TRUE(must_be_finite("layers.0.attn.wq_a.scale", HfDtype::F8_E8M0));
  EXPECT_FALSE(must_be_finite("embed.weight", HfDtype::BF16));
  EXPECT_FALSE(must_be_finite("layers.0.attn.wq_a.weight", HfDtype::F8_E4M3));
  const float f[4] = {1.f, -2.f, NAN, INFINITY};
  EXPECT_EQ(first_nonfinite(HfDtype::F32, {reinterpret_cast<const uint8_t*>(f), 8}), "");
  EXPECT_EQ(first_nonfinite(HfDtype::F32, {reinterpret_cast<const uint8_t*>(f), 16}), "element 2 is nan (bits 0x7fc00000)");
  const uint16_t bf[3] = {0x3f80, 0xff80, 0x7fc0};
  EXPECT_EQ(first_nonfinite(HfDtype::BF16, {reinterpret_cast<const uint8_t*>(bf), 6}), "element 1 is -inf (bits 0xff80)");
  const uint8_t e8[3] = {127, 0, 255};
  EXPECT_EQ(first_nonfinite(HfDtype::F8_E8M0, {e8, 3}), "element 2 is nan (bits 0xff)");
}

// A copy of the golden checkpoint with one value of `name` replaced by `bytes` at element `index`.
std::string poisoned_copy(const TempDir& d, const std::string& name, uint64_t index, const void* bytes, size_t n) {
  const std::string dir = d / "ck";
  fs::copy(kTinyCkpt, dir, fs::copy_options::recursive);
  const std::string p = dir + "/model.safetensors";
  const auto f = st::SafetensorsFile::open(p, false);
  const st::TensorInfo* t = f.find(name);
  EXPECT_NE(t, nullptr) << name;
  const int fd = ::open(p.c_str(), O_WRONLY);
  EXPECT_EQ(::pwrite(fd, bytes, n, off_t(f.data_offset() + t->begin + index * n)), ssize_t(n));
  ::close(fd);
  return dir;
}

TEST(Finite, CheckHfNamesANanNormWeight) {
  TempDir d;
  const uint16_t nan = 0x7fc1;
  const std::string dir = poisoned_copy(d, "layers.1.attn_norm.weight", 5, &nan, 2);
  const HfCheckReport r = check_hf_checkpoint(dir, tiny_config());
  EXPECT_FALSE(r.ok());
  ASSERT_EQ(r.nonfinite.size(), 1u) << r.summary();
  EXPECT_EQ(r.nonfinite[0], "layers.1.attn_norm.weight: element 5 is nan (bits 0x7fc1)");
  EXPECT_NE(r.summary().find("1 tensor(s) with NaN or Inf values"), std::string::npos) << r.summary();
  EXPECT_GT(r.values_checked, 100);
  const HfCheckReport clean = check_hf_checkpoint(kTinyCkpt, tiny_config());
  EXPECT_TRUE(clean.ok()) << clean.summary();
}

TEST(Finite, CheckHfNamesAnInfGateBiasAndANanScale) {
  TempDir d;
  const float inf = INFINITY;
  const std::string dir = poisoned_copy(d, "layers.3.ffn.gate.bias", 3, &inf, 4);
  const HfCheckReport r = check_hf_checkpoint(dir, tiny_config());
  ASSERT_EQ(r.nonfinite.size(), 1u) << r.summary();
  EXPECT_EQ(r.nonfinite[0], "layers.3.ffn.gate.bias: element 3 is inf (bits 0x7f800000)");
  TempDir d2;
  const uint8_t nan8 = 0xff;
  const std::string dir2 = poisoned_copy(d2, "layers.2.attn.wq_a.scale", 0, &nan8, 1);
  const HfCheckReport r2 = check_hf_checkpoint(dir2, tiny_config());
  ASSERT_EQ(r2.nonfinite.size(), 1u) << r2.summary();
  EXPECT_EQ(r2.nonfinite[0], "layers.2.attn.wq_a.scale: element 0 is nan (bits 0xff)");
}

// ---- .npy (defect 5, reader part) -------------------------------------------------------------------

void write_npy_raw(const std::string& p, const std::string& shape, const std::string& descr, size_t payload) {
  std::string h = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  h.append((64 - (10 + h.size() + 1) % 64) % 64, ' ');
  h += '\n';
  std::string s = std::string("\x93NUMPY\x01\x00", 8);
  s += char(h.size() & 0xff);
  s += char(h.size() >> 8);
  write_file(p, s + h + std::string(payload, '\0'));
}

TEST(Npy, ShapesThatOverflowAreErrorsNotAllocations) {
  TempDir d;
  write_npy_raw(d / "a.npy", "(4611686018427387904, 4)", "<i8", 16);  // 2^62 x 4 elements
  EXPECT_THROW(npy::read(d / "a.npy"), std::runtime_error);
  try {
    npy::read(d / "a.npy");
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("element count overflows int64"), std::string::npos) << e.what();
  }
  write_npy_raw(d / "b.npy", "(99999999999999999999,)", "<i4", 4);
  try {
    npy::read(d / "b.npy");
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("a dimension overflows int64"), std::string::npos) << e.what();
  }
  write_npy_raw(d / "c.npy", "(2305843009213693952,)", "<i8", 8);  // 2^61 x 8 bytes = 2^64
  try {
    npy::read(d / "c.npy");
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("byte size overflows"), std::string::npos) << e.what();
  }
}

TEST(Npy, PayloadMustMatchTheShapeExactly) {
  TempDir d;
  write_npy_raw(d / "short.npy", "(3,)", "<i4", 8);
  write_npy_raw(d / "long.npy", "(3,)", "<i4", 16);
  write_npy_raw(d / "ok.npy", "(3,)", "<i4", 12);
  for (const char* n : {"short.npy", "long.npy"}) {
    try {
      npy::read(d / n);
      ADD_FAILURE() << n << ": no error";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("expected 12 payload bytes for shape (3,)"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(npy::read(d / "ok.npy").shape, std::vector<int64_t>{3});
  write_npy_raw(d / "neg.npy", "(-3,)", "<i4", 0);
  EXPECT_THROW(npy::read(d / "neg.npy"), std::runtime_error);
}

}  // namespace
}  // namespace dsv4::test
