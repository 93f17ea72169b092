// The one exception type of model loading (start-up only, never inside the engine loop):
// a message naming what is wrong (file, key or tensor, expected vs found).
#pragma once
#include <stdexcept>
#include <string>

namespace ds4 {

class LoadError : public std::runtime_error {
 public:
  explicit LoadError(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace ds4
