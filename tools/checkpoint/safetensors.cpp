#include "tools/checkpoint/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "plan/error.hpp"

namespace dsv4::st {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string errno_str() { return std::strerror(errno); }

void pread_all(int fd, void* buf, uint64_t n, uint64_t off, const std::string& path) {
  auto* p = static_cast<uint8_t*>(buf);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, off_t(off));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) throw Error(path + ": read failed at offset " + std::to_string(off) + ": " +
                            (r == 0 ? std::string("unexpected end of file") : errno_str()));
    p += r;
    n -= uint64_t(r);
    off += uint64_t(r);
  }
}

void pwrite_all(int fd, const void* buf, uint64_t n, uint64_t off, const std::string& path) {
  auto* p = static_cast<const uint8_t*>(buf);
  while (n > 0) {
    const ssize_t r = ::pwrite(fd, p, n, off_t(off));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) throw Error(path + ": write failed at offset " + std::to_string(off) + ": " + errno_str());
    p += r;
    n -= uint64_t(r);
    off += uint64_t(r);
  }
}

uint64_t le64(const uint8_t* b) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | b[i];
  return v;
}

// Parses JSON and rejects duplicate keys in any object (nlohmann would keep the last silently).
json parse_strict(const std::string& text, const std::string& where) {
  std::vector<std::set<std::string>> keys;
  std::string dup;
  auto cb = [&](int, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::object_start) keys.emplace_back();
    else if (ev == json::parse_event_t::object_end) keys.pop_back();
    else if (ev == json::parse_event_t::key && !keys.empty()) {
      const std::string& k = parsed.get_ref<const std::string&>();
      if (!keys.back().insert(k).second && dup.empty()) dup = k;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text, cb);
  } catch (const json::exception& e) {
    throw Error(where + ": invalid JSON: " + e.what());
  }
  if (!dup.empty()) throw Error(where + ": invalid JSON: duplicate key '" + dup + "'");
  return j;
}

std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool mul_overflow(uint64_t a, uint64_t b, uint64_t* r) { return __builtin_mul_overflow(a, b, r); }

// The tensors (sorted by begin, no overlaps) must cover the data section exactly, as the official crate
// requires (Metadata::validate: each tensor starts where the previous one ends, the last ends at the end
// of the file): a header length a few bytes short still parses (the header ends in padding) but would
// shift every tensor. Our own --align files are accepted: gaps only when the data section start and every
// begin are multiples of one power of two A (8..4096), each begin the first multiple of A at or after the
// previous end.
void check_coverage(const std::vector<TensorInfo>& ts, uint64_t data_size, uint64_t data_offset, const std::string& path) {
  const uint64_t covered = ts.empty() ? 0 : ts.back().end;
  if (covered != data_size)
    throw Error(path + ": the tensors end at data byte " + std::to_string(covered) + " but the data section is " +
                std::to_string(data_size) + " bytes (" + std::to_string(data_offset) +
                " = 8 + header length to the end of the file): the header length is wrong or the file has trailing "
                "bytes; the safetensors format requires the tensors to cover the data section exactly");
  bool gaps = !ts.empty() && ts.front().begin != 0;
  for (size_t i = 1; i < ts.size() && !gaps; ++i) gaps = ts[i].begin != ts[i - 1].end;
  if (!gaps) return;
  uint64_t a = 4096;
  while (a > 1 && data_offset % a != 0) a /= 2;
  for (const TensorInfo& t : ts)
    while (a > 1 && t.begin % a != 0) a /= 2;
  uint64_t prev = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    const uint64_t want = a >= 8 ? (prev + a - 1) / a * a : prev;
    if (ts[i].begin != want)
      throw Error(path + ": tensor '" + ts[i].name + "' begins at data byte " + std::to_string(ts[i].begin) +
                  ", expected " + std::to_string(want) + " (" +
                  (i ? "right after '" + ts[i - 1].name + "'" : std::string("the start of the data section")) +
                  (a >= 8 ? ", aligned to " + std::to_string(a) : std::string()) +
                  "): gaps are allowed only below a common power-of-two alignment of every offset");
    prev = ts[i].end;
  }
}

}  // namespace

// ---- SafetensorsFile --------------------------------------------------------------------------------

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept { *this = std::move(o); }

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
  if (this != &o) {
    if (map_) ::munmap(const_cast<uint8_t*>(map_), file_size_);
    path_ = std::move(o.path_);
    file_size_ = o.file_size_;
    header_bytes_ = o.header_bytes_;
    tensors_ = std::move(o.tensors_);
    by_name_ = std::move(o.by_name_);
    metadata_ = std::move(o.metadata_);
    map_ = o.map_;
    o.map_ = nullptr;
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(const_cast<uint8_t*>(map_), file_size_);
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

std::span<const uint8_t> SafetensorsFile::data(const TensorInfo& t) const {
  if (!map_) throw Error(path_ + ": tensor '" + t.name + "': file was opened header-only, no data mapped");
  return {map_ + data_offset() + t.begin, t.bytes()};
}

std::vector<uint8_t> SafetensorsFile::read(const TensorInfo& t) const {
  if (map_) {
    const auto d = data(t);
    return {d.begin(), d.end()};
  }
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path_ + ": cannot open: " + errno_str());
  std::vector<uint8_t> b(size_t(t.bytes()));
  try {
    pread_all(fd, b.data(), b.size(), data_offset() + t.begin, path_);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  return b;
}

SafetensorsFile SafetensorsFile::open(const std::string& path, bool map_data) {
  SafetensorsFile f;
  f.path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open: " + errno_str());
  struct FdGuard {
    int fd;
    ~FdGuard() { ::close(fd); }
  } guard{fd};
  struct stat sb {};
  if (::fstat(fd, &sb) != 0) throw Error(path + ": cannot stat: " + errno_str());
  if (!S_ISREG(sb.st_mode)) throw Error(path + ": not a regular file");
  f.file_size_ = uint64_t(sb.st_size);
  if (f.file_size_ < 8)
    throw Error(path + ": truncated: file is " + std::to_string(f.file_size_) +
                " bytes, shorter than the 8-byte header length field");
  uint8_t lenbuf[8];
  pread_all(fd, lenbuf, 8, 0, path);
  const uint64_t n = le64(lenbuf);
  if (n > kMaxHeaderBytes)
    throw Error(path + ": header length " + std::to_string(n) + " exceeds the limit of " +
                std::to_string(kMaxHeaderBytes) + " bytes (corrupt or not a safetensors file)");
  if (8 + n > f.file_size_)
    throw Error(path + ": header length " + std::to_string(n) + " runs past the end of the file (file is " +
                std::to_string(f.file_size_) + " bytes, header needs " + std::to_string(8 + n) + ")");
  f.header_bytes_ = n;
  std::string text(n, '\0');
  pread_all(fd, text.data(), n, 8, path);
  const json j = parse_strict(text, path + ": header");
  if (!j.is_object()) throw Error(path + ": header: expected a JSON object, got " + std::string(j.type_name()));

  const uint64_t data_size = f.file_size_ - 8 - n;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) throw Error(path + ": __metadata__: expected an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          throw Error(path + ": __metadata__." + m.key() + ": expected a string, got " + m.value().dump());
        f.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string at = path + ": tensor '" + name + "'";
    if (!v.is_object()) throw Error(at + ": expected an object, got " + std::string(v.type_name()));
    for (auto k = v.begin(); k != v.end(); ++k)
      if (k.key() != "dtype" && k.key() != "shape" && k.key() != "data_offsets")
        throw Error(at + ": unknown field '" + k.key() + "'");
    TensorInfo t;
    t.name = name;
    auto dt = v.find("dtype");
    if (dt == v.end()) throw Error(at + ": field 'dtype' missing");
    if (!dt->is_string()) throw Error(at + ": field 'dtype': expected a string, got " + dt->dump());
    const auto d = hf_dtype_from_name(dt->get<std::string>());
    if (!d)
      throw Error(at + ": field 'dtype': unknown dtype \"" + dt->get<std::string>() +
                  "\" (supported: BF16, F32, I64, I32, I8, U8, F8_E4M3, F8_E8M0)");
    t.dtype = *d;
    auto sh = v.find("shape");
    if (sh == v.end()) throw Error(at + ": field 'shape' missing");
    if (!sh->is_array()) throw Error(at + ": field 'shape': expected an array, got " + sh->dump());
    uint64_t numel = 1;
    for (const json& e : *sh) {
      if (!e.is_number_unsigned())
        throw Error(at + ": field 'shape': expected non-negative integers, got " + sh->dump());
      const uint64_t x = e.get<uint64_t>();
      if (x > uint64_t(INT64_MAX) || mul_overflow(numel, x, &numel))
        throw Error(at + ": field 'shape': " + sh->dump() + " overflows 64 bits");
      t.shape.push_back(int64_t(x));
    }
    auto off = v.find("data_offsets");
    if (off == v.end()) throw Error(at + ": field 'data_offsets' missing");
    if (!off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned())
      throw Error(at + ": field 'data_offsets': expected [begin, end] non-negative integers, got " + off->dump());
    t.begin = (*off)[0].get<uint64_t>();
    t.end = (*off)[1].get<uint64_t>();
    if (t.begin > t.end)
      throw Error(at + ": field 'data_offsets': begin " + std::to_string(t.begin) + " > end " +
                  std::to_string(t.end));
    if (t.end > data_size)
      throw Error(at + ": field 'data_offsets': end " + std::to_string(t.end) +
                  " is outside the file (data section is " + std::to_string(data_size) + " bytes, file " +
                  std::to_string(f.file_size_) + " bytes: truncated, or a corrupt header)");
    uint64_t expect = 0;
    if (mul_overflow(numel, uint64_t(hf_dtype_size(t.dtype)), &expect))
      throw Error(at + ": field 'shape': byte size overflows 64 bits");
    if (t.bytes() != expect)
      throw Error(at + ": size mismatch: data_offsets span " + std::to_string(t.bytes()) + " bytes, shape " +
                  shape_str(t.shape) + " x " + hf_dtype_name(t.dtype) + " needs " + std::to_string(expect));
    f.tensors_.push_back(std::move(t));
  }
  std::sort(f.tensors_.begin(), f.tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (size_t i = 1; i < f.tensors_.size(); ++i) {
    const TensorInfo &a = f.tensors_[i - 1], &b = f.tensors_[i];
    if (b.begin < a.end)
      throw Error(path + ": tensors '" + a.name + "' [" + std::to_string(a.begin) + ", " + std::to_string(a.end) +
                  ") and '" + b.name + "' [" + std::to_string(b.begin) + ", " + std::to_string(b.end) +
                  ") overlap");
  }
  check_coverage(f.tensors_, data_size, f.data_offset(), path);
  for (size_t i = 0; i < f.tensors_.size(); ++i) f.by_name_.emplace(f.tensors_[i].name, i);

  if (map_data) {
    void* p = ::mmap(nullptr, f.file_size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) throw Error(path + ": mmap failed: " + errno_str());
    f.map_ = static_cast<const uint8_t*>(p);
  }
  return f;
}

// ---- Checkpoint -------------------------------------------------------------------------------------

const Checkpoint::Entry* Checkpoint::find(std::string_view name) const {
  auto it = tensors_.find(std::string(name));
  return it == tensors_.end() ? nullptr : &it->second;
}

uint64_t Checkpoint::total_bytes() const {
  uint64_t s = 0;
  for (auto& [n, e] : tensors_) s += e.info->bytes();
  return s;
}

Checkpoint Checkpoint::open(const std::string& path, bool map_data) {
  Checkpoint c;
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) {
    c.dir_ = fs::path(path).parent_path().string();
    c.files_.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(path, map_data)));
    for (auto& t : c.files_[0]->tensors()) c.tensors_.emplace(t.name, Entry{c.files_[0].get(), &t});
    return c;
  }
  if (!fs::is_directory(path, ec)) throw Error(path + ": no such checkpoint file or directory");
  c.dir_ = path;
  const fs::path index_path = fs::path(path) / "model.safetensors.index.json";
  if (!fs::exists(index_path, ec)) {
    const fs::path single = fs::path(path) / "model.safetensors";
    if (!fs::exists(single, ec))
      throw Error(path + ": neither model.safetensors.index.json nor model.safetensors found");
    return open(single.string(), map_data);
  }
  const std::string ip = index_path.string();
  // The index is a name -> shard map (flash's is 8 MB); bound it like a shard header before reading it whole.
  if (const uint64_t n = fs::file_size(index_path, ec); !ec && n > kMaxHeaderBytes)
    throw Error(ip + ": " + std::to_string(n) + " bytes, more than the " + std::to_string(kMaxHeaderBytes) +
                "-byte limit of an index (corrupt or not a safetensors index)");
  const json j = parse_strict(read_text_file(ip), ip);
  if (!j.is_object()) throw Error(ip + ": expected a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "metadata" && it.key() != "weight_map") throw Error(ip + ": unknown key '" + it.key() + "'");
  auto wm = j.find("weight_map");
  if (wm == j.end() || !wm->is_object()) throw Error(ip + ": 'weight_map' missing or not an object");

  std::map<std::string, size_t> shard_index;  // shard file name -> files_ index
  std::map<std::string, std::string> mapping;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it.value().is_string())
      throw Error(ip + ": weight_map['" + it.key() + "']: expected a shard file name, got " + it.value().dump());
    const std::string shard = it.value().get<std::string>();
    if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..")
      throw Error(ip + ": weight_map['" + it.key() + "']: shard '" + shard + "' is not a plain file name");
    mapping[it.key()] = shard;
    if (!shard_index.count(shard)) {
      const fs::path sp = fs::path(path) / shard;
      if (!fs::is_regular_file(sp, ec))
        throw Error(ip + ": weight_map['" + it.key() + "'] points at shard '" + shard + "', which does not exist in " +
                    path);
      shard_index[shard] = c.files_.size();
      c.files_.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(sp.string(), map_data)));
    }
  }
  for (auto& [name, shard] : mapping) {
    const SafetensorsFile* f = c.files_[shard_index[shard]].get();
    const TensorInfo* t = f->find(name);
    if (!t) throw Error(ip + ": tensor '" + name + "' is mapped to shard '" + shard + "', which does not hold it");
    c.tensors_.emplace(name, Entry{f, t});
  }
  for (auto& [shard, idx] : shard_index)
    for (auto& t : c.files_[idx]->tensors()) {
      auto m = mapping.find(t.name);
      if (m == mapping.end())
        throw Error(ip + ": shard '" + shard + "' holds tensor '" + t.name + "', which the index does not list");
      if (m->second != shard)
        throw Error(ip + ": shard '" + shard + "' holds tensor '" + t.name + "', which the index maps to '" +
                    m->second + "'");
    }
  if (auto md = j.find("metadata"); md != j.end()) {
    if (!md->is_object()) throw Error(ip + ": 'metadata' is not an object");
    if (auto ts = md->find("total_size"); ts != md->end()) {
      if (!ts->is_number_unsigned()) throw Error(ip + ": metadata.total_size: expected an integer, got " + ts->dump());
      const uint64_t total = c.total_bytes();
      if (ts->get<uint64_t>() != total)
        throw Error(ip + ": metadata.total_size is " + std::to_string(ts->get<uint64_t>()) +
                    " but the shards' tensors total " + std::to_string(total) + " bytes");
    }
  }
  return c;
}

// ---- writer -----------------------------------------------------------------------------------------

uint64_t TensorSpec::bytes() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= uint64_t(d);
  return n * uint64_t(hf_dtype_size(dtype));
}

SafetensorsLayout plan_safetensors(std::vector<TensorSpec> specs, uint64_t align) {
  if (align == 0 || align > 4096 || (align & (align - 1)) != 0)
    throw Error("safetensors writer: alignment " + std::to_string(align) + " is not a power of two <= 4096");
  // safetensors crate prepare(): descending dtype, then name.
  std::sort(specs.begin(), specs.end(), [](const TensorSpec& a, const TensorSpec& b) {
    const int ra = hf_dtype_crate_rank(a.dtype), rb = hf_dtype_crate_rank(b.dtype);
    return ra != rb ? ra > rb : a.name < b.name;
  });
  SafetensorsLayout l;
  std::string& h = l.header;
  h = "{\"__metadata__\":{\"format\":\"pt\"}";
  uint64_t off = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorSpec& s = specs[i];
    if (i > 0 && s.name == specs[i - 1].name) throw Error("safetensors writer: duplicate tensor '" + s.name + "'");
    if (s.name == "__metadata__") throw Error("safetensors writer: '__metadata__' is not a tensor name");
    for (int64_t d : s.shape)
      if (d < 0) throw Error("safetensors writer: tensor '" + s.name + "' has a negative dimension");
    off = (off + align - 1) / align * align;
    TensorInfo t{s.name, s.dtype, s.shape, off, off + s.bytes()};
    off = t.end;
    h.append(",").append(json(s.name).dump()).append(":{\"dtype\":\"").append(hf_dtype_name(s.dtype));
    h.append("\",\"shape\":[");
    for (size_t k = 0; k < s.shape.size(); ++k) h.append(k ? "," : "").append(std::to_string(s.shape[k]));
    h.append("],\"data_offsets\":[").append(std::to_string(t.begin)).append(",").append(std::to_string(t.end));
    h.append("]}");
    l.tensors.push_back(std::move(t));
  }
  h += "}";
  const uint64_t a = std::max<uint64_t>(align, 8);  // official: header padded to 8; data start aligned to `a`
  h.append((a - (8 + h.size()) % a) % a, ' ');
  if (h.size() > kMaxHeaderBytes) throw Error("safetensors writer: header exceeds the 100 MB limit");
  l.data_offset = 8 + h.size();
  l.file_size = l.data_offset + off;
  return l;
}

SafetensorsWriter::SafetensorsWriter(std::string path, std::vector<TensorSpec> specs, uint64_t align)
    : path_(std::move(path)), tmp_(path_ + ".tmp"), layout_(plan_safetensors(std::move(specs), align)) {
  for (size_t i = 0; i < layout_.tensors.size(); ++i) index_.emplace(layout_.tensors[i].name, i);
  written_.assign(layout_.tensors.size(), 0);
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(tmp_ + ": cannot create: " + errno_str());
  try {
    // Final size up front: gaps (alignment padding) read as zeros without being written.
    if (::ftruncate(fd_, off_t(layout_.file_size)) != 0)
      throw Error(tmp_ + ": cannot size to " + std::to_string(layout_.file_size) + " bytes: " + errno_str());
    uint8_t len[8];
    uint64_t n = layout_.header.size();
    for (int i = 0; i < 8; ++i) len[i] = uint8_t(n >> (8 * i));
    pwrite_all(fd_, len, 8, 0, tmp_);
    pwrite_all(fd_, layout_.header.data(), n, 8, tmp_);
  } catch (...) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
    fd_ = -1;
    throw;
  }
}

SafetensorsWriter::~SafetensorsWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void SafetensorsWriter::write(std::string_view name, uint64_t offset, std::span<const uint8_t> bytes) {
  auto it = index_.find(std::string(name));
  if (it == index_.end()) throw Error(path_ + ": writer: tensor '" + std::string(name) + "' is not in this file");
  const TensorInfo& t = layout_.tensors[it->second];
  uint64_t& w = written_[it->second];
  if (offset != w)
    throw Error(path_ + ": writer: tensor '" + t.name + "' written at byte " + std::to_string(offset) +
                ", expected the next byte " + std::to_string(w));
  if (offset + bytes.size() > t.bytes())
    throw Error(path_ + ": writer: tensor '" + t.name + "' overflows its " + std::to_string(t.bytes()) + " bytes");
  pwrite_all(fd_, bytes.data(), bytes.size(), layout_.data_offset + t.begin + offset, tmp_);
  w += bytes.size();
}

void SafetensorsWriter::finish() {
  if (fd_ < 0) throw Error(path_ + ": writer: already finished");
  for (size_t i = 0; i < layout_.tensors.size(); ++i)
    if (written_[i] != layout_.tensors[i].bytes())
      throw Error(path_ + ": writer: tensor '" + layout_.tensors[i].name + "' has " + std::to_string(written_[i]) +
                  " of " + std::to_string(layout_.tensors[i].bytes()) + " bytes written");
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    ::unlink(tmp_.c_str());
    throw Error(tmp_ + ": close failed: " + errno_str());
  }
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const std::string e = errno_str();
    ::unlink(tmp_.c_str());
    throw Error(tmp_ + ": rename to " + path_ + " failed: " + e);
  }
}

void write_safetensors(const std::string& path, std::vector<TensorSpec> specs, const FillFn& fill, uint64_t align,
                       uint64_t chunk_bytes) {
  SafetensorsWriter w(path, std::move(specs), align);
  std::vector<uint8_t> buf;
  for (const TensorInfo& t : w.layout().tensors) {
    const TensorSpec spec{t.name, t.dtype, t.shape};
    const uint64_t total = t.bytes();
    const uint64_t rows = t.shape.empty() || t.shape[0] == 0 ? 1 : uint64_t(t.shape[0]);
    const uint64_t row_bytes = total / rows;
    const uint64_t step = std::max<uint64_t>(1, chunk_bytes / std::max<uint64_t>(row_bytes, 1)) * row_bytes;
    for (uint64_t off = 0; off < total; off += step) {
      const uint64_t n = std::min(step, total - off);
      buf.resize(n);
      fill(spec, off, std::span<uint8_t>(buf.data(), n));
      w.write(t.name, off, std::span<const uint8_t>(buf.data(), n));
    }
  }
  w.finish();
}

}  // namespace dsv4::st
