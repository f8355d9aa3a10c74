"""Encode every image and caption of a split once (the official loaders encode each image 5 times)."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from itrlib.data.datasets import CaptionDataset, ImageDataset
from itrlib.data.precomp import PrecompSplit
from itrlib.data.text import Tokenizer
from itrlib.models.base import RetrievalModel, concat_embeddings


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
        images = ImageDataset(split)
        captions = CaptionDataset(split, tokenizer)
        img_chunks, cap_chunks = [], []
        with autocast_for(device, amp):
            for batch in tqdm(DataLoader(images, batch_size=batch_size, collate_fn=images.collate_fn),
                              desc=f"encode {split.split} images", disable=not progress, leave=False):
                batch = batch.to(device)
                img_chunks.append(model.encode_images(batch.images, batch.image_lengths).to("cpu"))
            for batch in tqdm(DataLoader(captions, batch_size=batch_size, collate_fn=captions.collate_fn),
                              desc=f"encode {split.split} captions", disable=not progress, leave=False):
                batch = batch.to(device)
                cap_chunks.append(model.encode_captions(batch.captions, batch.caption_lengths).to("cpu"))
        return concat_embeddings(img_chunks), concat_embeddings(cap_chunks)
    finally:
        model.train(was_training)
