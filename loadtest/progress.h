// ProgressBar: one self-overwriting line on stderr while a level runs (requests done out of the
// target, or time out of the duration; requests in flight, failures, output tokens/s).
// Owned by main.cpp; fed from the runner's tick (every 100 ms) on the runner strand.
#pragma once

#include <cstdio>
#include <string>

#include "loadtest/runner.h"

namespace ds4::loadtest {

class ProgressBar {
 public:
  ProgressBar(FILE* out, bool enabled) : out_(out), enabled_(enabled) {}
  void begin_level(std::string label) { label_ = std::move(label); }
  void update(const Progress& p);
  // Ends the line of the current level (keeps its final state visible).
  void end_level();

 private:
  FILE* out_;
  bool enabled_;
  bool drawn_ = false;
  std::string label_;
};

}  // namespace ds4::loadtest
