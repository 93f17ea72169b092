// Progress line rendering (see progress.h).
#include "loadtest/progress.h"

#include <algorithm>

namespace ds4::loadtest {

void ProgressBar::update(const Progress& p) {
  if (!enabled_) return;
  double frac = 0;
  if (p.target_requests > 0)
    frac = static_cast<double>(p.completed + p.failed) / static_cast<double>(p.target_requests);
  else if (p.target_duration_s > 0)
    frac = p.elapsed_s / p.target_duration_s;
  frac = std::clamp(frac, 0.0, 1.0);
  constexpr int kWidth = 30;
  int filled = static_cast<int>(frac * kWidth + 0.5);
  std::string bar(static_cast<size_t>(filled), '#');
  bar.append(static_cast<size_t>(kWidth - filled), '.');
  double tok_s = p.elapsed_s > 0 ? static_cast<double>(p.output_tokens) / p.elapsed_s : 0;
  std::fprintf(out_, "\r%-8s [%s] %3.0f%%  done %lld  in flight %lld  queued %lld  failed %lld  %.0f tok/s  %.1fs ",
               label_.c_str(), bar.c_str(), frac * 100, static_cast<long long>(p.completed + p.failed),
               static_cast<long long>(p.in_flight), static_cast<long long>(p.queued),
               static_cast<long long>(p.failed), tok_s, p.elapsed_s);
  std::fflush(out_);
  drawn_ = true;
}

void ProgressBar::end_level() {
  if (enabled_ && drawn_) std::fputc('\n', out_);
  drawn_ = false;
}

}  // namespace ds4::loadtest
