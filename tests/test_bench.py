"""The benchmarks at tiny dimensions: the models train, the tables have their columns (no timings are checked)."""

import math
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import torch

from itrlib.suite.bench.cli import main
from itrlib.suite.bench.mvsen_scoring import mvsen_macs
from itrlib.suite.bench.train_step import BERT_PART, STEP_MODELS, synthetic_batch, train_step

TINY = {"batch": 8, "regions": 6, "feature_dim": 32, "embed": 16, "queue": 16,
        "bert": {"hidden": 32, "layers": 4, "heads": 2, "intermediate": 64, "vocab": 200}}  # MVSEN sums 4 layers
COLUMNS = ["model", "model.name", "batch", "s/step (median)", "s/step (min)", "s/step (max)", "images/s",
           "images/s vs VSE∞", "official code s/step, as reported in the issue (2-core CPU)", "steps timed"]


def test_synthetic_batch_lengths_and_padding():
    batch = synthetic_batch(32, 4, 8, vocab=200, min_len=8, max_len=16, seed=1)
    lengths = batch.caption_lengths
    assert batch.images.shape == (32, 4, 8) and batch.image_lengths.tolist() == [4] * 32
    zeros = float((batch.images == 0).float().mean())
    assert (batch.images >= 0).all() and 0.3 < zeros < 0.7  # pooled-ReLU-like regions
    assert 8 <= int(lengths.min()) and int(lengths.max()) <= 16 and batch.captions.shape == (32, int(lengths.max()))
    for row, n in zip(batch.captions.tolist(), lengths.tolist(), strict=True):
        assert row[0] == 101 and row[n - 1] == 102 and all(t == 0 for t in row[n:]) and 0 not in row[:n]


def test_train_step_tiny_runs_a_global_a_momentum_and_a_pairwise_model():
    profile: dict = {}
    models = {label: STEP_MODELS[label] for label in ("VSE∞", "USER (SGE, DVQ+DTQ)", "MVSEN t2i")}
    table = train_step("cpu", steps=1, warmup=0, profile=profile, models=models, **TINY)
    assert list(table.columns) == COLUMNS
    assert table["model"].tolist() == list(models)
    assert table["model.name"].tolist() == ["vse", "user", "mvsen"]
    assert (table["steps timed"] == 1).all() and (table["batch"] == TINY["batch"]).all()
    assert all(math.isfinite(v) and v > 0 for v in table["s/step (median)"])
    assert table.loc[table["model.name"] == "vse", "images/s vs VSE∞"].item() == pytest.approx(1.0)
    official = dict(zip(table["model.name"], table["official code s/step, as reported in the issue (2-core CPU)"],
                        strict=False))
    assert official["user"] == "12.8-13.3" and official["vse"] == "7.5-8.2" and official["mvsen"] == "–"
    assert [STEP_MODELS[label][0] for label in STEP_MODELS] == ["vse_f30k", "afa_f30k", "user_f30k", "mvsen_f30k",
                                                               "mvsen_f30k"]
    assert list(profile) == list(models)
    for label, parts in profile.items():
        assert list(parts.columns) == ["part", "s (median)", "share of step"]
        seconds = dict(zip(parts["part"], parts["s (median)"], strict=True))
        assert {"backward", "clip_grad_norm_", "AdamW step", "after_optimizer_step", "whole step"} <= set(seconds)
        assert all(v >= -1e-6 for v in seconds.values()), label
        forwards = sum(v for k, v in seconds.items() if k.startswith("forward: ") and not k.endswith(BERT_PART))
        assert 0 < forwards < seconds["whole step"] and seconds["other (zero_grad, hooks)"] < seconds["whole step"]
    assert {"forward: text_encoder", f"forward: text_encoder{BERT_PART}"} <= set(profile["VSE∞"]["part"])
    assert {"forward: key_image_encoder", "forward: key_text_encoder"} <= set(profile["USER (SGE, DVQ+DTQ)"]["part"])


def test_batch_for_adds_what_a_model_reads_besides_the_pairs():
    from itrlib.suite.bench.train_step import StepRunner, batch_for, step_config, write_random_bert

    folder = write_random_bert(Path(tempfile.mkdtemp()) / "bert", **TINY["bert"])
    for preset, overrides, labels in (("mvsen_f30k", ("model.direction=t2i",), True), ("vse_f30k", (), False)):
        config = step_config(preset, overrides, folder, TINY["regions"], TINY["embed"], TINY["queue"], 4)
        model = StepRunner(config, TINY["feature_dim"], torch.device("cpu")).model
        data = batch_for(model, synthetic_batch(4, TINY["regions"], TINY["feature_dim"], 200))
        assert ("label" in data.extras) == labels and (data.positive_captions is not None) == labels
        if labels:
            assert data.extras["label"].shape == (4, config.model.num_labels)
            assert torch.equal(data.positive_captions[1], data.captions[0])


def test_train_step_cli_is_registered():
    with pytest.raises(SystemExit):
        main(["--only", "nope"])


def test_mvsen_scoring_tiny_compares_the_two_ways_on_the_same_pairs():
    from itrlib.suite.bench.mvsen_scoring import mvsen_scoring

    table, two_stage = mvsen_scoring("cpu", n_img=3, n_cap=5, dim=16, shortlists=(2, 4))
    assert list(table["direction"]) == ["i2t (regions as nodes)", "t2i (words as nodes)"]
    assert (table["release-style loop pairs/s"] > 0).all() and (table["batched pairs/s"] > 0).all()
    assert all(0 <= delta <= 1e-4 for delta in table["max |delta|"])
    assert (table["batched fraction of sgemm"] > 0).all()
    assert list(two_stage["shortlist M"]) == [2, 4, 2, 4] and (two_stage["two-stage COCO 5K min"] > 0).all()
    from itrlib.suite.bench.mvsen_scoring import plot_two_stage

    axes = plot_two_stage(two_stage).axes[0]
    # per direction: the curve and two full-scoring lines; the 1-hour line
    assert len(axes.lines) == 7 and axes.get_xscale() == "log"


def test_mvsen_macs_counts_each_product_of_the_batched_network():
    lengths = torch.tensor([2, 3])
    # regions as nodes (N = K = 4): per caption 2*K*n*d + K*d*d_c + L*(K*d_c^2 + 2*K^2*d_c) + K*d_c*h
    per = [2 * 4 * n * 8 + 4 * 8 * 6 + 2 * (4 * 36 + 2 * 16 * 6) + 4 * 6 * 5 for n in (2, 3)]
    assert mvsen_macs(3, 4, lengths, dim=8, sim_dim=6, hidden=5, layers=2, nodes="regions") == 3 * sum(per)
    per = [2 * 4 * n * 8 + n * 8 * 6 + 2 * (n * 36 + 2 * n * n * 6) + n * 6 * 5 for n in (2, 3)]
    assert mvsen_macs(3, 4, lengths, dim=8, sim_dim=6, hidden=5, layers=2, nodes="words") == 3 * sum(per)


def test_a_difference_of_the_scoring_paths_shows_in_the_table_and_fails_the_bench(monkeypatch):
    from itrlib.suite.bench import cli, mvsen_scoring

    table = pd.DataFrame({"direction": ["a", "b"], "pairs/s": [1234.5, 10.0], "max |delta|": [3.2e-6, 0.0]})
    text = cli.markdown_table(table)
    assert "3.2e-06" in text and "1234.50" in text  # not rounded away to 0.00
    monkeypatch.setattr(mvsen_scoring, "caption_loop_scores", lambda *args, **kwargs: torch.zeros(3, 5))
    with pytest.raises(RuntimeError, match="batched scores differ from the release-style loop"):
        mvsen_scoring.mvsen_scoring("cpu", n_img=3, n_cap=5, dim=16)


def test_global_scoring_tiny_times_evaluation_scoring_beside_one_matmul():
    from itrlib.suite.bench.global_scoring import global_scoring

    table = global_scoring("cpu", dim=8, repeats=1, cases={"tiny": (4, 20)})
    assert table["matrix"].tolist() == ["tiny (4x20, d 8)"]
    assert list(table.columns) == ["matrix", "evaluation scoring s", "one matmul s", "GFLOP/s", "sgemm GFLOP/s",
                                   "fraction of sgemm"]
    assert (table.drop(columns="matrix") > 0).all().all()


def test_evaluation_time_tiny_projects_every_kind_of_model_to_every_gallery():
    from itrlib.suite.bench.evaluation_time import evaluation_time

    table = evaluation_time("cpu", galleries=(10, 20), sample=(4, 20), shortlist=3, bert=TINY["bert"],
                            feature_dim=32)
    assert table["gallery"].tolist() == ["10 images x 50 captions", "20 images x 100 captions"]
    assert list(table.columns[1:]) == ["VSE∞ s", "MVSEN t2i s", "MVSEN i2t s", "MVSEN t2i+i2t s",
                                       "two-stage MVSEN t2i (M=3) s", "two-stage MVSEN i2t (M=3) s",
                                       "two-stage MVSEN t2i+i2t (M=3) s"]
    seconds = table.drop(columns="gallery")
    assert (seconds > 0).all().all() and (seconds.iloc[1] > seconds.iloc[0]).all()  # a larger gallery costs more
    assert (table["MVSEN t2i+i2t s"] > table["MVSEN t2i s"]).all()
    both = table["two-stage MVSEN t2i (M=3) s"] + table["two-stage MVSEN i2t (M=3) s"] - table["VSE∞ s"]
    assert table["two-stage MVSEN t2i+i2t (M=3) s"].tolist() == pytest.approx(both.tolist())


def test_ranking_speed_tiny_gives_every_variant_its_ratio_and_its_multiple_of_one_read(monkeypatch):
    from itrlib.suite.bench import ranking

    monkeypatch.setattr(ranking, "RANKING_CASES", {"tiny": 20})
    table = ranking.ranking_speed(repeats=2)
    assert table["variant"].tolist() == [v for v, (_, on_cuda) in ranking.RANKING_VARIANTS.items() if not on_cuda]
    assert (table["identical ranks, recalls, top-1"] == "yes").all()
    numbers = table[["time (ms)", "official-style (ms)", "speed-up", "one read (ms)", "read GB/s", "x one read"]]
    assert (numbers > 0).all().all()
    assert (table["x one read"] - table["time (ms)"] / table["one read (ms)"]).abs().max() < 1e-9
