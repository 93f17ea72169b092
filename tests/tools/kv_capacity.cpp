// kv_capacity: prints how a KV memory budget splits into blocks, sequence slots and boundary
// snapshots for a model preset and layout, and the resulting context capacity in tokens.
// Usage: kv_capacity [--preset flash] [--kv-memory 55|55GiB|0.9|90%] [--free-gib 55]
//                    [--layout f32|f16|packed|all] [--max-seqs 64] [--snapshot-fraction 0.05]
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "engine/kv_geometry.h"
#include "kvcache/kv_storage.h"

namespace {

constexpr double kGiB = 1073741824.0;

int usage_error(const std::string& what) {
  std::fprintf(stderr, "kv_capacity: %s\nusage: kv_capacity [--preset flash] [--kv-memory 55GiB|0.9|90%%] [--free-gib N]\n"
               "                   [--layout f32|f16|packed|all] [--max-seqs N] [--snapshot-fraction F]\n", what.c_str());
  return 2;
}

void print_plan(const ds4::KvGeometry& g, ds4::KvLayout layout, const ds4::KvPoolOptions& base) {
  ds4::KvPoolOptions o = base;
  o.layout = layout;
  const ds4::KvPoolLayout L = ds4::plan_kv_pool(g, o);
  const ds4::KvByteSizes& s = L.sizes;
  std::printf("%-6s  %8.1f B/token  block %8lld B  slot %7.2f MiB  snapshot %7.2f MiB\n", ds4::layout_name(layout),
              s.bytes_per_token(), static_cast<long long>(s.block_bytes), s.slot_bytes / 1048576.0, s.snapshot_bytes / 1048576.0);
  std::printf("        %lld blocks = %lld context tokens; %lld slots (%.2f GiB), %lld snapshots (%.2f GiB); %.3f of %.3f GiB used\n",
              static_cast<long long>(L.num_blocks), static_cast<long long>(L.capacity_tokens()), static_cast<long long>(L.num_slots),
              L.region_bytes(L.slot_region()) / kGiB, static_cast<long long>(L.num_snapshots),
              L.region_bytes(L.snapshot_region()) / kGiB, L.total_bytes() / kGiB, o.budget_bytes / kGiB);
}

}  // namespace

int main(int argc, char** argv) {
  std::string preset = "flash", memory_text = "55", layout_text = "all";
  double free_gib = 55.0;
  ds4::KvPoolOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) return usage_error("missing value after " + arg);
    const std::string value = argv[++i];
    char* end = nullptr;
    if (arg == "--preset") preset = value;
    else if (arg == "--kv-memory") memory_text = value;
    else if (arg == "--layout") layout_text = value;
    else if (arg == "--free-gib") free_gib = std::strtod(value.c_str(), &end);
    else if (arg == "--max-seqs") options.max_sequences = std::strtoll(value.c_str(), &end, 10);
    else if (arg == "--snapshot-fraction") options.snapshot_fraction = std::strtod(value.c_str(), &end);
    else return usage_error("unknown option " + arg);
    if (end && *end != '\0') return usage_error("bad number for " + arg + ": " + value);
  }
  ds4::KvMemory memory;
  std::string error;
  if (!ds4::parse_kv_memory(memory_text, memory, error)) return usage_error(error);
  options.budget_bytes = memory.resolve(static_cast<int64_t>(free_gib * kGiB));
  try {
    const ds4::KvGeometry g = ds4::kv_geometry(ds4::preset_by_name(preset));
    std::printf("preset %s, budget %.3f GiB, %lld max sequences, snapshot fraction %.3f\n", preset.c_str(),
                options.budget_bytes / kGiB, static_cast<long long>(options.max_sequences), options.snapshot_fraction);
    if (layout_text == "all") {
      for (ds4::KvLayout l : {ds4::KvLayout::kF32, ds4::KvLayout::kF16, ds4::KvLayout::kPacked}) print_plan(g, l, options);
    } else {
      ds4::KvLayout layout;
      if (!ds4::parse_layout(layout_text, layout)) return usage_error("unknown layout " + layout_text);
      print_plan(g, layout, options);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kv_capacity: %s\n", e.what());
    return 1;
  }
  return 0;
}
