"""TensorBoard's own reader on a run directory's event files (tests/train.rs): prints
{tag: [[step, value], ...]} as JSON. Fails if TensorBoard reports a corrupt record.

Usage: tensorboard_read.py RUN_DIR
"""
import json
import sys

from tensorboard.backend.event_processing import event_accumulator


def main(run_dir):
    acc = event_accumulator.EventAccumulator(run_dir, size_guidance={"scalars": 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["scalars"]:
        out[tag] = [[e.step, e.value] for e in acc.Scalars(tag)]
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
