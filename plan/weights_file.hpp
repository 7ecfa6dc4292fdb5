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

}  // namespace dsv4::wfile
