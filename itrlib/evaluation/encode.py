"""Encode every image and caption of a split once (the official loaders encode each image 5 times).

The side inputs the model declares are loaded from the split's folder by the data layer, exactly as in
training, and passed to ``encode_images`` / ``encode_captions``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch.utils.data import DataLoader

from itrlib.data.datasets import CaptionDataset, ImageDataset
from itrlib.data.precomp import PrecompSplit
from itrlib.data.side_inputs import load_side_inputs
from itrlib.data.text import Tokenizer
from itrlib.models.base import RetrievalModel, concat_embeddings
from itrlib.progress import progress_bar


def autocast_for(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when enabled; a no-op elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def encode_split(model: RetrievalModel, split: PrecompSplit, tokenizer: Tokenizer, *, batch_size: int = 256,
                 device: torch.device | str = "cpu", amp: bool = False, progress: bool = False
                 ) -> tuple[Any, Any]:
    """Return (image embeddings for N_img images, caption embeddings for N_cap captions), on the CPU."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    try:
        side = load_side_inputs(split, model.side_inputs)
        images = ImageDataset(split, extras=side.image)
        captions = CaptionDataset(split, tokenizer, extras=side.caption)
        img_chunks, cap_chunks = [], []
        # own generators: starting a DataLoader draws a seed, and evaluation between epochs must leave the
        # global torch RNG (dropout of the next training steps) as it found it, whatever wraps the loader
        loaders = [DataLoader(data, batch_size=batch_size, collate_fn=data.collate_fn,
                              generator=torch.Generator().manual_seed(0)) for data in (images, captions)]
        with autocast_for(device, amp):
            for batch in progress_bar(loaders[0], desc=f"encode {split.split} images", unit="batches",
                                      enabled=progress):
                batch = batch.to(device)
                img_chunks.append(model.encode_images(batch.images, batch.image_lengths, batch.extras).to("cpu"))
            for batch in progress_bar(loaders[1], desc=f"encode {split.split} captions", unit="batches",
                                      enabled=progress):
                batch = batch.to(device)
                cap_chunks.append(model.encode_captions(batch.captions, batch.caption_lengths,
                                                        batch.extras).to("cpu"))
        return concat_embeddings(img_chunks), concat_embeddings(cap_chunks)
    finally:
        model.train(was_training)
