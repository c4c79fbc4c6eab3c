#!/bin/bash
# One data-parallel `vaelab train` across machines under Slurm: one task per process, each given
# the variables torchrun would set (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).
#
#   sbatch --nodes 2 --ntasks-per-node 1 --cpus-per-task 16 examples/slurm/train-multinode.sh \
#       RUN.toml --out runs/big --set backend.config.threads=16
#
# The arguments are `vaelab train`'s. The run folder must be on a file system every node sees
# (rank 0 writes it; for --resume every rank reads its checkpoint). VAELAB: the vaelab command.
#SBATCH --job-name vaelab-train
#SBATCH --output vaelab-train-%j.log
set -euo pipefail

VAELAB=${VAELAB:-vaelab}
MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
# A port derived from the job id, so jobs sharing a node do not collide.
MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))
export MASTER_ADDR MASTER_PORT

srun --kill-on-bad-exit=1 bash -c '
  export RANK=$SLURM_PROCID WORLD_SIZE=$SLURM_NTASKS LOCAL_RANK=$SLURM_LOCALID
  exec "'"$VAELAB"'" train "$@"' vaelab-train "$@"
