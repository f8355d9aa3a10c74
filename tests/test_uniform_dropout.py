"""UniformDropout: nn.Dropout's distribution (keep with probability 1 - p, kept entries scaled by 1 / (1 - p)),
drawn from uniforms, seeded by torch's global RNG."""

import math

import pytest
import torch
from torch import nn

from itrlib.nn.functional import UniformDropout, uniform_dropout


def test_keep_rate_and_scale_are_those_of_nn_dropout():
    p, n = 0.4, 400_000
    x = torch.rand(n) + 0.5  # no zeros: a dropped entry is exactly 0, a kept one x / (1 - p)
    torch.manual_seed(0)
    out = uniform_dropout(x, p)
    kept = out != 0
    # keep fraction within 6 standard deviations of 1 - p (sd = sqrt(p (1 - p) / n) ~ 7.7e-4)
    assert abs(kept.float().mean().item() - (1 - p)) < 6 * math.sqrt(p * (1 - p) / n)
    torch.testing.assert_close(out[kept], x[kept] / (1 - p), rtol=1e-6, atol=0)


def test_same_seed_same_mask_and_the_gradient_is_the_mask_times_the_scale():
    x = torch.randn(64, 36, 32, requires_grad=True)
    torch.manual_seed(3)
    first = uniform_dropout(x, 0.25)
    torch.manual_seed(3)
    second = uniform_dropout(x, 0.25)
    assert torch.equal(first, second)
    first.sum().backward()
    expected = (first != 0).float() / 0.75
    torch.testing.assert_close(x.grad, expected, rtol=1e-6, atol=0)
    torch.manual_seed(4)
    assert not torch.equal(uniform_dropout(x, 0.25), first)


def test_identity_in_eval_mode_and_at_p_zero():
    x = torch.randn(8, 5)
    module = UniformDropout(0.4).eval()
    assert module(x) is x
    assert UniformDropout(0.0).train()(x) is x
    assert uniform_dropout(x, 0.4, training=False) is x


def test_module_follows_train_and_eval_like_nn_dropout():
    model = nn.Sequential(nn.Linear(4, 4), UniformDropout(0.5))
    model.eval()
    assert not model[1].training
    model.train()
    assert model[1].training and model[1].p == 0.5
    assert "p=0.5" in repr(model[1])


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_probability_outside_0_1_is_refused(p):
    with pytest.raises(ValueError, match="dropout probability must be in"):
        UniformDropout(p)
    with pytest.raises(ValueError, match="dropout probability must be in"):
        uniform_dropout(torch.ones(3), p)


def test_bfloat16_inputs_keep_their_dtype_and_rate():
    x = torch.ones(200_000, dtype=torch.bfloat16)
    torch.manual_seed(1)
    out = uniform_dropout(x, 0.4)
    assert out.dtype == torch.bfloat16
    assert abs((out != 0).float().mean().item() - 0.6) < 6 * math.sqrt(0.24 / x.numel())
