#!/usr/bin/env bash
# Builds the fuzz targets (fuzz/CMakeLists.txt, clang + libFuzzer), writes the seed corpora and
# runs every target for a bounded time, then reports what each found.
#
#   fuzz/run.sh [SECONDS] [TARGET...]     SECONDS per target (default 60); all targets by default
#
# Environment: VAELAB_FUZZ_BUILD (build folder, default build-fuzz), VAELAB_FUZZ_BUILD_JOBS
# (compile jobs, default 1), VAELAB_FUZZ_FLAGS (extra libFuzzer flags).
#
# Per target: the checked-in and generated seeds are in fuzz/corpus/TARGET (never written to);
# new inputs go to BUILD/corpus/TARGET, reproducers of findings to BUILD/findings/TARGET/
# (crash-*, leak-*, timeout-*, oom-*). Rerun one with `BUILD/fuzz-TARGET FILE`, and
# VAELAB_FUZZ_VERBOSE=1 to see the reader's message. The exit status is 1 when anything was found.
#
# Limits that turn behaviour into findings: 10 s for one input (a hang), 1 GiB for one allocation
# or the whole process (a size from a header trusted before it was checked), any sanitizer report,
# any exception other than vaelab::Error, and any vaelab::Error that is not one line naming the file.
set -euo pipefail

seconds=${1:-60}
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
build=${VAELAB_FUZZ_BUILD:-$root/build-fuzz}
all_targets=(config study idx pool npy cifar10 image compressed safetensors)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")

if [ ! -f "$build/build.ninja" ]; then
  CC=clang CXX=clang++ cmake -S "$root/fuzz" -B "$build" -G Ninja
fi
cmake --build "$build" -j "${VAELAB_FUZZ_BUILD_JOBS:-1}"
"$build/make-seeds" "$root/fuzz/corpus"
if [ -x "$build/make-seeds-safetensors" ]; then
  "$build/make-seeds-safetensors" "$root/fuzz/corpus"
fi

# LeakSanitizer stays on for the torch-free targets (a reader that leaks on a refused file is a
# finding); LibTorch keeps process-lifetime allocations (its allocator and dispatcher tables) that
# LeakSanitizer would report on every input, so the safetensors target runs without it.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:handle_abort=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

summary=()
status=0
for t in "${targets[@]}"; do
  exe="$build/fuzz-$t"
  if [ ! -x "$exe" ]; then
    echo "fuzz/run.sh: no target $t (built: ${all_targets[*]})" >&2
    exit 2
  fi
  seeds="$root/fuzz/corpus/$t"
  work="$build/corpus/$t"
  findings="$build/findings/$t"
  log="$build/logs/$t.log"
  mkdir -p "$work" "$findings" "$build/logs"
  extra=()
  if [ "$t" = config ] || [ "$t" = study ]; then extra+=(-dict="$root/fuzz/dict/toml.dict"); fi
  leaks=1
  if [ "$t" = safetensors ]; then leaks=0; fi

  # The seeds first, one by one: each should be accepted (a refused seed explores little).
  refused=$(VAELAB_FUZZ_VERBOSE=1 "$exe" -runs=0 -detect_leaks=$leaks "$seeds" 2>&1 | grep -c '^refused:' || true)

  echo "== fuzz-$t: ${seconds}s from $(ls "$seeds" | wc -l) seeds ($refused refusals among them)"
  set +e
  (cd "$findings" && "$exe" -jobs=1 -workers=1 -max_total_time="$seconds" -timeout=10 \
      -rss_limit_mb=1024 -malloc_limit_mb=1024 -detect_leaks=$leaks -print_final_stats=1 \
      -artifact_prefix="$findings/" "${extra[@]}" ${VAELAB_FUZZ_FLAGS:-} "$work" "$seeds" \
      >/dev/null 2>&1)
  set -e
  # -jobs writes the job's output to fuzz-0.log in the working folder.
  mv -f "$findings/fuzz-0.log" "$log" 2>/dev/null || true
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  corpus=$(ls "$work" | wc -l)
  # (slow-unit-* files are not findings: a hang is a timeout-*. Replay any timeout before trusting
  # it: a machine that pauses the process makes one input look slow.)
  found=$(ls "$findings" | grep -E '^(crash|leak|timeout|oom)-' || true)
  if [ -n "$found" ]; then
    status=1
    summary+=("fuzz-$t: ${runs:-?} runs, corpus $corpus, FOUND: $(echo $found | tr '\n' ' ')")
    grep -E 'ERROR|finding:|SUMMARY|==[0-9]+==|Test unit written' "$log" | head -20 || true
  else
    summary+=("fuzz-$t: ${runs:-?} runs, corpus $corpus, nothing found")
  fi
done

echo
echo "== summary (${seconds}s per target; logs in $build/logs, reproducers in $build/findings)"
printf '%s\n' "${summary[@]}"
exit $status
