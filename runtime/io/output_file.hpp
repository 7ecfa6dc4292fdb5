// An output file written under a temporary name and renamed when complete, so a failed or interrupted
// job never leaves a partial file at the path the user named (and never clobbers a good one). Opening
// happens at construction: a path that cannot be written fails before any computation.
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "plan/error.hpp"

namespace dsv4 {

class OutputFile {
 public:
  OutputFile() = default;
  OutputFile(const std::string& path, const char* what) : path_(path), what_(what) {
    // Only a regular file is replaced: renaming over /dev/full or a FIFO would destroy what the user owns.
    std::error_code ec;
    const auto st = std::filesystem::status(path, ec);
    if (!ec && std::filesystem::exists(st) && !std::filesystem::is_regular_file(st))
      throw Error(path_ + ": cannot write the " + what_ + " there: it exists and is not a regular file");
    tmp_ = path + ".tmp." + std::to_string(::getpid());
    const int fd = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);  // never truncate a file we did not make
    if (fd < 0) {
      tmp_.clear();
      throw Error(path_ + ": cannot write the " + what_ + " (cannot create " + path + ".tmp." +
                  std::to_string(::getpid()) + ": " + std::strerror(errno) + ")");
    }
    ::close(fd);
    f_.open(tmp_, std::ios::binary | std::ios::trunc);
    if (!f_) throw Error(path_ + ": cannot write the " + what_ + " (cannot open " + tmp_ + ")");
  }
  OutputFile(OutputFile&&) = default;
  OutputFile& operator=(OutputFile&&) = default;
  ~OutputFile() {
    if (!tmp_.empty() && !done_) {
      f_.close();
      std::error_code ec;
      std::filesystem::remove(tmp_, ec);
    }
  }
  bool is_open() const { return !tmp_.empty(); }
  // Writes everything and renames the file into place.
  void commit(const std::string& content) {
    f_ << content;
    f_.close();
    if (!f_) throw Error(path_ + ": writing the " + what_ + " failed");
    std::error_code ec;
    std::filesystem::rename(tmp_, path_, ec);
    if (ec) throw Error(path_ + ": cannot rename " + tmp_ + " into place: " + ec.message());
    done_ = true;
  }

 private:
  std::string path_, what_, tmp_;
  std::ofstream f_;
  bool done_ = false;
};

}  // namespace dsv4
