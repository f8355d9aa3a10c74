"""Evaluation of runs: one encoding and scoring per split, the block budget, float32 blocks, saved scores,
``evaluate_scores`` on any matrix, composite runs, tie records and timings."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from itrlib.cli import main
from itrlib.data.precomp import open_split
from itrlib.engine.components import load_run
from itrlib.engine.trainer import Trainer
from itrlib.errors import ConfigError, DataError, ItrlibError
from itrlib.evaluation.evaluate import evaluate_split
from itrlib.evaluation.protocols import PROTOCOLS, get_protocol
from itrlib.evaluation.ranking import evaluate_scores
from itrlib.evaluation.scoring import block_shape, sharded_scores
from itrlib.runs.any_run import evaluate_run_protocols, run_split_scores
from itrlib.runs.composite import alpha_grid, combine, create_composite, load_composite
from itrlib.runs.scores import load_scores
from itrlib.runs.trained import eval_path, evaluate_loaded, trained_split_scores
from itrlib.suite.report.results import comparison_table


def load_eval(run_dir: str | Path, protocol: str) -> dict:
    """The ``eval-<protocol>.json`` a run folder holds."""
    return json.loads(eval_path(run_dir, protocol).read_text(encoding="utf-8"))

@pytest.fixture(scope="module")
def runs(smoke_data, module_dir, fast_config):
    """Two trained runs of different seeds (members of composites)."""
    out = module_dir
    for name, seed in (("a", 0), ("b", 1)):
        Trainer(fast_config(smoke_data, out, name, f"train.seed={seed}"), progress=False).fit()
    return out / "a", out / "b"


def test_block_shape_respects_the_budget():
    assert block_shape(1000, 5000, 1 << 25) == (1000, 5000)
    assert block_shape(5000, 25000, 1 << 25) == (1342, 25000)
    assert block_shape(40, 200, 1000) == (5, 200)
    assert block_shape(40, 200, 50) == (1, 50)
    with pytest.raises(ValueError, match=">= 1"):
        block_shape(4, 20, 0)


def test_non_float32_blocks_are_refused():
    img, cap = torch.randn(4, 8), torch.randn(6, 8)
    with pytest.raises(TypeError, match=r"torch.bfloat16 scores .*must be float32"):
        sharded_scores(lambda a, b: (a @ b.T).bfloat16(), img, cap)
    with pytest.raises(TypeError, match="float32"):
        sharded_scores(lambda a, b: (a @ b.T).double(), img, cap)


def test_testall_is_encoded_and_scored_once_for_both_coco_protocols(runs, smoke_data, monkeypatch):
    run = load_run(runs[0], device="cpu")
    split = open_split(smoke_data, "testall")
    calls = {"images": 0, "score": 0}
    encode, score = run.model.encode_images, run.model.score

    def counting_encode(*args, **kwargs):
        calls["images"] += 1
        return encode(*args, **kwargs)

    def counting_score(a, b):
        calls["score"] += 1
        return score(a, b)

    monkeypatch.setattr(run.model, "encode_images", counting_encode)
    monkeypatch.setattr(run.model, "score", counting_score)
    protocols = [PROTOCOLS["coco1k"], PROTOCOLS["coco5k"]]
    both = evaluate_split(run.model, split, run.tokenizer, protocols, keep_scores=True)
    assert calls == {"images": 1, "score": 1}
    full = both.scores
    assert full.shape == (split.n_images, split.n_captions) and full.dtype == torch.float32
    assert both.results["coco5k"]["metrics"] == evaluate_scores(full, "coco5k")["metrics"]
    assert both.results["coco1k"]["metrics"] == evaluate_scores(full, "coco1k")["metrics"]
    assert both.results["coco1k"]["timing"]["pairs_scored"] == split.n_images * split.n_captions

    # coco1k alone scores only its 5 diagonal fold blocks. Another block shape may change a score in its last
    # bits (another BLAS kernel), and this barely trained model has exact and near ties (identical captions)
    # that such a change can flip on one CPU and not on another: so the scores are compared with a tolerance,
    # and the metrics with those of the very scores this evaluation ranked (equal by construction)
    calls.update(images=0, score=0)
    fold_blocks = []

    def recording_sharded_scores(*args, **kwargs):
        fold_blocks.append(sharded_scores(*args, **kwargs))
        return fold_blocks[-1]

    monkeypatch.setattr("itrlib.evaluation.evaluate.sharded_scores", recording_sharded_scores)
    alone = evaluate_split(run.model, split, run.tokenizer, [PROTOCOLS["coco1k"]], max_pairs_per_block=64)
    n = split.n_images // 5
    assert alone.results["coco1k"]["timing"]["pairs_scored"] == 5 * n * 5 * n
    assert calls["score"] > 5 and alone.scores is None and len(fold_blocks) == 5
    ranked = full.clone()
    for fold, block in enumerate(fold_blocks):
        rows, cols = slice(n * fold, n * fold + n), slice(5 * n * fold, 5 * n * fold + 5 * n)
        # cosines (|s| <= 1) of 32-d embeddings: another summation order moves them by ~1e-7, far below 1e-5
        assert (block - full[rows, cols]).abs().max() <= 1e-5
        ranked[rows, cols] = block
    assert alone.results["coco1k"]["metrics"] == evaluate_scores(ranked, "coco1k")["metrics"]
    with pytest.raises(ValueError, match="evaluate another split"):
        evaluate_split(run.model, split, run.tokenizer, [PROTOCOLS["f30k1k"]])


def test_eval_json_records_ties_timing_and_saved_scores(runs):
    results = evaluate_run_protocols(runs[0], ["coco1k", "coco5k", "f30k1k"], save_scores="float32",
                                     device="cpu", progress=False)
    for name, result in results.items():
        assert result["ties"] == "pessimistic" and set(result["tied_queries"]) == {"i2t", "t2i"}
        timing = result["timing"]
        assert {"encode_s", "score_s", "rank_s", "pairs_scored", "device"} <= set(timing)
        assert timing["device"] == "cpu"
        assert load_eval(runs[0], name)["metrics"] == result["metrics"]
    scores, meta = load_scores(runs[0], "testall")
    assert scores.dtype == np.float32 and meta["split"] == "testall" and meta["checkpoint"] == "best"
    assert evaluate_scores(scores, "coco5k")["metrics"] == results["coco5k"]["metrics"]
    assert results["coco5k"]["scores_file"] == "scores-testall.npy"

    half = evaluate_run_protocols(runs[0], ["f30k1k"], save_scores="float16", device="cpu", progress=False)
    saved, meta = load_scores(runs[0], "test")
    assert meta["dtype"] == "float16" and np.load(runs[0] / "scores-test.npy").dtype == np.float16
    assert abs(evaluate_scores(saved, "f30k1k")["metrics"]["rsum"] - half["f30k1k"]["metrics"]["rsum"]) < 20


def test_reuse_reads_back_an_evaluation_of_the_same_checkpoint_data_and_ties(runs, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(runs[1], run)
    first = evaluate_run_protocols(run, ["f30k1k", "coco5k"], device="cpu", progress=False, reuse=True)
    evaluated = []
    original = evaluate_loaded

    def spy(loaded, data, protocols, **kwargs):
        evaluated.append([p.name for p in protocols])
        return original(loaded, data, protocols, **kwargs)

    monkeypatch.setattr("itrlib.runs.trained.evaluate_loaded", spy)
    again = evaluate_run_protocols(run, ["f30k1k", "coco5k"], device="cpu", progress=False, reuse=True)
    assert evaluated == [] and again == first
    # coco1k has no saved result: only testall is evaluated, test is read back
    evaluate_run_protocols(run, ["f30k1k", "coco1k", "coco5k"], device="cpu", progress=False, reuse=True)
    assert evaluated == [["coco1k", "coco5k"]]
    evaluate_run_protocols(run, ["f30k1k"], ties="stable", device="cpu", progress=False, reuse=True)
    evaluate_run_protocols(run, ["f30k1k"], device="cpu", progress=False)  # reuse off
    assert evaluated[1:] == [["f30k1k"], ["f30k1k"]]
    best = run / "best.pt"  # another checkpoint file (a retrained run) is evaluated again
    os.utime(best, ns=(best.stat().st_atime_ns, best.stat().st_mtime_ns + 1))
    evaluate_run_protocols(run, ["f30k1k"], device="cpu", progress=False, reuse=True)
    # scores asked for but not saved with this checkpoint: evaluated again, then reused
    evaluate_run_protocols(run, ["f30k1k"], save_scores="float32", device="cpu", progress=False, reuse=True)
    evaluate_run_protocols(run, ["f30k1k"], save_scores="float32", device="cpu", progress=False, reuse=True)
    assert evaluated[3:] == [["f30k1k"], ["f30k1k"]]


def test_stable_tie_rule_is_recorded(runs):
    result = evaluate_run_protocols(runs[0], ["f30k1k"], ties="stable", device="cpu", progress=False)["f30k1k"]
    assert result["ties"] == "stable"
    with pytest.raises(ConfigError, match="tie rule"):
        evaluate_scores(np.zeros((2, 10)), "f30k1k", ties="random")


def test_evaluate_scores_errors_are_clear():
    with pytest.raises(DataError, match="2-D"):
        evaluate_scores(np.zeros(10), "f30k1k")
    with pytest.raises(DataError, match="9 captions for 2 images, expected 5 captions per image"):
        evaluate_scores(np.zeros((2, 9)), "f30k1k")
    sims = np.random.default_rng(0).random((10, 50))
    sims[3, 4] = np.nan
    with pytest.raises(DataError, match="1 non-finite"):
        evaluate_scores(sims, "coco5k")
    with pytest.raises(DataError, match="cannot be cut into 5"):
        evaluate_scores(np.random.default_rng(0).random((12, 60)), "coco1k")


def test_eval_scores_cli(tmp_path, capsys):
    rng = np.random.default_rng(0)
    sims = rng.standard_normal((20, 100)).astype(np.float32)
    np.save(tmp_path / "sims.npy", sims)
    out = tmp_path / "result.json"
    assert main(["eval-scores", str(tmp_path / "sims.npy"), "--protocol", "coco1k", "coco5k", "--out",
                 str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["coco5k"]["rsum"] == evaluate_scores(sims, "coco5k")["metrics"]["rsum"]
    assert json.loads(out.read_text())["coco1k"]["metrics"] == evaluate_scores(sims, "coco1k")["metrics"]
    np.save(tmp_path / "bad.npy", sims[:, :99])
    assert main(["eval-scores", str(tmp_path / "bad.npy"), "--protocol", "coco5k"]) == 2
    assert "99 captions for 20 images" in capsys.readouterr().err
    assert main(["eval-scores", str(tmp_path / "missing.npy"), "--protocol", "coco5k"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_composite_weights_alpha_and_tuning_on_dev(runs, tmp_path, monkeypatch):
    a, b = runs
    only_a = create_composite(tmp_path / "only_a", [a, b], alpha=1.0, protocols=["f30k1k"], device="cpu",
                              progress=False)
    direct = evaluate_run_protocols(a, ["f30k1k"], device="cpu", progress=False)
    assert only_a["f30k1k"]["metrics"] == direct["f30k1k"]["metrics"]

    fixed = create_composite(tmp_path / "mix", [a, b], weights=[0.3, 0.7], protocols=["coco5k"], device="cpu",
                             progress=False)
    sa, _ = run_split_scores(a, "testall")
    sb, _ = run_split_scores(b, "testall")
    assert fixed["coco5k"]["metrics"] == evaluate_scores(0.3 * sa + 0.7 * sb, "coco5k")["metrics"]
    assert fixed["coco5k"]["composite"]["weights"] == [0.3, 0.7]
    assert load_eval(tmp_path / "mix", "coco5k")["metrics"] == fixed["coco5k"]["metrics"]
    mixed, meta = run_split_scores(tmp_path / "mix", "testall")  # a composite's scores: the weighted sum
    np.testing.assert_allclose(mixed, 0.3 * sa + 0.7 * sb, rtol=0, atol=1e-6)
    assert meta["weights"] == [0.3, 0.7] and meta["caps_per_image"] == 5

    seen_splits = []
    original = trained_split_scores

    def spy(run_dir, split, **kwargs):
        seen_splits.append(split)
        return original(run_dir, split, **kwargs)

    monkeypatch.setattr("itrlib.runs.composite.trained_split_scores", spy)
    tuned = create_composite(tmp_path / "tuned", [a, b], tune=True, alpha_step=0.25, protocols=["f30k1k"],
                             device="cpu", progress=False)
    spec = load_composite(tmp_path / "tuned")
    assert seen_splits[:2] == ["dev", "dev"] and "test" not in seen_splits[:2]  # alpha chosen before test
    assert spec["tuned_on"] == "dev" and spec["tuning"]["grid"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    best = spec["tuning"]["grid"][int(np.argmax(spec["tuning"]["dev_rsum"]))]
    assert spec["weights"] == [best, 1 - best]
    table = comparison_table({"tuned": tuned, "a": direct})
    assert list(table["method"]) == ["tuned", "a"]

    # the composite folder is an ordinary run folder for evaluation, and it is owned by one definition
    again = evaluate_run_protocols(tmp_path / "mix", ["coco5k"], progress=False)
    assert again["coco5k"]["metrics"] == fixed["coco5k"]["metrics"]
    with pytest.raises(ItrlibError, match="already holds a composite"):
        create_composite(tmp_path / "mix", [a, b], alpha=0.5, protocols=[], progress=False)
    # once a member is retrained (another best.pt) the old definition is stale and may be replaced
    best = Path(a) / "best.pt"
    kept = best.stat()
    os.utime(best, ns=(kept.st_atime_ns, kept.st_mtime_ns + 1))
    try:
        create_composite(tmp_path / "mix", [a, b], alpha=0.5, protocols=[], progress=False)
        assert load_composite(tmp_path / "mix")["weights"] == [0.5, 0.5]
    finally:
        os.utime(best, ns=(kept.st_atime_ns, kept.st_mtime_ns))
    with pytest.raises(ConfigError, match="exactly two members"):
        create_composite(tmp_path / "three", [a, b, a], tune=True, progress=False)
    with pytest.raises(ItrlibError, match="holds a trained run"):
        create_composite(a, [a, b], alpha=0.5, progress=False)


def test_combine_and_grid():
    x, y = np.ones((2, 10), np.float32), np.full((2, 10), 3, np.float32)
    np.testing.assert_array_equal(combine([x, y], [0.25, 0.75]), np.full((2, 10), 2.5, np.float32))
    with pytest.raises(DataError, match="differ in shape"):
        combine([x, y[:, :5]], [0.5, 0.5])
    assert alpha_grid(0.5) == [0.0, 0.5, 1.0]


def test_evaluating_on_data_of_another_feature_size_names_the_cause(runs, tmp_path):
    from itrlib.data.synth import write_synthetic

    other = write_synthetic(tmp_path / "other", size="smoke", feature_dim=32, progress=False)
    with pytest.raises(ItrlibError, match=r"32-d region features, but the run was trained on 64-d"):
        evaluate_run_protocols(runs[0], ["f30k1k"], data_root=str(other), progress=False)


def test_protocol_names_live_in_one_place():
    from itrlib.cli import _parser
    from itrlib.suite.profiles import ALL_PROTOCOLS

    assert ALL_PROTOCOLS == tuple(PROTOCOLS)
    eval_parser = _parser()._subparsers._group_actions[0].choices["eval"]
    choices = next(a.choices for a in eval_parser._actions if a.dest == "protocol")
    assert list(choices) == list(PROTOCOLS)
    assert get_protocol("coco1k").paper_protocol == "5fold1k"


@pytest.mark.parametrize("override", ["eval.ties=random", "eval.max_pairs_per_block=0",
                                      "eval.save_scores=float64"])
def test_eval_section_values_are_checked_at_load(override):
    from itrlib.config import load_config

    with pytest.raises(ConfigError, match=override.split("=")[0].replace(".", r"\.")):
        load_config("vse_smoke", [override])


def test_tied_queries_are_summed_over_folds():
    """Integer scores tie often; the eval result counts, per direction, the queries whose ground truth ties
    a non-ground-truth item, summed over the folds (brute force here)."""
    sims = np.random.default_rng(3).integers(0, 4, size=(20, 100)).astype(np.float32)
    expected = {"i2t": 0, "t2i": 0}
    for f in range(5):
        block = sims[4 * f:4 * f + 4, 20 * f:20 * f + 20]
        for i in range(4):
            gt = np.zeros(20, bool)
            gt[5 * i:5 * i + 5] = True
            expected["i2t"] += int((block[i, ~gt] == block[i, gt].max()).any())
        for c in range(20):
            others = np.delete(block[:, c], c // 5)
            expected["t2i"] += int((others == block[c // 5, c]).any())
    result = evaluate_scores(sims, "coco1k")
    assert result["tied_queries"] == expected and expected["i2t"] > 0 and expected["t2i"] > 0
