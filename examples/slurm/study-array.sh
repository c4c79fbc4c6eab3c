#!/bin/bash
# A vaelab study as a Slurm job array: each array task runs one shard of the study
# (`vaelab study --shard i/n`), and a second job, started when every task has succeeded, merges
# the shards' databases into one study folder and writes its report.
#
#   examples/slurm/study-array.sh STUDY.toml [SHARDS]
#
# submits both jobs (SHARDS defaults to 8). Environment: VAELAB (the vaelab command, default
# `vaelab` on PATH), OUT (the merged study folder, default studies/<study file name>),
# PARTITION, TIME (per shard, default 04:00:00), CPUS (per shard, default 4).
# The folders must be on a file system every node sees.
set -euo pipefail

if [[ "${1:-}" == "" || "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,11p' "$0"
  exit 2
fi

STUDY=$(realpath "$1")
SHARDS=${2:-8}
VAELAB=${VAELAB:-vaelab}
NAME=$(basename "$STUDY" .toml)
OUT=$(realpath -m "${OUT:-studies/$NAME}")
SHARD_ROOT="$OUT.shards"
TIME=${TIME:-04:00:00}
CPUS=${CPUS:-4}
PARTITION_ARG=()
[[ -n "${PARTITION:-}" ]] && PARTITION_ARG=(--partition "$PARTITION")

mkdir -p "$SHARD_ROOT/logs"

# One task per shard. Rerunning a failed task continues its shard (--resume keeps finished runs).
# Each task trains its runs one after another on its CPUs (--jobs 1; raise it with more CPUs).
ARRAY_JOB=$(sbatch --parsable "${PARTITION_ARG[@]}" \
  --job-name "vaelab-$NAME" \
  --array "0-$((SHARDS - 1))" \
  --cpus-per-task "$CPUS" \
  --time "$TIME" \
  --output "$SHARD_ROOT/logs/shard-%a.log" \
  --wrap "set -e
shard=\$SLURM_ARRAY_TASK_ID
dir='$SHARD_ROOT'/shard-\$shard
resume=()
[[ -f \"\$dir/study.sqlite\" ]] && resume=(--resume)
'$VAELAB' study '$STUDY' --out \"\$dir\" --shard \$shard/$SHARDS --jobs 1 --no-report \"\${resume[@]}\"")

# The merge, once every shard has finished without error.
MERGE_JOB=$(sbatch --parsable "${PARTITION_ARG[@]}" \
  --job-name "vaelab-$NAME-merge" \
  --dependency "afterok:$ARRAY_JOB" \
  --cpus-per-task 1 \
  --time 00:30:00 \
  --output "$SHARD_ROOT/logs/merge.log" \
  --wrap "set -e
'$VAELAB' study merge '$OUT' \$(for i in \$(seq 0 $((SHARDS - 1))); do echo '$SHARD_ROOT'/shard-\$i; done)
'$VAELAB' report '$OUT'")

echo "shards: job array $ARRAY_JOB ($SHARDS tasks, logs in $SHARD_ROOT/logs)"
echo "merge:  job $MERGE_JOB -> $OUT/study.sqlite, $OUT/report.md"
