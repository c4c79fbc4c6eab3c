#!/usr/bin/env bash
# Compares generator settings the way a study would use them: for each setting, fit the generator
# to the same training subset, sample a pool, check it (C2ST, Fréchet distance, copies), and
# optionally train the paper's VAE on the pool and read its test ELBO. One line per setting in
# OUT/table.tsv; each setting's files stay in OUT/NAME/.
#
#   tools/bench/generator_sweep.sh [--vae] [--cores "0 1"] OUT BASE.toml SUBSET_SEED \
#       NAME "KEY=VALUE ..." [NAME "KEY=VALUE ..." ...]
#
# KEY=VALUE are `--set` overrides of BASE.toml (e.g. generator.config.mlp_width=512). Settings run
# in parallel, one per listed core (taskset), so that each gets one core as in a study. Decide
# settings with a SUBSET_SEED other than the examples' (0) and confirm on theirs afterwards.
# `fit=OTHER` in a setting samples the fit of setting OTHER (made by an earlier invocation into the
# same OUT) instead of fitting: its generator.config.* overrides then change only how that fit
# samples (e.g. generator.config.sampler_steps=40).
set -euo pipefail

vae=0
cores="0 1"
while [[ $# -gt 0 && $1 == --* ]]; do
  case $1 in
    --vae) vae=1; shift ;;
    --cores) cores=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if [[ $# -lt 5 || $(( ($# - 3) % 2 )) -ne 0 ]]; then
  sed -n '2,13p' "$0" >&2
  exit 2
fi
out=$1 base=$2 seed=$3
shift 3
here=$(cd "$(dirname "$0")/../.." && pwd)
vaelab=${VAELAB:-$here/build/bin/vaelab}
mkdir -p "$out"
out=$(cd "$out" && pwd)

one() {  # NAME "SETS" CORE
  local name=$1 sets=$2 core=$3 dir=$out/$1
  local args=(--set "data.subset_seed=$seed") sample_sets=() gen=$dir/gen k=""
  for kv in $sets; do
    case $kv in
      fit=*) gen=$out/${kv#fit=}/gen ;;
      generator.config.*) args+=(--set "$kv"); sample_sets+=(--set "$kv") ;;
      train.synthetic.k=*) args+=(--set "$kv"); k=${kv#*=} ;;
      *) args+=(--set "$kv") ;;
    esac
  done
  mkdir -p "$dir"
  local fit_s vae_elbo="" pool_n
  if [[ $gen != "$dir/gen" ]]; then
    [[ -f $gen/fit_seconds ]] || { echo "$name: no finished fit in $gen" >&2; return 1; }
  else
    sample_sets=()  # a fit of its own already has them
  fi
  # A finished fit is kept (rerunning the script adds what is missing); its time is read back.
  if [[ ! -f $gen/fit_seconds ]]; then
    local start end
    start=$(date +%s.%N)
    taskset -c "$core" "$vaelab" generator fit "$base" "${args[@]}" --out "$dir/gen" >"$dir/fit.out" 2>&1
    end=$(date +%s.%N)
    python3 -c "print(f'{$end - $start:.0f}')" >"$dir/gen/fit_seconds"
  fi
  fit_s=$(cat "$gen/fit_seconds")
  # A pool of k x |D_train| images, as the synthetic regime needs (k from the setting, else the fit's).
  pool_n=$(python3 -c "import tomllib; c = tomllib.load(open('$gen/config.toml', 'rb')); \
print(int('${k}' or c['train']['synthetic']['k']) * c['data']['train_size'])")
  rm -f "$dir/pool.vlp"
  taskset -c "$core" "$vaelab" generator sample "$gen" --n "$pool_n" --out "$dir/pool.vlp" "${sample_sets[@]}" \
    >"$dir/sample.out" 2>&1
  taskset -c "$core" "$vaelab" generator check "$dir/pool.vlp" --data "$gen/config.toml" --n 2000 \
    --out "$dir/check" --features-cache "$out/feature-nets" >"$dir/check.out" 2>&1
  if [[ $vae == 1 ]]; then
    taskset -c "$core" "$vaelab" train "$base" "${args[@]}" --set train.regime=synthetic \
      --set "generator.pool=$dir/pool.vlp" --out "$dir/vae" >"$dir/vae.out" 2>&1
    vae_elbo=$(python3 -c "import json; print(f\"{json.load(open('$dir/vae/summary.json'))['elbo_test_nats']:.2f}\")")
  fi
  python3 - "$dir/check/check.json" "$name" "$fit_s" "$vae_elbo" "$sets" >>"$out/table.tsv" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
name, fit_s, elbo, sets = sys.argv[2:6]
fd = c.get("frechet_distance")
print("\t".join([name, fit_s, f"{c['c2st_accuracy']:.3f}",
                 "" if fd is None else f"{fd:.2f}", f"{c['frechet_distance_real']:.2f}" if fd is not None else "",
                 f"{100 * c['samples_within_threshold_fraction']:.1f}", str(c["exact_copies"]),
                 elbo, sets]))
EOF
}

[[ -f $out/table.tsv ]] || printf 'name\tfit_s\tc2st\tfrechet\tfrechet_real\twithin_%%\texact_copies\tvae_test_elbo\tsettings\n' >"$out/table.tsv"
read -r -a core_list <<<"$cores"
slot=0
pids=()
while [[ $# -gt 0 ]]; do
  one "$1" "$2" "${core_list[$slot]}" &
  pids+=($!)
  shift 2
  slot=$(( slot + 1 ))
  if [[ $slot -ge ${#core_list[@]} ]]; then
    wait "${pids[@]}"
    pids=()
    slot=0
  fi
done
[[ ${#pids[@]} -eq 0 ]] || wait "${pids[@]}"
column -t -s $'\t' "$out/table.tsv"
