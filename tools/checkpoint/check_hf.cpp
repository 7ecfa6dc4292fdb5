#include "tools/checkpoint/check_hf.hpp"

#include <cstdio>
#include <cstring>
#include <unordered_map>

#include "plan/error.hpp"
#include "plan/hf_manifest.hpp"
#include "tools/checkpoint/safetensors.hpp"

namespace dsv4 {

std::string HfCheckReport::summary(size_t max_names) const {
  std::string s = dir + ": " + (ok() ? "OK" : "FAILED") + ": " + std::to_string(shards) + " shard(s), " +
                  std::to_string(found_main) + "/" + std::to_string(expected_main) + " main-model tensors (" +
                  std::to_string(main_bytes) + " bytes), " + std::to_string(mtp_skipped) + " MTP tensors skipped, " +
                  std::to_string(total_bytes) + " bytes in all";
  auto list = [&](const char* what, const std::vector<std::string>& v) {
    if (v.empty()) return;
    s += "\n  " + std::to_string(v.size()) + " " + what + ":";
    for (size_t i = 0; i < v.size() && i < max_names; ++i) s += "\n    " + v[i];
    if (v.size() > max_names) s += "\n    ... and " + std::to_string(v.size() - max_names) + " more";
  };
  list("missing tensor(s)", missing);
  list("tensor(s) with the wrong dtype or shape", mismatched);
  list("unknown tensor(s) (not in the manifest)", unknown);
  list("tensor(s) with NaN or Inf values", nonfinite);
  return s;
}

bool must_be_finite(const std::string& name, HfDtype dtype) {
  switch (dtype) {
    case HfDtype::F32:
    case HfDtype::F8_E8M0: return true;
    case HfDtype::BF16: return name.ends_with("norm.weight");
    default: return false;
  }
}

std::string first_nonfinite(HfDtype dtype, std::span<const uint8_t> b) {
  auto describe = [](size_t i, bool nan, bool neg, uint32_t bits, int hex_digits) {
    char h[16];
    std::snprintf(h, sizeof h, "%0*x", hex_digits, bits);
    return "element " + std::to_string(i) + " is " + (nan ? "nan" : neg ? "-inf" : "inf") + " (bits 0x" + h + ")";
  };
  if (dtype == HfDtype::F32)
    for (size_t i = 0; i + 4 <= b.size(); i += 4) {
      uint32_t v;
      std::memcpy(&v, b.data() + i, 4);
      if ((v & 0x7f800000u) == 0x7f800000u) return describe(i / 4, v & 0x7fffffu, v >> 31, v, 8);
    }
  if (dtype == HfDtype::BF16)
    for (size_t i = 0; i + 2 <= b.size(); i += 2) {
      const uint16_t v = uint16_t(b[i] | (b[i + 1] << 8));
      if ((v & 0x7f80u) == 0x7f80u) return describe(i / 2, v & 0x7fu, v >> 15, v, 4);
    }
  if (dtype == HfDtype::F8_E8M0)
    for (size_t i = 0; i < b.size(); ++i)
      if (b[i] == 0xff) return describe(i, true, false, 0xff, 2);
  return "";
}

HfCheckReport check_hf_checkpoint(const std::string& dir, const ModelConfig& cfg) {
  const std::vector<HfTensor> manifest = hf_tensor_manifest(cfg, /*include_mtp=*/true);
  const st::Checkpoint ck = st::Checkpoint::open(dir, /*map_data=*/false);
  HfCheckReport r;
  r.dir = dir;
  r.shards = int64_t(ck.files().size());
  r.total_bytes = ck.total_bytes();
  std::unordered_map<std::string_view, const HfTensor*> by_name;
  by_name.reserve(manifest.size());
  for (const HfTensor& t : manifest) by_name.emplace(t.name, &t);

  for (const HfTensor& t : manifest) {
    if (t.mtp) continue;
    ++r.expected_main;
    const st::Checkpoint::Entry* e = ck.find(t.name);
    if (!e) {
      r.missing.push_back(t.name);
      continue;
    }
    bool good = true;
    if (e->info->dtype != t.dtype) {
      r.mismatched.push_back(t.name + ": dtype expected " + hf_dtype_name(t.dtype) + ", got " +
                             hf_dtype_name(e->info->dtype));
      good = false;
    }
    if (e->info->shape != t.shape) {
      r.mismatched.push_back(t.name + ": shape expected " + shape_str(t.shape) + ", got " +
                             shape_str(e->info->shape));
      good = false;
    }
    if (good) {
      ++r.found_main;
      r.main_bytes += e->info->bytes();
    }
  }
  for (const auto& [name, e] : ck.tensors()) {  // sorted by name
    auto it = by_name.find(name);
    if (it == by_name.end()) r.unknown.push_back(name);
    else if (it->second->mtp) ++r.mtp_skipped;
  }
  for (const HfTensor& t : manifest) {
    if (t.mtp || !must_be_finite(t.name, t.dtype) || t.name.find(".experts.") != std::string::npos) continue;
    const st::Checkpoint::Entry* e = ck.find(t.name);
    if (!e || e->info->dtype != t.dtype) continue;
    const std::vector<uint8_t> bytes = e->file->read(*e->info);
    ++r.values_checked;
    if (const std::string bad = first_nonfinite(t.dtype, bytes); !bad.empty())
      r.nonfinite.push_back(t.name + ": " + bad);
  }
  return r;
}

HfCheckReport require_hf_checkpoint(const std::string& dir, const ModelConfig& cfg) {
  HfCheckReport r = check_hf_checkpoint(dir, cfg);
  if (!r.ok()) throw Error(r.summary());
  return r;
}

}  // namespace dsv4
