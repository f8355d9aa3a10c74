"""Paired bootstrap of rSum differences over the test images, against a slow per-replicate reference."""

import json

import numpy as np
import pytest

from itrlib.cli import main
from itrlib.errors import DataError
from itrlib.evaluation.metrics import recall_summary
from itrlib.evaluation.ranking import evaluate_scores
from itrlib.evaluation.significance import bootstrap_means, paired_bootstrap, per_image_rsum_terms


def _scores(n_img: int, signal: float, seed: int) -> np.ndarray:
    """(n_img, 5 n_img) scores: noise plus ``signal`` on each image's own captions (numpy's generator: the same
    numbers on every machine)."""
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((n_img, 5 * n_img))
    scores[np.arange(5 * n_img) // 5, np.arange(5 * n_img)] += signal
    return scores


def _rsum(i2t: np.ndarray, t2i: np.ndarray) -> float:
    return sum(recall_summary(r)[f"r{k}"] for r in (i2t, t2i) for k in (1, 5, 10))


def _reference_replicates(a: dict, b: dict, samples: int, seed: int) -> np.ndarray:
    """Each replicate resampled image by image (the same multinomial draws), then both rSums recomputed."""
    n = a["n_images"]
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=samples)
    out = []
    for row in counts:
        images = np.repeat(np.arange(n), row)
        captions = (images[:, None] * 5 + np.arange(5)).ravel()
        rsums = [_rsum(np.asarray(r["ranks"]["i2t"])[images], np.asarray(r["ranks"]["t2i"])[captions]) for r in (a, b)]
        out.append(rsums[0] - rsums[1])
    return np.array(out)


@pytest.mark.parametrize("protocol", ["f30k1k", "coco1k"])
def test_the_observed_difference_is_the_rsum_difference_of_the_protocol(protocol):
    a = evaluate_scores(_scores(50, 2.0, seed=1), protocol)
    b = evaluate_scores(_scores(50, 1.0, seed=2), protocol)
    found = paired_bootstrap(a, b, samples=200)
    assert found.difference == pytest.approx(a["metrics"]["rsum"] - b["metrics"]["rsum"], abs=1e-9)
    assert per_image_rsum_terms(a["ranks"]["i2t"], a["ranks"]["t2i"]).mean() == pytest.approx(
        a["metrics"]["rsum"], abs=1e-9)


def test_the_replicates_equal_a_resampling_of_images_and_their_captions():
    a = evaluate_scores(_scores(20, 1.5, seed=3), "f30k1k")
    b = evaluate_scores(_scores(20, 1.0, seed=4), "f30k1k")
    x = (per_image_rsum_terms(a["ranks"]["i2t"], a["ranks"]["t2i"])
         - per_image_rsum_terms(b["ranks"]["i2t"], b["ranks"]["t2i"]))
    np.testing.assert_allclose(bootstrap_means(x, 50, seed=7), _reference_replicates(a, b, 50, seed=7),
                               rtol=0, atol=1e-9)


def test_a_clear_gain_is_significant_and_noise_against_noise_is_not():
    strong = evaluate_scores(_scores(100, 3.0, seed=5), "f30k1k")
    weak = evaluate_scores(_scores(100, 0.5, seed=6), "f30k1k")
    gain = paired_bootstrap(strong, weak)
    assert gain.significant and gain.low > 0 and gain.low < gain.difference < gain.high
    twin = evaluate_scores(_scores(100, 0.5, seed=8), "f30k1k")  # same method, another draw of the noise
    noise = paired_bootstrap(twin, weak)
    assert noise.low < 0 < noise.high and not noise.significant


def test_evaluations_of_other_splits_or_sizes_are_refused():
    a = evaluate_scores(_scores(10, 1.0, seed=1), "f30k1k")
    b = evaluate_scores(_scores(10, 1.0, seed=2), "coco5k")
    with pytest.raises(DataError, match="evaluations differ in protocol"):
        paired_bootstrap(a, b)
    with pytest.raises(DataError, match="5 caption queries per image"):
        per_image_rsum_terms([0, 1], [0, 1, 2])


def test_compare_reads_two_evaluated_runs_and_names_a_missing_evaluation(tmp_path, capsys):
    for name, signal, seed in (("strong", 3.0, 5), ("weak", 0.5, 6)):
        (tmp_path / name).mkdir()
        result = evaluate_scores(_scores(100, signal, seed), "f30k1k")
        (tmp_path / name / "eval-f30k1k.json").write_text(json.dumps(result), encoding="utf-8")
    argv = ["compare", "--run", str(tmp_path / "strong"), str(tmp_path / "weak"), "--protocol", "f30k1k"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)["f30k1k"]
    assert printed["significant"] and printed["low"] > 0
    assert printed["rsum_difference"] == pytest.approx(paired_bootstrap(
        *(json.loads((tmp_path / n / "eval-f30k1k.json").read_text()) for n in ("strong", "weak"))).difference)
    assert main([*argv[:-1], "coco5k"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "eval-coco5k.json does not exist: evaluate the run first" in err[0]


def test_several_seeds_compare_their_mean_rsums():
    strong = [evaluate_scores(_scores(60, 2.5, seed=s), "f30k1k") for s in (10, 11, 12)]
    weak = [evaluate_scores(_scores(60, 1.0, seed=s), "f30k1k") for s in (20, 21)]
    found = paired_bootstrap(strong, weak, samples=300)
    means = [np.mean([r["metrics"]["rsum"] for r in runs]) for runs in (strong, weak)]
    assert found.difference == pytest.approx(means[0] - means[1], abs=1e-9)
    assert paired_bootstrap(strong[:1], weak[:1], samples=50) == paired_bootstrap(strong[0], weak[0], samples=50)
