#!/bin/sh
# RoIAlign forward/backward time at 1 and 2 threads on the detector's box-head case
# (512 RoIs x 2 images, C=256, 120x160 map, 7x7, sampling 2); see src/cli/tool_bench_roi_align.c.
set -e
OMP_WAIT_POLICY=passive "${MD_BIN:-build/bin}/tool_bench_roi_align" --threads 2 --reps 3
