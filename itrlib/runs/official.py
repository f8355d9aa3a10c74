"""Evaluate the authors' released checkpoints: official USER / VSE∞ state dicts -> the suite's models.

Official layouts matched (names only; no official code is used here):

- VSE∞ (woodfrog/vse_infty ``lib/vse.py``) and USER (zhangy0822/USER ``lib/vse.py``) save
  ``{"model": [img_enc.state_dict(), txt_enc.state_dict()], "opt": argparse.Namespace, "epoch": ...}``.
- image encoder ``EncoderImageAggr``: ``fc``, ``mlp.layers.{0,1}``, ``mlp.bns.{0,1}``, ``gpool.{gru,linear}``,
  and for USER ``v_sa.embedding_local.{0,1}``, ``v_sa.embedding_global.{0,1}``, ``v_sa.embedding_common.0`` (SGE).
  The official MLP builds a BatchNorm after its last layer (``mlp.bns.1``) that its forward never applies: those
  entries are read and dropped.
- text encoder ``EncoderText``: ``bert.*``, ``linear``, ``gpool.{gru,linear}``.

USER is built without its momentum key encoders and queues (``model.dvq=false``, ``model.dtq=false``): evaluation
uses the query encoders only and the released checkpoints hold no keys or queues.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from itrlib.config import RunConfig, load_config, preset_path
from itrlib.data.precomp import open_split
from itrlib.data.text import BertWordPieceTokenizer, Tokenizer, resolve_bert_path
from itrlib.devices import resolve_device
from itrlib.engine.checkpoint import BEST, LAST
from itrlib.engine.components import CONFIG_FILE, LoadedRun, create_model
from itrlib.errors import ConfigError, ItrlibError
from itrlib.evaluation.protocols import get_protocol
from itrlib.io import atomic_write_json, check_writable
from itrlib.progress import say
from itrlib.runs.trained import eval_line, evaluate_loaded

ARCHS = ("user", "vse")
PRESETS = {"vse": "vse_f30k", "user": "user_f30k"}
RUN_CHECKPOINTS = {BEST: "best", LAST: "last"}
"""Checkpoint file names of a suite run folder -> the ``eval --run --checkpoint`` value that reads them."""
BERT_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")
"""Deterministic BERT buffers that transformers versions save or not: never required from either side."""

# (official pattern, our name per arch) applied to each encoder's keys; \1 is the parameter/buffer name
_IMAGE_RULES: list[tuple[str, dict[str, str]]] = [
    (r"fc\.(.+)", {"vse": r"region_proj.fc.\1", "user": r"image_encoder.proj.fc.\1"}),
    (r"mlp\.layers\.(\d+\..+)", {"vse": r"region_proj.mlp.linears.\1", "user": r"image_encoder.proj.mlp.linears.\1"}),
    (r"mlp\.bns\.(\d+\..+)", {"vse": r"region_proj.mlp.norms.\1", "user": r"image_encoder.proj.mlp.norms.\1"}),
    (r"gpool\.(.+)", {"vse": r"image_pool.\1", "user": r"image_encoder.pool.\1"}),
    (r"v_sa\.embedding_local\.0\.(.+)", {"user": r"image_encoder.enhance.local_fc.\1"}),
    (r"v_sa\.embedding_local\.1\.(.+)", {"user": r"image_encoder.enhance.local_bn.\1"}),
    (r"v_sa\.embedding_global\.0\.(.+)", {"user": r"image_encoder.enhance.global_fc.\1"}),
    (r"v_sa\.embedding_global\.1\.(.+)", {"user": r"image_encoder.enhance.global_bn.\1"}),
    (r"v_sa\.embedding_common\.0\.(.+)", {"user": r"image_encoder.enhance.score.\1"}),
]
_TEXT_RULES: list[tuple[str, dict[str, str]]] = [
    (r"bert\.(.+)", {"vse": r"text_encoder.bert.\1", "user": r"text_encoder.tokens.bert.\1"}),
    (r"linear\.(.+)", {"vse": r"text_encoder.linear.\1", "user": r"text_encoder.tokens.linear.\1"}),
    (r"gpool\.(.+)", {"vse": r"text_pool.\1", "user": r"text_encoder.pool.\1"}),
]


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise ItrlibError(f"unknown arch {arch!r}: expected one of {', '.join(ARCHS)}")


def _parts(official: object) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(image, text) state dicts from a checkpoint dict with "model", a [img, txt] list or a flat dict whose keys
    start with ``img_enc.`` / ``txt_enc.``; a leading ``module.`` (DataParallel) is removed from every name."""
    if isinstance(official, Mapping) and "model" in official:
        official = official["model"]
    if isinstance(official, list | tuple) and len(official) == 2 and all(isinstance(p, Mapping) for p in official):
        image, text = official
    elif isinstance(official, Mapping) and official and all(isinstance(k, str) for k in official):
        image = {k.removeprefix("img_enc."): v for k, v in official.items() if k.startswith("img_enc.")}
        text = {k.removeprefix("txt_enc."): v for k, v in official.items() if k.startswith("txt_enc.")}
        other = sorted(k for k in official if not k.startswith(("img_enc.", "txt_enc.")))
        if other:
            raise ItrlibError(f"not an official checkpoint: names outside img_enc./txt_enc.: {', '.join(other[:10])}")
    else:
        raise ItrlibError("not an official checkpoint: expected a dict with 'model' holding [image encoder state "
                          f"dict, text encoder state dict], that list itself, or a flat state dict; got "
                          f"{type(official).__name__}")

    def strip(part: Mapping) -> dict[str, torch.Tensor]:
        return {k.removeprefix("module."): v for k, v in part.items()}

    return strip(image), strip(text)


def _map(part: dict[str, torch.Tensor], rules: list[tuple[str, dict[str, str]]], arch: str, side: str,
         unexpected: list[str]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name, value in part.items():
        if side == "text" and name.startswith("bert.") and name.removeprefix("bert.") in BERT_BUFFERS:
            _check_bert_buffer(name, value)
            continue
        if side == "image" and re.fullmatch(r"mlp\.bns\.(\d+)\..+", name):
            index = int(name.split(".")[2])
            if f"mlp.layers.{index + 1}.weight" not in part:  # the BN after the last layer: never applied
                continue
        for pattern, targets in rules:
            match = re.fullmatch(pattern, name)
            if match and arch in targets:
                out[match.expand(targets[arch])] = value
                break
        else:
            unexpected.append(f"{side}: {name}")
    return out


def _check_bert_buffer(name: str, value: torch.Tensor) -> None:
    """position_ids must be 0..L-1 (token_type_ids zeros) for dropping them to lose nothing."""
    expected = (torch.arange(value.shape[-1]).expand_as(value) if name.endswith("position_ids")
                else torch.zeros_like(value))
    if not torch.equal(value.long().cpu(), expected.long()):
        raise ItrlibError(f"official text encoder's {name} is not the standard buffer: cannot drop it safely")


def convert_state_dict(arch: str, official: object) -> dict[str, torch.Tensor]:
    """Official state dict(s) (see :func:`_parts`) -> our model's state dict names (tensors shared, not copied).

    Raises :class:`ItrlibError` for a checkpoint of the other architecture or for official names no rule uses.
    BERT ``position_ids`` / ``token_type_ids`` buffers are checked and dropped (the loader keeps the model's own).
    """
    _check_arch(arch)
    image, text = _parts(official)
    has_sge = any(k.startswith("v_sa.") for k in image)
    if arch == "vse" and has_sge:
        raise ItrlibError("the checkpoint's image encoder has SGE weights (v_sa.*): it is a USER checkpoint, "
                          "evaluate it with --arch user")
    if arch == "user" and image and not has_sge:
        raise ItrlibError("the checkpoint's image encoder has no SGE weights (v_sa.*): it is a VSE∞ "
                          "checkpoint, evaluate it with --arch vse")
    unexpected: list[str] = []
    converted = _map(image, _IMAGE_RULES, arch, "image", unexpected) | _map(text, _TEXT_RULES, arch, "text", unexpected)
    if unexpected:
        raise ItrlibError(f"{len(unexpected)} official names have no counterpart in the suite's {arch} model: "
                          + ", ".join(unexpected[:20]) + (" ..." if len(unexpected) > 20 else ""))
    return converted


@dataclass
class OfficialModel:
    """A converted official checkpoint ready for evaluation (the pieces :class:`LoadedRun` holds)."""

    config: RunConfig
    model: torch.nn.Module
    tokenizer: Tokenizer
    epoch: int | None


def _shape(converted: dict[str, torch.Tensor], name: str) -> tuple[int, ...]:
    if name not in converted:
        raise ItrlibError(f"the official checkpoint lacks the weights of {name} (no shape to build the model from)")
    return tuple(converted[name].shape)


def official_config(arch: str, converted: dict[str, torch.Tensor], *, data_root: str | Path = "data",
                    bert_path: str | Path = "bert-base-uncased", opt: object = None) -> RunConfig:
    """The ``vse_f30k`` (vse) or ``user_f30k`` (user) preset with sizes read from the checkpoint's shapes.

    embed size, MLP hidden size and GPO sizes come from the weights; USER's region slots from SGE's BatchNorm
    and its attention scale from ``opt.attention_lamda`` when present; USER gets ``dvq=false dtq=false``.
    """
    _check_arch(arch)
    prefix = {"vse": "", "user": "image_encoder."}[arch]
    proj = "region_proj" if arch == "vse" else "image_encoder.proj"
    pool = "image_pool" if arch == "vse" else "image_encoder.pool"
    embed, _ = _shape(converted, f"{proj}.fc.weight")
    hidden, _ = _shape(converted, f"{proj}.mlp.linears.0.weight")
    gru3, pe_dim = _shape(converted, f"{pool}.gru.weight_ih_l0")
    overrides = [f"data.root={data_root}", f"text.bert_path={bert_path}", "text.encoder=bert",
                 f"model.embed_size={embed}", f"model.mlp_hidden={hidden}", f"model.gpo_pe_dim={pe_dim}",
                 f"model.gpo_hidden={gru3 // 3}"]
    preset = PRESETS[arch]
    if arch == "user":
        (slots,) = _shape(converted, f"{prefix}enhance.local_bn.weight")
        scale = float(getattr(opt, "attention_lamda", 1.0))
        overrides += ["model.dvq=false", "model.dtq=false", "model.enhancement=sge", "model.sge_local_norm=slot",
                      f"model.num_slots={slots}", "model.attention_norm=l2", f"model.attention_scale={scale}"]
        try:
            preset_path(preset)
        except (ConfigError, FileNotFoundError):
            preset, overrides = PRESETS["vse"], ["model.name=user", *overrides]
    return load_config(preset, overrides)


def _check_opt(opt: object) -> None:
    """Refuse official options the suite's models do not reproduce (unnormalised embeddings, other encoders)."""
    if opt is None:
        return
    if getattr(opt, "precomp_enc_type", "basic") != "basic":
        raise ItrlibError(f"official opt.precomp_enc_type={opt.precomp_enc_type!r}: only 'basic' (precomp regions) "
                          "checkpoints can be converted")
    for flag in ("no_imgnorm", "no_txtnorm"):
        if getattr(opt, flag, False):
            raise ItrlibError(f"official opt.{flag} is set: the suite's models always L2-normalise embeddings")


def read_official_checkpoint(path: str | Path) -> dict:
    """``torch.load`` an official checkpoint on the CPU, allowing the argparse Namespace of its "opt" entry.

    A checkpoint of a suite run (``best.pt``/``last.pt`` of a run folder) is refused with the ``eval --run``
    command that evaluates it.
    """
    path = Path(path)
    if not path.is_file():
        raise ItrlibError(f"official checkpoint {path} does not exist")
    in_run_folder = (path.parent / CONFIG_FILE).is_file()
    if path.name in RUN_CHECKPOINTS and in_run_folder:
        raise _suite_checkpoint_error(path, in_run_folder)
    safe = [argparse.Namespace]
    try:
        import numpy as np

        safe += [np.dtype, np._core.multiarray.scalar]
    except AttributeError:
        pass
    try:
        with torch.serialization.safe_globals(safe):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ItrlibError(f"could not read {path} as a torch checkpoint of tensors and plain options: {exc}") from exc
    if isinstance(state, dict) and "feature_dim" in state:
        raise _suite_checkpoint_error(path, in_run_folder)
    return state if isinstance(state, dict) and "model" in state else {"model": state}


def _suite_checkpoint_error(path: Path, in_run_folder: bool) -> ItrlibError:
    """The error for a checkpoint written by the suite's trainer given where an official one is expected."""
    folder = path.parent if in_run_folder else "RUN_FOLDER"
    which = RUN_CHECKPOINTS.get(path.name, "best")
    return ItrlibError(f"{path} is a checkpoint of an itrlib run, not an official USER/VSE∞ checkpoint: "
                       f"evaluate {'its' if in_run_folder else 'the'} run folder with `python -m itrlib eval --run "
                       f"{folder} --checkpoint {which} --protocol ...` (eval-official is for the authors' "
                       "released files)")


@contextmanager
def _naming(path: str | Path) -> Iterator[None]:
    """Prefix the checkpoint's path to an ItrlibError raised about its content."""
    try:
        yield
    except ItrlibError as exc:
        raise type(exc)(f"{path}: {exc}") from exc


def load_official_model(arch: str, official: object, *, bert_path: str | Path, feature_dim: int,
                        data_root: str | Path = "data", device: str | torch.device = "cpu") -> OfficialModel:
    """Build our ``arch`` model for ``feature_dim``-d regions and load the converted official weights (strict).

    Every model entry must be filled and every converted entry used, except the BERT buffers of
    :data:`BERT_BUFFERS`, which stay the model's own.
    """
    converted = convert_state_dict(arch, official)
    opt = official.get("opt") if isinstance(official, Mapping) else None
    _check_opt(opt)
    config = official_config(arch, converted, data_root=data_root, bert_path=bert_path, opt=opt)
    _, in_dim = _shape(converted, "region_proj.fc.weight" if arch == "vse" else "image_encoder.proj.fc.weight")
    if in_dim != feature_dim:
        raise ItrlibError(f"the official checkpoint takes {in_dim}-d region features, the data has {feature_dim}-d")
    tokenizer = BertWordPieceTokenizer(resolve_bert_path(str(bert_path)))
    model = create_model(config, feature_dim, tokenizer)
    own = model.state_dict()
    text_linear = "text_encoder.linear.weight" if arch == "vse" else "text_encoder.tokens.linear.weight"
    if text_linear in converted and converted[text_linear].shape[1] != own[text_linear].shape[1]:
        raise ItrlibError(f"the official text encoder expects {converted[text_linear].shape[1]}-d BERT states, but "
                          f"{bert_path} has hidden size {own[text_linear].shape[1]}: pass the BERT it was trained with")
    buffers = {k for k in own if k.split("bert.", 1)[-1] in BERT_BUFFERS}
    missing = sorted(set(own) - set(converted) - buffers)
    unexpected = sorted(set(converted) - set(own))
    if missing or unexpected:
        raise ItrlibError(f"the official {arch} checkpoint does not fit the suite's model: "
                          + (f"missing {len(missing)}: {', '.join(missing[:20])}" if missing else "")
                          + ("; " if missing and unexpected else "")
                          + (f"unexpected {len(unexpected)}: {', '.join(unexpected[:20])}" if unexpected else ""))
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in converted.items() if v.shape != own[k].shape]
    if wrong:
        raise ItrlibError(f"official weights with other shapes than the model's: {', '.join(wrong[:10])}")
    model.load_state_dict({**{k: own[k] for k in buffers}, **converted}, strict=True)
    model.to(device).eval()
    epoch = official.get("epoch") if isinstance(official, Mapping) else None
    return OfficialModel(config, model, tokenizer, epoch)


def evaluate_official_checkpoint(path: str | Path, arch: str, protocols: list[str], *, data_root: str | Path,
                                 bert_path: str | Path, split: str | None = None, device: str = "auto",
                                 ties: str | None = None, max_pairs_per_block: int | None = None,
                                 out: str | Path | None = None, progress: bool = True) -> dict[str, dict]:
    """Evaluate an official checkpoint under ``protocols`` as ``eval --run`` evaluates a run (same encoding,
    scoring, ranking and result dicts); unset options come from the arch's preset. Writes ``out`` (JSON,
    protocol -> result) only when given; nothing is written next to the checkpoint.
    """
    import dataclasses


    _check_arch(arch)
    target = resolve_device(device, "--device")
    if out is not None:
        check_writable(out, "evaluation results")
    official = read_official_checkpoint(path)
    specs = [get_protocol(p) for p in dict.fromkeys(protocols)]
    if split:
        specs = [dataclasses.replace(spec, split=split) for spec in specs]
    with _naming(path):
        _check_opt(official.get("opt"))
        config = official_config(arch, convert_state_dict(arch, official), data_root=data_root,
                                 bert_path=bert_path, opt=official.get("opt"))
    run: LoadedRun | None = None
    results: dict[str, dict] = {}
    for split_name in dict.fromkeys(spec.split for spec in specs):
        # the dev split is cut as training cuts it, as eval --run does
        max_images = config.data.val_max_images if split_name == config.data.val_split else None
        data = open_split(data_root, split_name, max_images=max_images, check_features=config.data.check_features)
        if run is None:
            loaded = load_official_model(arch, official, bert_path=bert_path, feature_dim=data.feature_dim,
                                         data_root=data_root, device=target)
            run = LoadedRun(loaded.config, loaded.model, loaded.tokenizer, target,
                            {"feature_dim": data.feature_dim, "epoch": loaded.epoch})
        elif data.feature_dim != run.checkpoint["feature_dim"]:
            raise ItrlibError(f"{data.images_path} has {data.feature_dim}-d region features, the checkpoint takes "
                              f"{run.checkpoint['feature_dim']}-d")
        evaluation = evaluate_loaded(run, data, [s for s in specs if s.split == split_name],
                               max_pairs_per_block=max_pairs_per_block, ties=ties, progress=progress)
        source = {"checkpoint": str(path), "arch": arch, "data_root": str(data_root), "bert_path": str(bert_path),
                  "checkpoint_epoch": run.checkpoint["epoch"], "model": run.config.model.name}
        for name, result in evaluation.results.items():
            result.update(source)
            results[name] = result
            say(eval_line(path, result), progress)
    results = {p: results[p] for p in protocols}
    if out is not None:
        atomic_write_json(out, results, "evaluation results")
    return results
