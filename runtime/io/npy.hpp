// Minimal NumPy .npy (format v1.0) reader and writer, header-only.
// Little-endian only; dtypes <u2 (bf16 bit patterns), <f4, <i4, <i8; C order only.
// Errors throw std::runtime_error naming the file and what was expected vs what was found.
#pragma once
#include <cstdint>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace dsv4::npy {

template <class T> struct dtype_of;
template <> struct dtype_of<uint16_t> { static constexpr const char* descr = "<u2"; };
template <> struct dtype_of<float> { static constexpr const char* descr = "<f4"; };
template <> struct dtype_of<int32_t> { static constexpr const char* descr = "<i4"; };
template <> struct dtype_of<int64_t> { static constexpr const char* descr = "<i8"; };

// One array: raw little-endian bytes plus its dtype descr and shape.
struct Array {
  std::string descr;           // numpy dtype string, e.g. "<f4"
  std::vector<int64_t> shape;  // C-order shape; empty = scalar
  std::vector<uint8_t> bytes;  // numel * itemsize bytes

  // Product of the dims; read() guarantees it fits (and its byte size fits the file).
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape)
      if (d < 0 || __builtin_mul_overflow(n, d, &n)) throw std::runtime_error("npy: shape " + shape_str() + " overflows");
    return n;
  }
  // Typed copy of the payload; throws if the dtype is not T's.
  template <class T> std::vector<T> as(const std::string& what = "") const {
    if (descr != dtype_of<T>::descr)
      throw std::runtime_error("npy " + what + ": expected dtype " + dtype_of<T>::descr + ", got " + descr);
    std::vector<T> v(static_cast<size_t>(numel()));
    if (!v.empty()) std::memcpy(v.data(), bytes.data(), v.size() * sizeof(T));
    return v;
  }
  std::string shape_str() const {
    std::string s = "(";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + (shape.size() == 1 ? ",)" : ")");
  }
};

namespace detail {
inline int itemsize(const std::string& descr) {
  if (descr == "<u2") return 2;
  if (descr == "<f4" || descr == "<i4") return 4;
  if (descr == "<i8") return 8;
  return 0;
}
// Value of dictionary key `key` in the header text (up to the next ',' or '}' at depth 0).
inline std::string dict_value(const std::string& h, const std::string& key, const std::string& path) {
  const std::string k = "'" + key + "'";
  size_t p = h.find(k);
  if (p == std::string::npos) throw std::runtime_error("npy " + path + ": header has no key " + k + ": " + h);
  p = h.find(':', p + k.size());
  if (p == std::string::npos) throw std::runtime_error("npy " + path + ": malformed header: " + h);
  ++p;
  while (p < h.size() && h[p] == ' ') ++p;
  size_t e = p;
  int depth = 0;
  for (; e < h.size(); ++e) {
    const char c = h[e];
    if (c == '(' || c == '[') ++depth;
    else if (c == ')' || c == ']') --depth;
    else if ((c == ',' || c == '}') && depth == 0) break;
  }
  return h.substr(p, e - p);
}
}  // namespace detail

inline Array read(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("npy " + path + ": cannot open");
  char magic[8];
  if (!f.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0)
    throw std::runtime_error("npy " + path + ": expected magic \\x93NUMPY, not found");
  if (magic[6] != 1)
    throw std::runtime_error("npy " + path + ": expected format version 1, got " + std::to_string(int(magic[6])));
  uint8_t lenb[2];
  if (!f.read(reinterpret_cast<char*>(lenb), 2)) throw std::runtime_error("npy " + path + ": truncated header");
  const size_t hlen = size_t(lenb[0]) | (size_t(lenb[1]) << 8);
  std::string h(hlen, '\0');
  if (!f.read(h.data(), std::streamsize(hlen))) throw std::runtime_error("npy " + path + ": truncated header");

  Array a;
  std::string d = detail::dict_value(h, "descr", path);
  if (d.size() < 2 || (d.front() != '\'' && d.front() != '"'))
    throw std::runtime_error("npy " + path + ": malformed descr " + d);
  a.descr = d.substr(1, d.size() - 2);
  if (detail::itemsize(a.descr) == 0)
    throw std::runtime_error("npy " + path + ": expected dtype <u2, <f4, <i4 or <i8, got " + a.descr);
  const std::string fo = detail::dict_value(h, "fortran_order", path);
  if (fo != "False") throw std::runtime_error("npy " + path + ": expected fortran_order False, got " + fo);
  const std::string sh = detail::dict_value(h, "shape", path);
  if (sh.size() < 2 || sh.front() != '(' || sh.back() != ')')
    throw std::runtime_error("npy " + path + ": malformed shape " + sh);
  // Dims are non-negative decimal integers; every product is overflow-checked and the payload must be in
  // the file before anything is allocated.
  uint64_t numel = 1;
  for (size_t i = 1; i + 1 < sh.size();) {
    const char c = sh[i];
    if (c == ' ' || c == ',' || c == 'L') {
      ++i;
      continue;
    }
    if (c < '0' || c > '9') throw std::runtime_error("npy " + path + ": malformed shape " + sh);
    uint64_t d = 0;
    for (; i + 1 < sh.size() && sh[i] >= '0' && sh[i] <= '9'; ++i)
      if (__builtin_mul_overflow(d, 10u, &d) || __builtin_add_overflow(d, uint64_t(sh[i] - '0'), &d) ||
          d > uint64_t(INT64_MAX))
        throw std::runtime_error("npy " + path + ": shape " + sh + ": a dimension overflows int64");
    if (__builtin_mul_overflow(numel, d, &numel) || numel > uint64_t(INT64_MAX))
      throw std::runtime_error("npy " + path + ": shape " + sh + ": element count overflows int64");
    a.shape.push_back(int64_t(d));
  }
  uint64_t nbytes = 0;
  if (__builtin_mul_overflow(numel, uint64_t(detail::itemsize(a.descr)), &nbytes))
    throw std::runtime_error("npy " + path + ": shape " + sh + ": byte size overflows 64 bits");
  const std::streamoff here = f.tellg();
  f.seekg(0, std::ios::end);
  const std::streamoff end = f.tellg();
  f.seekg(here);
  if (here < 0 || end < here || uint64_t(end - here) != nbytes)
    throw std::runtime_error("npy " + path + ": expected " + std::to_string(nbytes) + " payload bytes for shape " +
                             a.shape_str() + ", the file holds " + std::to_string(end - here));
  a.bytes.resize(size_t(nbytes));
  if (nbytes && !f.read(reinterpret_cast<char*>(a.bytes.data()), std::streamsize(nbytes)))
    throw std::runtime_error("npy " + path + ": expected " + std::to_string(nbytes) + " payload bytes for shape " +
                             a.shape_str() + ", file is shorter");
  return a;
}

// Read and check dtype and (if given) shape; returns the typed values.
template <class T>
std::vector<T> read_as(const std::string& path, std::vector<int64_t>* shape_out = nullptr,
                       const std::vector<int64_t>* expect_shape = nullptr) {
  Array a = read(path);
  if (expect_shape && a.shape != *expect_shape) {
    Array e;
    e.shape = *expect_shape;
    throw std::runtime_error("npy " + path + ": expected shape " + e.shape_str() + ", got " + a.shape_str());
  }
  if (shape_out) *shape_out = a.shape;
  return a.as<T>(path);
}

template <class T> void write(const std::string& path, const T* data, const std::vector<int64_t>& shape) {
  Array tmp;
  tmp.shape = shape;
  std::string h = std::string("{'descr': '") + dtype_of<T>::descr + "', 'fortran_order': False, 'shape': " +
                  tmp.shape_str() + ", }";
  // Pad so that magic(6)+version(2)+len(2)+header is a multiple of 64, ending in '\n'.
  const size_t total = 10 + h.size() + 1;
  h.append((64 - total % 64) % 64, ' ');
  h.push_back('\n');
  std::ofstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("npy " + path + ": cannot open for writing");
  const char pre[8] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0};
  f.write(pre, 8);
  const uint8_t lenb[2] = {uint8_t(h.size() & 0xff), uint8_t(h.size() >> 8)};
  f.write(reinterpret_cast<const char*>(lenb), 2);
  f.write(h.data(), std::streamsize(h.size()));
  f.write(reinterpret_cast<const char*>(data), std::streamsize(size_t(tmp.numel()) * sizeof(T)));
  if (!f) throw std::runtime_error("npy " + path + ": write failed");
}

}  // namespace dsv4::npy
