#pragma once
// `vaelab train CONFIG --nproc N`: starts N local processes of this same command, each with the
// environment of one rank of a data-parallel run (docs/distributed.md).

#include <chrono>
#include <string>
#include <vector>

namespace vaelab::cli {

/// Runs this executable N times with `args` (the command line without --nproc), setting RANK,
/// LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR = 127.0.0.1 and a free MASTER_PORT for
/// each, and waits for all. When one fails, the others get `timeout` (plus a grace period) to stop
/// on their own and are then terminated. Returns 0 when all succeeded; else prints which rank
/// failed first and how, and returns 1.
int launch_local(int nproc, const std::vector<std::string>& args, std::chrono::milliseconds timeout);

/// `argv[1..]` without the `--nproc N` (or `--nproc=N`) option.
std::vector<std::string> without_nproc(int argc, char** argv);

}  // namespace vaelab::cli
