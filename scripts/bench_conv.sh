#!/bin/sh
# conv2d forward/backward GFLOP/s at 2 threads on a ResNet-50-like layer (N=2, C=256, 60x60, 3x3 -> 256)
# next to the md_sgemm peak on a 2048^3 GEMM (the ceiling an im2col conv can reach); see
# src/cli/tool_bench_conv.c. Run without arguments for a few more backbone shapes.
set -e
"${MD_BIN:-build/bin}/tool_bench_conv" --threads 2 --reps 5 2 256 60 60 256 3 1 1
