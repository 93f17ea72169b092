// KvGeometry: the per-layer shape of one sequence's attention state (MODEL.md 2.5) as plain numbers,
// so kvcache/ never depends on engine/ or the model (engine/kv_geometry.h builds it from a
// ModelConfig). Also the storage layouts (f32, f16, packed FP8/FP4) and their byte sizes per row,
// per block and per context token. Invariant of a valid geometry: every ratio divides block_tokens.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ds4 {

// Positions per logical block, for every layer (DESIGN.md "The KV cache of this model").
constexpr int kKvBlockTokens = 256;

struct KvLayerGeometry {
  int ratio = 0;         // 0: raw window only; else one compressed row per `ratio` positions
  bool indexer = false;  // CSA layer: an indexer row (and compressor) beside each compressed row
};

struct KvGeometry {
  int head_dim = 0;       // values per raw and compressed attention row (512 real)
  int rope_dim = 0;       // rotated tail of a row (64 real); the packed layout keeps it in f16
  int indexer_dim = 0;    // values per indexer row (128 real)
  int window = 0;         // raw rows a query attends to (sliding window, 128 real)
  int raw_ring_rows = 0;  // raw ring capacity per sequence and layer, >= window; slot = pos % rows
  int block_tokens = kKvBlockTokens;
  std::vector<KvLayerGeometry> layers;

  int n_layers() const { return static_cast<int>(layers.size()); }
};

// Every problem of the geometry, one line each (empty when valid).
std::vector<std::string> geometry_problems(const KvGeometry& geometry);

// How rows are stored. kF32 is what the CPU forward pass reads and writes. kF16 halves the bytes
// (raw rows are already f16-rounded by the model's storage quantisation). kPacked is the lossless
// form of the model's in-graph quantisation (MODEL.md 2.6): attention rows = FP8 E4M3 codes of the
// first head_dim - rope_dim values + one exponent byte per 64 of them + the RoPE tail in f16; indexer
// rows = FP4 E2M1 nibbles + one exponent byte per 32 values. Frontiers are always f32.
enum class KvLayout { kF32, kF16, kPacked };

const char* layout_name(KvLayout layout);
// "f32" | "f16" | "packed"; false for another name.
bool parse_layout(std::string_view name, KvLayout& layout);

// Bytes of one stored row.
int64_t attention_row_bytes(const KvGeometry& g, KvLayout layout);  // raw and compressed attention rows
int64_t indexer_row_bytes(const KvGeometry& g, KvLayout layout);

// Frontier rows that carry over a window boundary: the overlapping previous window of ratio 4
// (rows 0..3 at a boundary equal rows 4..7); none for other ratios, whose frontier is fully
// rewritten before its next row is emitted.
inline int frontier_carry_rows(int ratio) { return ratio == 4 ? 4 : 0; }

// Sizes of the three kinds of storage, in bytes.
struct KvByteSizes {
  int64_t block_bytes = 0;     // one logical block: compressed + indexer rows of block_tokens positions, all layers
  int64_t slot_bytes = 0;      // one running sequence: raw rings + full compressor frontiers
  int64_t snapshot_bytes = 0;  // one boundary snapshot: the last `window` raw rows + carried frontier rows
  double bytes_per_token() const;  // block_bytes / block_tokens: the marginal cost of context
  int64_t block_tokens = 0;
};
KvByteSizes kv_byte_sizes(const KvGeometry& g, KvLayout layout);

// A memory budget as given on the command line (`--kv-memory`): absolute bytes or a fraction of the
// device memory left free after the weights.
struct KvMemory {
  int64_t bytes = 0;      // > 0: absolute
  double fraction = 0.0;  // > 0: of the free memory
  int64_t resolve(int64_t free_bytes) const { return bytes > 0 ? bytes : static_cast<int64_t>(fraction * free_bytes); }
};
// "55" or "55GiB" or "512MiB" (absolute), "0.9" or "90%" (fraction, a bare number below 1 is a
// fraction). On failure returns false and sets error to a message naming the problem.
bool parse_kv_memory(std::string_view text, KvMemory& memory, std::string& error);

}  // namespace ds4
