#include "launcher.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include <vaelab/error.hpp>
#include <vaelab/log.hpp>
#include <vaelab/train/distributed.hpp>

namespace vaelab::cli {
namespace {

using Clock = std::chrono::steady_clock;

volatile std::sig_atomic_t g_signal = 0;
void remember_signal(int sig) { g_signal = sig; }

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = ::strsignal(sig);
    return "was killed by signal " + std::to_string(sig) + (name != nullptr ? std::string(" (") + name + ")" : "");
  }
  return "stopped (status " + std::to_string(status) + ")";
}

}  // namespace

std::vector<std::string> without_nproc(int argc, char** argv) {
  std::vector<std::string> out;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--nproc") {
      ++i;  // and its value
      continue;
    }
    if (arg.rfind("--nproc=", 0) == 0) continue;
    out.push_back(arg);
  }
  return out;
}

int launch_local(int nproc, const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  if (nproc < 1) throw ConfigError("--nproc: must be at least 1");
  const std::string addr = "127.0.0.1";
  const int port = free_tcp_port(addr);
  logger().info("starting {} processes (MASTER_ADDR={} MASTER_PORT={})", nproc, addr, port);

  // SIGINT / SIGTERM to the launcher are passed on to the ranks.
  struct sigaction action {};
  action.sa_handler = remember_signal;
  sigemptyset(&action.sa_mask);
  struct sigaction old_int {}, old_term {};
  sigaction(SIGINT, &action, &old_int);
  sigaction(SIGTERM, &action, &old_term);

  std::vector<pid_t> pids(static_cast<size_t>(nproc), -1);
  std::vector<int> statuses(static_cast<size_t>(nproc), 0);
  std::vector<bool> done(static_cast<size_t>(nproc), false);
  std::vector<std::string> argv_text = {"vaelab"};
  argv_text.insert(argv_text.end(), args.begin(), args.end());
  std::vector<char*> child_argv;
  for (auto& a : argv_text) child_argv.push_back(a.data());
  child_argv.push_back(nullptr);

  int first_failed = -1;
  std::string failure;
  const pid_t launcher_pid = ::getpid();
  for (int r = 0; r < nproc; ++r) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      failure = std::string("cannot start rank ") + std::to_string(r) + ": fork: " + std::strerror(errno);
      first_failed = r;
      break;
    }
    if (pid == 0) {
      // A rank does not outlive the launcher (killed launcher, no orphans still training).
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != launcher_pid) std::_Exit(126);
      ::setenv("RANK", std::to_string(r).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", addr.c_str(), 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      ::execv("/proc/self/exe", child_argv.data());
      std::fprintf(stderr, "vaelab: error: rank %d: cannot run /proc/self/exe: %s\n", r, std::strerror(errno));
      std::_Exit(127);
    }
    pids[static_cast<size_t>(r)] = pid;
  }

  // Wait for all. After the first failure the others get the timeout to notice and stop by
  // themselves (they do when a peer's connection drops); past it, SIGTERM, then SIGKILL.
  const auto grace = timeout + std::chrono::seconds(10);
  Clock::time_point failed_at{};
  bool terminated = false;
  bool killed = false;
  int forwarded = 0;
  if (first_failed >= 0) failed_at = Clock::now();
  while (true) {
    bool running = false;
    for (int r = 0; r < nproc; ++r) {
      const size_t i = static_cast<size_t>(r);
      if (pids[i] < 0 || done[i]) continue;
      int status = 0;
      const pid_t got = ::waitpid(pids[i], &status, WNOHANG);
      if (got == pids[i]) {
        done[i] = true;
        statuses[i] = status;
        const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!ok && first_failed < 0) {
          first_failed = r;
          failure = "rank " + std::to_string(r) + " " + describe_status(status);
          failed_at = Clock::now();
        }
      } else {
        running = true;
      }
    }
    if (!running) break;
    if (g_signal != 0 && forwarded != g_signal) {
      forwarded = g_signal;
      for (size_t i = 0; i < pids.size(); ++i) {
        if (pids[i] > 0 && !done[i]) ::kill(pids[i], forwarded);
      }
    }
    if (first_failed >= 0) {
      const auto waited = Clock::now() - failed_at;
      if (!terminated && waited > grace) {
        terminated = true;
        for (size_t i = 0; i < pids.size(); ++i) {
          if (pids[i] > 0 && !done[i]) ::kill(pids[i], SIGTERM);
        }
      } else if (!killed && waited > grace + std::chrono::seconds(5)) {
        killed = true;
        for (size_t i = 0; i < pids.size(); ++i) {
          if (pids[i] > 0 && !done[i]) ::kill(pids[i], SIGKILL);
        }
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);

  if (first_failed < 0) return 0;
  std::string others;
  for (int r = 0; r < nproc; ++r) {
    const size_t i = static_cast<size_t>(r);
    if (r == first_failed || pids[i] < 0) continue;
    others += (others.empty() ? "" : ", ") + std::string("rank ") + std::to_string(r) + " " + describe_status(statuses[i]);
  }
  std::fprintf(stderr, "vaelab: error: data-parallel run of %d processes failed: %s first%s%s%s\n", nproc,
               failure.c_str(), others.empty() ? "" : " (then ", others.c_str(), others.empty() ? "" : ")");
  return 1;
}

}  // namespace vaelab::cli
