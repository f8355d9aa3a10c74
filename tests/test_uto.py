"""UTO loss (USER eq. 17-21) against a float64 double-loop reference written from the equations."""

from __future__ import annotations

import math

import pytest
import torch

from itrlib.losses.uto import uto_loss
from itrlib.nn.functional import l2norm

B, E, Q = 5, 8, 7


def _unit(*shape: int, seed: int) -> torch.Tensor:
    return l2norm(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)))


def _inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    return {"images": _unit(B, E, seed=seed), "captions": _unit(B, E, seed=seed + 1),
            "key_images": _unit(B, E, seed=seed + 2), "key_captions": _unit(B, E, seed=seed + 3),
            "image_queue": _unit(Q, E, seed=seed + 4), "caption_queue": _unit(Q, E, seed=seed + 5)}


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def _reference(t: dict[str, torch.Tensor], gamma: float, margin: float, lam: float, diagonal: str,
               positive: str, dvq: bool, dtq: bool) -> dict[str, float]:
    """Slow float64 loops: naive exp and log, exactly as eq. 17-21 (plus the official variants) read."""
    v, w = t["images"].double().tolist(), t["captions"].double().tolist()
    n = len(v)
    s = [[_dot(v[i], w[j]) for j in range(n)] for i in range(n)]

    def term(x: float) -> float:
        return math.exp(gamma * (x - margin))

    def pos(x: float) -> float:
        return math.log(1 + (max(x, 0.0) if positive == "relu" else x))

    def diag_extra() -> float:
        return term(0.0) if diagonal == "zeroed" else 0.0

    mini = 0.0
    for i in range(n):
        col = sum(term(s[m][i]) for m in range(n) if m != i) + diag_extra()
        row = sum(term(s[i][k]) for k in range(n) if k != i) + diag_extra()
        mini += math.log(1 + col) / gamma + math.log(1 + row) / gamma - pos(s[i][i])
    mini /= n
    dvq_sum = dtq_sum = 0.0
    vk, wk = t["key_images"].double().tolist(), t["key_captions"].double().tolist()
    qv, qw = t["image_queue"].double().tolist(), t["caption_queue"].double().tolist()
    for i in range(n):
        if dvq:
            dvq_sum += math.log(1 + sum(term(_dot(q, w[i])) for q in qv)) / gamma - pos(_dot(vk[i], w[i]))
        if dtq:
            dtq_sum += math.log(1 + sum(term(_dot(v[i], q)) for q in qw)) / gamma - pos(_dot(v[i], wk[i]))
    dvq_mean, dtq_mean = dvq_sum / n, dtq_sum / n
    return {"mini": mini, "dvq": dvq_mean, "dtq": dtq_mean, "loss": lam * mini + dvq_mean + dtq_mean}


def _assert_close(got: dict[str, torch.Tensor], ref: dict[str, float], tol: float = 1e-5) -> None:
    for name, value in ref.items():
        assert got[name].dtype == torch.float32
        assert abs(got[name].item() - value) <= tol * max(1.0, abs(value)), (name, got[name].item(), value)


@pytest.mark.parametrize(("dvq", "dtq"), [(True, True), (False, False), (True, False), (False, True)])
@pytest.mark.parametrize("positive", ["relu", "raw"])
@pytest.mark.parametrize("diagonal", ["zeroed", "excluded"])
@pytest.mark.parametrize("gamma", [90.0, 10.0, 1.0])
def test_matches_double_loop_reference(gamma: float, diagonal: str, positive: str, dvq: bool, dtq: bool) -> None:
    t = _inputs()
    given = {"images": t["images"], "captions": t["captions"]}
    if dvq:
        given |= {"key_images": t["key_images"], "image_queue": t["image_queue"]}
    if dtq:
        given |= {"key_captions": t["key_captions"], "caption_queue": t["caption_queue"]}
    got = uto_loss(**given, gamma=gamma, margin=0.5, mini_batch_weight=20.0, diagonal=diagonal,
                   positive=positive, dvq=dvq, dtq=dtq)
    _assert_close(got, _reference(t, gamma, 0.5, 20.0, diagonal, positive, dvq, dtq))


def test_relu_and_raw_differ_on_negative_positives() -> None:
    t = _inputs()
    t["captions"][:2] *= -1  # make two positives negative
    pos = (t["images"].double() * t["captions"].double()).sum(dim=1)
    assert (pos < 0).any() and (pos > 0).any()
    relu, raw = uto_loss(**t, positive="relu"), uto_loss(**t, positive="raw")
    gap = -torch.log1p(pos.clamp(max=0)).mean().item()  # raw - relu: only negative positives differ
    assert gap > 1e-2
    assert abs(raw["mini"].item() - relu["mini"].item() - gap) < 1e-5


def test_zeroed_and_excluded_diagonal() -> None:
    t = _inputs()
    zeroed, excluded = uto_loss(**t, diagonal="zeroed"), uto_loss(**t, diagonal="excluded")
    scale = max(1.0, abs(excluded["loss"].item()))
    # analytically they differ by < 1e-18 (the e^-45 terms); in float32 the extra term can only move a rounding
    # of the logsumexp, so allow a few float32 ulps rather than asking the two computations for the same bits
    assert abs(zeroed["loss"].item() - excluded["loss"].item()) < 1e-6 * scale
    zeroed, excluded = (uto_loss(**t, gamma=1.0, diagonal=d) for d in ("zeroed", "excluded"))
    assert zeroed["mini"].item() - excluded["mini"].item() > 1e-2  # the extra e^{-0.5} term per sum
    assert zeroed["dvq"].item() == excluded["dvq"].item()  # queue terms have no diagonal


@pytest.mark.parametrize("margin", [0.5, 0.0])
def test_no_overflow_with_identical_embeddings(margin: float) -> None:
    one = _unit(1, E, seed=3)
    t = {k: one.expand(B if k in ("images", "captions", "key_images", "key_captions") else Q, E).clone()
         for k in ("images", "captions", "key_images", "key_captions", "image_queue", "caption_queue")}
    scores = t["images"] @ t["captions"].T
    naive16 = torch.log1p(torch.exp(90 * (scores.half() - margin)).sum(dim=1)) / 90
    assert torch.isinf(naive16).all()  # fp16 overflows already at the official gamma=90, margin=0.5
    if margin == 0.0:  # S ~ 1: exp(90) > float32 max
        naive32 = torch.log1p(torch.exp(90 * (scores - margin)).sum(dim=1)) / 90
        assert torch.isinf(naive32).all()
    for diagonal in ("zeroed", "excluded"):
        got = uto_loss(**t, gamma=90.0, margin=margin, diagonal=diagonal)
        assert all(torch.isfinite(v) for v in got.values())
        _assert_close(got, _reference(t, 90.0, margin, 20.0, diagonal, "relu", True, True))


def test_float32_under_bf16_autocast() -> None:
    t = {k: v.bfloat16() for k, v in _inputs().items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = uto_loss(**t)
    want = uto_loss(**{k: v.float() for k, v in t.items()})
    for name in want:
        assert got[name].dtype == torch.float32
        assert torch.isfinite(got[name])
        torch.testing.assert_close(got[name], want[name], rtol=1e-6, atol=1e-6)


def test_gradients_reach_queries_only() -> None:
    t = {k: v.clone().requires_grad_(True) for k, v in _inputs().items()}
    uto_loss(**t, gamma=10.0)["loss"].backward()
    for name in ("images", "captions"):
        assert t[name].grad is not None and t[name].grad.abs().sum() > 0
    for name in ("key_images", "key_captions", "image_queue", "caption_queue"):
        assert t[name].grad is None


def test_weighting_and_no_queues() -> None:
    t = _inputs()
    got = uto_loss(**t, mini_batch_weight=3.0)
    torch.testing.assert_close(got["mini_batch"], 3.0 * got["mini"])
    torch.testing.assert_close(got["loss"], got["mini_batch"] + got["dvq"] + got["dtq"])
    only = uto_loss(t["images"], t["captions"], mini_batch_weight=3.0, dvq=False, dtq=False)
    assert only["dvq"].item() == only["dtq"].item() == 0.0
    torch.testing.assert_close(only["loss"], 3.0 * got["mini"])


@pytest.mark.parametrize(("change", "match"), [
    ({"diagonal": "none"}, "diagonal"),
    ({"positive": "abs"}, "positive"),
    ({"gamma": 0.0}, "gamma"),
    ({"captions": torch.zeros(B, E + 1)}, "captions"),
    ({"images": torch.zeros(E)}, "images"),
    ({"key_images": torch.zeros(B + 1, E)}, "key_images"),
    ({"key_captions": None}, "key_captions"),
    ({"image_queue": torch.zeros(Q, E + 1)}, "image_queue"),
    ({"caption_queue": torch.zeros(Q)}, "caption_queue"),
])
def test_bad_options_and_shapes(change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        uto_loss(**{**_inputs(), **change})
