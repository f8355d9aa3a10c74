"""SGE and CGE against per-sample, per-region loop references written from USER eq. 1-8 and the official code's
choices (slot BatchNorm, BN before Tanh, L2-normalised attention)."""

import math

import pytest
import torch
from torch import nn

from itrlib.config import load_config
from itrlib.errors import ConfigError
from itrlib.nn.functional import flush_subnormals, l2norm
from itrlib.nn.user_semantic_enhancement import CGE, SGE, global_enhance, masked_softmax

EPS_NORM = 1e-8  # l2norm adds eps to the norm


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / (x.pow(2).sum().sqrt() + EPS_NORM)


def bn_apply(bn: nn.BatchNorm1d, x: torch.Tensor, channel: int | None, mean, var) -> torch.Tensor:
    """BatchNorm of x with given statistics; channel=None: x is a feature vector (one channel per entry)."""
    if channel is None:
        return (x - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias
    return (x - mean[channel]) / torch.sqrt(var[channel] + bn.eps) * bn.weight[channel] + bn.bias[channel]


def batch_stats(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    stacked = torch.stack(rows)
    mean = stacked.mean(0)
    return mean, ((stacked - mean) ** 2).mean(0)


def reference_attention(v: torch.Tensor, n: int, g: torch.Tensor, norm: str, scale: float) -> torch.Tensor:
    """One sample: regions v (K, D) of which n valid, unit global g (D,) -> (K, D), eq. 5-6 region by region."""
    logits = [scale * float(g @ v[i]) for i in range(n)]
    top = max(logits)
    exps = [math.exp(z - top) for z in logits]
    a = [e / sum(exps) for e in exps]
    if norm == "l2":
        length = math.sqrt(sum(x * x for x in a)) + EPS_NORM
        a = [x / length for x in a]
    return torch.stack([v[i] + a[i] * g if i < n else v[i] for i in range(v.shape[0])])


def reference_sge(sge: SGE, regions: torch.Tensor, lengths: torch.Tensor, batch: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(out (B, K, D), v_glo (B, D)); dropout off; BN with running stats, or batch stats when ``batch``."""
    b_size, k_size, _ = regions.shape
    ns = lengths.tolist()
    v_aves = [regions[b, :n].mean(0) for b, n in enumerate(ns)]
    g_pre = [sge.global_fc.weight @ x + sge.global_fc.bias for x in v_aves]
    # local pre-activations; padded slots see a zero vector (the module's documented convention)
    h = [[sge.local_fc.weight @ (regions[b, i] if i < n else torch.zeros_like(regions[b, i])) + sge.local_fc.bias
          for i in range(k_size)] for b, n in enumerate(ns)]
    g_mean, g_var = batch_stats(g_pre) if batch else (sge.global_bn.running_mean, sge.global_bn.running_var)
    if sge.local_norm == "slot":
        if batch:  # one channel per slot, statistics over batch x D (padded slots included)
            stats = [batch_stats([h[b][k][d] for b in range(b_size) for d in range(h[b][k].shape[0])])
                     for k in range(k_size)]
            l_mean, l_var = torch.stack([s[0] for s in stats]), torch.stack([s[1] for s in stats])
        else:
            l_mean, l_var = sge.local_bn.running_mean, sge.local_bn.running_var
    else:  # one channel per feature, statistics over the valid regions only
        l_mean, l_var = (batch_stats([h[b][i] for b, n in enumerate(ns) for i in range(n)]) if batch
                         else (sge.local_bn.running_mean, sge.local_bn.running_var))
    outs, globs = [], []
    for b, n in enumerate(ns):
        g = torch.tanh(bn_apply(sge.global_bn, g_pre[b], None, g_mean, g_var))
        scores = []
        for i in range(n):
            channel = i if sge.local_norm == "slot" else None
            r = g * torch.tanh(bn_apply(sge.local_bn, h[b][i], channel, l_mean, l_var))
            scores.append(float(sge.score.weight[0] @ r + sge.score.bias[0]))
        top = max(scores)
        exps = [math.exp(z - top) for z in scores]
        s = [e / sum(exps) for e in exps]
        v_glo = unit(sum(s[i] * regions[b, i] for i in range(n)))
        globs.append(v_glo)
        outs.append(reference_attention(regions[b], n, v_glo, sge.attention_norm, sge.attention_scale))
    return torch.stack(outs), torch.stack(globs)


def reference_cge(cge: CGE, regions: torch.Tensor, lengths: torch.Tensor, clip: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval mode, one sample at a time: eq. 8 then eq. 5-6."""
    outs, globs = [], []
    for b, n in enumerate(lengths.tolist()):
        c = bn_apply(cge.clip_bn, clip[b], None, cge.clip_bn.running_mean, cge.clip_bn.running_var)
        h = cge.fc1.weight @ c + cge.fc1.bias
        h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
        h = bn_apply(cge.hidden_bn, h, None, cge.hidden_bn.running_mean, cge.hidden_bn.running_var)
        g = unit(cge.fc2.weight @ h + cge.fc2.bias)
        globs.append(g)
        outs.append(reference_attention(regions[b], n, g, cge.attention_norm, cge.attention_scale))
    return torch.stack(outs), torch.stack(globs)


def randomise_bn(module: nn.Module) -> None:
    """Non-trivial running statistics and affine parameters, so the eval-mode references test them."""
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, nn.BatchNorm1d):
                bn.running_mean.normal_(0, 0.3)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.normal_(0, 0.2)


LENGTHS = torch.tensor([6, 2, 1, 4, 6])
FULL = torch.full_like(LENGTHS, 6)


def make_regions(k: int = 6, d: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(len(LENGTHS), k, d, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("local_norm", ["slot", "feature"])
@pytest.mark.parametrize("attention_norm", ["l2", "softmax"])
@pytest.mark.parametrize("lengths", [LENGTHS, FULL], ids=["padded", "every region valid"])
def test_sge_matches_loop_reference_in_eval(local_norm, attention_norm, lengths):
    torch.manual_seed(1)
    sge = SGE(8, num_slots=6, local_norm=local_norm, attention_norm=attention_norm, attention_scale=1.7)
    randomise_bn(sge)
    sge.eval()
    regions = make_regions()
    with torch.no_grad():
        ref_out, ref_glo = reference_sge(sge, regions, lengths)
        torch.testing.assert_close(sge.global_vector(regions, lengths), ref_glo, atol=1e-5, rtol=0)
        torch.testing.assert_close(sge(regions, lengths), ref_out, atol=1e-5, rtol=0)


@pytest.mark.parametrize("local_norm", ["slot", "feature"])
@pytest.mark.parametrize("lengths", [LENGTHS, FULL], ids=["padded", "every region valid"])
def test_sge_training_mode_uses_batch_statistics(local_norm, lengths):
    torch.manual_seed(2)
    sge = SGE(8, num_slots=6, local_norm=local_norm, dropout=0.0)
    sge.train()
    regions = make_regions(seed=3)
    with torch.no_grad():
        ref_out, ref_glo = reference_sge(sge, regions, lengths, batch=True)
        torch.testing.assert_close(sge.global_vector(regions, lengths), ref_glo, atol=1e-5, rtol=0)
        torch.testing.assert_close(sge(regions, lengths), ref_out, atol=1e-5, rtol=0)


def test_slot_norm_statistics_are_per_slot_over_batch_and_features():
    torch.manual_seed(4)
    sge = SGE(8, num_slots=6, local_norm="slot", dropout=0.0)
    regions = make_regions(seed=5)
    valid = torch.arange(6).unsqueeze(0) < LENGTHS.unsqueeze(1)
    with torch.no_grad():
        hidden = sge.local_fc(regions * valid.unsqueeze(-1))
        sge.global_vector(regions, LENGTHS)
    assert sge.local_bn.running_mean.shape == (6,)
    for k in range(6):
        values = hidden[:, k, :].reshape(-1)
        assert float(sge.local_bn.running_mean[k]) == pytest.approx(0.1 * float(values.mean()), abs=1e-6)
        assert float(sge.local_bn.running_var[k]) == pytest.approx(0.9 + 0.1 * float(values.var()), abs=1e-6)


def test_slot_norm_rejects_other_region_counts():
    sge = SGE(8, num_slots=36)
    with pytest.raises(ValueError, match="num_slots"):
        sge(torch.randn(2, 10, 8), torch.tensor([10, 4]))



def test_the_norm_choices_are_checked_where_they_enter_the_config():
    with pytest.raises(ConfigError, match="sge_local_norm"):
        load_config("user_smoke", ["model.sge_local_norm=layer"])
    with pytest.raises(ConfigError, match="attention_norm"):
        load_config("user_smoke", ["model.attention_norm=sum"])


@pytest.mark.parametrize("attention_norm", ["l2", "softmax"])
def test_cge_matches_loop_reference_in_eval(attention_norm):
    torch.manual_seed(6)
    cge = CGE(8, clip_dim=5, hidden=12, attention_norm=attention_norm, attention_scale=0.6)
    randomise_bn(cge)
    cge.eval()
    regions = make_regions(seed=7)
    clip = torch.randn(len(LENGTHS), 5)
    with torch.no_grad():
        ref_out, ref_glo = reference_cge(cge, regions, LENGTHS, clip)
        torch.testing.assert_close(cge.global_vector(clip), ref_glo, atol=1e-5, rtol=0)
        torch.testing.assert_close(cge(regions, LENGTHS, clip), ref_out, atol=1e-5, rtol=0)


def test_padding_gets_zero_weight_and_never_changes_valid_outputs():
    torch.manual_seed(8)
    valid = torch.arange(6).unsqueeze(0) < LENGTHS.unsqueeze(1)
    scores = torch.randn(len(LENGTHS), 6)
    weights = masked_softmax(scores, valid)
    assert torch.all(weights[~valid] == 0)
    torch.testing.assert_close(weights.sum(1), torch.ones(len(LENGTHS)))
    regions = make_regions(seed=9)
    changed = torch.where(valid.unsqueeze(-1), regions, 100 * torch.randn_like(regions))
    modules = [SGE(8, num_slots=6, local_norm=n, dropout=0.0) for n in ("slot", "feature")]
    cge = CGE(8, clip_dim=5, hidden=12)
    clip = torch.randn(len(LENGTHS), 5)
    for train in (True, False):
        with torch.no_grad():
            for module in [*modules, cge]:
                module.train(train)
                args = (LENGTHS,) if isinstance(module, SGE) else (LENGTHS, clip)
                out, out_changed = module(regions, *args), module(changed, *args)
                torch.testing.assert_close(out[valid], out_changed[valid], atol=1e-5, rtol=0)
                assert torch.equal(out_changed[~valid], changed[~valid])  # padded rows pass through


def test_global_enhance_attention_norms():
    regions = make_regions(seed=10)
    g = nn.functional.normalize(torch.randn(len(LENGTHS), 8), dim=-1)
    valid = torch.arange(6).unsqueeze(0) < LENGTHS.unsqueeze(1)
    for norm, target in (("softmax", lambda a: a.sum(1)), ("l2", lambda a: a.norm(dim=1))):
        added = global_enhance(regions, LENGTHS, g, attention_norm=norm) - regions
        attn = (added * g.unsqueeze(1)).sum(-1)  # a_i, since g has unit norm
        torch.testing.assert_close(target(attn), torch.ones(len(LENGTHS)), atol=1e-5, rtol=0)
        assert torch.all(attn[~valid] == 0)


def test_initialisation():
    sge, cge = SGE(64, num_slots=6), CGE(64, clip_dim=32, hidden=48)
    for layer in (sge.local_fc, sge.global_fc, sge.score, cge.fc1, cge.fc2):
        bound = math.sqrt(6 / (layer.in_features + layer.out_features))
        assert layer.weight.abs().max() <= bound
        assert layer.weight.abs().max() > 0.8 * bound
        assert torch.all(layer.bias == 0)
    for bn in (sge.local_bn, sge.global_bn, cge.clip_bn, cge.hidden_bn):
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    assert sge.dropout.p == 0.4 and sge.local_norm == "slot" and sge.attention_norm == "l2"
    assert sge.attention_scale == 1.0 and cge.attention_norm == "l2"


def test_cge_depends_on_the_clip_vector():
    torch.manual_seed(11)
    cge = CGE(8, clip_dim=5, hidden=12)
    randomise_bn(cge)
    cge.eval()
    regions, clip = make_regions(seed=12), torch.randn(len(LENGTHS), 5)
    with torch.no_grad():
        out = cge(regions, LENGTHS, clip)
        assert torch.equal(out, cge(regions, LENGTHS, clip.clone()))
        other = cge(regions, LENGTHS, clip + torch.randn_like(clip))
    valid = torch.arange(6).unsqueeze(0) < LENGTHS.unsqueeze(1)
    assert (out[valid] - other[valid]).abs().max() > 1e-3


def analytically_zero_gradients(module: nn.Module) -> set[str]:
    """Parameters whose gradient is exactly 0 in exact arithmetic in training mode: a constant shift that a
    softmax or a batch-statistics BatchNorm right after it removes again.

    - ``score.bias`` adds the same value to every region's score before the softmax;
    - ``global_fc.bias`` feeds ``global_bn``, which subtracts its batch mean per feature;
    - ``local_fc.bias`` with ``local_norm="feature"``: ``local_bn`` has one channel per feature, so likewise
      (with ``"slot"`` its channels are the slots, a per-feature bias is not constant within one: non-zero).
    In float32 these gradients are round-off (0 or about 1e-7, depending on the CPU's kernels).
    """
    if isinstance(module, CGE):
        return set()  # fc1.bias meets GELU before hidden_bn, fc2.bias meets l2norm: all non-zero
    return {"score.bias", "global_fc.bias"} | ({"local_fc.bias"} if module.local_norm == "feature" else set())


def test_outputs_finite_and_gradients_reach_every_parameter_that_has_one():
    torch.manual_seed(13)
    regions = make_regions(seed=14).requires_grad_()
    clip = torch.randn(len(LENGTHS), 5)
    cases = [(SGE(8, num_slots=6, local_norm=n, attention_norm=a), (LENGTHS,))
             for n in ("slot", "feature") for a in ("l2", "softmax")]
    cases.append((CGE(8, clip_dim=5, hidden=12), (LENGTHS, clip)))
    for module, args in cases:
        module.train()
        out = module(regions, *args)
        assert out.shape == regions.shape and torch.isfinite(out).all()
        (out * torch.randn_like(out)).sum().backward()
        zero = analytically_zero_gradients(module)
        grads = {name: param.grad for name, param in module.named_parameters()}
        assert zero <= set(grads) and all(g is not None for g in grads.values())
        # the real gradients are O(0.1-10) here; round-off leaves the others at most ~1e-6 (float32 eps times
        # those magnitudes), so 1e-4 separates the two kinds by two orders of magnitude either way
        for name, grad in grads.items():
            largest = grad.abs().max().item()
            assert (largest < 1e-4) if name in zero else (largest > 1e-2), (type(module).__name__, name, largest)
        assert torch.isfinite(regions.grad).all()
        regions.grad = None


def test_flush_subnormals_zeroes_only_subnormal_entries():
    tiny = torch.finfo(torch.float32).tiny
    x = torch.tensor([0.0, tiny / 4, -tiny / 2, tiny, -1e-30, 3.0])
    out = flush_subnormals(x)
    assert out.tolist() == [0.0, 0.0, 0.0, tiny, x[4].item(), 3.0]
    half = torch.tensor([1e-6, 1e-3], dtype=torch.float16)  # fp16 tiny is 6.1e-5: 1e-6 is subnormal there
    assert flush_subnormals(half).tolist() == [0.0, half[1].item()]


def test_global_enhance_leaves_no_subnormals_where_zero_features_meet_a_peaked_attention():
    """ReLU-like regions (mostly exact zeros) and a global vector that one region dominates: the other
    regions' weights underflow towards 1e-40, and ``v_i + a_i * v_glo`` would be subnormal where v_i = 0."""
    gen = torch.Generator().manual_seed(0)
    regions = torch.relu(torch.randn(2, 6, 32, generator=gen)) * 0.1
    regions[:, 0] = 95.0 / 32 ** 0.5  # logit 95 against about 0.2: the other weights are near exp(-95) = 6e-42
    glo = l2norm(torch.ones(2, 32))
    out = global_enhance(regions, torch.tensor([6, 4]), glo)
    tiny = torch.finfo(torch.float32).tiny
    raw = regions + l2norm(masked_softmax(torch.einsum("bkd,bd->bk", regions, glo),
                                          torch.ones(2, 6, dtype=torch.bool)), dim=1).unsqueeze(-1) * glo[:, None]
    assert ((raw != 0) & (raw.abs() < tiny)).any(), "the input no longer produces subnormals: test is void"
    assert not ((out != 0) & (out.abs() < tiny)).any()
    # flushed entries move by less than 1e-37; rtol covers last-bit differences of the normal entries, as ``raw``
    # is the same formula written out here (another code path, not necessarily the same bits on every CPU)
    assert torch.allclose(out[0], raw[0], atol=1e-37, rtol=1e-6)
