"""AFA studies: run naming shared with notebook 01, sweep ratios per profile, the Fig. 3 table."""

import pytest

from itrlib.models.afa import ABLATION_ROWS, TOPK_RATIOS, AFAConfig
from itrlib.studies.afa import (
    PRINTED_EQ7_ROW,
    ablation_rows,
    ablation_run_name,
    sweep_ratios,
    topk_run_name,
    topk_sweep_table,
)


def test_full_model_is_the_shared_afa_run_and_other_rows_get_their_own_folders():
    rows = ablation_rows()
    assert set(ABLATION_ROWS) < set(rows) and rows[PRINTED_EQ7_ROW] == ["model.mixed_positive=real"]
    names = {row: ablation_run_name(row) for row in rows}
    assert names["I+II+III+IV"] == "afa"
    assert len(set(names.values())) == len(names)
    assert topk_run_name(AFAConfig.merge_ratio) == "afa"
    assert len({topk_run_name(r) for r in TOPK_RATIOS}) == len(TOPK_RATIOS)


def test_smoke_sweeps_two_points_and_other_profiles_the_whole_range():
    assert sweep_ratios("smoke") == (0.0, AFAConfig.merge_ratio)
    assert sweep_ratios("embedded") == TOPK_RATIOS


def _result(rsum_offset):
    metrics = {"i2t_r1": 10.0 + rsum_offset, "i2t_r5": 20.0, "i2t_r10": 30.0, "t2i_r1": 5.0, "t2i_r5": 15.0,
               "t2i_r10": 25.0}
    return {"metrics": {**metrics, "rsum": sum(metrics.values())}}


def test_topk_table_has_a_row_per_ratio_and_protocol_with_k_of_36_regions():
    results = {r: {"f30k1k": _result(i), "coco1k": _result(2 * i)} for i, r in enumerate(TOPK_RATIOS)}
    table = topk_sweep_table(results)
    assert len(table) == 2 * len(TOPK_RATIOS)
    f30k = table[table["protocol"] == "f30k1k"]
    assert list(f30k["k (36 regions)"]) == [0, 4, 9, 13, 18]
    assert list(f30k["rSum"]) == pytest.approx([105.0 + i for i in range(len(TOPK_RATIOS))])
