// One error type for bad input everywhere (config, checkpoint, weights, requests). The message names
// the file / tensor / field and what was expected versus what was found.
#pragma once
#include <stdexcept>
#include <string>

namespace dsv4 {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Internal invariant check: a failure is a bug in dsv4, not bad input.
#define DSV4_ASSERT(cond, msg)                                                                \
  do {                                                                                        \
    if (!(cond)) throw ::dsv4::Error(std::string("internal error: ") + (msg) + " [" #cond "]"); \
  } while (0)

}  // namespace dsv4
