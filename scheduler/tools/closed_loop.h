// The closed loop of ds4serve-bench (--users): the workload of ds4serve-load's closed loop run
// straight on the Engine, without HTTP, so the two can be compared level by level. For each level,
// U simulated users each submit a request (a fresh random prompt of --prompt-len ids, --output-len
// tokens ignoring EOS), wait for it to finish and submit the next, until --level-time has passed;
// requests in flight then run to the end and count, as in ds4serve-load. Each request becomes a
// loadtest::RequestRecord from the engine's RequestStream timestamps (queued, first token,
// finished; later tokens stamped when the driver takes them from the stream, as ds4serve-load stamps
// SSE events), so loadtest/stats.h computes every measure with ds4serve-load's own definitions and
// loadtest/report.h prints and writes them (JSON / CSV of the same format, "tool": "ds4serve-bench").
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "loadtest/runner.h"
#include "scheduler/engine.h"
#include "scheduler/tools/bench_options.h"

namespace ds4 {

// The engine's steps as its step observer records them (the closed loop reads each level's share).
struct StepLog {
  std::mutex mutex;
  std::vector<StepStats> steps;
};
// Runs the warm-up and every level of o.users on a started engine whose step observer fills
// `steps`; prints each level and the report, writes o.out_files after every level (closed_loop_report.h).
// Returns the exit code: 0, or 1 when a request failed or an output file could not be written.
int run_closed_loop(const BenchOptions& o, Engine& engine, StepLog& steps, int32_t n_vocab,
                    const std::string& description);

// The prompt of closed-loop request `index`: o.prompt_min..o.prompt_max random ordinary token ids
// (the first o.shared_prefix shared by all requests), a function of (o.seed, index) only.
GenerationRequest closed_loop_request(const BenchOptions& o, int32_t n_vocab, int64_t index);

}  // namespace ds4
