// Data-parallel pieces (docs/distributed.md): the streams' shares of each batch, and the process
// group's collectives between two ranks in threads of this process (Gloo on loopback).

#include <catch2/catch.hpp>

#include <cstdlib>
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <toml++/toml.h>
#include <torch/torch.h>

#include <vaelab/config.hpp>
#include <vaelab/error.hpp>
#include <vaelab/train/distributed.hpp>
#include <vaelab/train/training_stream.hpp>

using Catch::Contains;

namespace {

/// [n, 1, 4, 4] images; image i holds `offset + i` in every pixel.
torch::Tensor numbered(int64_t n, float offset) {
  return (torch::arange(n).to(torch::kFloat32) + offset).view({n, 1, 1, 1}).expand({n, 1, 4, 4}).contiguous();
}

/// The numbers of a batch's images.
std::vector<int64_t> ids(const torch::Tensor& batch) {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < batch.size(0); ++i) out.push_back(static_cast<int64_t>(batch[i][0][0][0].item<float>()));
  return out;
}

using MakeStream = std::function<std::unique_ptr<vaelab::TrainingStream>()>;

/// Draws two epochs from a one-process stream and from `world` sharded ones; each batch's shares,
/// joined in rank order, must be the one-process batch, and each share's size b/world rounded.
void check_shares(const MakeStream& make, int64_t world) {
  auto whole = make();
  std::vector<std::unique_ptr<vaelab::TrainingStream>> shards;
  for (int64_t r = 0; r < world; ++r) {
    shards.push_back(make());
    shards.back()->set_shard(r, world);
  }
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    whole->begin_epoch(epoch);
    for (auto& s : shards) s->begin_epoch(epoch);
    torch::Tensor batch;
    int64_t batches = 0;
    while (whole->next_batch(batch)) {
      ++batches;
      const int64_t b = batch.size(0);
      std::vector<int64_t> joined;
      for (int64_t r = 0; r < world; ++r) {
        torch::Tensor share;
        REQUIRE(shards[static_cast<size_t>(r)]->next_batch(share));
        CHECK(shards[static_cast<size_t>(r)]->last_batch_size() == b);
        CHECK(share.size(0) == b * (r + 1) / world - b * r / world);
        const auto got = ids(share);
        joined.insert(joined.end(), got.begin(), got.end());
      }
      REQUIRE(joined == ids(batch));
    }
    CHECK(batches > 1);
    for (auto& s : shards) {
      torch::Tensor extra;
      CHECK_FALSE(s->next_batch(extra));
    }
  }
}

}  // namespace

TEST_CASE("sharded real and mixed streams split every batch without overlap, as one process draws it", "[distributed]") {
  const torch::Tensor real = numbered(203, 0);        // 203 = 12 batches of 16 and one of 11
  const torch::Tensor synthetic = numbered(500, 10000);
  for (const int64_t world : {2, 3, 16, 20}) {
    INFO("world size " << world);
    check_shares([&] { return std::make_unique<vaelab::RealDataStream>(real, 16, 7); }, world);
    check_shares([&] { return std::make_unique<vaelab::SyntheticStream>("mixed", real, synthetic, 0.3, 16, 7); },
                 world);
    check_shares([&] { return std::make_unique<vaelab::SyntheticStream>("synthetic", real, synthetic, 0.0, 16, 7); },
                 world);
  }
}

TEST_CASE("a sharded stream's saved state is the whole stream's and resumes the same shares", "[distributed]") {
  const torch::Tensor real = numbered(100, 0);
  const torch::Tensor synthetic = numbered(300, 1000);
  vaelab::SyntheticStream a("mixed", real, synthetic, 0.5, 10, 1);
  a.set_shard(1, 2);
  a.begin_epoch(0);
  torch::Tensor batch;
  for (int i = 0; i < 3; ++i) REQUIRE(a.next_batch(batch));
  vaelab::StreamState state;
  a.save_state(state);
  // A one-process stream's state at the same point is the same.
  vaelab::SyntheticStream whole("mixed", real, synthetic, 0.5, 10, 1);
  whole.begin_epoch(0);
  for (int i = 0; i < 3; ++i) REQUIRE(whole.next_batch(batch));
  vaelab::StreamState whole_state;
  whole.save_state(whole_state);
  CHECK(state.values == whole_state.values);
  for (const auto& [key, tensor] : whole_state.tensors) CHECK(torch::equal(state.tensor(key), tensor));

  vaelab::SyntheticStream b("mixed", real, synthetic, 0.5, 10, 1);
  b.set_shard(1, 2);
  b.load_state(state);
  torch::Tensor from_a, from_b;
  while (a.next_batch(from_a)) {
    REQUIRE(b.next_batch(from_b));
    CHECK(ids(from_a) == ids(from_b));
  }
  CHECK_FALSE(b.next_batch(from_b));
}

TEST_CASE("a shard outside the world is refused", "[distributed]") {
  vaelab::RealDataStream s(numbered(10, 0), 4, 0);
  CHECK_THROWS_WITH(s.set_shard(2, 2), Contains("rank 2 of 2"));
  CHECK_THROWS_WITH(s.set_shard(0, 0), Contains("not valid"));
}

namespace {

/// Runs `body(rank)` as ranks 0 and 1 of a Gloo group on loopback, one thread each; returns the
/// error text of each rank ("" = none).
std::vector<std::string> two_ranks(const std::function<void(vaelab::Distributed&)>& body, double timeout_s = 20,
                                   double bucket_mb = 25) {
  vaelab::DistributedOptions options;
  options.backend = "gloo";
  options.timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  options.bucket_bytes = static_cast<int64_t>(bucket_mb * (1 << 20));
  const int port = vaelab::free_tcp_port();
  std::vector<std::string> errors(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      try {
        vaelab::DistributedEnv env;
        env.rank = r;
        env.world_size = 2;
        env.master_addr = "127.0.0.1";
        env.master_port = port;
        vaelab::Distributed d(env, options, torch::kCPU);
        body(d);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

/// Catch's assertions are for the main thread: the ranks' threads throw instead.
void expect(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("expectation failed: " + what);
}

}  // namespace

TEST_CASE("gradients are summed over the ranks in buckets, scalars too", "[distributed]") {
  // Three parameters and a 1 KiB bucket: the 300-float one gets a bucket of its own.
  const auto errors = two_ranks(
      [](vaelab::Distributed& d) {
        const float r = static_cast<float>(d.rank());
        std::vector<torch::Tensor> params = {torch::zeros({3, 4}, torch::requires_grad()),
                                             torch::zeros({300}, torch::requires_grad()),
                                             torch::zeros({5}, torch::requires_grad())};
        params[0].mutable_grad() = torch::arange(12, torch::kFloat32).view({3, 4}) * (r + 1);
        params[1].mutable_grad() = torch::full({300}, 0.5f + r);
        // params[2] has no gradient on either rank: it gets zeros.
        std::vector<double> scalars = {1.25 + d.rank(), -3.0};
        d.all_reduce_gradients(params, scalars, 7);
        expect(torch::equal(params[0].grad(), torch::arange(12, torch::kFloat32).view({3, 4}) * 3), "torch::equal(params[0].grad(), torch::arange(12, torch::kFloat32).view({3, 4}) * 3)");
        expect(torch::equal(params[1].grad(), torch::full({300}, 2.0f)), "torch::equal(params[1].grad(), torch::full({300}, 2.0f))");
        expect(params[2].grad().defined(), "params[2].grad().defined()");
        expect(torch::equal(params[2].grad(), torch::zeros({5})), "torch::equal(params[2].grad(), torch::zeros({5}))");
        expect(scalars == std::vector<double>{3.5, -6.0}, "scalars == std::vector<double>{3.5, -6.0}");
        std::vector<double> sums = {static_cast<double>(d.rank())};
        d.all_reduce_sum(sums, "a test sum");
        expect(sums[0] == 1.0, "sums[0] == 1.0");
        // Rank 0's tensors overwrite the others', whatever their dtype.
        std::vector<torch::Tensor> state = {torch::full({4}, r + 10.0f), torch::full({2}, d.rank() + 5, torch::kInt64)};
        d.broadcast_from_rank0(state, "a test broadcast");
        expect(torch::equal(state[0], torch::full({4}, 10.0f)), "torch::equal(state[0], torch::full({4}, 10.0f))");
        expect(torch::equal(state[1], torch::full({2}, 5, torch::kInt64)), "torch::equal(state[1], torch::full({2}, 5, torch::kInt64))");
      },
      20, 1.0 / 1024);
  INFO(errors[0] << "\n" << errors[1]);
  CHECK(errors[0].empty());
  CHECK(errors[1].empty());
}

TEST_CASE("a rank that fails to set up stops the other at the agreement point, naming it", "[distributed]") {
  const auto errors = two_ranks([](vaelab::Distributed& d) {
    d.agree("setting up the run", d.rank() == 1 ? "the data file is missing" : "");
  });
  CHECK(errors[1].empty());  // the failing rank rethrows its own error (not through agree)
  CHECK_THAT(errors[0], Contains("rank 0 of 2") && Contains("rank 1 failed at 'setting up the run'") &&
                            Contains("the data file is missing"));
}

TEST_CASE("ranks with different configs are refused on every rank", "[distributed]") {
  const auto errors = two_ranks([](vaelab::Distributed& d) {
    d.check_same("resolved config", d.rank() == 0 ? "epochs = 1" : "epochs = 2");
  });
  CHECK_THAT(errors[1], Contains("differs from rank 0's"));
  CHECK_THAT(errors[0], Contains("rank 1 failed") && Contains("differs from rank 0's"));
}

TEST_CASE("a rank that stops taking part makes the other's collective fail within the timeout", "[distributed]") {
  const auto start = std::chrono::steady_clock::now();
  const auto errors = two_ranks(
      [](vaelab::Distributed& d) {
        std::vector<double> sums = {1.0};
        d.all_reduce_sum(sums, "the first sum");
        if (d.rank() == 1) {
          // Silent for longer than the timeout, then gone.
          std::this_thread::sleep_for(std::chrono::seconds(4));
          return;
        }
        d.all_reduce_sum(sums, "the second sum");
      },
      2.0);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(errors[1].empty());
  CHECK_THAT(errors[0], Contains("rank 0 of 2: the second sum failed") && Contains("timeout_seconds = 2 s"));
  CHECK(seconds < 15);
}

TEST_CASE("torchrun's variables are read and checked", "[distributed]") {
  const auto set = [](const char* k, const char* v) {
    if (v == nullptr) {
      ::unsetenv(k);
    } else {
      ::setenv(k, v, 1);
    }
  };
  set("WORLD_SIZE", nullptr);
  CHECK(vaelab::DistributedEnv::from_environment().world_size == 1);
  set("WORLD_SIZE", "4");
  set("RANK", "3");
  set("LOCAL_RANK", "1");
  set("MASTER_ADDR", "10.0.0.2");
  set("MASTER_PORT", "29555");
  const auto env = vaelab::DistributedEnv::from_environment();
  CHECK(env.world_size == 4);
  CHECK(env.rank == 3);
  CHECK(env.local_rank == 1);
  CHECK(env.master_addr == "10.0.0.2");
  CHECK(env.master_port == 29555);
  set("RANK", "4");
  CHECK_THROWS_WITH(vaelab::DistributedEnv::from_environment(), Contains("RANK=4"));
  set("RANK", "1");
  set("MASTER_PORT", nullptr);
  CHECK_THROWS_WITH(vaelab::DistributedEnv::from_environment(), Contains("MASTER_PORT is not set"));
  for (const char* k : {"WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}) set(k, nullptr);
}

TEST_CASE("NCCL is refused with the reason where this LibTorch has none", "[distributed]") {
  std::string why;
  if (vaelab::nccl_available(why)) {
    SUCCEED("this LibTorch has NCCL and a GPU");
    return;
  }
  CHECK_FALSE(why.empty());
  vaelab::DistributedEnv env;
  env.world_size = 2;
  env.master_port = vaelab::free_tcp_port();
  vaelab::DistributedOptions options;
  options.backend = "nccl";
  CHECK_THROWS_WITH(vaelab::Distributed(env, options, torch::kCPU), Contains("needs NCCL, but " + why));
}
