"""Trains each model of the DDP tests a few steps; run by ``tests/test_distributed.py`` under ``torchrun``.

    python -m torch.distributed.run --nproc_per_node=N tests/distributed_worker.py DATA OUT NAME...

NAME is a key of ``RUNS``. Unless a run keeps its dropout, every dropout probability is set to 0 once the model
is built, so that a DDP run and a one-process run of the same global batches compute the same numbers. Each rank
writes the SHA-256 of every tensor of the model's state dict to ``OUT/NAME/rank{r}.json`` (the run folder itself
is ``OUT/NAME``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

import itrlib.models  # noqa: F401  (registers every model)
from itrlib.config import load_config
from itrlib.engine.trainer import Trainer
from itrlib.nn.functional import UniformDropout

COMMON = ["train.batch_size=16", "train.epochs=1", "train.max_steps_per_epoch=3", "train.log_every=1",
          "train.keep_last=false"]
RUNS: dict[str, tuple[str, list[str], bool]] = {
    "vse": ("vse_smoke", ["model.embed_size=32", "train.keep_last=true"], False),
    "afa": ("afa_smoke", ["model.embed_size=32", "model.aggregation=false"], False),
    "user": ("user_smoke", ["model.embed_size=32"], False),
    "user_dropout": ("user_smoke", ["model.embed_size=32"], True),
    "mvsen": ("mvsen_smoke", [], False),
}
"""(preset, overrides, keeps its dropout) of each model of the suite, small. ``user_dropout`` draws its dropout
masks per rank, so it does not equal one process; ``vse`` keeps ``last.pt`` for the resume test."""
COMPARED = ("vse", "afa", "user", "mvsen")
"""The runs trained on 2 processes and on 1 and compared (MVSEN's i2t direction gathers the same padded sets as
t2i); the one-process runs are also the trained runs of ``tests/test_two_stage.py``."""


def without_dropout(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Dropout | UniformDropout):
            module.p = 0.0


def train_runs(data: str, out: Path, names: list[str]) -> None:
    """Train each named run into ``out`` (in this process, or as one rank of the process group)."""
    for name in names:
        preset, overrides, dropout = RUNS[name]
        config = load_config(preset, [f"data.root={data}", f"output_dir={out}", f"name={name}", *COMMON, *overrides])
        trainer = Trainer(config, progress=False)
        if not dropout:
            without_dropout(trainer.model)
        trainer.fit()
        rank = dist.get_rank() if dist.is_initialized() else 0
        digests = {key: hashlib.sha256(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy()).hexdigest()
                   for key, value in trainer.model.state_dict().items()}
        (out / name / f"rank{rank}.json").write_text(json.dumps(digests))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("out", type=Path)
    parser.add_argument("names", nargs="+", choices=sorted(RUNS))
    args = parser.parse_args()
    dist.init_process_group("gloo")  # one group for every run (a Trainer joins it, and leaves it open)
    train_runs(args.data, args.out, args.names)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
