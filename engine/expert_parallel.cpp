// expert_slice (see expert_parallel.h): narrows the views; no bytes are copied.
#include "engine/expert_parallel.h"

#include <string>

#include "engine/load_error.h"

namespace ds4 {
namespace {

TensorView narrow(const TensorView& t, ExpertShard shard) {
  if (!t.present()) return t;
  if (shard.first < 0 || shard.count < 1 || uint64_t(shard.first) + uint64_t(shard.count) > t.ne2)
    throw LoadError("expert slice [" + std::to_string(shard.first) + ", " + std::to_string(shard.first + shard.count) +
                    ") is not a range of the " + std::to_string(t.ne2) + " experts");
  TensorView v = t;
  v.data = t.row(uint64_t(shard.first), 0);
  v.ne2 = uint64_t(shard.count);
  return v;
}

}  // namespace

Weights expert_slice(const Weights& w, ExpertShard shard) {
  Weights out = w;
  for (LayerWeights& l : out.layers) {
    l.ffn_gate_exps = narrow(l.ffn_gate_exps, shard);
    l.ffn_up_exps = narrow(l.ffn_up_exps, shard);
    l.ffn_down_exps = narrow(l.ffn_down_exps, shard);
  }
  return out;
}

}  // namespace ds4
