// KvGeometry validation, storage-layout row sizes and the `--kv-memory` parser (kv_geometry.h).
// The slot and snapshot sizes come from the same placement code as the pool layout
// (kv_storage.cpp), so the numbers reported here are the bytes the pool really uses.
#include "kvcache/kv_geometry.h"

#include <charconv>
#include <cmath>

#include "kvcache/kv_storage.h"

namespace ds4 {

std::vector<std::string> geometry_problems(const KvGeometry& g) {
  std::vector<std::string> p;
  auto need = [&](bool ok, const std::string& what) {
    if (!ok) p.push_back(what);
  };
  need(g.head_dim > 0, "head_dim must be positive");
  need(g.rope_dim >= 0 && g.rope_dim <= g.head_dim, "rope_dim must be within [0, head_dim]");
  need(g.window > 0, "window must be positive");
  need(g.raw_ring_rows >= g.window, "raw_ring_rows must be at least the window");
  need(g.block_tokens > 0, "block_tokens must be positive");
  need(!g.layers.empty(), "no layers");
  bool any_indexer = false;
  for (int il = 0; il < g.n_layers(); ++il) {
    const KvLayerGeometry& l = g.layers[il];
    const std::string at = "layer " + std::to_string(il) + ": ";
    need(l.ratio >= 0, at + "negative compress ratio");
    if (l.ratio > 0 && g.block_tokens > 0)
      need(g.block_tokens % l.ratio == 0, at + "compress ratio " + std::to_string(l.ratio) + " does not divide block_tokens " +
                                              std::to_string(g.block_tokens));
    need(!l.indexer || l.ratio > 0, at + "an indexer needs a compressed layer");
    any_indexer = any_indexer || l.indexer;
  }
  need(!any_indexer || g.indexer_dim > 0, "indexer_dim must be positive");
  return p;
}

const char* layout_name(KvLayout layout) {
  switch (layout) {
    case KvLayout::kF32: return "f32";
    case KvLayout::kF16: return "f16";
    case KvLayout::kPacked: return "packed";
  }
  return "?";
}

bool parse_layout(std::string_view name, KvLayout& layout) {
  for (KvLayout l : {KvLayout::kF32, KvLayout::kF16, KvLayout::kPacked}) {
    if (name == layout_name(l)) {
      layout = l;
      return true;
    }
  }
  return false;
}

int64_t attention_row_bytes(const KvGeometry& g, KvLayout layout) {
  switch (layout) {
    case KvLayout::kF32: return int64_t(g.head_dim) * 4;
    case KvLayout::kF16: return int64_t(g.head_dim) * 2;
    case KvLayout::kPacked: {
      const int64_t nope = g.head_dim - g.rope_dim;
      return nope + (nope + 63) / 64 + int64_t(g.rope_dim) * 2;  // FP8 codes, exponents, f16 tail
    }
  }
  return 0;
}

int64_t indexer_row_bytes(const KvGeometry& g, KvLayout layout) {
  switch (layout) {
    case KvLayout::kF32: return int64_t(g.indexer_dim) * 4;
    case KvLayout::kF16: return int64_t(g.indexer_dim) * 2;
    case KvLayout::kPacked: return (int64_t(g.indexer_dim) + 1) / 2 + (g.indexer_dim + 31) / 32;  // FP4 nibbles, exponents
  }
  return 0;
}

double KvByteSizes::bytes_per_token() const { return block_tokens > 0 ? double(block_bytes) / double(block_tokens) : 0.0; }

KvByteSizes kv_byte_sizes(const KvGeometry& g, KvLayout layout) {
  // One block, no slots or snapshots counted: the layout computes every size.
  return layout_kv_pool(g, layout, 1, 0, 0).sizes;
}

namespace {

bool parse_number(std::string_view s, double& value) {
  if (s.empty()) return false;
  const char* end = s.data() + s.size();
  const auto r = std::from_chars(s.data(), end, value);
  return r.ec == std::errc() && r.ptr == end && std::isfinite(value);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

bool parse_kv_memory(std::string_view text, KvMemory& memory, std::string& error) {
  const std::string_view s = trim(text);
  const std::string shown = "--kv-memory '" + std::string(text) + "': ";
  memory = {};
  double value = 0.0;
  if (!s.empty() && s.back() == '%') {
    if (!parse_number(s.substr(0, s.size() - 1), value) || value <= 0.0 || value > 100.0) {
      error = shown + "a percentage must be a number in (0, 100]";
      return false;
    }
    memory.fraction = value / 100.0;
    return true;
  }
  struct Unit {
    std::string_view suffix;
    double bytes;
  };
  constexpr Unit kUnits[] = {{"GiB", 1073741824.0}, {"G", 1073741824.0}, {"MiB", 1048576.0}, {"M", 1048576.0}};
  double unit = 0.0;  // 0: no suffix
  std::string_view number = s;
  for (const Unit& u : kUnits) {
    if (s.size() > u.suffix.size() && s.substr(s.size() - u.suffix.size()) == u.suffix) {
      unit = u.bytes;
      number = trim(s.substr(0, s.size() - u.suffix.size()));
      break;
    }
  }
  if (!parse_number(number, value) || value <= 0.0) {
    error = shown + "expected a positive size (GiB, or with a GiB/MiB suffix) or a fraction (0.9 or 90%)";
    return false;
  }
  if (unit == 0.0 && value < 1.0) {
    memory.fraction = value;
    return true;
  }
  const double bytes = value * (unit == 0.0 ? 1073741824.0 : unit);
  if (bytes > 9.0e18) {
    error = shown + "size too large";
    return false;
  }
  memory.bytes = static_cast<int64_t>(bytes);
  if (memory.bytes <= 0) {
    error = shown + "size rounds to zero bytes";
    return false;
  }
  return true;
}

}  // namespace ds4
