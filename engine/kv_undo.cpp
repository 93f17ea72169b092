// KvUndoLog (see kv_undo.h).
#include "engine/kv_undo.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace ds4 {

void KvUndoLog::reset(int64_t first_pos, int64_t end_pos) {
  entries_.clear();
  data_.clear();
  first_pos_ = first_pos;
  end_pos_ = end_pos;
}

void KvUndoLog::save(int64_t pos, float* dst, int64_t count) {
  if (pos < first_pos_ || pos >= end_pos_ || count < 0) {
    std::fprintf(stderr, "%s:%d: KvUndoLog: position %lld outside the logged forward [%lld, %lld)\n", __FILE__,
                 __LINE__, static_cast<long long>(pos), static_cast<long long>(first_pos_),
                 static_cast<long long>(end_pos_));
    std::abort();
  }
  entries_.push_back({pos, dst, data_.size(), count});
  data_.insert(data_.end(), dst, dst + count);
}

void KvUndoLog::rollback(int64_t keep_end) {
  // Entries are in processing order: layer by layer, positions increasing within a layer. A row
  // belongs to one layer, so undoing in reverse global order undoes each row's writes newest first.
  for (size_t i = entries_.size(); i-- > 0;) {
    const Entry& e = entries_[i];
    if (e.pos >= keep_end) std::copy_n(data_.data() + e.offset, e.count, e.dst);
  }
  size_t w = 0;
  for (size_t r = 0; r < entries_.size(); ++r)
    if (entries_[r].pos < keep_end) entries_[w++] = entries_[r];
  entries_.resize(w);  // data_ keeps the dropped ranges until reset(); kept offsets stay valid
  end_pos_ = std::min(end_pos_, std::max(keep_end, first_pos_));
}

}  // namespace ds4
