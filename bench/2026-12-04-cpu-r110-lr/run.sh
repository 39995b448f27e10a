#!/bin/bash
# R110 ordinary training on CPU, 12,880 synthetic images, 2 epochs: does the lr-0.1 start collapse sometimes?
B=/work/main/target/release/deepres
for spec in "s0 0 false" "s0det 0 true" "s1 1 false" "s2 2 false" "s3 3 false"; do
  set -- $spec
  $B train --device cpu --set name=$1 --set out_dir=/work/scratch/chaos/runs --set data.name=synthetic \
    --set data.synthetic_train=12880 --set data.synthetic_test=2000 --set model.depth=110 \
    --set train.epochs=2 --set train.checkpoint=false --set seed=$2 --set train.deterministic=$3 > $1.log 2>&1
  echo "$1 done $(date -u +%T)"
done
