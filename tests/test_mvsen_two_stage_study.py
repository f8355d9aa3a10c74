"""The two-stage study's arithmetic (notebook mvsen/07): pairs a shortlist scores, when it covers the gallery,
full scoring's time per protocol, and the first M within a point of full scoring."""

import pandas as pd
import pytest

from itrlib.suite.studies.mvsen_two_stage import (
    FULL,
    check_lines,
    covers_gallery,
    enough_shortlist,
    full_scoring_seconds,
    shortlist_pairs,
)

COCO1K = {"protocol": "coco1k", "n_images": 50, "n_captions": 250}  # 5 folds of 10 images x 50 captions
COCO5K = {"protocol": "coco5k", "n_images": 50, "n_captions": 250}  # one block of 50 x 250


@pytest.mark.parametrize(("result", "size", "pairs"), [
    (COCO1K, 2, 5 * (10 * 2 + 50 * 2)), (COCO1K, 8, 5 * (10 * 8 + 50 * 8)), (COCO1K, 64, 5 * (10 * 50 + 50 * 10)),
    (COCO5K, 64, 50 * 64 + 250 * 50), (COCO5K, 300, 2 * 50 * 250)])
def test_a_shortlist_scores_min_m_gallery_items_per_query_and_direction(result, size, pairs):
    assert shortlist_pairs(result, size) == pairs


def test_a_shortlist_covers_the_gallery_only_when_it_holds_every_caption_of_each_block():
    assert covers_gallery(COCO1K, 50) and not covers_gallery(COCO1K, 49)
    assert covers_gallery(COCO5K, 250) and not covers_gallery(COCO5K, 64)


def test_full_scoring_time_counts_the_protocols_own_pairs_at_the_measured_rate():
    timing = {"encode_s": 1.0, "score_s": 10.0, "rank_s": 0.5, "pairs_scored": 50 * 250}
    seconds, pairs = full_scoring_seconds({**COCO1K, "timing": timing})
    assert pairs == 5 * 10 * 50 and seconds == pytest.approx(1.0 + 10.0 * pairs / (50 * 250) + 0.5)
    assert full_scoring_seconds({**COCO5K, "timing": timing}) == (pytest.approx(11.5), 50 * 250)


def _rows(within: dict) -> pd.DataFrame:
    rows = [{"model": "MVSEN t2i", "protocol": "coco5k", "shortlist": FULL, "rsum": 300.0, "within_1": True,
             "seconds": 60.0}]
    rows += [{"model": "MVSEN t2i", "protocol": "coco5k", "shortlist": m, "rsum": 300.0 + (0 if ok else 5),
              "within_1": ok, "seconds": float(m)} for m, ok in within.items()]
    return pd.DataFrame(rows)


def test_the_enough_m_is_the_smallest_from_which_every_larger_m_is_within_a_point():
    first = enough_shortlist(_rows({16: True, 32: False, 64: True, 128: True})).iloc[0]
    assert (first["enough_m"], first["seconds"], first["full_seconds"]) == (64, 64.0, 60.0)
    assert enough_shortlist(_rows({16: True, 32: False})).iloc[0]["enough_m"] == FULL


def test_the_notebook_checks_fail_on_a_wrong_pair_count_and_on_a_gallery_wide_shortlist_off_full_scoring():
    results = {"MVSEN t2i": {"coco1k": COCO1K}}
    rows = [{"model": "MVSEN t2i", "protocol": "coco1k", "shortlist": FULL, "rsum": 400.0, "rsum_vs_full": 0.0,
             "seconds": 2.0, "pairs_scored": 2500},
            {"model": "MVSEN t2i", "protocol": "coco1k", "shortlist": 8, "rsum": 420.0, "rsum_vs_full": 20.0,
             "seconds": 1.0, "pairs_scored": shortlist_pairs(COCO1K, 8)},
            {"model": "MVSEN t2i", "protocol": "coco1k", "shortlist": 64, "rsum": 400.5, "rsum_vs_full": 0.5,
             "seconds": 1.5, "pairs_scored": shortlist_pairs(COCO1K, 64)}]
    assert [line.rsplit(": ", 1)[1] for line in check_lines(pd.DataFrame(rows), results)] == ["True"] * 3
    rows[1]["pairs_scored"] += 1
    rows[2]["rsum_vs_full"] = 2.5
    assert [line.rsplit(": ", 1)[1] for line in check_lines(pd.DataFrame(rows), results)] == ["False", "True", "False"]
