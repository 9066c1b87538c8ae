#!/usr/bin/env bash
# Multi-node launch under SLURM: one `accelerate launch` per node, rendezvous on the job's first node.
#
#   sbatch --nodes 2 configs/accelerate/slurm_launch.sh configs/accelerate/zero3.yaml recipes.dpo \
#       experiment=psychocounsel_llama3_8b
#
# Arguments: <accelerate config> <python module> [hydra overrides...]. Run from the repository root with the
# project's environment active on every node; output_root must be on a filesystem all nodes share.
# GPUS_PER_NODE (default: SLURM_GPUS_ON_NODE, else 8) and MASTER_PORT (default: derived from the job id) may be set.
#SBATCH --job-name=counsel-align
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --exclusive
#SBATCH --output=%x-%j.out
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: sbatch [--nodes N] $0 <accelerate config> <module> [overrides...]" >&2
  exit 2
fi
CONFIG=$1
MODULE=$2
shift 2
: "${SLURM_JOB_NODELIST:?run this under SLURM (sbatch/salloc)}"

NNODES=${SLURM_NNODES:-1}
GPUS_PER_NODE=${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-8}}
MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | awk 'NR == 1')  # awk reads all: no SIGPIPE
MASTER_PORT=${MASTER_PORT:-$((20000 + ${SLURM_JOB_ID:-0} % 20000))}
OVERRIDES=$(printf ' %q' "$@")

echo "[slurm_launch] ${NNODES} node(s) x ${GPUS_PER_NODE} GPU(s), rendezvous ${MASTER_ADDR}:${MASTER_PORT}" >&2
# SLURM_NODEID is evaluated by each task, so every node gets its own machine rank.
# --deepspeed_multinode_launcher standard: torchrun on each node (DeepSpeed's default pdsh needs passwordless ssh).
srun --kill-on-bad-exit=1 --ntasks-per-node=1 bash -c "accelerate launch \
  --config_file ${CONFIG} \
  --num_machines ${NNODES} \
  --num_processes $((NNODES * GPUS_PER_NODE)) \
  --machine_rank \${SLURM_NODEID} \
  --main_process_ip ${MASTER_ADDR} \
  --main_process_port ${MASTER_PORT} \
  --deepspeed_multinode_launcher standard \
  -m ${MODULE}${OVERRIDES}"
