// Backend defaults (see forward.h): a backend without an undo log cannot roll back.
#include "engine/forward.h"

#include <cstdio>
#include <cstdlib>

namespace ds4 {

void Backend::rollback(SequenceKv&, int64_t) {
  std::fprintf(stderr, "%s:%d: Backend::rollback: this backend does not support speculative decoding\n", __FILE__,
               __LINE__);
  std::abort();
}

}  // namespace ds4
