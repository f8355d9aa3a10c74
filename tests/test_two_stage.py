"""Two-stage retrieval: a shortlist by one model's scores, reranked by another's, against a slow reference."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from itrlib.cli import main
from itrlib.evaluation.metrics import retrieval_metrics
from itrlib.evaluation.protocols import Protocol
from itrlib.evaluation.ranking import block_metrics, evaluate_blocks
from itrlib.evaluation.two_stage import DirectionalScores, dense_ranks, rerank, shortlists
from itrlib.nn.padded import PaddedSet
from itrlib.runs.any_run import evaluate_run_protocols, evaluate_two_stage
from itrlib.runs.scores import file_stamp

N_IMG, CAPS = 12, 5


def _matrices(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(shortlist scores, pairwise scores), (N_IMG, CAPS * N_IMG) float32, related but not equal."""
    generator = torch.Generator().manual_seed(seed)
    pairwise = torch.randn(N_IMG, CAPS * N_IMG, generator=generator)
    pairwise[torch.arange(N_IMG).repeat_interleave(CAPS), torch.arange(CAPS * N_IMG)] += 1.5
    noise = torch.randn(pairwise.shape, generator=generator)
    return (0.2 * (pairwise + noise)).float(), pairwise


def _lookup(pairwise: torch.Tensor):
    """A "model" whose embeddings are item indices and whose score reads ``pairwise``."""
    return lambda images, captions: pairwise[images][:, captions]


def _reference_ranks(shortlist: torch.Tensor, pairwise: torch.Tensor, m: int) -> dict[str, list[int]]:
    """0-based rank of each query's first ground truth under the two-level order, one query at a time."""
    ranks = {"i2t": [], "t2i": []}
    for direction, first, second in (("i2t", shortlist, pairwise), ("t2i", shortlist.t(), pairwise.t())):
        for q in range(first.shape[0]):
            top = sorted(range(first.shape[1]), key=lambda j: -float(first[q, j]))[:m]
            rest = [j for j in sorted(range(first.shape[1]), key=lambda j: -float(first[q, j])) if j not in top]
            order = sorted(top, key=lambda j: -float(second[q, j])) + rest
            truth = set(range(q * CAPS, (q + 1) * CAPS)) if direction == "i2t" else {q // CAPS}
            ranks[direction].append(min(order.index(j) for j in truth))
    return ranks


@pytest.mark.parametrize("m", [1, 3, 7, 20])
def test_the_two_stage_ranking_is_the_shortlist_reranked_above_the_rest(m):
    shortlist, pairwise = _matrices(m)
    items = torch.arange(N_IMG), torch.arange(CAPS * N_IMG)
    scores, pairs = rerank(_lookup(pairwise), *items, shortlist, m)
    _, ranks = block_metrics(scores, CAPS, "pessimistic")
    expected = _reference_ranks(shortlist, pairwise, m)
    for direction in ("i2t", "t2i"):
        assert ranks[direction].ranks.tolist() == expected[direction], direction
    assert pairs == N_IMG * min(m, CAPS * N_IMG) + CAPS * N_IMG * min(m, N_IMG)


def test_a_shortlist_as_large_as_the_gallery_is_the_pairwise_ranking():
    shortlist, pairwise = _matrices(0)
    scores, _ = rerank(_lookup(pairwise), torch.arange(N_IMG), torch.arange(CAPS * N_IMG), shortlist, 10**6)
    assert block_metrics(scores, CAPS, "pessimistic")[0] == retrieval_metrics(pairwise, CAPS)[0]


def test_tied_pairwise_scores_inside_a_shortlist_stay_tied():
    shortlist, pairwise = _matrices(1)
    pairwise = pairwise.round()  # many ties
    scores, _ = rerank(_lookup(pairwise), torch.arange(N_IMG), torch.arange(CAPS * N_IMG), shortlist, 10**6)
    for ties in ("pessimistic", "stable"):
        assert block_metrics(scores, CAPS, ties)[0] == retrieval_metrics(pairwise, CAPS, ties=ties)[0]


def test_each_fold_of_a_protocol_shortlists_within_its_own_gallery():
    shortlist, pairwise = _matrices(2)
    protocol = Protocol("three_folds", "test", folds=3, description="3 folds of 4 images")

    def two_stage(images: slice, captions: slice) -> DirectionalScores:
        return rerank(_lookup(pairwise[images, captions]), torch.arange(images.stop - images.start),
                      torch.arange(captions.stop - captions.start), shortlist[images, captions], 2)[0]

    result = evaluate_blocks(two_stage, N_IMG, protocol, CAPS)
    expected = {"i2t": [], "t2i": []}
    for fold in range(3):
        images, captions = slice(4 * fold, 4 * fold + 4), slice(20 * fold, 20 * fold + 20)
        for direction, ranks in _reference_ranks(shortlist[images, captions], pairwise[images, captions], 2).items():
            expected[direction] += ranks
    assert {d: result["ranks"][d] for d in ("i2t", "t2i")} == expected


def test_dense_ranks_count_distinct_lower_values():
    values = torch.tensor([[0.5, -1.0, 0.5, 2.0], [3.0, 3.0, 3.0, 3.0]])
    assert dense_ranks(values).tolist() == [[1.0, 0.0, 1.0, 2.0], [0.0, 0.0, 0.0, 0.0]]


def test_shortlists_hold_the_highest_scores_of_each_query():
    scores = torch.tensor([[0.1, 0.9, 0.5], [0.7, 0.2, 0.3]])
    captions_of, images_of = shortlists(scores, 2)
    assert captions_of.tolist() == [[1, 2], [0, 2]]
    assert images_of.tolist() == [[1, 0], [0, 1], [0, 1]]
    with pytest.raises(ValueError, match="at least 1"):
        shortlists(scores, 0)


def test_a_padded_set_takes_the_items_of_an_index_tensor_in_order():
    padded = PaddedSet(torch.arange(24.0).reshape(4, 3, 2), torch.tensor([1, 2, 3, 2]))
    picked = padded[torch.tensor([2, 0])]
    assert torch.equal(picked.features, padded.features[[2, 0]])
    assert picked.lengths.tolist() == [3, 1]
    with pytest.raises(TypeError):
        padded[1]


def test_a_pairwise_model_that_returns_other_than_float32_is_refused():
    shortlist, pairwise = _matrices(3)
    with pytest.raises(TypeError, match="must be float32"):
        rerank(_lookup(pairwise.double()), torch.arange(N_IMG), torch.arange(CAPS * N_IMG), shortlist, 2)


def test_a_non_finite_or_misshapen_shortlist_score_names_its_query():
    shortlist, pairwise = _matrices(4)
    items = torch.arange(N_IMG), torch.arange(CAPS * N_IMG)
    broken = pairwise.clone()
    broken[2, 7] = float("nan")  # every caption is shortlisted: image queries 0 and 1 pass, 2 fails
    with pytest.raises(ValueError, match=r"1 non-finite .*the shortlist of image query 2$"):
        rerank(_lookup(broken), *items, shortlist, CAPS * N_IMG)
    with pytest.raises(ValueError, match=r"shape \(1, 1\) for the shortlist of caption query 0; expected \(3, 1\)"):
        rerank(lambda images, captions: pairwise[images[:1]][:, captions], *items, shortlist, 3)


@pytest.fixture(scope="module")
def trained(one_process_runs) -> tuple[Path, Path]:
    """(MVSEN run, VSE∞ run): the session's small trained runs (conftest)."""
    return one_process_runs / "mvsen", one_process_runs / "vse"


def _stamp(path: Path) -> tuple[int, int] | None:
    return (path.stat().st_size, path.stat().st_mtime_ns) if path.exists() else None


def test_the_eval_command_reranks_a_shortlist_and_writes_its_own_file(trained, capsys):
    mvsen, vse = trained
    own_evaluation = _stamp(mvsen / "eval-f30k1k.json")
    assert main(["eval", "--run", str(mvsen), "--protocol", "f30k1k", "--rerank-with", str(vse), "--shortlist", "3",
                 "--no-progress"]) == 0
    result = json.loads((mvsen / "two-stage-f30k1k-vse-m3.json").read_text())
    assert result["shortlist"] == 3 and result["shortlist_run"] == str(vse)
    assert result["timing"]["pairs_scored"] == 40 * 3 + 200 * 3  # each query's shortlist, once
    assert own_evaluation == _stamp(mvsen / "eval-f30k1k.json")  # the run's own ranking is another file
    assert "f30k1k" in capsys.readouterr().out


def test_a_shortlist_of_the_whole_gallery_ranks_as_the_pairwise_model(trained):
    mvsen, vse = trained
    whole = evaluate_two_stage(mvsen, ["f30k1k"], rerank_with=vse, shortlist=10**6, progress=False)["f30k1k"]
    own = evaluate_run_protocols(mvsen, ["f30k1k"], progress=False)["f30k1k"]
    assert whole["timing"]["pairs_scored"] == 2 * 40 * 200
    # the same pair scores, computed in (1, m) and (m, 1) blocks instead of one matrix: equal to rounding, so at
    # most a near-tie may order differently (one query moves R@K by 0.5 to 2.5 points)
    assert whole["metrics"]["rsum"] == pytest.approx(own["metrics"]["rsum"], abs=2.5)
    differing = sum(a != b for d in ("i2t", "t2i") for a, b in zip(whole["ranks"][d], own["ranks"][d], strict=True))
    assert differing <= 1


def test_a_fresh_two_stage_result_is_reused_and_a_changed_shortlist_run_is_evaluated_again(trained, tmp_path):
    mvsen, vse = trained
    shortlist_run = tmp_path / "vse"
    shutil.copytree(vse, shortlist_run)
    saved = mvsen / "two-stage-f30k1k-vse-m2.json"
    first = evaluate_two_stage(mvsen, ["f30k1k"], rerank_with=shortlist_run, shortlist=2, progress=False)["f30k1k"]
    written = _stamp(saved)
    again = evaluate_two_stage(mvsen, ["f30k1k"], rerank_with=shortlist_run, shortlist=2, progress=False,
                               reuse=True)["f30k1k"]
    assert _stamp(saved) == written and again == first
    best = shortlist_run / "best.pt"
    os.utime(best, ns=(best.stat().st_atime_ns, best.stat().st_mtime_ns + 10**9))  # the shortlist run retrained
    evaluate_two_stage(mvsen, ["f30k1k"], rerank_with=shortlist_run, shortlist=2, progress=False, reuse=True)
    assert _stamp(saved) != written
    saved.write_text("{not json", encoding="utf-8")  # unreadable: evaluated again
    evaluate_two_stage(mvsen, ["f30k1k"], rerank_with=shortlist_run, shortlist=2, progress=False, reuse=True)
    assert json.loads(saved.read_text())["shortlist_stamp"] == file_stamp(best)


@pytest.mark.parametrize(("extra", "message"), [
    (["--shortlist", "3"], "--rerank-with and --shortlist go together"),
    (["--rerank-with", "RUN"], "--rerank-with and --shortlist go together"),
    (["--rerank-with", "RUN", "--shortlist", "3", "--checkpoint", "last"], "--checkpoint cannot be used with it"),
    (["--rerank-with", "RUN", "--shortlist", "0"], "--shortlist must be at least 1"),
])
def test_two_stage_options_that_cannot_work_are_named(trained, capsys, extra, message):
    mvsen, vse = trained
    extra = [str(vse) if a == "RUN" else a for a in extra]
    assert main(["eval", "--run", str(mvsen), "--protocol", "f30k1k", "--no-progress", *extra]) == 2
    assert message in capsys.readouterr().err
