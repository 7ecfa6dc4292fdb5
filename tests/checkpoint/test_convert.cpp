// `dsv4 convert` / `check` / `eval` end to end through the built per-config binaries: round trips for
// tiny (1 rank), tiny2 (2 ranks), demo (16 ranks, real vocabulary) and the golden checkpoint; every bad
// input gives a clear message on stderr, a non-zero exit and leaves nothing behind (neither the output
// folder nor its `.partial`).
#include "convert_test_util.hpp"

namespace dsv4::test {
namespace {

// ---- round trips ------------------------------------------------------------------------------------

TEST_F(Convert, TinyRoundTripIsExactAndLeavesTheInputAlone) {
  const auto before = digest(my_ck);
  const Result r = convert();
  ASSERT_EQ(r.rc, 0) << show(r);
  EXPECT_EQ(digest(my_ck), before) << "the converter modified its input";
  EXPECT_EQ(ls(outs), std::vector<std::string>{"w"});
  EXPECT_EQ(ls(out), (std::vector<std::string>{"rank-00000-of-00001.dsv4w", "replicated.dsv4w"}));
  for (const char* part : {"wrote " , "(tiny, 1 ranks): 786 tensors in 2 files", "skipped 0 MTP tensor(s) and 0 unknown",
                           "MB/s, peak RSS "})
    EXPECT_NE(r.out.find(part), std::string::npos) << part << "\n" << show(r);
  EXPECT_EQ(r.err.find("warning"), std::string::npos) << show(r);
  const Result c = run({kTiny, "check", "-w", out, "--checksums"});
  ASSERT_EQ(c.rc, 0) << show(c);
  EXPECT_NE(c.out.find("checksums ok"), std::string::npos) << show(c);
  EXPECT_NE(c.out.find("ok: " + out + " matches plan"), std::string::npos) << show(c);
  expect_converted_from(out, my_ck);
}

TEST_F(Convert, Tiny2RoundTripShardsExpertsAndHead) {
  const Result c = run({kTiny2, "check", "-w", w2, "--checksums"});
  ASSERT_EQ(c.rc, 0) << show(c);
  EXPECT_NE(c.out.find("rank 0"), std::string::npos);
  EXPECT_NE(c.out.find("rank 1"), std::string::npos);
  expect_converted_from(w2, ck);
  // Rank 1 holds experts 8..15 of every layer.
  const WFile r1 = WFile::read(w2 + "/rank-00001-of-00002.dsv4w");
  EXPECT_EQ(std::string(r1.table[0].name).find("layers.0.ffn.experts.8."), 0u) << r1.table[0].name;
  // --rank checks one rank only.
  const Result one = run({kTiny2, "check", "-w", w2, "--rank", "1"});
  ASSERT_EQ(one.rc, 0) << show(one);
  EXPECT_EQ(one.out.find("rank 0"), std::string::npos) << show(one);
  EXPECT_NE(one.out.find("rank 1  " + w2 + "/rank-00001-of-00002.dsv4w"), std::string::npos) << show(one);
}

TEST_F(Convert, DemoRoundTripRealVocabulary16Ranks) {
  const std::string dck = tmp / "demo_ck", dw = tmp / "demo_w";
  const Result s = run({kDemo, "synth", "--seed", "3", "-o", dck});
  ASSERT_EQ(s.rc, 0) << show(s);
  const Result r = run({kDemo, "convert", "--hf", dck, "-o", dw});
  ASSERT_EQ(r.rc, 0) << show(r);
  EXPECT_EQ(ls(dw).size(), 19u);  // 17 weight files and the checkpoint's tokenizer.json, tokenizer_config.json
  EXPECT_EQ(read_file(dck + "/tokenizer.json"), read_file(dw + "/tokenizer.json"));
  const Result c = run({kDemo, "check", "-w", dw, "--checksums"});
  ASSERT_EQ(c.rc, 0) << show(c);
  EXPECT_NE(c.out.find("rank 15"), std::string::npos) << show(c);
  expect_converted_from(dw, dck);
}

TEST_F(Convert, GoldenTinyCheckpointConvertsAndLoads) {
  const Result r = run({kTiny, "convert", "--hf", kTinyCkpt, "-o", out});
  ASSERT_EQ(r.rc, 0) << show(r);
  EXPECT_EQ(r.err.find("warning"), std::string::npos) << show(r);
  const Result c = run({kTiny, "check", "-w", out, "--checksums"});
  ASSERT_EQ(c.rc, 0) << show(c);
  expect_converted_from(out, kTinyCkpt);
}

// The header-only fake of the real Flash index is checked through the library in
// CheckHf.FlashHeaderOnlyFakeOfRealIndexPasses; here the command line on the golden checkpoint.
TEST_F(Convert, CheckHfCommandOnTheGoldenCheckpoint) {
  const Result r = run({kTiny, "check-hf", "--hf", kTinyCkpt});
  EXPECT_EQ(r.rc, 0) << show(r);
  EXPECT_NE(r.out.find(kTinyCkpt + ": OK: 1 shard(s), 786/786 main-model tensors"), std::string::npos) << show(r);
  const Result bad = run({kTiny, "check-hf", "--hf", kTinyCkpt, "--config", kSrc + "/config/demo.json"});
  EXPECT_EQ(bad.rc, 1) << show(bad);
  EXPECT_NE(bad.out.find("FAILED"), std::string::npos) << show(bad);
}

// ---- bad checkpoints: convert fails before writing ---------------------------------------------------

TEST_F(Convert, TruncatedShard) {
  ASSERT_EQ(::truncate(shard.c_str(), off_t(fs::file_size(shard) - 1000)), 0);
  expect_failure(convert(), {shard + ": tensor '", "is outside the file", "truncated"});
  expect_nothing_written(outs);
}

TEST_F(Convert, HeaderLengthLargerThanTheFile) {
  const uint64_t n = fs::file_size(shard);  // the length field claims more bytes than follow it
  patch(shard, 0, &n, 8);
  expect_failure(convert(), {shard + ": header length " + std::to_string(n) + " runs past the end of the file"});
  expect_nothing_written(outs);
}

TEST_F(Convert, MalformedHeaderJson) {
  patch(shard, 8, "[", 1);  // the header's opening brace
  expect_failure(convert(), {shard + ": header: invalid JSON"});
  expect_nothing_written(outs);
}

TEST_F(Convert, OverlappingOffsets) {
  StFile f = StFile::read(shard);
  f.header["layers.1.attn_norm.weight"]["data_offsets"] = f.header["layers.0.attn_norm.weight"]["data_offsets"];
  f.write(shard);
  expect_failure(convert(), {shard + ": tensors '", "layers.0.attn_norm.weight", "layers.1.attn_norm.weight", "overlap"});
  expect_nothing_written(outs);
}

TEST_F(Convert, OutOfRangeOffsets) {
  StFile f = StFile::read(shard);
  auto& t = f.header["embed.weight"];
  const uint64_t bytes = t["data_offsets"][1].get<uint64_t>() - t["data_offsets"][0].get<uint64_t>();
  t["data_offsets"] = {f.data.size(), f.data.size() + bytes};
  f.write(shard);
  expect_failure(convert(), {shard + ": tensor 'embed.weight': field 'data_offsets': end " +
                                 std::to_string(f.data.size() + bytes) + " is outside the file"});
  expect_nothing_written(outs);
}

TEST_F(Convert, WrongDtypeForAKnownTensor) {
  StFile f = StFile::read(shard);
  f.header["layers.2.attn.wkv.scale"]["dtype"] = "I8";  // same size as F8_E8M0
  f.write(shard);
  expect_failure(convert(), {shard + ": tensor layers.2.attn.wkv.scale: expected F8_E8M0 [1, 2]", "got I8 [1, 2]"});
  expect_nothing_written(outs);
}

TEST_F(Convert, WrongShapeForAKnownTensor) {
  StFile f = StFile::read(shard);
  auto& t = f.header["layers.0.attn.wq_a.weight"];
  const auto shape = t["shape"].get<std::vector<int64_t>>();
  ASSERT_EQ(shape.size(), 2u);
  ASSERT_NE(shape[0], shape[1]);
  t["shape"] = {shape[1], shape[0]};  // same bytes, transposed
  f.write(shard);
  expect_failure(convert(), {shard + ": tensor layers.0.attn.wq_a.weight: expected F8_E4M3 " + shape_str(shape),
                             "got F8_E4M3 " + shape_str({shape[1], shape[0]})});
  expect_nothing_written(outs);
}

// A wo_a block scale outside the range where convert.py's bf16 dequantisation is exact (the engine keeps wo_a
// in FP8 and relies on it) is named with its block and refused.
TEST_F(Convert, WoAScaleOutsideTheExactRange) {
  StFile f = StFile::read(shard);
  const auto& t = f.header["layers.1.attn.wo_a.scale"];
  ASSERT_EQ(t["shape"].get<std::vector<int64_t>>(), (std::vector<int64_t>{1, 4}));
  f.data[t["data_offsets"][0].get<size_t>() + 2] = char(127 - 118);
  f.write(shard);
  expect_failure(convert(), {shard + ": tensor layers.1.attn.wo_a.scale block [0, 2]: scale 2^-118 is outside "
                             "[2^-117, 2^119], where dequantising wo_a to bf16"});
  expect_nothing_written(outs);
}

TEST_F(Convert, MissingTensor) {
  // Renamed (its bytes stay where they are: a tensor erased from the header would leave a gap, which
  // the reader rejects before the plan is consulted).
  const std::string name = "layers.4.ffn.experts.13.w2.scale", other = "renamed.w2.scale";
  StFile f = StFile::read(shard);
  f.header[other] = f.header[name];
  f.header.erase(name);
  f.write(shard);
  json idx = json::parse(read_file(index));
  idx["weight_map"][other] = idx["weight_map"][name];
  idx["weight_map"].erase(name);
  write_json(index, idx);
  expect_failure(convert(), {my_ck + ": tensor layers.4.ffn.experts.13.w2.scale is missing (plan tiny tensor"});
  expect_nothing_written(outs);
}

TEST_F(Convert, ExtraUnknownTensorIsWarnedAndSkippedMtpSilently) {
  StFile f = StFile::read(shard);
  const uint64_t end = f.data.size();
  f.header["layers.0.attn.extra.weight"] = {{"dtype", "BF16"}, {"shape", {4}}, {"data_offsets", {end, end + 8}}};
  f.header["mtp.0.norm.weight"] = {{"dtype", "BF16"}, {"shape", {4}}, {"data_offsets", {end + 8, end + 16}}};
  f.data.append(16, '\x11');
  f.write(shard);
  json idx = json::parse(read_file(index));
  idx["weight_map"]["layers.0.attn.extra.weight"] = "model.safetensors";
  idx["weight_map"]["mtp.0.norm.weight"] = "model.safetensors";
  idx["metadata"].erase("total_size");
  write_json(index, idx);
  const Result r = convert();
  ASSERT_EQ(r.rc, 0) << show(r);
  EXPECT_NE(r.err.find("dsv4: warning: " + shard +
                       ": tensor layers.0.attn.extra.weight is not part of plan tiny (unknown tensor); skipped"),
            std::string::npos)
      << show(r);
  EXPECT_EQ(r.err.find("mtp.0"), std::string::npos) << "MTP tensors are skipped silently\n" << show(r);
  EXPECT_NE(r.out.find("skipped 1 MTP tensor(s) and 1 unknown tensor(s)"), std::string::npos) << show(r);
  const Result c = run({kTiny, "check", "-w", out, "--checksums"});
  EXPECT_EQ(c.rc, 0) << show(c);
}

TEST_F(Convert, IndexPointsAtAMissingShard) {
  json idx = json::parse(read_file(index));
  idx["weight_map"]["head.weight"] = "model-00002-of-00002.safetensors";
  write_json(index, idx);
  expect_failure(convert(), {index + ": weight_map['head.weight'] points at shard 'model-00002-of-00002.safetensors', "
                                     "which does not exist"});
  expect_nothing_written(outs);
}

// ---- the output folder -------------------------------------------------------------------------------

TEST_F(Convert, OutputAlreadyExistsIsLeftAlone) {
  fs::create_directories(out);
  write_file(out + "/mine", "x");
  expect_failure(convert(), {out + ": already exists"});
  EXPECT_EQ(ls(out), std::vector<std::string>{"mine"});
  EXPECT_EQ(ls(outs), std::vector<std::string>{"w"});
}

TEST_F(Convert, OutputInsideTheInputIsRefused) {
  const auto before = digest(my_ck);
  expect_failure(run({kTiny, "convert", "--hf", my_ck, "-o", my_ck + "/w"}),
                 {"is inside the input checkpoint folder", "never writes into its input"});
  EXPECT_EQ(digest(my_ck), before);
}

TEST_F(Convert, OutputUnderARegularFile) {  // fails for root too (chmod would not)
  write_file(outs + "/file", "x");
  expect_failure(run({kTiny, "convert", "--hf", my_ck, "-o", outs + "/file/w"}),
                 {outs + "/file/w: cannot create the output folder: " + outs + "/file is not a directory"});
  EXPECT_EQ(ls(outs), std::vector<std::string>{"file"});
}

// Runs `script` as root in a private mount namespace (mounts vanish with it); false when unavailable.
bool have_mount_namespace() {
  static const bool ok = [] {
    TempDir d;
    return run({"/usr/bin/unshare", "-m", "/bin/sh", "-c", "mount -t tmpfs -o size=64k tmpfs " + d.path.string()}).rc == 0;
  }();
  return ok;
}

TEST_F(Convert, OutputOnAReadOnlyFilesystem) {
  if (!have_mount_namespace()) GTEST_SKIP() << "unshare -m / mount not permitted here";
  const std::string listing = tmp / "listing";
  const Result r = run({"/usr/bin/unshare", "-m", "/bin/sh", "-c",
                        "mount -t tmpfs -o ro,size=64m tmpfs " + outs + " || exit 99; " + kTiny + " convert --hf " + my_ck +
                            " -o " + out + "; rc=$?; ls -A " + outs + " > " + listing + "; exit $rc"});
  ASSERT_NE(r.rc, 99) << show(r);
  expect_failure(r, {out + ".lock: cannot create the output folder's lock file: Read-only file system"});
  EXPECT_EQ(read_file(listing), "");
}

TEST_F(Convert, DiskFullOnASmallTmpfs) {
  if (!have_mount_namespace()) GTEST_SKIP() << "unshare -m / mount not permitted here";
  const std::string listing = tmp / "listing";
  const Result r = run({"/usr/bin/unshare", "-m", "/bin/sh", "-c",
                        "mount -t tmpfs -o size=1m tmpfs " + outs + " || exit 99; " + kTiny + " convert --hf " + my_ck +
                            " -o " + out + "; rc=$?; ls -A " + outs + " > " + listing + "; exit $rc"});
  ASSERT_NE(r.rc, 99) << show(r);
  expect_failure(r, {outs + ": not enough free space: the weights dir needs ", "are available"});
  EXPECT_EQ(read_file(listing), "");
}

TEST_F(Convert, FileSizeLimit) {
  // `ulimit -f` below the replicated file: the converter reports EFBIG (it ignores SIGXFSZ, which would
  // otherwise kill it) and removes the partial folder with the file it had started.
  const uint64_t rep = fs::file_size(w2 + "/replicated.dsv4w");
  const Result r = run({kTiny2, "convert", "--hf", my_ck, "-o", out}, rep / 2);
  expect_failure(r, {out + ".partial-", "/replicated.dsv4w: cannot reserve " + std::to_string(rep) + " bytes: File too large",
                     "file size limit"});
  expect_nothing_written(outs);
}

// ---- loading converted weights (check, eval) ----------------------------------------------------------

std::string plan_hash_of(const std::string& name) {
  std::string h = read_file(kSrc + "/generated/" + name + "/plan.hash");
  while (!h.empty() && (h.back() == '\n' || h.back() == ' ')) h.pop_back();
  return h;
}

TEST_F(Convert, CheckRejectsWeightsOfAnotherPlan) {
  const std::string msg = w2 + "/replicated.dsv4w: plan hash: this binary is built for plan " + plan_hash_of("tiny") +
                          " (config tiny), the file was converted for plan " + plan_hash_of("tiny2") +
                          " (config tiny2, 2 ranks); convert again with this binary";
  expect_failure(run({kTiny, "check", "-w", w2}), {msg});
  const std::string ids = tmp / "ids.npy";
  const int32_t tok[5] = {1, 2, 3, 4, 5};
  npy::write(ids, tok, {5});
  expect_failure(run({kTiny, "eval", "-w", w2, "--input-ids", ids, "--decode-steps", "1", "--logits-out", tmp / "l.npy"}),
                 {msg});
  EXPECT_FALSE(fs::exists(tmp / "l.npy"));
}

TEST_F(Convert, CheckRejectsARankCountMismatch) {
  copy_dir(w1, out);
  const uint32_t two = 2;  // same plan hash, but the header says 2 ranks
  patch(out + "/replicated.dsv4w", offsetof(wfile::FileHeader, ranks), &two, 4);
  expect_failure(run({kTiny, "check", "-w", out}), {out + "/replicated.dsv4w: rank count: expected 1, got 2"});
}

TEST_F(Convert, CheckRejectsAnotherRanksFile) {
  copy_dir(w2, out);
  fs::copy_file(out + "/rank-00001-of-00002.dsv4w", out + "/rank-00000-of-00002.dsv4w",
                fs::copy_options::overwrite_existing);
  expect_failure(run({kTiny2, "check", "-w", out, "--rank", "0"}), {out + "/rank-00000-of-00002.dsv4w: rank: expected 0, got 1"});
  EXPECT_EQ(run({kTiny2, "check", "-w", out, "--rank", "1"}).rc, 0);
}

TEST_F(Convert, CheckRejectsAMissingRankFile) {
  copy_dir(w2, out);
  fs::remove(out + "/rank-00001-of-00002.dsv4w");
  expect_failure(run({kTiny2, "check", "-w", out}),
                 {out + "/rank-00001-of-00002.dsv4w: cannot open weights file: No such file or directory"});
}

TEST_F(Convert, CheckRejectsATruncatedWeightsFile) {
  copy_dir(w1, out);
  const std::string p = out + "/replicated.dsv4w";
  ASSERT_EQ(::truncate(p.c_str(), off_t(fs::file_size(p) - 4096)), 0);
  expect_failure(run({kTiny, "check", "-w", out}), {p + ": layout: data section [", "does not fit the file of"});
}

TEST_F(Convert, CheckRejectsBadMagicAndVersion) {
  copy_dir(w1, out);
  const std::string p = out + "/replicated.dsv4w";
  const uint32_t v = 2;
  patch(p, offsetof(wfile::FileHeader, version), &v, 4);
  expect_failure(run({kTiny, "check", "-w", out}), {p + ": format version: expected 1, got 2"});
  patch(p, 0, "GGUF", 4);
  expect_failure(run({kTiny, "check", "-w", out}), {p + ": not a dsv4 weights file (bad magic)"});
}

TEST_F(Convert, CheckRejectsAWrongTensorEntry) {
  copy_dir(w1, out);
  const std::string p = out + "/replicated.dsv4w";
  const WFile f = WFile::read(p);
  const int64_t swapped[4] = {f.table[0].shape[1], f.table[0].shape[0], 0, 0};
  ASSERT_EQ(f.table[0].ndim, 2u);
  patch(p, f.hdr.table_offset + offsetof(wfile::TensorEntry, shape), swapped, sizeof swapped);
  const std::string dt = plan::dtype_name(plan::DType(f.table[0].dtype));
  expect_failure(run({kTiny, "check", "-w", out}),
                 {p + ": tensor " + f.table[0].name + ": expected " + dt + " [" + std::to_string(swapped[1]) + ", " +
                      std::to_string(swapped[0]) + "], got " + dt + " [" + std::to_string(swapped[0]) + ", " +
                      std::to_string(swapped[1]) + "]"});
}

TEST_F(Convert, ChecksumsCatchACorruptedByte) {
  copy_dir(w1, out);
  const std::string p = out + "/replicated.dsv4w";
  const WFile f = WFile::read(p);
  // An FP8 matrix: the default load verifies only the small tensors (test_trust_e2e.cpp covers those).
  size_t k = f.table.size() / 2;
  while (k < f.table.size() && f.table[k].dtype != uint32_t(plan::DType::F8_E4M3)) ++k;
  ASSERT_LT(k, f.table.size());
  const wfile::TensorEntry& e = f.table[k];
  ASSERT_GT(e.bytes, 0u);
  const uint8_t b = uint8_t(f.payload(e)[0]) ^ 0x40;
  patch(p, f.hdr.data_offset + e.offset, &b, 1);
  const Result quick = run({kTiny, "check", "-w", out});
  EXPECT_EQ(quick.rc, 0) << "without --checksums FP8 matrices are not hashed\n" << show(quick);
  const std::string msg = p + ": tensor " + std::string(e.name) + ": checksum mismatch";
  expect_failure(run({kTiny, "check", "-w", out, "--checksums"}), {msg});
  const std::string ids = tmp / "ids.npy";
  const int32_t tok[3] = {7, 8, 9};
  npy::write(ids, tok, {3});
  expect_failure(run({kTiny, "eval", "-w", out, "--checksums", "--input-ids", ids, "--decode-steps", "1",
                      "--logits-out", tmp / "l.npy"}),
                 {msg});
  EXPECT_FALSE(fs::exists(tmp / "l.npy"));
}

}  // namespace
}  // namespace dsv4::test
