// Helpers of the end-to-end checkpoint tests (test_convert.cpp, test_trust_e2e.cpp): running the
// per-config binaries, crafting checkpoint and weights files, and a shared synthetic tiny checkpoint with
// its tiny and tiny2 conversions.
#pragma once
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

using json = nlohmann::json;

inline const std::string kTiny = DSV4_TINY_BIN, kTiny2 = DSV4_TINY2_BIN, kDemo = DSV4_DEMO_BIN;

struct Result {
  int rc = -1;  // exit status; 128 + signal when killed
  std::string out, err;
};

// Runs argv[0] with argv (no shell), stdout / stderr captured; `fsize_limit` > 0 sets RLIMIT_FSIZE in
// the child (as `ulimit -f` would).
inline Result run(const std::vector<std::string>& argv, uint64_t fsize_limit = 0) {
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

inline std::string show(const Result& r) { return "rc " + std::to_string(r.rc) + "\nstdout:\n" + r.out + "\nstderr:\n" + r.err; }

// Sorted names in `dir` (empty when it does not exist).
inline std::vector<std::string> ls(const std::string& dir) {
  std::vector<std::string> v;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return v;
  for (auto& e : fs::directory_iterator(dir)) v.push_back(e.path().filename().string());
  std::sort(v.begin(), v.end());
  return v;
}

// The run failed with exit 1 and "dsv4: error: " followed by a message containing every part.
inline void expect_failure(const Result& r, std::initializer_list<std::string> parts) {
  EXPECT_EQ(r.rc, 1) << show(r);
  EXPECT_NE(r.err.find("dsv4: error: "), std::string::npos) << show(r);
  for (auto& p : parts) EXPECT_NE(r.err.find(p), std::string::npos) << "missing: " << p << "\n" << show(r);
}

// A failed convert into `parent`/out left nothing in `parent`.
inline void expect_nothing_written(const std::string& parent) {
  EXPECT_EQ(ls(parent), std::vector<std::string>{}) << "left behind in " << parent;
}

// XXH3 of every file of a folder (name -> hash): to show a folder was not modified.
inline std::map<std::string, uint64_t> digest(const std::string& dir) {
  std::map<std::string, uint64_t> m;
  for (auto& n : ls(dir)) {
    const std::string s = read_file(dir + "/" + n);
    m[n] = XXH3_64bits(s.data(), s.size());
  }
  return m;
}

inline void copy_dir(const std::string& from, const std::string& to) { fs::copy(from, to, fs::copy_options::recursive); }

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

inline void write_json(const std::string& p, const json& j) { write_file(p, j.dump(2)); }

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

inline void patch(const std::string& p, uint64_t off, const void* b, size_t n) {
  const int fd = ::open(p.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0) << p;
  ASSERT_EQ(::pwrite(fd, b, n, off_t(off)), ssize_t(n));
  ::close(fd);
}

// Every converted tensor equals the checkpoint's: head.weight cut into this rank's vocabulary rows (zero past
// the vocabulary), the rest (wo_a's FP8 weight and scale too) byte for byte.
inline void expect_converted_from(const std::string& wdir, const std::string& ckdir) {
  const st::Checkpoint ck = st::Checkpoint::open(ckdir, true);
  int64_t checked = 0;
  for (auto& n : ls(wdir)) {
    if (!n.ends_with(".dsv4w")) continue;  // the checkpoint's tokenizer files travel along
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

}  // namespace dsv4::test
