"""USER pieces against numbers recorded from the official code (zhangy0822/USER, commit aa48a85).

tests/fixtures/user_official.json holds the official image-encoder weights (float32, base64), the inputs and
the official outputs of: SGE (``lib/encoders.py SGE``), the whole image encoder (``EncoderImageAggr``), the
UTO loss (``lib/loss.py UTO.forward`` and ``UTO.moco_forward``) and one momentum step
(``lib/vse.py USER._momentum_update_key_encoder`` then ``USER._dequeue_and_enqueue``). The fixture's
"source" entry says how they were recorded. Nothing here imports or reads the official code; the weights are
loaded into our modules through the name mapping below and every output must agree to ``TOL``.
"""

import base64
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from itrlib.losses.uto import uto_loss
from itrlib.models.user import USERConfig, USERImageEncoder
from itrlib.nn.user_momentum import FeatureQueue, make_key_encoder, momentum_update
from itrlib.nn.user_semantic_enhancement import SGE

FIXTURE = Path(__file__).parent / "fixtures" / "user_official.json"
TOL = 1e-5

# official EncoderImageAggr parameter prefix -> ours (USERImageEncoder); first match wins
NAME_MAP = (
    ("v_sa.embedding_local.0.", "enhance.local_fc."),
    ("v_sa.embedding_local.1.", "enhance.local_bn."),  # BatchNorm1d(num_region=36): one channel per slot
    ("v_sa.embedding_global.0.", "enhance.global_fc."),
    ("v_sa.embedding_global.1.", "enhance.global_bn."),
    ("v_sa.embedding_common.0.", "enhance.score."),
    ("fc.", "proj.fc."),
    ("mlp.layers.", "proj.mlp.linears."),
    ("mlp.bns.0.", "proj.mlp.norms.0."),  # the official MLP also builds mlp.bns.1 but never applies it
    ("gpool.", "pool."),
)


def our_name(official: str) -> str:
    for old, new in NAME_MAP:
        if official.startswith(old):
            return new + official[len(old):]
    raise KeyError(f"no mapping for official parameter {official!r}")


def tensor(entry: dict) -> torch.Tensor:
    """A fixture array ({"shape", "b64"}: little-endian float32) as a torch tensor."""
    data = np.frombuffer(base64.b64decode(entry["b64"]), dtype="<f4").reshape(entry["shape"])
    return torch.from_numpy(data.copy())


def max_diff(ours: torch.Tensor, official: torch.Tensor) -> float:
    assert ours.shape == official.shape, (tuple(ours.shape), tuple(official.shape))
    return (ours.detach().float() - official).abs().max().item()


@pytest.fixture(scope="module")
def fixture() -> dict:
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def inputs(fixture) -> tuple[torch.Tensor, torch.Tensor]:
    images = tensor(fixture["inputs"]["images"])
    lengths = torch.tensor(fixture["inputs"]["lengths"], dtype=torch.long)
    assert (lengths == images.shape[1]).all()  # the official SGE uses all 36 regions; so do the inputs
    return images, lengths


def our_state(fixture: dict) -> dict[str, torch.Tensor]:
    return {our_name(name): tensor(entry) for name, entry in fixture["weights"].items()}


def build_encoder(fixture: dict, dropout: float) -> USERImageEncoder:
    dims = fixture["dims"]
    config = USERConfig(embed_size=dims["embed"], num_slots=dims["regions"], sge_dropout=dropout,
                        attention_scale=float(fixture["hyper"]["attention_lamda"]))
    encoder = USERImageEncoder(config, dims["region_dim"])
    missing, unexpected = encoder.load_state_dict(our_state(fixture), strict=False)
    assert not unexpected and all(name.endswith("num_batches_tracked") for name in missing), (missing, unexpected)
    return encoder


def build_sge(fixture: dict, dropout: float, scale: float = 1.0) -> SGE:
    dims = fixture["dims"]
    sge = SGE(dims["region_dim"], dims["regions"], "slot", dropout, "l2", scale)
    state = {name[len("enhance."):]: value for name, value in our_state(fixture).items()
             if name.startswith("enhance.")}
    missing, unexpected = sge.load_state_dict(state, strict=False)
    assert not unexpected and all(name.endswith("num_batches_tracked") for name in missing), (missing, unexpected)
    return sge


def test_fixture_is_small_and_documented(fixture):
    assert FIXTURE.stat().st_size < 200_000
    assert "aa48a85" in fixture["source"]


@pytest.mark.parametrize(("key", "scale"), [("sge_eval", 1.0), ("sge_eval_lamda2", 2.0)])
def test_sge_eval_matches_official(fixture, inputs, key, scale):
    images, lengths = inputs
    sge = build_sge(fixture, fixture["hyper"]["sge_dropout"], scale).eval()
    with torch.no_grad():
        assert max_diff(sge(images, lengths), tensor(fixture["official"][key])) <= TOL


def assert_train_step_matches(module: torch.nn.Module, inputs, official: dict, key: str,
                              state_name: Callable[[str], str]) -> int:
    """Train mode, dropout 0 on both sides: the output of one forward (BatchNorm batch statistics) and the
    running statistics it leaves equal ``official[key]`` and ``official[key + "_running"]``; returns how
    many running tensors were compared. ``state_name`` maps an official name to ours."""
    images, lengths = inputs
    module.train()
    with torch.no_grad():
        assert max_diff(module(images, lengths), tensor(official[key])) <= TOL
    state = module.state_dict()
    for name, entry in official[key + "_running"].items():
        assert max_diff(state[state_name(name)], tensor(entry)) <= TOL, name
    return len(official[key + "_running"])


def test_sge_train_matches_official(fixture, inputs):
    compared = assert_train_step_matches(build_sge(fixture, 0.0), inputs, fixture["official"], "sge_train_p0",
                                         lambda name: our_name("v_sa." + name)[len("enhance."):])
    assert compared == 4  # local and global BatchNorms: mean and var each


def test_image_encoder_eval_matches_official(fixture, inputs):
    images, lengths = inputs
    encoder = build_encoder(fixture, fixture["hyper"]["sge_dropout"]).eval()
    with torch.no_grad():
        assert max_diff(encoder(images, lengths), tensor(fixture["official"]["encoder_eval"])) <= TOL


def test_image_encoder_train_matches_official(fixture, inputs):
    compared = assert_train_step_matches(build_encoder(fixture, 0.0), inputs, fixture["official"],
                                         "encoder_train_p0", our_name)
    assert compared == 6  # local, global and MLP BatchNorms: mean and var each


def test_uto_matches_official(fixture):
    """mini = UTO.forward, dvq / dtq = the two halves of UTO.moco_forward; queues stored (embed, Q) officially."""
    rec, hyper = fixture["official"]["uto"], fixture["hyper"]
    parts = uto_loss(tensor(rec["v_q"]), tensor(rec["t_q"]), key_images=tensor(rec["v_k"]),
                     key_captions=tensor(rec["t_k"]), image_queue=tensor(rec["v_queue"]).T,
                     caption_queue=tensor(rec["t_queue"]).T, gamma=hyper["gamma"], margin=hyper["margin"],
                     mini_batch_weight=hyper["lambda"])
    assert abs(parts["mini"].item() - rec["mini"]) <= TOL
    assert abs(parts["dvq"].item() - rec["dvq"]) <= TOL
    assert abs(parts["dtq"].item() - rec["dtq"]) <= TOL
    assert abs((parts["dvq"] + parts["dtq"]).item() - rec["moco"]) <= TOL
    assert abs(parts["loss"].item() - rec["total"]) <= TOL


def test_momentum_step_matches_official(fixture, inputs):
    """EMA of the key encoder (params before = -flip(query), as recorded), key forward, then both enqueues."""
    images, lengths = inputs
    rec = fixture["official"]["momentum"]
    query = build_encoder(fixture, 0.0)
    key = make_key_encoder(query)
    with torch.no_grad():
        for param in key.parameters():
            param.copy_(-torch.flip(param, dims=list(range(param.dim()))))
    momentum_update(key, query, rec["m"])
    params = dict(key.named_parameters())
    assert len(rec["key_params_after"]) == len(params)
    for name, entry in rec["key_params_after"].items():
        assert max_diff(params[our_name(name)], tensor(entry)) <= TOL, name

    key.train()
    with torch.no_grad():
        keys = key(images, lengths)
    assert max_diff(keys, tensor(rec["key_forward_train_p0"])) <= TOL

    uto = fixture["official"]["uto"]
    for queue_key, keys_in, after in (("v_queue", keys, "v_queue_after"),
                                      ("t_queue", tensor(uto["t_k"]), "t_queue_after")):
        initial = tensor(uto[queue_key]).T  # official (embed, Q) -> ours (Q, embed)
        queue = FeatureQueue(*initial.shape)
        queue.features.copy_(initial)
        queue.pointer.fill_(rec["queue_ptr_before"])
        queue.enqueue(keys_in)
        assert max_diff(queue.features, tensor(rec[after]).T) <= TOL, queue_key
        assert int(queue.pointer) == rec["queue_ptr_after"]
