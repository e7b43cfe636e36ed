#!/bin/bash
# SLURM: 2 nodes x 8 GPUs, one `accelerate launch` per node (modelled on Accelerate's examples/slurm).
#   sbatch recipes/accelerate/slurm_multi_node.sh recipes/pretrain/mlm_bert_small_corpus.yaml
#SBATCH --job-name=hfgen
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1          # one launcher per node; it starts the node's GPU processes
#SBATCH --gres=gpu:8
#SBATCH --cpus-per-task=64
#SBATCH --output=%x-%j.out
set -euo pipefail
RECIPE=${1:?usage: sbatch slurm_multi_node.sh RECIPE [key=value ...]}
shift
GPUS_PER_NODE=8
MAIN_IP=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export LAUNCHER="accelerate launch --config_file recipes/accelerate/multi_node.yaml \
  --num_machines $SLURM_NNODES --num_processes $((SLURM_NNODES * GPUS_PER_NODE)) \
  --main_process_ip $MAIN_IP --main_process_port 29500"
# \$SLURM_PROCID is expanded on each node: its machine rank
srun bash -c "$LAUNCHER --machine_rank \$SLURM_PROCID scripts/pretrain.py --recipe $RECIPE $*"
