// `dsv4 convert` / `check` / `eval` end to end through the built per-config binaries: round trips for
// tiny (1 rank), tiny2 (2 ranks), demo (16 ranks, real vocabulary) and the golden checkpoint; every bad
// input gives a clear message on stderr, a non-zero exit and leaves nothing behind (neither the output
// folder nor its `.partial`).
#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "ckpt_test_util.hpp"
#include "plan/ir.hpp"
#include "plan/weights_file.hpp"
#include "runtime/io/npy.hpp"

namespace dsv4::test {
namespace {

using json = nlohmann::json;

const std::string kTiny = DSV4_TINY_BIN, kTiny2 = DSV4_TINY2_BIN, kDemo = DSV4_DEMO_BIN;

struct Result {
  int rc = -1;  // exit status; 128 + signal when killed
  std::string out, err;
};

// Runs argv[0] with argv (no shell), stdout / stderr captured; `fsize_limit` > 0 sets RLIMIT_FSIZE in
// the child (as `ulimit -f` would).
Result run(const std::vector<std::string>& argv, uint64_t fsize_limit = 0) {
  TempDir io;
  const std::string out_path = io / "stdout", err_path = io / "stderr";
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int o = ::open(out_path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
    const int e = ::open(err_path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
    ::dup2(o, 1);
    ::dup2(e, 2);
    if (fsize_limit) {
      const struct rlimit rl{fsize_limit, fsize_limit};
      ::setrlimit(RLIMIT_FSIZE, &rl);
    }
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  Result r;
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.out = read_file(out_path);
  r.err = read_file(err_path);
  return r;
}

std::string show(const Result& r) { return "rc " + std::to_string(r.rc) + "\nstdout:\n" + r.out + "\nstderr:\n" + r.err; }

// Sorted names in `dir` (empty when it does not exist).
std::vector<std::string> ls(const std::string& dir) {
  std::vector<std::string> v;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return v;
  for (auto& e : fs::directory_iterator(dir)) v.push_back(e.path().filename().string());
  std::sort(v.begin(), v.end());
  return v;
}

// The run failed with exit 1 and "dsv4: error: " followed by a message containing every part.
void expect_failure(const Result& r, std::initializer_list<std::string> parts) {
  EXPECT_EQ(r.rc, 1) << show(r);
  EXPECT_NE(r.err.find("dsv4: error: "), std::string::npos) << show(r);
  for (auto& p : parts) EXPECT_NE(r.err.find(p), std::string::npos) << "missing: " << p << "\n" << show(r);
}

// A failed convert into `parent`/out left nothing in `parent`.
void expect_nothing_written(const std::string& parent) {
  EXPECT_EQ(ls(parent), std::vector<std::string>{}) << "left behind in " << parent;
}

// XXH3 of every file of a folder (name -> hash): to show a folder was not modified.
std::map<std::string, uint64_t> digest(const std::string& dir) {
  std::map<std::string, uint64_t> m;
  for (auto& n : ls(dir)) {
    const std::string s = read_file(dir + "/" + n);
    m[n] = XXH3_64bits(s.data(), s.size());
  }
  return m;
}

void copy_dir(const std::string& from, const std::string& to) { fs::copy(from, to, fs::copy_options::recursive); }

// The parts of one .safetensors file, for editing its header.
struct StFile {
  json header;       // parsed header
  std::string data;  // data section
  static StFile read(const std::string& p) {
    const std::string s = read_file(p);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(s[size_t(i)]);
    return {json::parse(s.substr(8, n)), s.substr(8 + n)};
  }
  void write(const std::string& p) const {
    const std::string h = header.dump();
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[size_t(i)] = char((h.size() >> (8 * i)) & 0xff);
    write_file(p, s + h + data);
  }
};

void write_json(const std::string& p, const json& j) { write_file(p, j.dump(2)); }

// A converted weights file, read whole (the test files are small).
struct WFile {
  wfile::FileHeader hdr{};
  std::vector<wfile::TensorEntry> table;
  std::string bytes;
  static WFile read(const std::string& p) {
    WFile f;
    f.bytes = read_file(p);
    std::memcpy(&f.hdr, f.bytes.data(), sizeof f.hdr);
    f.table.resize(f.hdr.n_tensors);
    std::memcpy(f.table.data(), f.bytes.data() + f.hdr.table_offset, f.table.size() * sizeof(wfile::TensorEntry));
    return f;
  }
  std::string_view payload(const wfile::TensorEntry& e) const {
    return std::string_view(bytes).substr(size_t(hdr.data_offset + e.offset), size_t(e.bytes));
  }
};

void patch(const std::string& p, uint64_t off, const void* b, size_t n) {
  const int fd = ::open(p.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0) << p;
  ASSERT_EQ(::pwrite(fd, b, n, off_t(off)), ssize_t(n));
  ::close(fd);
}

// Every converted tensor equals the checkpoint's: head.weight cut into this rank's vocabulary rows (zero past
// the vocabulary), the rest (wo_a's FP8 weight and scale too) byte for byte.
void expect_converted_from(const std::string& wdir, const std::string& ckdir) {
  const st::Checkpoint ck = st::Checkpoint::open(ckdir, true);
  int64_t checked = 0;
  for (auto& n : ls(wdir)) {
    const WFile f = WFile::read(wdir + "/" + n);
    for (auto& e : f.table) {
      const std::string name(e.name);
      const std::string_view got = f.payload(e);
      const auto* in = ck.find(name);
      ASSERT_NE(in, nullptr) << name;
      const auto src = in->file->data(*in->info);
      if (name == "head.weight") {
        const uint64_t row = uint64_t(e.shape[1]) * 2, vocab = in->info->shape[0];
        const uint64_t first = uint64_t(f.hdr.rank) * uint64_t(e.shape[0]);
        for (uint64_t r = 0; r < uint64_t(e.shape[0]); ++r) {
          const std::string_view g = got.substr(r * row, row);
          if (first + r < vocab)
            ASSERT_EQ(g, std::string_view(reinterpret_cast<const char*>(src.data()) + (first + r) * row, row))
                << n << " head row " << r;
          else
            ASSERT_EQ(g, std::string(row, '\0')) << n << " padding row " << r;
        }
      } else {
        ASSERT_EQ(got, std::string_view(reinterpret_cast<const char*>(src.data()), src.size())) << name;
      }
      ++checked;
    }
  }
  EXPECT_GT(checked, 0);
}

// One synthetic tiny checkpoint and its conversions for tiny and tiny2, shared by the suite.
class Convert : public ::testing::Test {
 protected:
  static inline std::string ck, w1, w2, setup_error;

  // ctest runs every test in its own process: the shared folders are made once per build of the
  // binaries, in the build tree (keyed by the binaries' size and mtime, under a lock), and never modified.
  static void SetUpTestSuite() {
    const std::string root = DSV4_TEST_CACHE_DIR;
    fs::create_directories(root);
    uint64_t key[4];
    for (int i = 0; i < 2; ++i) {
      const fs::path b = i ? kTiny2 : kTiny;
      key[2 * i] = fs::file_size(b);
      key[2 * i + 1] = uint64_t(fs::last_write_time(b).time_since_epoch().count());
    }
    char name[32];
    std::snprintf(name, sizeof name, "%016llx", (unsigned long long)XXH3_64bits(key, sizeof key));
    const std::string dir = root + "/" + name;
    ck = dir + "/ck";
    w1 = dir + "/w1";
    w2 = dir + "/w2";
    // No gtest assertions here (a failure in SetUpTestSuite reports the tests as skipped): SetUp fails them.
    const int lock = ::open((root + "/.lock").c_str(), O_CREAT | O_RDWR, 0644);
    if (lock < 0 || ::flock(lock, LOCK_EX) != 0) {
      setup_error = root + "/.lock: cannot lock";
      return;
    }
    if (!fs::exists(dir + "/ready")) {
      for (auto& old : ls(root))
        if (old != ".lock") fs::remove_all(root + "/" + old);
      fs::create_directories(dir);
      for (const auto& argv : std::vector<std::vector<std::string>>{{kTiny, "synth", "--seed", "1", "-o", ck},
                                                                    {kTiny, "convert", "--hf", ck, "-o", w1},
                                                                    {kTiny2, "convert", "--hf", ck, "-o", w2}}) {
        const Result r = run(argv);
        if (r.rc != 0) {
          setup_error = argv[0] + " " + argv[1] + " failed: " + show(r);
          break;
        }
      }
      if (setup_error.empty()) write_file(dir + "/ready", "");
    }
    ::close(lock);  // releases the lock
  }

  // A private copy of the synthetic checkpoint, and an empty folder to convert into.
  void SetUp() override {
    ASSERT_EQ(setup_error, "");
    ASSERT_TRUE(fs::exists(fs::path(ck).parent_path() / "ready")) << "shared setup failed";
    my_ck = tmp / "ck";
    copy_dir(ck, my_ck);
    fs::create_directories(tmp / "outs");
    outs = tmp / "outs";
    out = outs + "/w";
    shard = my_ck + "/model.safetensors";
    index = my_ck + "/model.safetensors.index.json";
  }

  Result convert(const std::string& bin = kTiny) { return run({bin, "convert", "--hf", my_ck, "-o", out}); }

  TempDir tmp;
  std::string my_ck, outs, out, shard, index;
};

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
  EXPECT_EQ(ls(dw).size(), 17u);
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
  StFile f = StFile::read(shard);
  f.header.erase("layers.4.ffn.experts.13.w2.scale");
  f.write(shard);
  json idx = json::parse(read_file(index));
  idx["weight_map"].erase("layers.4.ffn.experts.13.w2.scale");
  idx["metadata"].erase("total_size");
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
  expect_failure(r, {out + ".partial: cannot create the output folder: Read-only file system"});
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
  expect_failure(r, {out + ".partial/replicated.dsv4w: cannot reserve " + std::to_string(rep) + " bytes: File too large",
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
  const wfile::TensorEntry& e = f.table[f.table.size() / 2];
  ASSERT_GT(e.bytes, 0u);
  const uint8_t b = uint8_t(f.payload(e)[0]) ^ 0x40;
  patch(p, f.hdr.data_offset + e.offset, &b, 1);
  const Result quick = run({kTiny, "check", "-w", out});
  EXPECT_EQ(quick.rc, 0) << "without --checksums only the layout is checked\n" << show(quick);
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
