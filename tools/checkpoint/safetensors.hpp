// safetensors: a strict reader (single file, or shards via model.safetensors.index.json) and a streaming
// writer that lays files out like the official serializer (safetensors crate, tensor.rs prepare()).
//
// File format: u64 little-endian header length N, N bytes of JSON
//   {"__metadata__":{...}, "<name>":{"dtype":"BF16","shape":[..],"data_offsets":[begin,end]}, ...}
// then the data section; offsets are relative to its start (byte 8 + N).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "plan/hf_manifest.hpp"

namespace dsv4::st {

inline constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the crate's MAX_HEADER_SIZE

// One tensor entry of a header.
struct TensorInfo {
  std::string name;
  HfDtype dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // [begin, end) relative to the data section
  uint64_t bytes() const { return end - begin; }
};

// One .safetensors file, header validated on open. With map_data the whole file is mmap'ed read-only
// (PROT_READ, MAP_SHARED) and data() returns views into it; without, only the header is read.
//
// Checks: file >= 8 bytes; header length <= kMaxHeaderBytes and inside the file; header is a JSON object
// (no duplicate keys) of tensor entries plus an optional "__metadata__" string map; each entry has exactly
// dtype (one of HfDtype), shape (non-negative integers), data_offsets ([begin, end], begin <= end);
// end inside the file; end - begin == product(shape) * dtype size (overflow-checked); no two tensors
// overlap; the tensors cover the data section exactly (the last ends at the end of the file, so a wrong
// header length cannot shift them). Gaps between tensors are accepted only as alignment padding (every
// offset and the data start a multiple of one power of two, each gap shorter than it: this project's
// --align files; the official crate rejects any gap, see SafetensorsWriter).
class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path, bool map_data = true);
  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return file_size_; }
  uint64_t header_bytes() const { return header_bytes_; }        // N
  uint64_t data_offset() const { return 8 + header_bytes_; }      // file offset of the data section
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // in data order (by begin)
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const TensorInfo* find(std::string_view name) const;  // nullptr if absent
  // Bytes of a tensor of this file; throws if the file was opened without map_data.
  std::span<const uint8_t> data(const TensorInfo& t) const;
  // A copy of a tensor's bytes read from the file (works without map_data).
  std::vector<uint8_t> read(const TensorInfo& t) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  uint64_t file_size_ = 0, header_bytes_ = 0;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> by_name_;
  std::map<std::string, std::string> metadata_;
  const uint8_t* map_ = nullptr;
};

// A checkpoint: a directory with model.safetensors.index.json (weight_map name -> shard file), or a
// directory holding a single model.safetensors, or a path to one .safetensors file.
// Index checks: valid JSON object with a "weight_map" object of string values (and optional
// "metadata" object; metadata.total_size, if present, must equal the sum of tensor bytes); shard names
// are plain file names that exist; every mapped tensor is in its shard and every shard tensor is mapped
// to that shard.
class Checkpoint {
 public:
  static Checkpoint open(const std::string& path, bool map_data = true);

  struct Entry {
    const SafetensorsFile* file;
    const TensorInfo* info;
  };
  const std::string& dir() const { return dir_; }
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  const std::map<std::string, Entry>& tensors() const { return tensors_; }  // sorted by name
  const Entry* find(std::string_view name) const;
  uint64_t total_bytes() const;  // sum of tensor bytes over all shards

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Entry> tensors_;
};

// ---- writer -----------------------------------------------------------------------------------------

struct TensorSpec {
  std::string name;
  HfDtype dtype;
  std::vector<int64_t> shape;
  uint64_t bytes() const;
};

// Byte layout of one file, decided before any data is written.
struct SafetensorsLayout {
  std::string header;               // JSON padded with spaces (N = header.size())
  std::vector<TensorInfo> tensors;  // data order
  uint64_t data_offset = 0;         // 8 + N
  uint64_t file_size = 0;
};

// Official order (descending crate dtype rank, then name bytes), compact JSON with
// "__metadata__":{"format":"pt"} first and entries in data order, key order dtype/shape/data_offsets.
// align == 1: the official layout (header padded to 8, payloads back to back).
// align > 1 (power of two <= 4096): header padded so the data section starts at a multiple of `align`,
// and each tensor's begin rounded up to a multiple of `align`, the gap zero-filled. Readers that only
// follow data_offsets (this one, torch-free mmap loaders) accept it; the official safetensors crate
// does NOT: Metadata::validate() requires each tensor to start where the previous one ended
// (InvalidOffset otherwise), so such a file cannot be opened by safetensors.safe_open / load_file.
SafetensorsLayout plan_safetensors(std::vector<TensorSpec> specs, uint64_t align = 1);

// Streams one file: creates `path + ".tmp"` at its final size, header written; write() places bytes of a
// tensor (pwrite, sequential within each tensor, tensors in any order); finish() checks that every
// tensor was written completely, closes and renames to `path`. Destroyed unfinished: the temp file is
// removed.
class SafetensorsWriter {
 public:
  SafetensorsWriter(std::string path, std::vector<TensorSpec> specs, uint64_t align = 1);
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  const SafetensorsLayout& layout() const { return layout_; }
  // `offset` (bytes into the tensor) must equal the bytes already written to it.
  void write(std::string_view name, uint64_t offset, std::span<const uint8_t> bytes);
  void finish();

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  SafetensorsLayout layout_;
  std::unordered_map<std::string, size_t> index_;
  std::vector<uint64_t> written_;
};

// Convenience: writes a whole file, asking `fill` for each tensor in data order, in chunks of whole
// rows (dim 0) of at most ~chunk_bytes (at least one row); offset is in bytes into the tensor.
using FillFn = std::function<void(const TensorSpec& t, uint64_t offset, std::span<uint8_t> out)>;
void write_safetensors(const std::string& path, std::vector<TensorSpec> specs, const FillFn& fill,
                       uint64_t align = 1, uint64_t chunk_bytes = 64ull << 20);

}  // namespace dsv4::st
