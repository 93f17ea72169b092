// compute_logprobs (see logprobs.h): one pass for the log-sum-exp, one for a bounded min-heap of
// the best `top` ids; O(n_vocab log top), no per-call vocabulary-sized allocation.
#include "scheduler/logprobs.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace ds4 {

SampledLogprobs compute_logprobs(std::span<const float> logits, int32_t token, int top) {
  SampledLogprobs out;
  if (logits.empty()) return out;
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - max_logit);
  const double log_norm = max_logit + std::log(sum);
  auto logprob = [&](int32_t id) { return static_cast<float>(logits[id] - log_norm); };
  out.logprob = logprob(token);
  top = std::clamp(top, 0, std::min<int>(kMaxTopLogprobs, static_cast<int>(logits.size())));
  if (top == 0) return out;
  // "better" = larger logit, then smaller id; the heap keeps the worst kept candidate on top.
  auto better = [&](int32_t a, int32_t b) { return logits[a] != logits[b] ? logits[a] > logits[b] : a < b; };
  std::vector<int32_t> heap;
  heap.reserve(top + 1);
  for (int32_t id = 0; id < static_cast<int32_t>(logits.size()); ++id) {
    if (static_cast<int>(heap.size()) == top && !better(id, heap.front())) continue;
    heap.push_back(id);
    std::push_heap(heap.begin(), heap.end(), better);
    if (static_cast<int>(heap.size()) > top) {
      std::pop_heap(heap.begin(), heap.end(), better);
      heap.pop_back();
    }
  }
  std::sort(heap.begin(), heap.end(), better);
  for (int32_t id : heap) out.top.push_back({id, logprob(id)});
  return out;
}

}  // namespace ds4
