// Backend defaults (see forward.h): a backend without an undo log cannot roll back, one without
// device sampling cannot sample rows.
#include "engine/forward.h"

#include <cstdio>
#include <cstdlib>

namespace ds4 {

void Backend::rollback(SequenceKv&, int64_t) {
  std::fprintf(stderr, "%s:%d: Backend::rollback: this backend does not support speculative decoding\n", __FILE__,
               __LINE__);
  std::abort();
}

void Backend::rollback_all(std::span<const RollbackTo> rollbacks) {
  for (const RollbackTo& r : rollbacks) rollback(*r.kv, r.num_tokens);
}

std::vector<int32_t> Backend::sample_rows(std::span<const RowSampling>) {
  std::fprintf(stderr, "%s:%d: Backend::sample_rows: this backend does not sample on a device\n", __FILE__, __LINE__);
  std::abort();
}

}  // namespace ds4
