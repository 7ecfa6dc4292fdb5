// Issue 23 end to end through the per-config binaries: a crafted weights header is an error, not a crash;
// a shifted safetensors header and NaN norm weights are refused by convert and check-hf; a flipped bit in
// a small tensor fails the default load; convert never deletes what it did not create and one convert per
// output folder runs at a time; out-of-vocabulary int64 ids and absurd --threads are errors.
#include <signal.h>

#include <chrono>
#include <cmath>
#include <thread>

#include "convert_test_util.hpp"

namespace dsv4::test {
namespace {

using Trust = Convert;

std::string ids_file(const TempDir& t, std::vector<int32_t> ids) {
  const std::string p = t / "ids.npy";
  npy::write(p, ids.data(), {int64_t(ids.size())});
  return p;
}

// ---- defect 1: a wrapping table offset ----------------------------------------------------------------

TEST_F(Trust, WrappingTableOffsetIsAnErrorNotACrash) {
  copy_dir(w1, out);
  const std::string p = out + "/replicated.dsv4w";
  const WFile f = WFile::read(p);
  const uint64_t off = ~uint64_t(0) - f.hdr.n_tensors * sizeof(wfile::TensorEntry) + 1;  // + table == 0 mod 2^64
  patch(p, offsetof(wfile::FileHeader, table_offset), &off, 8);
  expect_failure(run({kTiny, "check", "-w", out}), {p + ": layout: table_offset is " + std::to_string(off) + ", expected 256"});
  expect_failure(run({kTiny, "eval", "-w", out, "--input-ids", ids_file(tmp, {1, 2, 3}), "--decode-steps", "1",
                      "--logits-out", tmp / "l.npy"}),
                 {p + ": layout: table_offset"});
  const uint64_t n = uint64_t(1) << 56;  // n * 256 == 0 mod 2^64
  copy_dir(w1, tmp / "w_n");
  patch(tmp / "w_n/replicated.dsv4w", offsetof(wfile::FileHeader, n_tensors), &n, 8);
  expect_failure(run({kTiny, "check", "-w", tmp / "w_n"}), {"layout: n_tensors 72057594037927936 tensor entries cannot fit"});
}

// ---- defect 3: verified loading --------------------------------------------------------------------

// The offset and entry of the first tensor of `file` whose name ends with `suffix`.
const wfile::TensorEntry* entry(const WFile& f, const std::string& suffix) {
  for (auto& e : f.table)
    if (std::string(e.name).ends_with(suffix)) return &e;
  return nullptr;
}

TEST_F(Trust, AFlippedBitInANormWeightFailsTheDefaultLoad) {
  copy_dir(w1, out);
  const std::string p = out + "/replicated.dsv4w";
  const WFile f = WFile::read(p);
  const wfile::TensorEntry* e = entry(f, "attn_norm.weight");
  ASSERT_NE(e, nullptr);
  const uint8_t b = uint8_t(f.payload(*e)[1]) ^ 0x01;  // one bit of the first bf16 value
  patch(p, f.hdr.data_offset + e->offset + 1, &b, 1);
  const std::string msg = p + ": tensor " + std::string(e->name) + ": checksum mismatch";
  expect_failure(run({kTiny, "check", "-w", out}), {msg});
  expect_failure(run({kTiny, "eval", "-w", out, "--input-ids", ids_file(tmp, {7, 8, 9}), "--decode-steps", "1",
                      "--logits-out", tmp / "l.npy"}),
                 {msg});
  EXPECT_FALSE(fs::exists(tmp / "l.npy"));
}

TEST_F(Trust, ScalesAreVerifiedByDefaultFp8CodesOnlyWithChecksums) {
  copy_dir(w1, out);
  const std::string p = out + "/replicated.dsv4w";
  const WFile f = WFile::read(p);
  const wfile::TensorEntry* scale = entry(f, "attn.wq_a.scale");
  ASSERT_NE(scale, nullptr);
  ASSERT_EQ(scale->dtype, uint32_t(plan::DType::F8_E8M0));
  const uint8_t s = uint8_t(f.payload(*scale)[0]) ^ 0x01;
  patch(p, f.hdr.data_offset + scale->offset, &s, 1);
  expect_failure(run({kTiny, "check", "-w", out}), {"tensor " + std::string(scale->name) + ": checksum mismatch"});
  patch(p, f.hdr.data_offset + scale->offset, f.payload(*scale).data(), 1);  // restored

  const wfile::TensorEntry* w = entry(f, "attn.wq_a.weight");
  ASSERT_NE(w, nullptr);
  ASSERT_EQ(w->dtype, uint32_t(plan::DType::F8_E4M3));
  const uint8_t c = uint8_t(f.payload(*w)[0]) ^ 0x01;
  patch(p, f.hdr.data_offset + w->offset, &c, 1);
  const Result quick = run({kTiny, "check", "-w", out});
  ASSERT_EQ(quick.rc, 0) << "FP8 codes are verified only with --checksums\n" << show(quick);
  EXPECT_NE(quick.out.find("verified: headers and tensor tables in full; XXH3 of "), std::string::npos) << show(quick);
  EXPECT_NE(quick.out.find("not verified: "), std::string::npos) << show(quick);
  EXPECT_NE(quick.out.find("run with --checksums to hash every tensor"), std::string::npos) << show(quick);
  expect_failure(run({kTiny, "check", "-w", out, "--checksums"}), {"tensor " + std::string(w->name) + ": checksum mismatch"});
}

TEST_F(Trust, ChecksumsVerifyEveryTensor) {
  const Result r = run({kTiny, "check", "-w", w1, "--checksums"});
  ASSERT_EQ(r.rc, 0) << show(r);
  EXPECT_EQ(r.out.find("not verified"), std::string::npos) << show(r);
  EXPECT_NE(r.out.find("XXH3 of 786 of 786 tensors"), std::string::npos) << show(r);
}

// ---- defect 2 and the NaN checks: convert and check-hf ----------------------------------------------

TEST_F(Trust, HeaderLengthThreeBytesShortIsRefused) {
  StFile f = StFile::read(shard);
  std::string h = f.header.dump() + "        ";  // ends in padding, as official headers may
  const uint64_t n = h.size() - 3;
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char((n >> (8 * i)) & 0xff);
  write_file(shard, s + h + f.data);
  const std::string msg = "the safetensors format requires the tensors to cover the data section exactly";
  expect_failure(convert(), {shard + ": the tensors end at data byte", msg});
  expect_nothing_written(outs);
  const Result c = run({kTiny, "check-hf", "--hf", my_ck});
  expect_failure(c, {msg});
}

TEST_F(Trust, NanNormWeightIsRefusedByConvert) {
  const auto sf = st::SafetensorsFile::open(shard, false);
  const st::TensorInfo* t = sf.find("layers.2.ffn_norm.weight");
  ASSERT_NE(t, nullptr);
  const uint16_t inf = 0x7f80;
  patch(shard, sf.data_offset() + t->begin + 2 * 7, &inf, 2);
  expect_failure(convert(), {shard + ": tensor layers.2.ffn_norm.weight: element 7 is inf (bits 0x7f80)"});
  expect_nothing_written(outs);
  const Result c = run({kTiny, "check-hf", "--hf", my_ck});
  EXPECT_EQ(c.rc, 1) << show(c);
  EXPECT_NE(c.out.find("layers.2.ffn_norm.weight: element 7 is inf"), std::string::npos) << show(c);
}

// ---- defect 4: nothing of the user's is deleted; one convert per output -----------------------------

TEST_F(Trust, ConvertLeavesAnExistingPartialFolderAlone) {
  fs::create_directories(out + ".partial/mine");
  write_file(out + ".partial/mine/notes.txt", "a user's file");
  const Result r = convert();
  ASSERT_EQ(r.rc, 0) << show(r);
  EXPECT_EQ(read_file(out + ".partial/mine/notes.txt"), "a user's file");
  EXPECT_NE(r.err.find("dsv4: warning: " + fs::absolute(out).string() + ".partial: left by an interrupted convert (not used, not removed)"),
            std::string::npos)
      << show(r);
  EXPECT_EQ(ls(outs), (std::vector<std::string>{"w", "w.partial"}));  // the lock file is gone too
  EXPECT_EQ(run({kTiny, "check", "-w", out}).rc, 0);
}

TEST_F(Trust, ASecondConvertToTheSameOutputFailsAndDeletesNothing) {
  // Another convert holds the lock (this process, as a running convert would).
  const std::string lock = out + ".lock";
  write_file(lock, "dsv4 convert lock pid 4242\n");
  const int fd = ::open(lock.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);
  fs::create_directories(out + ".partial-4242-abcdef");
  write_file(out + ".partial-4242-abcdef/replicated.dsv4w", "in progress");
  expect_failure(convert(), {out + ": another convert is writing this output folder (" + fs::absolute(lock).string() +
                                 " is locked: dsv4 convert lock pid 4242)"});
  EXPECT_EQ(read_file(out + ".partial-4242-abcdef/replicated.dsv4w"), "in progress");
  EXPECT_FALSE(fs::exists(out));
  ::close(fd);
}

TEST_F(Trust, ALaterConvertRecoversFromAKilledOne) {
  // What a SIGKILL leaves: the lock file (no lock held: the kernel dropped it) and a partial folder.
  write_file(out + ".lock", "dsv4 convert lock pid 999999\n");
  fs::create_directories(out + ".partial-999999-Zx81Qa");
  write_file(out + ".partial-999999-Zx81Qa/replicated.dsv4w", "half");
  const Result r = convert();
  ASSERT_EQ(r.rc, 0) << show(r);
  EXPECT_NE(r.err.find(".partial-999999-Zx81Qa: left by an interrupted convert"), std::string::npos) << show(r);
  EXPECT_EQ(read_file(out + ".partial-999999-Zx81Qa/replicated.dsv4w"), "half");
  EXPECT_FALSE(fs::exists(out + ".lock"));
  EXPECT_EQ(run({kTiny, "check", "-w", out, "--checksums"}).rc, 0);
}

TEST_F(Trust, ALaterConvertRecoversFromARealSigkill) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 1);
    ::dup2(null, 2);
    ::execl(kTiny.c_str(), kTiny.c_str(), "convert", "--hf", my_ck.c_str(), "-o", out.c_str(), (char*)nullptr);
    ::_exit(127);
  }
  // Kill it once it has started writing (its partial folder exists; it fsyncs each file, so there is time).
  bool writing = false;
  for (int i = 0; i < 400000 && !writing; ++i) {
    for (auto& n : ls(outs)) writing |= n.rfind("w.partial-", 0) == 0;
    if (!writing) std::this_thread::sleep_for(std::chrono::microseconds(25));
  }
  ::kill(pid, SIGKILL);
  int st = 0;
  ::waitpid(pid, &st, 0);
  if (fs::exists(out)) GTEST_SKIP() << "the convert finished before it could be killed";
  ASSERT_TRUE(writing);
  ASSERT_TRUE(WIFSIGNALED(st));
  const Result r = convert();
  ASSERT_EQ(r.rc, 0) << show(r);
  EXPECT_NE(r.err.find("left by an interrupted convert"), std::string::npos) << show(r);
  EXPECT_FALSE(fs::exists(out + ".lock"));
  EXPECT_EQ(run({kTiny, "check", "-w", out, "--checksums"}).rc, 0);
}

// ---- defect 5 and 8: token ids and threads ---------------------------------------------------------

TEST_F(Trust, Int64IdsOutsideTheVocabularyAreNotWrapped) {
  const std::string p = tmp / "ids64.npy";
  const int64_t ids[2] = {5, (int64_t(1) << 32) + 6};  // narrowed to int32 this would run as [5, 6]
  npy::write(p, ids, {2});
  expect_failure(run({kTiny, "eval", "-w", w1, "--input-ids", p, "--decode-steps", "1", "--logits-out", tmp / "l.npy"}),
                 {p + ": input ids[1] = 4294967302 is outside the vocabulary [0, 1024)"});
  const int32_t neg[2] = {5, -1};
  npy::write(p, neg, {2});
  expect_failure(run({kTiny, "eval", "-w", w1, "--input-ids", p, "--decode-steps", "1", "--logits-out", tmp / "l.npy"}),
                 {p + ": input ids[1] = -1 is outside the vocabulary [0, 1024)"});
  EXPECT_FALSE(fs::exists(tmp / "l.npy"));
}

TEST_F(Trust, AbsurdThreadCountIsAnError) {
  const Result r = run({kTiny, "eval", "-w", w1, "--input-ids", ids_file(tmp, {1, 2}), "--decode-steps", "1",
                        "--logits-out", tmp / "l.npy", "--threads", "100000"});
  expect_failure(r, {"--threads 100000: at most ", "CPUs this process may run on)"});
}

}  // namespace
}  // namespace dsv4::test
