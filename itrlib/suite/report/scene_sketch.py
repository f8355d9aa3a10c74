"""Scene sketches: a synthetic image drawn from its generator description (``{split}_scenes.jsonl`` of the
embedded dataset), so qualitative figures show something a reader can check a caption against.

A sketch is schematic, not a photograph: the scene type sets the background, each object is a simple glyph
of its kind (person, animal, vehicle, object, furniture, food) in its colour attribute and sized by its
size attribute, labelled with its attributes and category; relations place the subject (``on``/``riding``:
above the object, ``under``: below it, ``behind``: smaller and further back, ``holding``: at the subject's
side). Layout is deterministic per image id.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.patches import Circle, Ellipse, FancyBboxPatch, Rectangle

from itrlib.data.synth import CAT_INDEX, CATEGORIES
from itrlib.errors import DataError

BACKGROUNDS: dict[str, tuple[str, str]] = {
    "beach": ("#bfe3f7", "#f1dca7"), "street": ("#d8dde3", "#9a9a9a"), "kitchen": ("#f3ead9", "#c9b79c"),
    "park": ("#cde8f6", "#9ccc7a"), "field": ("#d6ecf8", "#c7d97e"), "room": ("#efe6dc", "#b89f86"),
    "snow": ("#dfe9f1", "#fbfbfb"), "lake": ("#cfe6f5", "#6fa8d6")}
"""Scene type -> (upper colour, ground colour)."""
COLOURS = {"red": "#d1342b", "blue": "#2f63c4", "green": "#3b9c3b", "white": "#f7f7f7", "black": "#222222",
           "yellow": "#f2cd2e", "brown": "#8b5a2b"}
DEFAULT_COLOUR = "#8f8f8f"
KIND_HEIGHT = {"person": 0.42, "animal": 0.26, "vehicle": 0.28, "furniture": 0.24, "object": 0.11, "food": 0.1}
SIZE_SCALE = {"small": 0.7, "large": 1.3}
GROUND = 0.35
"""Height of the horizon (the ground fills [0, GROUND] of the unit square)."""


def read_scenes(root: str | Path, split: str) -> list[dict]:
    """The scene descriptions of ``{split}_scenes.jsonl`` in ``root``, one per image in image order."""
    path = Path(root) / f"{split}_scenes.jsonl"
    if not path.is_file():
        raise DataError(f"{path} does not exist: scene descriptions come with the embedded synthetic dataset "
                        "only; for real data give an image folder (image_dir)")
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _kind(category: str) -> str:
    return CATEGORIES[CAT_INDEX[category]].kind if category in CAT_INDEX else "object"


def _colour(attributes: list[str]) -> str:
    return next((COLOURS[a] for a in attributes if a in COLOURS), DEFAULT_COLOUR)


def layout(scene: dict) -> list[tuple[float, float, float]]:
    """(x, y of the glyph's base centre, height) of each object in the unit square, after the relations."""
    objects = scene["objects"]
    rng = np.random.default_rng(int(scene.get("id", 0)))
    n = len(objects)
    places = []
    for i, obj in enumerate(objects):
        scale = np.prod([SIZE_SCALE.get(a, 1.0) for a in obj["attributes"]])
        height = KIND_HEIGHT[_kind(obj["category"])] * scale * (0.85 + 0.15 * min(obj.get("salience", 1.0), 1.5))
        x = (i + 0.5) / n + rng.uniform(-0.04, 0.04)
        places.append([x, GROUND * rng.uniform(0.25, 0.6), height])
    for subject, relation, target in scene.get("relations", []):
        sx, _, sh = places[subject]
        tx, ty, th = places[target]
        if relation in ("on", "riding"):
            places[subject] = [tx, ty + th * 0.8, sh]
        elif relation == "under":
            places[subject] = [tx, max(ty - 0.08, 0.02), min(sh, th * 0.7)]
        elif relation == "behind":
            places[subject] = [sx, min(GROUND + 0.02, ty + 0.12), sh * 0.75]
        elif relation == "holding":
            places[target] = [sx + 0.06, places[subject][1] + sh * 0.45, th]
    return [(float(np.clip(x, 0.12, 0.88)), float(y), float(h)) for x, y, h in places]


def _person(ax: Axes, x: float, y: float, h: float, colour: str, z: float) -> None:
    ax.add_patch(Rectangle((x - h * 0.14, y + h * 0.2), h * 0.28, h * 0.5, color=colour, ec="k", lw=0.6, zorder=z))
    ax.add_patch(Circle((x, y + h * 0.82), h * 0.12, color="#f0c9a0", ec="k", lw=0.6, zorder=z))
    for dx in (-0.07, 0.07):
        ax.plot([x + dx * h, x + dx * h], [y, y + h * 0.2], color="k", lw=1.2, zorder=z)


def _animal(ax: Axes, x: float, y: float, h: float, colour: str, z: float) -> None:
    ax.add_patch(Ellipse((x, y + h * 0.55), h * 1.2, h * 0.5, color=colour, ec="k", lw=0.6, zorder=z))
    ax.add_patch(Circle((x + h * 0.62, y + h * 0.85), h * 0.17, color=colour, ec="k", lw=0.6, zorder=z))
    for dx in (-0.4, -0.15, 0.15, 0.4):
        ax.plot([x + dx * h, x + dx * h], [y, y + h * 0.35], color="k", lw=1.0, zorder=z)


def _vehicle(ax: Axes, x: float, y: float, h: float, colour: str, z: float) -> None:
    ax.add_patch(FancyBboxPatch((x - h * 0.55, y + h * 0.2), h * 1.1, h * 0.55, boxstyle="round,pad=0.01",
                                color=colour, ec="k", lw=0.6, zorder=z))
    for dx in (-0.33, 0.33):
        ax.add_patch(Circle((x + dx * h, y + h * 0.18), h * 0.17, color="#333333", zorder=z + 0.1))


def _furniture(ax: Axes, x: float, y: float, h: float, colour: str, z: float) -> None:
    ax.add_patch(Rectangle((x - h * 0.7, y + h * 0.6), h * 1.4, h * 0.18, color=colour, ec="k", lw=0.6, zorder=z))
    for dx in (-0.6, 0.6):
        ax.plot([x + dx * h, x + dx * h], [y, y + h * 0.6], color="k", lw=1.4, zorder=z)


def _round(ax: Axes, x: float, y: float, h: float, colour: str, z: float) -> None:
    ax.add_patch(Circle((x, y + h * 0.5), h * 0.5, color=colour, ec="k", lw=0.6, zorder=z))


GLYPHS = {"person": _person, "animal": _animal, "vehicle": _vehicle, "furniture": _furniture, "object": _round,
          "food": _round}


def draw_scene(ax: Axes, scene: dict, *, labels: bool = True) -> None:
    """Draw ``scene`` (one ``{split}_scenes.jsonl`` record) into ``ax`` (the unit square, no ticks)."""
    upper, ground = BACKGROUNDS.get(scene.get("scene", ""), ("#eeeeee", "#cccccc"))
    ax.add_patch(Rectangle((0, GROUND), 1, 1 - GROUND, color=upper, zorder=0))
    ax.add_patch(Rectangle((0, 0), 1, GROUND, color=ground, zorder=0))
    places = layout(scene)
    behind = {s for s, relation, _ in scene.get("relations", []) if relation == "behind"}
    for i, (obj, (x, y, h)) in enumerate(zip(scene["objects"], places, strict=True)):
        z = 1 + (0 if i in behind else 1) + y * 0.01  # things behind are drawn first
        GLYPHS[_kind(obj["category"])](ax, x, y, h, _colour(obj["attributes"]), z)
        if labels:
            ax.text(x, y - 0.035, " ".join([*obj["attributes"], obj["category"]]), ha="center", va="top",
                    fontsize=6, zorder=5, bbox={"fc": "white", "alpha": 0.7, "lw": 0, "pad": 0.5})
    ax.text(0.02, 0.97, scene.get("scene", ""), ha="left", va="top", fontsize=6, style="italic", zorder=5)
    ax.set(xlim=(0, 1), ylim=(0, 1), xticks=[], yticks=[])
    ax.set_aspect("equal")
