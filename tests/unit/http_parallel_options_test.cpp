// ds4serve's multi-GPU options (http/parallel_options.h): malformed values and combinations are
// refused naming the option; what a build cannot serve is refused with a message saying so (a
// build without NCCL, --mtp with data-parallel attention), never silently served on one GPU.
#include <gtest/gtest.h>

#include <string>

#include "engine/load_error.h"
#include "http/server_options.h"

namespace ds4::http {
namespace {

std::string error_of(std::vector<std::string> args) {
  bool help = false;
  try {
    parse_server_options(args, "demo.gguf", help);
  } catch (const LoadError& e) {
    return e.what();
  }
  return "";
}

TEST(HttpParallelOptions, MalformedValuesNameTheOption) {
  EXPECT_NE(error_of({"--gpus", "0,x"}).find("--gpus: 'x'"), std::string::npos);
  EXPECT_NE(error_of({"--gpus", "0,,1"}).find("--gpus: ''"), std::string::npos);
  EXPECT_NE(error_of({"--gpus", "1,1"}).find("GPU 1 is listed twice"), std::string::npos);
  EXPECT_NE(error_of({"--rank", "-1"}).find("--rank"), std::string::npos);
  EXPECT_NE(error_of({"--world", "0"}).find("--world"), std::string::npos);
  EXPECT_NE(error_of({"--master", "nohost"}).find("not HOST:PORT"), std::string::npos);
  EXPECT_NE(error_of({"--master", "h:99999"}).find("--master"), std::string::npos);
  EXPECT_NE(error_of({"--gpus"}).find("needs a value"), std::string::npos);
}

TEST(HttpParallelOptions, CombinationsAreChecked) {
  const std::vector<std::string> cuda = {"--backend", "cuda"};
  auto with = [&](std::vector<std::string> more) {
    more.insert(more.begin(), cuda.begin(), cuda.end());
    return error_of(more);
  };
  EXPECT_NE(with({"--gpus", "0,1", "--rank", "0"}).find("cannot be combined"), std::string::npos);
  EXPECT_NE(with({"--rank", "0", "--world", "2"}).find("go together"), std::string::npos);
  EXPECT_NE(with({"--rank", "2", "--world", "2", "--master", "h:5000"}).find("not below --world 2"), std::string::npos);
  EXPECT_NE(error_of({"--gpus", "0,1"}).find("need --backend cuda"), std::string::npos);
  EXPECT_NE(with({"--attention", "dp"}).find("--attention places attention across GPUs"), std::string::npos);
  EXPECT_NE(with({"--gpus", "0,1", "--attention", "tensor"}).find("--attention: 'tensor' is not replicated or dp"),
            std::string::npos);
}

TEST(HttpParallelOptions, AttentionModeIsParsed) {
  bool help = false;
  const ServerOptions plain = parse_server_options({"--backend", "cuda", "--gpus", "0,1"}, "m", help);
  EXPECT_FALSE(plain.parallel.data_parallel);
  const ServerOptions dp = parse_server_options({"--backend", "cuda", "--gpus", "0,1", "--attention", "dp"}, "m", help);
  EXPECT_TRUE(dp.parallel.data_parallel);
  const ServerOptions rep =
      parse_server_options({"--backend", "cuda", "--rank", "0", "--world", "2", "--master", "h:5000", "--attention", "replicated"},
                           "m", help);
  EXPECT_FALSE(rep.parallel.data_parallel);
}

TEST(HttpParallelOptions, WhatABuildCannotServeIsRefusedWithTheReason) {
  bool help = false;
  const ServerOptions gpus = parse_server_options({"--backend", "cuda", "--gpus", "0,1,2,3"}, "m", help);
  EXPECT_EQ(gpus.parallel.gpus, (std::vector<int>{0, 1, 2, 3}));
  const ServerOptions hosts =
      parse_server_options({"--backend", "cuda", "--rank", "1", "--world", "8", "--master", "10.0.0.1:29500"}, "m", help);
  EXPECT_EQ(hosts.parallel.rank, 1);
  EXPECT_EQ(hosts.parallel.world, 8);
  EXPECT_EQ(hosts.parallel.master, "10.0.0.1:29500");

  EXPECT_NE(parallel_serving_refusal(gpus.parallel, gpus.service, false).find("needs a ds4serve built with CUDA and NCCL"),
            std::string::npos);
  EXPECT_EQ(parallel_serving_refusal(gpus.parallel, gpus.service, true), "");
  EXPECT_EQ(parallel_serving_refusal(hosts.parallel, hosts.service, true), "");
  ServiceOptions with_mtp = gpus.service;
  with_mtp.mtp_path = "mtp.gguf";
  EXPECT_EQ(parallel_serving_refusal(gpus.parallel, with_mtp, true), "");  // drafts on rank 0, replicated attention
  ParallelOptions dp = gpus.parallel;
  dp.data_parallel = true;
  EXPECT_EQ(parallel_serving_refusal(dp, gpus.service, true), "");
  EXPECT_NE(parallel_serving_refusal(dp, with_mtp, true).find("--mtp with data-parallel attention"), std::string::npos);
  const ServerOptions one = parse_server_options({"--backend", "cuda"}, "m", help);
  EXPECT_EQ(parallel_serving_refusal(one.parallel, one.service, false), "");  // nothing parallel asked
}

}  // namespace
}  // namespace ds4::http
