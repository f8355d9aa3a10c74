"""Data: precomp reader, tokenisers, datasets, batches (lazy: ``itrlib.data.synth`` stays light)."""

from importlib import import_module

_EXPORTS = {
    "SPLITS": "precomp", "PrecompSplit": "precomp", "open_split": "precomp", "find_precomp_dir": "precomp",
    "check_finite": "precomp",
    "Tokenizer": "text", "BertWordPieceTokenizer": "text", "Vocabulary": "text", "resolve_bert_path": "text",
    "Batch": "collate", "ImageBatch": "collate", "CaptionBatch": "collate", "pad_sequences": "collate",
    "collate_pairs": "collate", "collate_images": "collate", "collate_captions": "collate",
    "PairDataset": "datasets", "ImageDataset": "datasets", "CaptionDataset": "datasets",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
