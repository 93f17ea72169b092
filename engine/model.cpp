// load_model: open, read config, bind weights (see model.h).
#include "engine/model.h"

namespace ds4 {

std::unique_ptr<Model> load_model(const std::string& path) {
  auto model = std::make_unique<Model>();
  model->file = GgufFile::open(path);
  model->config = config_from_gguf(*model->file);
  model->weights = bind_weights(*model->file, model->config);
  return model;
}

}  // namespace ds4
