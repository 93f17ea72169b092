// Model: an opened GGUF with its validated config and bound weights: what every backend and tool
// starts from. Loading throws LoadError naming the problem (start-up only).
#pragma once
#include <memory>
#include <string>

#include "engine/gguf.h"
#include "engine/model_config.h"
#include "engine/weights.h"

namespace ds4 {

struct Model {
  std::unique_ptr<GgufFile> file;  // owns the mapping the weights point into
  ModelConfig config;
  Weights weights;
};

std::unique_ptr<Model> load_model(const std::string& path);

}  // namespace ds4
