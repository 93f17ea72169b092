// ds4serve's backend choice: --backend / --synth / --quant / --seed / --device-reserve / --mtp synth
// parse and are checked, a service asked for the CUDA backend without a device factory (a build
// without CUDA, or this test, which links no CUDA) fails at start-up with a message that says so,
// and --mtp reaches the device factory (a fake one here).
#include <gtest/gtest.h>

#include <string>

#include "engine/load_error.h"
#include "http/server_options.h"

namespace ds4::http {
namespace {

TEST(HttpBackendOptions, ParseAndCheck) {
  bool help = false;
  const ServerOptions o = parse_server_options({"--backend", "cuda", "--synth", "full", "--quant", "q4", "--seed", "9",
                                                "--device-reserve", "2.5"},
                                               "demo.gguf", help);
  EXPECT_EQ(o.service.backend, "cuda");
  EXPECT_EQ(o.service.synth_preset, "full");
  EXPECT_EQ(o.service.synth_quant, "q4");
  EXPECT_EQ(o.service.synth_seed, 9u);
  EXPECT_DOUBLE_EQ(o.service.device_reserve_gib, 2.5);
  EXPECT_EQ(parse_server_options({}, "demo.gguf", help).service.backend, "cpu");
  auto fails = [](std::vector<std::string> args, const std::string& needle) {
    bool h = false;
    try {
      parse_server_options(args, "m", h);
      ADD_FAILURE() << "accepted " << args[0] << " " << args[1];
    } catch (const LoadError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  fails({"--backend", "tpu"}, "not one of cpu, cuda");
  fails({"--synth", "full"}, "needs --backend cuda");
  fails({"--seed", "-1"}, "--seed");
  fails({"--device-reserve", "x"}, "--device-reserve");
  fails({"--backend", "cuda", "--mtp", "synth"}, "needs --synth PRESET");
  EXPECT_EQ(parse_server_options({"--backend", "cuda", "--synth", "tiny", "--mtp", "synth"}, "m", help).service.mtp_path, "synth");
}

// The service hands the device factory the MTP module to build: a file's bound weights, or the
// synthetic module's seed (--seed + 1) for --mtp synth.
TEST(HttpBackendOptions, MtpReachesTheDeviceFactory) {
  ServiceOptions o;
  o.model_path = std::string(DS4_BINARY_DIR) + "/models/tiny-q2.gguf";
  o.backend = "cuda";
  const DeviceEngineRequest* seen = nullptr;
  bool had_mtp = false, synth = false;
  uint64_t seed = 0;
  o.device_factory = [&](const DeviceEngineRequest& r) -> DeviceEngine {
    seen = &r, had_mtp = r.mtp != nullptr, synth = r.mtp_synth, seed = r.mtp_synth_seed;
    throw LoadError("factory reached");
  };
  auto load_error = [&o] {
    try {
      ModelService::load(o, [](std::string_view) {});
    } catch (const LoadError& e) {
      return std::string(e.what());
    }
    return std::string("(started)");
  };
  o.mtp_path = std::string(DS4_BINARY_DIR) + "/models/tiny-q2-mtp.gguf";
  EXPECT_EQ(load_error(), "factory reached");
  EXPECT_TRUE(seen && had_mtp && !synth);
  o.mtp_path = "synth";
  o.synth_preset = "tiny";
  o.synth_seed = 4;
  EXPECT_EQ(load_error(), "factory reached");
  EXPECT_TRUE(!had_mtp && synth);
  EXPECT_EQ(seed, 5u);
  o.mtp_path = std::string(DS4_BINARY_DIR) + "/models/missing-mtp.gguf";
  o.synth_preset.clear();
  EXPECT_NE(load_error(), "factory reached");  // a missing file is reported before the device is touched
}

// --max-num-seqs and --max-num-batched-tokens are per rank: with data-parallel attention the step
// takes every rank's share, one sequence's prefill chunk at most one rank's budget.
TEST(HttpBackendOptions, SchedulerLimitsScaleWithDataParallelRanks) {
  ServiceOptions o;
  o.max_num_seqs = 48, o.max_num_batched_tokens = 1024;
  const SchedulerConfig one = scheduler_limits(o, 1);
  EXPECT_EQ(one.max_num_seqs, 48);
  EXPECT_EQ(one.max_num_batched_tokens, 1024);
  EXPECT_EQ(one.max_prefill_chunk_tokens, 0);  // the whole budget
  const SchedulerConfig four = scheduler_limits(o, 4);
  EXPECT_EQ(four.max_num_seqs, 192);
  EXPECT_EQ(four.max_num_batched_tokens, 4096);
  EXPECT_EQ(four.max_prefill_chunk_tokens, 1024);
}

TEST(HttpBackendOptions, CudaWithoutAFactoryIsAClearStartUpError) {
  ServiceOptions o;
  o.model_path = std::string(DS4_BINARY_DIR) + "/models/tiny-q2.gguf";
  o.backend = "cuda";
  try {
    ModelService::load(o, [](std::string_view) {});
    FAIL() << "a CUDA service started without a device factory";
  } catch (const LoadError& e) {
    EXPECT_NE(std::string(e.what()).find("built without CUDA"), std::string::npos) << e.what();
  }
}

TEST(HttpBackendOptions, SynthNeedsTheDeviceBackendAndAKnownQuant) {
  ServiceOptions o;
  o.model_path = std::string(DS4_BINARY_DIR) + "/models/tiny-q2.gguf";
  o.synth_preset = "tiny";
  auto load_error = [&o] {
    try {
      ModelService::load(o, [](std::string_view) {});
    } catch (const LoadError& e) {
      return std::string(e.what());
    }
    return std::string("(started)");
  };
  EXPECT_NE(load_error().find("needs --backend cuda"), std::string::npos) << load_error();
  o.backend = "cuda";
  o.synth_quant = "q3";
  EXPECT_NE(load_error().find("--quant"), std::string::npos) << load_error();
}

}  // namespace
}  // namespace ds4::http
