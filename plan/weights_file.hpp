// Converted weight files (written by `dsv4 convert`, mapped read-only by the runtime).
//
// A weights dir holds `replicated.dsv4w` (tensors every rank reads) and one `rank-RRRRR-of-NNNNN.dsv4w`
// per rank (its routed experts and its head shard). Each file:
//   [FileHeader, 256 bytes][TensorEntry x n_tensors][zero pad][data section at data_offset, 4096-aligned]
// Tensor data offsets are relative to the data section and equal the generated manifest's offsets
// (generated/<config>/weights.hpp), so a file is bound to one plan: the header carries its hash.
// All integers little-endian. Layouts stored (documented in README "Converted weights"):
//   FP8 linears: e4m3 codes [out, in] row-major + e8m0 scale bytes [ceil(out/128), ceil(in/128)];
//   FP4 experts: official packing, [out, in/2] bytes (low nibble = even k) + e8m0 scale [out, in/32];
//   everything else (wo_a's FP8 weight and scale, tid2eid i64) exactly as in the checkpoint. (convert.py
//   dequantises wo_a to bf16; that is exact, which the converter checks, so the engine keeps the FP8 bytes.)
#pragma once
#include <cstdint>
#include <string>

namespace dsv4::wfile {

inline constexpr char kMagic[8] = {'D', 'S', 'V', '4', 'W', 'G', 'T', '1'};
inline constexpr uint32_t kVersion = 1;
inline constexpr uint32_t kKindReplicated = 0;
inline constexpr uint32_t kKindRank = 1;
inline constexpr uint64_t kDataAlign = 4096;

struct FileHeader {
  char magic[8];         // kMagic
  uint32_t version;      // kVersion
  uint32_t kind;         // kKindReplicated or kKindRank
  uint64_t plan_hash;    // generated kPlanHash of the config the file was converted for
  uint32_t rank;         // owning rank (0 for the replicated file)
  uint32_t ranks;        // deploy.ranks of the plan
  uint64_t n_tensors;    // entries in the tensor table
  uint64_t table_offset; // file offset of the first TensorEntry (= sizeof(FileHeader))
  uint64_t data_offset;  // file offset of the data section (multiple of kDataAlign)
  uint64_t data_bytes;   // bytes of the data section
  char config_name[64];  // config name, for messages
  uint8_t reserved[128]; // zero
};
static_assert(sizeof(FileHeader) == 256);

struct TensorEntry {
  char name[160];       // checkpoint name with the global expert id (e.g. "layers.3.ffn.experts.37.w1.weight")
  uint32_t dtype;       // plan::DType
  uint32_t ndim;        // used dims of shape
  int64_t shape[4];     // stored shape
  uint64_t offset;      // from the data section start
  uint64_t bytes;       // payload bytes
  uint64_t xxh3;        // XXH3-64 of the payload
  uint8_t reserved[32];  // zero
};
static_assert(sizeof(TensorEntry) == 256);

// File offset of the data section for a table of n_tensors entries: the table starts right after the
// header and the data at the next kDataAlign boundary. The writer uses it and the loader requires it, so
// every byte of a file is accounted for (no slack a corrupt header could point into).
inline bool data_offset_for(uint64_t n_tensors, uint64_t& out) {
  if (n_tensors > (UINT64_MAX - sizeof(FileHeader) - kDataAlign) / sizeof(TensorEntry)) return false;
  out = (sizeof(FileHeader) + n_tensors * sizeof(TensorEntry) + kDataAlign - 1) / kDataAlign * kDataAlign;
  return true;
}

// Checks the header's layout fields against the file size, in overflow-safe arithmetic, before any of
// them is used as an offset: table at sizeof(FileHeader), data section at data_offset_for(n_tensors),
// data section running exactly to the end of the file. Returns "" when the layout holds, else the
// reason (the caller adds the path).
inline std::string layout_error(const FileHeader& h, uint64_t file_size) {
  const auto s = [](uint64_t v) { return std::to_string(v); };
  if (h.table_offset != sizeof(FileHeader))
    return "layout: table_offset is " + s(h.table_offset) + ", expected " + s(sizeof(FileHeader));
  if (h.n_tensors > file_size / sizeof(TensorEntry))
    return "layout: n_tensors " + s(h.n_tensors) + " tensor entries cannot fit a file of " + s(file_size) + " bytes";
  uint64_t want_data = 0;
  if (!data_offset_for(h.n_tensors, want_data) || h.data_offset != want_data)
    return "layout: data_offset is " + s(h.data_offset) + ", expected " + s(want_data) + " for " + s(h.n_tensors) +
           " tensor entries";
  if (h.data_offset > file_size || h.data_bytes != file_size - h.data_offset)
    return "layout: data section [" + s(h.data_offset) + ", +" + s(h.data_bytes) + ") does not fit the file of " + s(file_size) +
           " bytes exactly (truncated or padded file, or a corrupt header)";
  for (uint8_t b : h.reserved)
    if (b) return "layout: reserved header bytes are not zero (corrupt header)";
  return "";
}

}  // namespace dsv4::wfile
