// The closed loop's report (closed_loop.h): ds4serve-load's tables, JSON and CSV (loadtest/report.h)
// over the levels, with the engine's own counters of each level where ds4serve-load puts the
// server's /metrics difference ("server" in the JSON; the engine_* keys below).
#pragma once
#include <string>
#include <vector>

#include "loadtest/report.h"
#include "scheduler/engine_api.h"
#include "scheduler/tools/bench_options.h"

namespace ds4 {

// The level's engine counters from its steps and the engine's statistics before and after it:
// counters engine_steps, engine_prefill_tokens, engine_sampled_tokens, engine_preemptions,
// engine_prefix_cache_hit_tokens, engine_step_launches{launch=direct|graph_replay|graph_capture};
// means engine_step_ms, engine_decode_step_ms (steps without prefill), engine_batch_seqs.
loadtest::MetricsDiff engine_counters(const std::vector<StepStats>& steps, const EngineStats& before,
                                      const EngineStats& after);

// The levels so far: each added level prints one line and rewrites o.out_files at once (marked
// "interrupted" until finish()), so a run stopped by an outer time limit keeps its finished levels.
class ClosedLoopReport {
 public:
  ClosedLoopReport(const BenchOptions& o, const std::string& description);
  void set_warmup(const loadtest::LevelRun& warmup);
  void add_level(loadtest::LevelResult level);
  // Prints ds4serve-load's tables and writes the final files; 0, or 1 when a request failed or a
  // file could not be written.
  int finish();

 private:
  std::string write_files() const;  // "" or the first error

  const BenchOptions& o_;
  loadtest::RunInfo info_;
  std::vector<loadtest::LevelResult> levels_;
};

}  // namespace ds4
