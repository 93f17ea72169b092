// KvUndoLog: the old contents of every per-sequence state row a speculative forward pass
// overwrote (raw-window ring rows, compressor frontier rows), tagged with the position whose
// processing overwrote them, so the tail of a verified draft can be undone exactly. Compressed and
// indexer rows need no entry: row c exists only while c < num_tokens / ratio, so a rolled-back
// position's rows become invisible and are rewritten when their window really closes.
// Owned by a backend (one log per speculative sequence of the last forward); not thread-safe.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace ds4 {

class KvUndoLog {
 public:
  // Forgets everything; the next forward's first position is `first_pos`, its end `end_pos`.
  void reset(int64_t first_pos, int64_t end_pos);
  int64_t first_pos() const { return first_pos_; }
  int64_t end_pos() const { return end_pos_; }
  // Remembers dst[0, count) before the processing of position `pos` overwrites it. The memory must
  // stay at that address until rollback() or reset().
  void save(int64_t pos, float* dst, int64_t count);
  // Restores, newest first, every saved range whose position is >= keep_end: afterwards the rows are
  // exactly as they were after positions [first_pos, keep_end) were processed. Entries are consumed.
  void rollback(int64_t keep_end);
  size_t num_entries() const { return entries_.size(); }
  size_t saved_floats() const { return data_.size(); }

 private:
  struct Entry {
    int64_t pos;
    float* dst;
    size_t offset;  // into data_
    int64_t count;
  };
  std::vector<Entry> entries_;
  std::vector<float> data_;
  int64_t first_pos_ = 0, end_pos_ = 0;
};

}  // namespace ds4
