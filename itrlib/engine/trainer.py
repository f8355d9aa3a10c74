"""The training engine shared by every model of the suite.

One loop: AdamW over the model's parameter groups, step learning-rate decay, gradient clipping, bf16
autocast on CUDA, validation on the dev split after every epoch (best rsum kept as ``best.pt``), a full
``last.pt`` (model, optimiser, RNG states, position in the epoch) at every epoch end and every
``train.checkpoint_every`` steps, and metrics appended to ``metrics.jsonl``. Everything random is a
function of the seed, the epoch and the item index, so a killed run resumed from ``last.pt`` ends with
the same metrics as a run that was never interrupted (on CPU, bit for bit).

A run folder holds one run: it is locked while a Trainer uses it, ``config.yaml`` and ``last.pt`` are
checked against the config before anything is written (:mod:`itrlib.engine.run_folder`), and the train
and dev features are scanned for NaN/inf before the first step (:mod:`itrlib.data.scan_cache`). Values the
data or the text encoder contradict (``train.batch_size`` above the training pairs, USER's ``num_slots``,
MVSEN's ``bert_layers``, the width of a train or dev side file) are refused before the first step too.

Models plug in through the contract of :class:`itrlib.models.base.RetrievalModel` (``losses``,
``param_groups``, ``on_epoch_start``, ``after_optimizer_step``); the loop holds no model-specific code.

Started by ``torchrun --nproc_per_node=N``, the same loop trains with DistributedDataParallel
(:mod:`itrlib.engine.distributed`): ``train.batch_size`` is the global batch, each rank encodes its
``batch_size / N`` pairs, the losses are those of the global batch (:mod:`itrlib.nn.distributed`), and rank 0
alone locks the folder, validates and writes every file. A checkpoint holds every rank's RNG state; resumed
with the same number of processes the run continues exactly, with another number ranks >= 1 draw afresh.
"""

from __future__ import annotations

import json
import math
import time

import torch
from torch.nn.utils import clip_grad_norm_
from torch.utils.data import DataLoader

from itrlib import __version__
from itrlib.config import RunConfig, dump_yaml, load_config, to_dict
from itrlib.data.collate import Batch
from itrlib.data.datasets import PairDataset
from itrlib.data.scan_cache import check_split_features
from itrlib.data.side_inputs import load_side_inputs
from itrlib.engine.checkpoint import BEST, LAST, RESUME_KEYS, load_checkpoint, save_checkpoint
from itrlib.engine.components import (
    CONFIG_FILE,
    VOCAB_FILE,
    build_tokenizer,
    check_splits,
    create_model,
    create_optimizer,
    open_train_split,
    open_val_split,
)
from itrlib.engine.distributed import (
    barrier,
    from_main,
    gather_objects,
    join_process_group,
    leave_process_group,
    run_on_main,
)
from itrlib.engine.run_folder import check_same_run, load_model_state, remove_leftover_temps, stored_config
from itrlib.engine.run_lock import RunLock
from itrlib.engine.sampler import EpochBatchSampler
from itrlib.engine.seeding import restore_rng_state, rng_state, seed_everything
from itrlib.errors import ConfigError, ItrlibError
from itrlib.evaluation.encode import autocast_for
from itrlib.evaluation.evaluate import evaluate_split
from itrlib.evaluation.protocols import whole_split
from itrlib.io import append_jsonl, atomic_write_json, atomic_write_text, read_jsonl
from itrlib.nn.distributed import globalize_batchnorm
from itrlib.progress import format_seconds, progress_bar, say
from itrlib.seeds import rank_seed

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "train_summary.json"
TIMING_KEYS = ("time", "epoch_seconds")
"""Keys of a ``metrics.jsonl`` record that hold wall-clock times: ``time`` (when it was logged) and, in a
``val`` record, ``epoch_seconds`` (the epoch's training steps in this process; a resumed epoch: since the
resume). Everything else in the file is a function of the seed."""
OWNED_FILES = (CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, LAST, BEST, VOCAB_FILE)
"""Files of a run folder that only the holder of its lock writes."""


class Trainer:
    """Train ``config.model`` on ``config.data`` into ``config.run_dir``, resuming if it holds ``last.pt``.

    The run folder is locked (:class:`~itrlib.engine.run_lock.RunLock`) from construction until ``fit()``
    returns or fails, or ``close()``; a second Trainer on the same folder fails at once.
    """

    def __init__(self, config: RunConfig, *, progress: bool = True):
        self.config = config
        self.run_dir = config.run_dir
        self.ranks, self.device = join_process_group(config.train.device, "train.device")
        if config.train.batch_size % self.ranks.world_size:
            leave_process_group(self.ranks)
            raise ConfigError(f"train.batch_size={config.train.batch_size} (the global batch) is not a multiple of "
                              f"the {self.ranks.world_size} processes torchrun started")
        self.progress = progress and self.ranks.main
        self._lock = RunLock(self.run_dir)
        self._open = True
        try:
            run_on_main(self.ranks, self._lock.acquire)  # before anything is written into the folder
            self._prepare()
        except BaseException:
            self.close()
            raise

    def _prepare(self) -> None:
        """Check what the folder holds, open the data (scanned for NaN/inf), build the model and optimiser."""
        config, ranks = self.config, self.ranks
        run_on_main(ranks, remove_leftover_temps, self.run_dir, OWNED_FILES)
        self._check_existing_config()
        self._resume_state = self._load_resume_state()
        seed_everything(config.train.seed)
        self.amp = config.train.amp and self.device.type == "cuda"

        self.train_split = open_train_split(config)
        self.val_split = open_val_split(config)
        check_splits(config, self.train_split, self.val_split)
        if config.data.check_features != "none":
            for split in (self.train_split, self.val_split):
                run_on_main(ranks, lambda s: check_split_features(s, progress=self.progress), split)
        # rank 0 first: a BiGRU vocabulary is built and saved by it, then read by the others
        tokenizer = run_on_main(ranks, build_tokenizer, config.text, self.run_dir, self.train_split.captions)
        self.tokenizer = tokenizer if ranks.main else build_tokenizer(config.text, self.run_dir)
        self.model = create_model(config, self.train_split.feature_dim, self.tokenizer).to(self.device)
        self.ddp = None
        if ranks.world_size > 1:
            # every rank built the same model from the same seed; from here on each rank draws its own dropout
            globalize_batchnorm(self.model)
            self.ddp = torch.nn.parallel.DistributedDataParallel(self.model, forward_sync_buffers=False,
                                                                 find_unused_parameters=True)
            if not ranks.main:
                seed_everything(rank_seed(config.train.seed, ranks.rank))
        side = load_side_inputs(self.train_split, self.model.side_inputs)
        # the same side inputs are loaded for validation and evaluation (itrlib.evaluation.encode): the dev
        # files are checked now (rows, widths), not at the end of the first epoch
        load_side_inputs(self.val_split, self.model.side_inputs)
        self.dataset = PairDataset(self.train_split, self.tokenizer, train=True,
                                   region_keep_prob=config.data.region_keep_prob,
                                   caption_augment=config.data.caption_augment, seed=config.train.seed,
                                   extras=side.image, caption_extras=side.caption,
                                   positive=self.model.positive_caption)
        self.sampler = EpochBatchSampler(len(self.dataset), config.train.batch_size, config.train.seed,
                                         max_batches=config.train.max_steps_per_epoch, rank=ranks.rank,
                                         world_size=ranks.world_size)
        self.optimizer = create_optimizer(self.model, config.train)
        self.val_protocol = whole_split(config.data.val_split)  # per-epoch model selection
        self.epoch, self.batch_in_epoch, self.global_step = 0, 0, 0
        self.best: dict = {"rsum": -math.inf, "epoch": None}
        barrier(ranks)  # every rank has read the folder's config.yaml and last.pt before rank 0 writes
        run_on_main(ranks, atomic_write_text, self.run_dir / CONFIG_FILE, dump_yaml(config))

    # ------------------------------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train to ``train.epochs`` (resuming when possible); return the summary written to disk.

        Runs once: the run folder is released when it returns or fails.
        """
        if not self._open:
            raise ItrlibError("this Trainer is closed (fit() runs once); create a new Trainer to continue the run")
        try:
            return self._fit()
        finally:
            self.close()

    def close(self) -> None:
        """Release the run folder (and a process group the Trainer joined) without training (``fit()`` releases
        it itself); idempotent."""
        self._resume_state = None
        self._open = False
        self._lock.release()
        leave_process_group(self.ranks)

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _fit(self) -> dict:
        self._resume_if_possible()
        loss_weights = self.config.train.loss_weights
        total_epochs = self.config.train.epochs
        started = time.monotonic()
        self._say_start()
        while self.epoch < total_epochs:
            epoch_start, loss_sum, steps = time.monotonic(), 0.0, 0
            self._set_learning_rate(self.epoch)
            self.model.on_epoch_start(self.epoch)
            self.model.train()
            self.dataset.set_epoch(self.epoch)
            self.sampler.set_epoch(self.epoch, self.batch_in_epoch)
            # own generator: creating a DataLoader iterator must not draw from the global torch RNG,
            # or a run resumed mid-epoch would see different dropout masks than an uninterrupted one
            loader = DataLoader(self.dataset, batch_sampler=self.sampler, collate_fn=self.dataset.collate_fn,
                                num_workers=self.config.data.num_workers,
                                generator=torch.Generator().manual_seed(self.config.train.seed))
            epoch_batches = self.sampler.batches_per_epoch()
            bar = progress_bar(loader, desc=f"{self.config.name}: epoch {self.epoch} of 0-{total_epochs - 1}",
                               unit="steps", enabled=self.progress, initial=self.batch_in_epoch, total=epoch_batches)
            for batch in bar:
                losses = self._train_step(self._on_device(batch), loss_weights)
                loss_sum, steps = loss_sum + losses["loss"], steps + 1
                self.batch_in_epoch += 1
                self.global_step += 1
                self.model.after_optimizer_step(self.global_step)
                bar.set_postfix(loss=f"{losses['loss']:.3f}")
                # every log_every steps, and the epoch's last step (an epoch shorter than log_every still
                # leaves its loss in metrics.jsonl, where the curves and loss_summary read it)
                if (self.global_step % self.config.train.log_every == 0
                        or self.batch_in_epoch == epoch_batches):
                    self._log({"event": "step", **losses})
                every = self.config.train.checkpoint_every
                if every and self.global_step % every == 0:
                    self._save_last()
            metrics, is_best = self._end_epoch(time.monotonic() - epoch_start)
            say(f"{self.config.name}: epoch {self.epoch - 1} of 0-{total_epochs - 1} done in "
                f"{format_seconds(time.monotonic() - epoch_start)}: mean loss {loss_sum / max(steps, 1):.4g} "
                f"over {steps} steps, dev rSum {metrics['rsum']:.1f}{' (best so far)' if is_best else ''}",
                self.progress)
        summary = run_on_main(self.ranks, self._write_summary)
        summary = from_main(self.ranks, summary)
        if not self.config.train.keep_last and self.ranks.main:
            (self.run_dir / LAST).unlink(missing_ok=True)
        say(f"{self.config.name}: {total_epochs} epochs trained ({format_seconds(time.monotonic() - started)} "
            f"this call); best dev rSum {self.best['rsum']:.1f} at epoch {self.best['epoch']}", self.progress)
        return summary

    def _say_start(self) -> None:
        """One line: what is trained where, or that the run is already finished (and reused)."""
        total, cfg = self.config.train.epochs, self.config
        if self.epoch >= total:
            where = "finished run reused"
        elif self.epoch or self.batch_in_epoch:
            where = f"resuming at epoch {self.epoch}, step {self.batch_in_epoch}"
        else:
            where = "from scratch"
        ranks = f" ({self.ranks.world_size} processes)" if self.ranks.world_size > 1 else ""
        say(f"{cfg.name}: {cfg.model.name}, epochs 0-{total - 1}, batch {cfg.train.batch_size}{ranks}, "
            f"{len(self.dataset)} training pairs, {self.sampler.batches_per_epoch()} steps/epoch, "
            f"{self.device.type} ({where}) -> {self.run_dir}", self.progress)

    # ------------------------------------------------------------------------------------------------
    def _on_device(self, batch: Batch) -> Batch:
        """This rank's share of a batch on the device; under torch.distributed padded to the widest share."""
        if self.ranks.world_size > 1:
            widths = torch.tensor(batch.widths(), device=self.device)  # NCCL reduces GPU tensors only
            torch.distributed.all_reduce(widths, op=torch.distributed.ReduceOp.MAX)
            batch = batch.padded_to(tuple(widths.tolist()), self.tokenizer.pad_id)
        return batch.to(self.device)

    def _train_step(self, batch: Batch, loss_weights: dict[str, float]) -> dict[str, float]:
        with autocast_for(self.device, self.amp):
            losses = (self.ddp or self.model)(batch)
        unknown = set(loss_weights) - set(losses)
        if unknown:
            raise ItrlibError(f"train.loss_weights names losses the model does not return: {sorted(unknown)} "
                              f"(model returns {sorted(losses)})")
        total = sum(loss_weights.get(name, 1.0) * value.float() for name, value in losses.items())
        if not torch.isfinite(total):
            raise ItrlibError(f"non-finite loss {total.item()} at epoch {self.epoch} step {self.global_step} "
                              f"({ {k: v.item() for k, v in losses.items()} }); the last checkpoint is intact")
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = None
        if self.config.train.grad_clip > 0:
            grad_norm = clip_grad_norm_(self.model.parameters(), self.config.train.grad_clip).item()
        self.optimizer.step()
        record = {"loss": total.item(), **{k: v.item() for k, v in losses.items()}}
        if grad_norm is not None:
            record["grad_norm"] = grad_norm
        return record

    def _end_epoch(self, epoch_seconds: float) -> tuple[dict, bool]:
        """Validate, keep ``best.pt``, save ``last.pt`` (unless the run ends here without keeping it); returns
        (dev metrics, whether they are the best). ``epoch_seconds``: the epoch's training time, logged."""
        metrics = from_main(self.ranks, self._validate() if self.ranks.main else None)
        is_best = metrics["rsum"] > self.best["rsum"]
        self._log({"event": "val", "split": self.val_split.split, **metrics, "best": is_best,
                   "epoch_seconds": round(epoch_seconds, 3)})
        if is_best:
            self.best = {"rsum": metrics["rsum"], "epoch": self.epoch, "metrics": metrics}
        if is_best and self.ranks.main:
            save_checkpoint(self.run_dir / BEST, {
                "model": self.model.state_dict(), "epoch": self.epoch, "val_metrics": metrics,
                "feature_dim": self.train_split.feature_dim, "config": to_dict(self.config),
                "itrlib_version": __version__})
        self.epoch += 1
        self.batch_in_epoch = 0
        if self.config.train.keep_last or self.epoch < self.config.train.epochs:
            # the last epoch of a run that keeps no last.pt writes none (killed before its summary, the run
            # resumes from the previous last.pt, or starts again, and trains the same epoch again)
            self._save_last()
        return metrics, is_best

    def _validate(self) -> dict:
        """Dev metrics of the model as it is (rank 0 alone, under torch.distributed)."""
        ev = self.config.eval
        result = evaluate_split(self.model, self.val_split, self.tokenizer, [self.val_protocol],
                                batch_size=self.config.train.eval_batch_size, device=self.device, amp=self.amp,
                                max_pairs_per_block=ev.max_pairs_per_block, ties=ev.ties,
                                progress=self.progress).results[self.val_protocol.name]
        return result["metrics"]

    def _set_learning_rate(self, epoch: int) -> None:
        """lr = base_lr * factor^(number of decay epochs <= epoch): a pure function of the epoch."""
        steps = sum(1 for e in self.config.train.lr_decay_epochs if epoch >= e)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * self.config.train.lr_decay_factor ** steps

    # ------------------------------------------------------------------------------------------------
    def _log(self, record: dict) -> None:
        """Append a record to metrics.jsonl (rank 0; the others hold the same numbers)."""
        if self.ranks.main:
            record = {"epoch": self.epoch, "step": self.global_step, "time": time.time(), **record}
            append_jsonl(self.run_dir / METRICS_FILE, record)

    def _save_last(self) -> None:
        """``last.pt``, written by rank 0 with every rank's RNG state (``rng``: rank 0's, ``rng_ranks``: all)."""
        states = gather_objects(self.ranks, rng_state())
        if not self.ranks.main:
            return
        metrics_path = self.run_dir / METRICS_FILE
        lines = len(read_jsonl(metrics_path)) if metrics_path.exists() else 0
        save_checkpoint(self.run_dir / LAST, {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch, "global_step": self.global_step, "best": self.best,
            "rng": states[0], "metrics_lines": lines, "feature_dim": self.train_split.feature_dim,
            "config": to_dict(self.config), "itrlib_version": __version__,
            **({"rng_ranks": states} if len(states) > 1 else {})})

    def _load_resume_state(self) -> dict | None:
        """``last.pt`` if the folder holds one, checked to belong to this run (before anything is written)."""
        path = self.run_dir / LAST
        if not path.exists():
            return self._finished_state()
        state = load_checkpoint(path)
        missing = [key for key in RESUME_KEYS if key not in state]
        if missing:
            raise ItrlibError(f"{path} cannot resume this run: it lacks {', '.join(missing)} (is it a copy of "
                              f"{BEST}?); delete it to train from scratch, or choose another name=")
        check_same_run(stored_config(state.get("config"), path), self.config, path,
                       f"{self.run_dir} holds another run: choose another name= or delete the folder")
        if state["epoch"] > self.config.train.epochs:
            raise ItrlibError(f"{path} has already trained {state['epoch']} epochs, more than "
                              f"train.epochs={self.config.train.epochs}; raise train.epochs or choose another name=")
        return state

    def _finished_state(self) -> dict | None:
        """Position and best epoch of a run that finished without keeping ``last.pt`` (``train.keep_last``
        false), read from its summary, or ``None`` when the folder holds no finished run."""
        path = self.run_dir / SUMMARY_FILE
        if not path.exists() or not (self.run_dir / BEST).exists():
            return None
        summary = json.loads(path.read_text())
        if summary["epochs"] != self.config.train.epochs:
            raise ItrlibError(f"{self.run_dir} holds a run that finished after {summary['epochs']} epochs "
                              f"without keeping last.pt (train.keep_last=false), so it is not a run of "
                              f"train.epochs={self.config.train.epochs}; choose another name= or delete the folder")
        best = {"rsum": summary["best_val"]["rsum"], "epoch": summary["best_epoch"], "metrics": summary["best_val"]}
        return {"finished": True, "epoch": summary["epochs"], "global_step": summary["steps"], "best": best}

    def _resume_if_possible(self) -> None:
        state, self._resume_state = self._resume_state, None
        if state is None:
            return
        if state.get("finished"):  # nothing left to train: the summary is written again as it was
            self.epoch, self.global_step, self.best = state["epoch"], state["global_step"], state["best"]
            return
        load_model_state(self.model, state, self.run_dir / LAST, self.config, self.train_split.feature_dim)
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.batch_in_epoch = state["epoch"], state["batch_in_epoch"]
        self.global_step, self.best = state["global_step"], state["best"]
        self._restore_rng(state)
        if self.ranks.main:
            self._truncate_metrics(state["metrics_lines"])
        self._log({"event": "resume", "batch_in_epoch": self.batch_in_epoch})

    def _restore_rng(self, state: dict) -> None:
        """Every rank's RNG as saved when the number of processes is the same; otherwise rank 0's as saved
        and ranks >= 1 seeded afresh (their dropout draws then differ from an uninterrupted run's)."""
        saved = state.get("rng_ranks", [state["rng"]])
        if len(saved) == self.ranks.world_size:
            restore_rng_state(saved[self.ranks.rank])
        elif self.ranks.main:
            restore_rng_state(state["rng"])
        else:
            seed_everything(rank_seed(self.config.train.seed, self.ranks.rank))

    def _truncate_metrics(self, keep: int) -> None:
        """Drop records logged after the checkpoint (they will be produced again)."""
        path = self.run_dir / METRICS_FILE
        if not path.exists():
            return
        records = read_jsonl(path)[:keep]
        atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))

    def _write_summary(self) -> dict:
        summary = {"best_epoch": self.best["epoch"], "best_val": self.best.get("metrics"),
                   "epochs": self.epoch, "steps": self.global_step, "run_dir": str(self.run_dir)}
        atomic_write_json(self.run_dir / SUMMARY_FILE, summary)
        return summary

    def _check_existing_config(self) -> None:
        """A run folder belongs to one run: refuse a config that differs beyond RESUME_ALLOWED_DIFFERENCES."""
        path = self.run_dir / CONFIG_FILE
        if path.exists():
            check_same_run(load_config(path), self.config, path,
                           f"{self.run_dir} already holds another run: choose another name= or delete the folder")


def train(config: RunConfig, progress: bool = True) -> dict:
    """Convenience wrapper: ``Trainer(config).fit()``."""
    return Trainer(config, progress=progress).fit()
