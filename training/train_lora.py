"""LoRA instruction tuning as a plain script (same flags as `radgpt train`).

    python training/train_lora.py --config conf/local.yaml --max-steps 20
    ray job submit --working-dir . -- python training/train_lora.py --config conf/cluster.yaml \
        --data /shared/table --set train.num_workers=4 --set train.use_gpu=true

Under `ray job submit` the driver connects to the cluster (RAY_ADDRESS is set by the job), and
the TorchTrainer schedules train.num_workers workers there; paths must be on shared storage.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a bare checkout too
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main(argv: list[str] | None = None) -> int:
    from radgpt.cli import add_config_args
    from radgpt.cli.train import add_arguments, cmd_train
    from radgpt.runtime import setup_logging

    p = argparse.ArgumentParser(prog="train_lora.py", description=__doc__.splitlines()[0])
    p.add_argument("--log-level", default="INFO")
    add_config_args(p)
    add_arguments(p)
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    return cmd_train(args)


if __name__ == "__main__":
    sys.exit(main())
