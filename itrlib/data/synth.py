"""Embedded synthetic image-text dataset in the SCAN/VSE∞ precomp layout.

A small symbolic world (40 object categories, 12 attributes, 10 relations, 8 scene types) generates
scenes; every scene is rendered twice, independently:

* as 36 BUTD-like region vectors (object views with their bound attributes, relation/union boxes,
  background, near-duplicate boxes, clutter and noise), projected to ``feature_dim`` through a fixed
  random matrix and a ReLU, and
* as 5 English captions that each describe only part of the scene, with synonyms and varied templates.

About ``twin_fraction`` of the images come in "twin" pairs (same split, consecutive indices) that share
objects and scene but swap attributes between two objects or change one relation, so that attribute
binding and relations matter for retrieval.

Side files: ``{split}_clip.npy`` (a CLIP-like 512-d global vector computed from the scene description,
in the place of the CLIP image embedding USER's CGE reads), ``{split}_label.txt`` + ``labels_vocab.txt``
(MVSEN multi-hot noun labels) and ``{split}_scenes.jsonl`` (the scene structure, for tests and galleries).
See docs/DATA_CARD.md.

Every random draw derives from ``seed``: the same arguments give byte-identical files. Structural draws
use ``random.Random.random`` only (its sequence is guaranteed stable across Python versions); vectors use
numpy ``SeedSequence``/``default_rng``.
"""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from itrlib.data.synth_sizes import DEFAULT_FEATURE_DIM, SIZES
from itrlib.errors import ConfigError
from itrlib.io import atomic_save, atomic_write_json, atomic_write_text, default_permissions
from itrlib.progress import progress_bar

GENERATOR_VERSION = "itrlib-synth-1.1"
GENERATOR_CHANGES = {
    "itrlib-synth-1.1": "the CLIP-like side file is {split}_clip.npy (1.0 wrote it as {split}_global.npy); "
                        "every other file is byte-identical",
}
"""What each version changed in the written files (the message when a dataset of another version is used)."""
SPLITS = ("train", "dev", "test", "testall")
N_REGIONS = 36
CAPTIONS_PER_IMAGE = 5
GLOBAL_DIM = 512
SEMANTIC_DIM = 256  # latent space of the region "semantics" before the random projection
TESTALL_FOLDS = 5  # twins never straddle a fold of the 5-fold 1K-style protocol
ID_OFFSETS = {"train": 1_000_000, "dev": 2_000_000, "test": 3_000_000, "testall": 4_000_000}


@dataclass(frozen=True)
class SynthConfig:
    """Noise levels and mixing fractions of the generator.

    ``difficulty`` multiplies every *noise* level (region, feature, duplicate and global noise, and the
    probability that a view hides an attribute). Fractions and caption-omission rates are not scaled.
    The default 1.6 is calibrated on the VSE∞ baseline under the ``vse_embedded`` budget
    (1-epoch scan on ``small``: dev i2t R@1 49.5 % at 1.0, 37.0 % at 1.6, 26.0 % at 2.2; see the data card
    for the final test numbers), so that the baseline lands well inside 20-70 % test i2t R@1.
    """

    difficulty: float = 1.6
    twin_fraction: float = 0.3  # fraction of images that belong to a twin pair
    twin_attr_swap_prob: float = 0.6  # twin kind: attribute swap (else: one relation changed)
    instance_noise: float = 0.5  # weight std of look-alike categories/attributes shared by an object's views
    confusion_noise: float = 0.4  # weight std of a look-alike component added to every single region
    region_noise: float = 0.6  # norm of isotropic semantic noise per region; components have norm ~1
    feature_noise: float = 0.25  # std of noise added after the projection (pre-activation std is ~1)
    duplicate_noise: float = 0.15  # norm of the perturbation of a near-duplicate box
    attr_view_dropout: float = 0.2  # probability that one view of an object does not show an attribute
    global_noise: float = 0.5  # relative noise of the CLIP-like global vector (before its nonlinearity)
    duplicate_fraction: float = 0.35  # of the filler regions (after objects/relations/background)
    distractor_fraction: float = 0.45  # of the filler regions: clutter boxes never named in captions
    caption_attr_omit: float = 0.35  # probability that a caption leaves out one attribute of an object
    caption_scene_omit: float = 0.5  # probability that a caption does not name the scene
    category_similarity: float = 0.6  # shared component of categories of one kind / attributes of one group

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"SynthConfig.{f.name} must be a finite number >= 0, got {value!r}")
            if f.name not in ("difficulty",) and not f.name.endswith("noise") and value > 1:
                raise ConfigError(f"SynthConfig.{f.name} is a probability/fraction, got {value!r}")
        if self.duplicate_fraction + self.distractor_fraction > 1:
            raise ConfigError("SynthConfig.duplicate_fraction + distractor_fraction must be <= 1")

    def effective_noise(self) -> dict[str, float]:
        """Noise levels after scaling by ``difficulty`` (these are what the generator uses)."""
        d = self.difficulty
        return {
            "instance_noise": self.instance_noise * d,
            "confusion_noise": self.confusion_noise * d,
            "region_noise": self.region_noise * d,
            "feature_noise": self.feature_noise * d,
            "duplicate_noise": self.duplicate_noise * d,
            "global_noise": self.global_noise * d,
            "attr_view_dropout": min(0.9, self.attr_view_dropout * d),
        }


# ----------------------------------------------------------------------------------------------------
# The world
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Category:
    name: str
    kind: str  # animal | person | vehicle | object | furniture | food
    synonyms: tuple[tuple[str, str], ...]  # (singular, plural) surface forms used in captions
    scenes: tuple[str, ...]  # scene types where the category is likely


@dataclass(frozen=True)
class Attribute:
    name: str
    group: str  # mood | size | age | colour (also the English adjective order)
    synonyms: tuple[str, ...]


@dataclass(frozen=True)
class Relation:
    name: str
    phrases: tuple[str, ...]
    subjects: frozenset[str]  # kinds or category names allowed as subject
    objects: frozenset[str]
    family: str  # twins never change a relation within its family (e.g. "near" vs "next to")
    weight: float  # sampling weight when valid


@dataclass(frozen=True)
class SceneType:
    name: str
    phrases: tuple[tuple[str, str], ...]  # (prepositional phrase, its noun)
    scene_modifier: tuple[str, str]  # "a {modifier} scene with ...", noun of the modifier ("" if none)
    noun_phrase: tuple[str, str]  # "{noun phrase} with ...", its noun
    clutter: tuple[str, ...]  # unnamed background things detected in such scenes


def _cat(name: str, kind: str, synonyms: str, scenes: str) -> Category:
    pairs = tuple(tuple(s.split(":")) for s in synonyms.split())
    return Category(name, kind, pairs, tuple(scenes.split()))  # type: ignore[arg-type]


_ALL_SCENES = "beach street kitchen park field room snow lake"
CATEGORIES: tuple[Category, ...] = (
    _cat("dog", "animal", "dog:dogs puppy:puppies", "park field beach street room snow"),
    _cat("cat", "animal", "cat:cats kitten:kittens", "room kitchen street"),
    _cat("horse", "animal", "horse:horses pony:ponies", "field beach park"),
    _cat("cow", "animal", "cow:cows", "field"),
    _cat("sheep", "animal", "sheep:sheep", "field"),
    _cat("bird", "animal", "bird:birds", "beach park lake field"),
    _cat("elephant", "animal", "elephant:elephants", "field lake"),
    _cat("giraffe", "animal", "giraffe:giraffes", "field"),
    _cat("zebra", "animal", "zebra:zebras", "field"),
    _cat("man", "person", "man:men guy:guys gentleman:gentlemen", _ALL_SCENES),
    _cat("woman", "person", "woman:women lady:ladies", _ALL_SCENES),
    _cat("child", "person", "child:children kid:kids", "park beach room kitchen snow"),
    _cat("boy", "person", "boy:boys", "park beach street snow field"),
    _cat("girl", "person", "girl:girls", "park beach room field snow"),
    _cat("car", "vehicle", "car:cars automobile:automobiles", "street"),
    _cat("bicycle", "vehicle", "bicycle:bicycles bike:bikes", "street park"),
    _cat("motorcycle", "vehicle", "motorcycle:motorcycles motorbike:motorbikes", "street"),
    _cat("bus", "vehicle", "bus:buses", "street"),
    _cat("truck", "vehicle", "truck:trucks lorry:lorries", "street field"),
    _cat("boat", "vehicle", "boat:boats", "lake beach"),
    _cat("airplane", "vehicle", "airplane:airplanes plane:planes jet:jets", "field"),
    _cat("ball", "object", "ball:balls", "park field beach"),
    _cat("umbrella", "object", "umbrella:umbrellas", "beach street"),
    _cat("kite", "object", "kite:kites", "beach park field"),
    _cat("frisbee", "object", "frisbee:frisbees", "park beach"),
    _cat("skateboard", "object", "skateboard:skateboards", "street park"),
    _cat("surfboard", "object", "surfboard:surfboards", "beach lake"),
    _cat("bag", "object", "bag:bags backpack:backpacks", "street room kitchen"),
    _cat("bottle", "object", "bottle:bottles", "kitchen room beach"),
    _cat("cup", "object", "cup:cups mug:mugs", "kitchen room"),
    _cat("laptop", "object", "laptop:laptops computer:computers", "room kitchen"),
    _cat("table", "furniture", "table:tables", "kitchen room park"),
    _cat("chair", "furniture", "chair:chairs", "kitchen room beach"),
    _cat("bench", "furniture", "bench:benches", "park street lake"),
    _cat("couch", "furniture", "couch:couches sofa:sofas", "room"),
    _cat("bed", "furniture", "bed:beds", "room"),
    _cat("pizza", "food", "pizza:pizzas", "kitchen room"),
    _cat("cake", "food", "cake:cakes", "kitchen room"),
    _cat("sandwich", "food", "sandwich:sandwiches", "kitchen park"),
    _cat("banana", "food", "banana:bananas", "kitchen"),
)

ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("red", "colour", ("red", "crimson")),
    Attribute("blue", "colour", ("blue",)),
    Attribute("green", "colour", ("green",)),
    Attribute("white", "colour", ("white",)),
    Attribute("black", "colour", ("black",)),
    Attribute("yellow", "colour", ("yellow",)),
    Attribute("brown", "colour", ("brown",)),
    Attribute("small", "size", ("small", "little")),
    Attribute("large", "size", ("large", "big")),
    Attribute("young", "age", ("young",)),
    Attribute("old", "age", ("old",)),
    Attribute("happy", "mood", ("happy", "smiling")),
)
_GROUP_ORDER = {"mood": 0, "size": 1, "age": 2, "colour": 3}
# attributes each kind of object can carry (colours of people are their clothes: "a man in red")
_ALLOWED_ATTRIBUTES = {
    "animal": ("red", "white", "black", "yellow", "brown", "small", "large", "young", "old", "happy"),
    "person": ("red", "blue", "green", "white", "black", "yellow", "brown", "young", "old", "happy"),
    "vehicle": ("red", "blue", "green", "white", "black", "yellow", "brown", "small", "large", "old"),
    "object": ("red", "blue", "green", "white", "black", "yellow", "brown", "small", "large", "old"),
    "furniture": ("red", "blue", "green", "white", "black", "yellow", "brown", "small", "large", "old"),
    "food": ("red", "green", "white", "yellow", "brown", "small", "large"),
}
_PERSON_COLOUR = ("in {}", "wearing {}", "dressed in {}")

_ANY = frozenset(("animal", "person", "vehicle", "object", "furniture", "food"))
RELATIONS: tuple[Relation, ...] = (
    Relation(
        "on",
        ("on", "on top of"),
        frozenset(("animal", "person", "object", "food")),
        frozenset(("furniture", "car", "bus", "truck", "boat")),
        "support",
        3.0,
    ),
    Relation(
        "under",
        ("under", "underneath"),
        frozenset(("animal", "person", "object")),
        frozenset(("furniture", "umbrella", "car", "truck")),
        "support",
        3.0,
    ),
    Relation("next to", ("next to", "beside"), _ANY, _ANY, "proximity", 1.0),
    Relation("near", ("near", "close to"), _ANY, _ANY, "proximity", 1.0),
    Relation("behind", ("behind",), _ANY, _ANY, "behind", 1.0),
    Relation(
        "holding",
        ("holding", "carrying"),
        frozenset(("person",)),
        frozenset(("object", "food")),
        "holding",
        3.0,
    ),
    Relation(
        "riding",
        ("riding", "riding on"),
        frozenset(("person",)),
        frozenset(("horse", "elephant", "bicycle", "motorcycle", "skateboard", "surfboard", "boat")),
        "riding",
        4.0,
    ),
    Relation(
        "chasing",
        ("chasing", "running after"),
        frozenset(("animal", "person")),
        frozenset(("animal", "person", "ball", "frisbee", "kite")),
        "chasing",
        2.5,
    ),
    Relation("looking at", ("looking at", "watching"), frozenset(("animal", "person")), _ANY, "looking", 1.5),
    Relation("eating", ("eating",), frozenset(("animal", "person")), frozenset(("food",)), "eating", 4.0),
)
_SYMMETRIC_RELATIONS = frozenset(("next to", "near"))

SCENE_TYPES: tuple[SceneType, ...] = (
    SceneType(
        "beach",
        (("on the beach", "beach"), ("at the beach", "beach"), ("on the shore", "shore")),
        ("beach", "beach"),
        ("a sandy beach", "beach"),
        ("sky", "sand", "water", "cloud"),
    ),
    SceneType(
        "street",
        (
            ("on a street", "street"),
            ("on the street", "street"),
            ("on a city street", "street"),
            ("along the road", "road"),
        ),
        ("street", "street"),
        ("a busy street", "street"),
        ("building", "pole", "sign", "window"),
    ),
    SceneType(
        "kitchen",
        (("in a kitchen", "kitchen"), ("in the kitchen", "kitchen")),
        ("kitchen", "kitchen"),
        ("a kitchen", "kitchen"),
        ("wall", "window", "floor", "cabinet"),
    ),
    SceneType(
        "park",
        (("in a park", "park"), ("at the park", "park")),
        ("park", "park"),
        ("a park", "park"),
        ("tree", "grass", "sky", "path"),
    ),
    SceneType(
        "field",
        (("in a field", "field"), ("in a grassy field", "field"), ("in a meadow", "meadow")),
        ("countryside", "countryside"),
        ("a grassy field", "field"),
        ("grass", "sky", "tree", "fence"),
    ),
    SceneType(
        "room",
        (("in a living room", "room"), ("in a room", "room"), ("inside a room", "room")),
        ("living room", "room"),
        ("a living room", "room"),
        ("wall", "floor", "window", "lamp"),
    ),
    SceneType(
        "snow",
        (("in the snow", "snow"), ("on a snowy hill", "hill")),
        ("snowy", ""),
        ("a snowy hill", "hill"),
        ("sky", "tree", "mountain", "snowbank"),
    ),
    SceneType(
        "lake",
        (("by a lake", "lake"), ("near the water", "water"), ("at the lake", "lake")),
        ("lake", "lake"),
        ("a lake", "lake"),
        ("water", "sky", "tree", "dock"),
    ),
)
# clutter: unnamed background things (never in captions); scene types list their typical ones
CLUTTER: tuple[str, ...] = tuple(dict.fromkeys(c for s in SCENE_TYPES for c in s.clutter))

_SUPERCLASS = {
    "animal": ("animal", "animals"),
    "person": ("person", "people"),
    "vehicle": ("vehicle", "vehicles"),
}
_COUNT_WORDS = {2: "two", 3: "three", 4: "four"}
_TEMPLATE_NOUNS = ("photo", "picture", "image", "scene")

CAT_INDEX = {c.name: i for i, c in enumerate(CATEGORIES)}
ATTR_INDEX = {a.name: i for i, a in enumerate(ATTRIBUTES)}
REL_INDEX = {r.name: i for i, r in enumerate(RELATIONS)}
SCENE_INDEX = {s.name: i for i, s in enumerate(SCENE_TYPES)}
CLUTTER_INDEX = {c: i for i, c in enumerate(CLUTTER)}

# MVSEN-style label vocabulary: every noun the caption generator can emit (plurals map to the singular)
LABELS_VOCAB: tuple[str, ...] = tuple(
    dict.fromkeys(
        [s for c in CATEGORIES for s, _ in c.synonyms]
        + [s for s, _ in _SUPERCLASS.values()]
        + [n for st in SCENE_TYPES for _, n in (*st.phrases, st.scene_modifier, st.noun_phrase) if n]
        + list(_TEMPLATE_NOUNS)
    )
)
N_LABELS = len(LABELS_VOCAB)
_LABEL_INDEX = {n: i for i, n in enumerate(LABELS_VOCAB)}
_WORD_TO_CATEGORY = {w: c.name for c in CATEGORIES for pair in c.synonyms for w in pair}


def caption_words(caption: str) -> list[str]:
    """Lower-cased alphabetic words of a caption (punctuation dropped)."""
    return "".join(ch if ch.isalpha() else " " for ch in caption.lower()).split()


def mentioned_categories(caption: str) -> set[str]:
    """Category names whose nouns (any synonym, singular or plural) occur in ``caption``."""
    return {_WORD_TO_CATEGORY[w] for w in caption_words(caption) if w in _WORD_TO_CATEGORY}


def read_scenes(folder: str | Path, split: str) -> list[dict]:
    """The scene structure of every image of ``split`` (one dict per image, in image order)."""
    lines = (Path(folder) / f"{split}_scenes.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


# ----------------------------------------------------------------------------------------------------
# Scenes (pure Python; only ``Random.random`` is used so sequences are stable across Python versions)
# ----------------------------------------------------------------------------------------------------


def _pick(r: random.Random, n: int) -> int:
    return min(int(r.random() * n), n - 1)


def _weighted_index(u: float, weights: Sequence[float]) -> int:
    """Index drawn with probability proportional to ``weights`` from one uniform ``u`` in [0, 1)."""
    acc, target = 0.0, u * sum(weights)
    for i, w in enumerate(weights):
        acc += w
        if target < acc:
            return i
    return len(weights) - 1


def _shuffle(r: random.Random, items: list) -> None:
    for i in range(len(items) - 1, 0, -1):
        j = _pick(r, i + 1)
        items[i], items[j] = items[j], items[i]


def _allowed(spec: frozenset[str], category: str) -> bool:
    return category in spec or CATEGORIES[CAT_INDEX[category]].kind in spec


def _relation_valid(rel: str, subject: str, obj: str) -> bool:
    r = RELATIONS[REL_INDEX[rel]]
    return _allowed(r.subjects, subject) and _allowed(r.objects, obj)


def _sample_attributes(r: random.Random, category: str) -> list[str]:
    allowed = _ALLOWED_ATTRIBUTES[CATEGORIES[CAT_INDEX[category]].kind]
    first = allowed[_pick(r, len(allowed))]
    if r.random() < 0.6:
        return [first]
    group = ATTRIBUTES[ATTR_INDEX[first]].group
    rest = [a for a in allowed if ATTRIBUTES[ATTR_INDEX[a]].group != group]
    return [first, rest[_pick(r, len(rest))]]


def _sample_relations(r: random.Random, cats: list[str]) -> list[list]:
    candidates = [
        (i, rel.name, j)
        for i in range(len(cats))
        for j in range(len(cats))
        if i != j
        for rel in RELATIONS
        if _relation_valid(rel.name, cats[i], cats[j])
    ]
    chosen: list[list] = []
    for _ in range(1 if r.random() < 0.55 else 2):
        used = {frozenset((s, o)) for s, _, o in chosen}
        free = [c for c in candidates if frozenset((c[0], c[2])) not in used]
        if not free:
            break
        s, rel, o = free[_weighted_index(r.random(), [RELATIONS[REL_INDEX[c[1]]].weight for c in free])]
        chosen.append([s, rel, o])
    return chosen


def _sample_scene(r: random.Random) -> dict:
    scene = SCENE_TYPES[_pick(r, len(SCENE_TYPES))].name
    n_obj = 2 + _weighted_index(r.random(), (0.35, 0.4, 0.25))
    weights = [3.0 if scene in c.scenes else 0.25 for c in CATEGORIES]
    cats: list[str] = []
    for _ in range(n_obj):
        i = _weighted_index(r.random(), weights)
        weights[i] = 0.0
        cats.append(CATEGORIES[i].name)
    objects = [
        {"category": c, "attributes": _sample_attributes(r, c), "salience": round(0.5 + r.random(), 3)}
        for c in cats
    ]
    return {"scene": scene, "objects": objects, "relations": _sample_relations(r, cats)}


def _attr_swap_twin(r: random.Random, base: dict) -> dict | None:
    objs = base["objects"]
    options = [
        (i, j)
        for i in range(len(objs))
        for j in range(i + 1, len(objs))
        if set(objs[i]["attributes"]) != set(objs[j]["attributes"])
        and all(
            a in _ALLOWED_ATTRIBUTES[CATEGORIES[CAT_INDEX[objs[j]["category"]]].kind]
            for a in objs[i]["attributes"]
        )
        and all(
            a in _ALLOWED_ATTRIBUTES[CATEGORIES[CAT_INDEX[objs[i]["category"]]].kind]
            for a in objs[j]["attributes"]
        )
    ]
    if not options:
        return None
    i, j = options[_pick(r, len(options))]
    twin = json.loads(json.dumps(base))
    twin["objects"][i]["attributes"], twin["objects"][j]["attributes"] = (
        list(objs[j]["attributes"]),
        list(objs[i]["attributes"]),
    )
    return twin


def _relation_twin(r: random.Random, base: dict) -> dict | None:
    cats = [o["category"] for o in base["objects"]]
    options = []
    for k, (s, rel, o) in enumerate(base["relations"]):
        family = RELATIONS[REL_INDEX[rel]].family
        for other in RELATIONS:
            if other.family != family and _relation_valid(other.name, cats[s], cats[o]):
                options.append((k, [s, other.name, o]))
        if rel not in _SYMMETRIC_RELATIONS and _relation_valid(rel, cats[o], cats[s]):
            options.append((k, [o, rel, s]))
    if not options:
        return None
    k, new = options[_pick(r, len(options))]
    twin = json.loads(json.dumps(base))
    twin["relations"][k] = new
    return twin


def _sample_unit(r: random.Random, cfg: SynthConfig, twins: bool) -> list[dict]:
    """One image, or a twin pair ``[base, twin]`` annotated with ``twin_kind``."""
    while True:
        base = _sample_scene(r)
        if not twins:
            return [base]
        makers = [("attribute_swap", _attr_swap_twin), ("relation_change", _relation_twin)]
        if r.random() >= cfg.twin_attr_swap_prob:
            makers.reverse()
        for kind, make in makers:
            twin = make(r, base)
            if twin is not None:
                base["twin_kind"] = twin["twin_kind"] = kind
                return [base, twin]


def _generate_scenes(seed: int, split: str, n_images: int, cfg: SynthConfig) -> list[list[dict]]:
    """Units (single images or twin pairs) in image order; twins never straddle a testall fold."""
    r = random.Random(f"scenes:{seed}:{split}")
    n_blocks = TESTALL_FOLDS if split == "testall" else 1
    units: list[list[dict]] = []
    for b in range(n_blocks):
        n = n_images // n_blocks + (1 if b < n_images % n_blocks else 0)
        n_pairs = round(cfg.twin_fraction * n / 2)
        kinds = [True] * n_pairs + [False] * (n - 2 * n_pairs)
        _shuffle(r, kinds)
        units.extend(_sample_unit(r, cfg, twins) for twins in kinds)
    return units


# ----------------------------------------------------------------------------------------------------
# Captions. Each caption reads a fixed-length vector of uniforms, column by column, so the two images of
# a twin pair (which share the vectors) get captions that differ only in binding/relation words.
# ----------------------------------------------------------------------------------------------------

U_TYPE, U_VAR, U_N, U_CAP, U_DOT, U_SCENE, U_SCENE_VAR, U_REL, U_REL_VAR, U_GROUP = range(10)
U_ORDER, U_SYN, U_PCOL = 10, 14, 18  # 4 columns each (one per object)
U_ATTR, U_ATTR_SYN = 22, 30  # 8 columns each (two per object)
N_UNIFORMS = 38
_CAPTION_TYPES = ("single", "relation", "conjunction", "group", "scene")
_CAPTION_TYPE_WEIGHTS = (0.2, 0.3, 0.25, 0.1, 0.15)
_MAX_CAPTION_TRIES = 20


def _article(phrase: str) -> str:
    first = phrase.split()[0]
    vowel = first[0] in "aeio" or (first[0] == "u" and not first.startswith(("uni", "use")))
    return "an" if vowel else "a"


def _choose(u: float, options: Sequence):
    return options[min(int(u * len(options)), len(options) - 1)]


def _noun_phrase(scene: dict, o: int, u: list[float], cfg: SynthConfig) -> tuple[str, str]:
    """'a crimson puppy', 'an old man in blue' and the noun lemma used."""
    obj = scene["objects"][o]
    cat = CATEGORIES[CAT_INDEX[obj["category"]]]
    noun = _choose(u[U_SYN + o], cat.synonyms)[0]
    pre: list[tuple[int, str]] = []
    post = ""
    for k, name in enumerate(obj["attributes"]):
        if u[U_ATTR + 2 * o + k] < cfg.caption_attr_omit:
            continue
        attr = ATTRIBUTES[ATTR_INDEX[name]]
        word = _choose(u[U_ATTR_SYN + 2 * o + k], attr.synonyms)
        if cat.kind == "person" and attr.group == "colour":
            post = " " + _choose(u[U_PCOL + o], _PERSON_COLOUR).format(word)
        else:
            pre.append((_GROUP_ORDER[attr.group], word))
    phrase = " ".join([w for _, w in sorted(pre)] + [noun]) + post
    return f"{_article(phrase)} {phrase}", noun


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _caption(scene: dict, u: list[float], cfg: SynthConfig) -> tuple[str, list[str]]:
    """One caption of ``scene`` and the noun lemmas it uses."""
    objs = scene["objects"]
    order = sorted(range(len(objs)), key=lambda o: -(u[U_ORDER + o] ** (1.0 / objs[o]["salience"])))
    st = SCENE_TYPES[SCENE_INDEX[scene["scene"]]]
    nouns: list[str] = []

    def nps(indices: Sequence[int]) -> list[str]:
        out = []
        for o in indices:
            text, noun = _noun_phrase(scene, o, u, cfg)
            out.append(text)
            nouns.append(noun)
        return out

    sc, scene_noun = "", ""
    if u[U_SCENE] >= cfg.caption_scene_omit:
        pp, scene_noun = _choose(u[U_SCENE_VAR], st.phrases)
        sc = " " + pp

    kind = _CAPTION_TYPES[_weighted_index(u[U_TYPE], _CAPTION_TYPE_WEIGHTS)]
    if kind == "relation" and not scene["relations"]:
        kind = "conjunction"
    group = _group_phrase(scene, order, u) if kind == "group" else None
    if kind == "group" and group is None:
        kind = "conjunction"

    if kind == "single":
        (np_,) = nps(order[:1])
        template = _choose(
            u[U_VAR], ("{}", "there is {}", "a photo of {}", "a picture of {}", "an image of {}")
        )
        text = template.format(np_) + sc
    elif kind == "relation":
        s, rel, o = _choose(u[U_REL], scene["relations"])
        subj, obj = nps([s, o])
        phrase = _choose(u[U_REL_VAR], RELATIONS[REL_INDEX[rel]].phrases)
        template = _choose(u[U_VAR], ("{} {} {}", "{} is {} {}", "there is {} {} {}", "a photo of {} {} {}"))
        text = template.format(subj, phrase, obj) + sc
    elif kind == "conjunction":
        n = 3 if len(objs) >= 3 and u[U_N] < 0.4 else 2
        items = nps(order[:n])
        if n == 2 and u[U_VAR] < 0.25:
            text = f"{items[0]} with {items[1]}{sc}"
        else:
            text = _choose(u[U_VAR], ("{}", "{}", "there is {}", "a picture of {}")).format(_join(items)) + sc
    elif kind == "group":
        words, lemmas, others = group
        nouns.extend(lemmas)
        extra = nps(others[:1]) if others and u[U_N] < 0.5 else []
        text = _choose(u[U_VAR], ("{}", "a photo of {}")).format(_join([words, *extra])) + sc
    else:  # scene-focused
        items = nps(order[: 1 + (u[U_N] < 0.5 and len(objs) > 1)])
        modifier, mod_noun = st.scene_modifier
        np_text, np_noun = st.noun_phrase
        if u[U_VAR] < 0.5:
            text = f"{_article(modifier)} {modifier} scene with {_join(items)}"
            nouns.extend([n for n in (mod_noun, "scene") if n])
        else:
            text = f"{np_text} with {_join(items)}"
            nouns.append(np_noun)
    if sc and text.endswith(sc):  # the scene phrase is used (the scene-focused captions name it otherwise)
        nouns.append(scene_noun)
    for word in ("photo", "picture", "image"):
        if f"{word} of" in text:
            nouns.append(word)
    if u[U_CAP] < 0.5:
        text = text[0].upper() + text[1:]
    if u[U_DOT] < 0.6:
        text += "."
    return text, nouns


def _group_phrase(scene: dict, order: list[int], u: list[float]) -> tuple[str, list[str], list[int]] | None:
    """'two animals' (several objects of one superclass) or 'a person and a vehicle'; None if neither."""
    kinds = [CATEGORIES[CAT_INDEX[o["category"]]].kind for o in scene["objects"]]
    for o in order:
        members = [m for m in order if kinds[m] == kinds[o]]
        if kinds[o] in _SUPERCLASS and len(members) >= 2:
            singular, plural = _SUPERCLASS[kinds[o]]
            return (
                f"{_COUNT_WORDS[len(members)]} {plural}",
                [singular],
                [m for m in order if m not in members],
            )
    supered = [o for o in order if kinds[o] in _SUPERCLASS]
    if len(supered) < 2:
        return None
    a, b = (_SUPERCLASS[kinds[o]][0] for o in supered[:2])
    if u[U_GROUP] < 0.5:
        a, b = b, a
    return f"{_article(a)} {a} and {_article(b)} {b}", [a, b], []


def _unit_captions(unit: list[dict], key: str, cfg: SynthConfig) -> list[tuple[list[str], list[str]]]:
    """5 distinct captions per image of the unit (twins share every random draw) and their nouns."""
    r = random.Random(key)
    caps: list[list[str]] = [[] for _ in unit]
    nouns: list[list[str]] = [[] for _ in unit]
    for _ in range(CAPTIONS_PER_IMAGE):
        for attempt in range(_MAX_CAPTION_TRIES):
            u = [r.random() for _ in range(N_UNIFORMS)]
            made = [_caption(scene, u, cfg) for scene in unit]
            if attempt == _MAX_CAPTION_TRIES - 1 or all(t not in caps[i] for i, (t, _) in enumerate(made)):
                break
        for i, (text, ns) in enumerate(made):
            caps[i].append(text)
            nouns[i].extend(ns)
    return list(zip(caps, nouns, strict=True))


# ----------------------------------------------------------------------------------------------------
# Vectors: region features and CLIP-like global vectors
# ----------------------------------------------------------------------------------------------------

_OBJ0 = 1  # row 0 of the component table is the zero vector (padding slot)
_ATTR0 = _OBJ0 + len(CATEGORIES)
_BIND0 = _ATTR0 + len(ATTRIBUTES)  # object x attribute interaction, row _BIND0 + c * n_attr + a
_REL0 = _BIND0 + len(CATEGORIES) * len(ATTRIBUTES)
_ROLE_S0 = _REL0 + len(RELATIONS)  # relation x subject category
_ROLE_O0 = _ROLE_S0 + len(RELATIONS) * len(CATEGORIES)  # relation x object category
_SCENE0 = _ROLE_O0 + len(RELATIONS) * len(CATEGORIES)
_CLUTTER0 = _SCENE0 + len(SCENE_TYPES)
_N_COMPONENTS = _CLUTTER0 + len(CLUTTER)
_INSTANCE_CONFUSERS = 2
# components per region (object view: object, instance look-alikes, a view confuser, 2 x attribute triples)
_SLOTS = 1 + _INSTANCE_CONFUSERS + 1 + 2 * 3
_GLOBAL_SLOTS = 4 * 5 + 1 + 2 * 3

# component weights inside a region / the global vector
_SIMILAR_CATEGORIES = tuple(
    tuple(j for j, d in enumerate(CATEGORIES) if d.kind == c.kind and j != i)
    for i, c in enumerate(CATEGORIES)
)
_SIMILAR_ATTRIBUTES = tuple(
    tuple(j for j, b in enumerate(ATTRIBUTES) if b.group == a.group and j != i)
    for i, a in enumerate(ATTRIBUTES)
)
_VIEW_OBJ_W = (0.8, 1.2)
_ATTR_W, _BIND_W = 0.8, 0.6
_REL_OBJ_W, _REL_W, _ROLE_W = 0.5, 0.8, 0.6
_BG_SCENE_W, _BG_CLUTTER_W, _DISTRACTOR_SCENE_W = 1.0, 0.7, 0.2
_NOISE_REGION_SD = 1.0
_REGION_LOG_MAG_SD = 0.25  # per-box magnitude jitter (BUTD boxes differ in norm)
_PROJ_SCALE = 1.0 / 1.6  # keeps pre-activations at unit scale for typical semantic norms
_FEAT_GAIN, _FEAT_THRESHOLD = 2.0, 0.6  # relu(gain * z - threshold): ~65% zeros, mean ~0.45
_G_ATTR_W, _G_BIND_W, _G_SCENE_W, _G_REL_W, _G_ROLE_W = 0.5, 0.35, 0.8, 0.3, 0.15
_G_NONLIN_GAIN = 1.5
_CHUNK = 256  # images per vectorised chunk (fixed: part of the definition of the random streams)


def _world_tables(seed: int, dim: int, stream: int, similarity: float) -> np.ndarray:
    """(_N_COMPONENTS, dim) float32 component vectors of norm ~1 (interactions are Hadamard products).

    Categories of one kind (and attributes of one group) share a component of weight ``similarity``.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, stream]))

    def unit(n: int) -> np.ndarray:
        return rng.standard_normal((n, dim)) / math.sqrt(dim)

    def related(groups: list[str]) -> np.ndarray:
        names = sorted(set(groups))
        shared = unit(len(names))[[names.index(g) for g in groups]]
        return similarity * shared + math.sqrt(1 - similarity**2) * unit(len(groups))

    obj = related([c.kind for c in CATEGORIES])
    attr, attr2 = related([a.group for a in ATTRIBUTES]), unit(len(ATTRIBUTES))
    rel, rel_s, rel_o = unit(len(RELATIONS)), unit(len(RELATIONS)), unit(len(RELATIONS))
    scale = math.sqrt(dim)
    table = np.concatenate(
        [
            np.zeros((1, dim)),
            obj,
            attr,
            (obj[:, None, :] * attr2[None, :, :] * scale).reshape(-1, dim),
            rel,
            (rel_s[:, None, :] * obj[None, :, :] * scale).reshape(-1, dim),
            (rel_o[:, None, :] * obj[None, :, :] * scale).reshape(-1, dim),
            unit(len(SCENE_TYPES)),
            unit(len(CLUTTER)),
        ]
    )
    assert table.shape[0] == _N_COMPONENTS
    return table.astype(np.float32)


def _gauss(r: random.Random) -> float:
    """Standard normal draw from ``Random.random`` only (Box-Muller)."""
    return math.sqrt(-2.0 * math.log(1.0 - r.random())) * math.cos(2.0 * math.pi * r.random())


def _confuser(r: random.Random, i: int, similar: tuple[tuple[int, ...], ...]) -> int:
    """A look-alike of item ``i``: a similar one (same kind/group) with probability 0.75, else any other."""
    pool = similar[i] if similar[i] and r.random() < 0.75 else [j for j in range(len(similar)) if j != i]
    return pool[_pick(r, len(pool))]


def _region_layout(scene: dict, r: random.Random, eff: dict[str, float], cfg: SynthConfig):
    """36 regions as component slots: (idx (36,S) int, w (36,S), noise sd (36,), duplicate source (36,))."""
    idx: list[list[int]] = []
    w: list[list[float]] = []
    sd: list[float] = []
    dup: list[int] = []

    def add(slots: list[tuple[int, float]], noise: float, source: int = -1) -> None:
        slots = slots + [(0, 0.0)] * (_SLOTS - len(slots))
        idx.append([i for i, _ in slots])
        w.append([x for _, x in slots])
        sd.append(noise)
        dup.append(source)

    cats = [CAT_INDEX[o["category"]] for o in scene["objects"]]
    for obj, c in zip(scene["objects"], cats, strict=True):
        attrs = [ATTR_INDEX[a] for a in obj["attributes"]]
        # instance look-alikes shared by all views of the object (a dog that looks a bit like a cat)
        instance = [
            (_OBJ0 + _confuser(r, c, _SIMILAR_CATEGORIES), eff["instance_noise"] * _gauss(r))
            for _ in range(_INSTANCE_CONFUSERS)
        ]
        attr_look = {
            a: (_ATTR0 + _confuser(r, a, _SIMILAR_ATTRIBUTES), eff["instance_noise"] * _gauss(r))
            for a in attrs
        }
        for _ in range(min(5, max(2, int(1.0 + 2.5 * obj["salience"] + r.random())))):
            slots = [(_OBJ0 + c, _VIEW_OBJ_W[0] + (_VIEW_OBJ_W[1] - _VIEW_OBJ_W[0]) * r.random()), *instance]
            slots.append((_OBJ0 + _confuser(r, c, _SIMILAR_CATEGORIES), eff["confusion_noise"] * _gauss(r)))
            for a in attrs:
                if r.random() >= eff["attr_view_dropout"]:
                    slots += [
                        (_ATTR0 + a, _ATTR_W),
                        (_BIND0 + c * len(ATTRIBUTES) + a, _BIND_W),
                        attr_look[a],
                    ]
            add(slots, eff["region_noise"])
    for s, rel, o in scene["relations"]:
        k = REL_INDEX[rel]
        for _ in range(1 + (r.random() < 0.4)):
            add(
                [
                    (_OBJ0 + cats[s], _REL_OBJ_W),
                    (_OBJ0 + cats[o], _REL_OBJ_W),
                    (_REL0 + k, _REL_W),
                    (_ROLE_S0 + k * len(CATEGORIES) + cats[s], _ROLE_W),
                    (_ROLE_O0 + k * len(CATEGORIES) + cats[o], _ROLE_W),
                    (_REL0 + _pick(r, len(RELATIONS)), eff["confusion_noise"] * _gauss(r)),
                ],
                eff["region_noise"],
            )
    n_semantic = len(idx)
    st = SCENE_TYPES[SCENE_INDEX[scene["scene"]]]
    for _ in range(3 + _pick(r, 4)):
        clutter = CLUTTER_INDEX[st.clutter[_pick(r, len(st.clutter))]]
        add(
            [
                (_SCENE0 + SCENE_INDEX[st.name], _BG_SCENE_W),
                (_CLUTTER0 + clutter, _BG_CLUTTER_W),
                (_SCENE0 + _pick(r, len(SCENE_TYPES)), eff["confusion_noise"] * _gauss(r)),
            ],
            eff["region_noise"],
        )
    while len(idx) < N_REGIONS:
        u = r.random()
        if u < cfg.duplicate_fraction:
            add([], eff["duplicate_noise"], source=_pick(r, n_semantic))
        elif u < cfg.duplicate_fraction + cfg.distractor_fraction:
            add(
                [
                    (_CLUTTER0 + _pick(r, len(CLUTTER)), 1.0),
                    (_SCENE0 + SCENE_INDEX[st.name], _DISTRACTOR_SCENE_W),
                ],
                eff["region_noise"],
            )
        else:
            add([], _NOISE_REGION_SD)
    return idx, w, sd, dup


def _region_features(
    layouts: list, table: np.ndarray, proj: np.ndarray, rng: np.random.Generator, eff: dict[str, float]
) -> np.ndarray:
    """Features (C, 36, feature_dim) float32 of one chunk of C images from their region layouts."""
    n_img = len(layouts)
    idx = np.array([lay[0] for lay in layouts], dtype=np.int64).reshape(-1, _SLOTS)
    w = np.array([lay[1] for lay in layouts], dtype=np.float32).reshape(-1, _SLOTS)
    sd = np.array([lay[2] for lay in layouts], dtype=np.float32).reshape(-1)
    dup = np.array([lay[3] for lay in layouts], dtype=np.int64).reshape(-1)
    dim = table.shape[1]
    sem = rng.standard_normal((idx.shape[0], dim), dtype=np.float32) * (sd[:, None] / math.sqrt(dim))
    for m in range(_SLOTS):
        sem += w[:, m, None] * table[idx[:, m]]
    is_dup = np.flatnonzero(dup >= 0)
    sem[is_dup] += sem[is_dup // N_REGIONS * N_REGIONS + dup[is_dup]]  # sources are never duplicates
    order = np.argsort(rng.random((n_img, N_REGIONS)), axis=1)  # shuffle the boxes of every image
    sem = np.take_along_axis(sem.reshape(n_img, N_REGIONS, dim), order[:, :, None], axis=1)
    z = sem.reshape(-1, dim) @ proj
    z += rng.standard_normal(z.shape, dtype=np.float32) * np.float32(eff["feature_noise"])
    mag = np.exp(rng.standard_normal(z.shape[0], dtype=np.float32) * np.float32(_REGION_LOG_MAG_SD))
    z *= (mag * np.float32(_FEAT_GAIN))[:, None]
    z -= np.float32(_FEAT_THRESHOLD)
    np.maximum(z, 0.0, out=z)
    return z.reshape(n_img, N_REGIONS, -1)


def _global_vectors(scenes: list[dict], seed: int, split_idx: int, cfg: SynthConfig) -> np.ndarray:
    """(N, 512) float32 L2-normalised CLIP-like vectors: a noisy nonlinear function of each scene."""
    table = _world_tables(seed, GLOBAL_DIM, 20, cfg.category_similarity)
    rng_w = np.random.default_rng(np.random.SeedSequence([seed, 21]))
    mix = (rng_w.standard_normal((GLOBAL_DIM, GLOBAL_DIM)) / math.sqrt(GLOBAL_DIM)).astype(np.float32)
    idx = np.zeros((len(scenes), _GLOBAL_SLOTS), dtype=np.int64)
    w = np.zeros((len(scenes), _GLOBAL_SLOTS), dtype=np.float32)
    for n, scene in enumerate(scenes):
        cats = [CAT_INDEX[o["category"]] for o in scene["objects"]]
        slots = [(_SCENE0 + SCENE_INDEX[scene["scene"]], _G_SCENE_W)]
        for obj, c in zip(scene["objects"], cats, strict=True):
            sal = obj["salience"]
            slots.append((_OBJ0 + c, sal))
            for a in (ATTR_INDEX[name] for name in obj["attributes"]):
                slots += [(_ATTR0 + a, _G_ATTR_W * sal), (_BIND0 + c * len(ATTRIBUTES) + a, _G_BIND_W * sal)]
        for s, rel, o in scene["relations"]:
            k = REL_INDEX[rel]
            slots += [
                (_REL0 + k, _G_REL_W),
                (_ROLE_S0 + k * len(CATEGORIES) + cats[s], _G_ROLE_W),
                (_ROLE_O0 + k * len(CATEGORIES) + cats[o], _G_ROLE_W),
            ]
        idx[n, : len(slots)] = [i for i, _ in slots]
        w[n, : len(slots)] = [x for _, x in slots]
    g = np.zeros((len(scenes), GLOBAL_DIM), dtype=np.float32)
    for m in range(_GLOBAL_SLOTS):
        g += w[:, m, None] * table[idx[:, m]]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 22, split_idx]))
    noise = rng.standard_normal(g.shape, dtype=np.float32) / math.sqrt(GLOBAL_DIM)
    g += noise * (
        np.float32(cfg.effective_noise()["global_noise"]) * np.linalg.norm(g, axis=1, keepdims=True)
    )
    h = np.tanh(np.float32(_G_NONLIN_GAIN) * (g @ mix))
    return (h / np.linalg.norm(h, axis=1, keepdims=True)).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------


def _write_features(
    path: Path, scenes: list[dict], seed: int, split_idx: int, feature_dim: int, cfg: SynthConfig, bar: Any
) -> dict[str, float]:
    """Write ``{split}_ims.npy`` chunk by chunk through a memory map (atomic rename at the end)."""
    eff = cfg.effective_noise()
    table = _world_tables(seed, SEMANTIC_DIM, 10, cfg.category_similarity)
    rng_p = np.random.default_rng(np.random.SeedSequence([seed, 11, feature_dim]))
    proj = (rng_p.standard_normal((SEMANTIC_DIM, feature_dim)) * _PROJ_SCALE).astype(np.float32)
    r = random.Random(f"regions:{seed}:{split_idx}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    total, zeros = 0.0, 0
    try:
        mm = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.float32, shape=(len(scenes), N_REGIONS, feature_dim)
        )
        for c, start in enumerate(range(0, len(scenes), _CHUNK)):
            chunk = scenes[start : start + _CHUNK]
            layouts = [_region_layout(s, r, eff, cfg) for s in chunk]
            rng = np.random.default_rng(np.random.SeedSequence([seed, 12, split_idx, c]))
            feats = _region_features(layouts, table, proj, rng, eff)
            mm[start : start + len(chunk)] = feats
            total += float(feats.sum(dtype=np.float64))
            zeros += int(np.count_nonzero(feats == 0))
            bar.update(len(chunk))
        mm.flush()
        del mm
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        default_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    n = len(scenes) * N_REGIONS * feature_dim
    return {"mean": round(total / n, 6), "zero_fraction": round(zeros / n, 6)}


def _check_args(size: str, seed: int, feature_dim: int | None) -> int:
    if size not in SIZES:
        raise ConfigError(f"unknown synthetic size {size!r}; choose one of {sorted(SIZES)}")
    if not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be an int >= 0, got {seed!r}")
    dim = DEFAULT_FEATURE_DIM if feature_dim is None else feature_dim
    if not isinstance(dim, int) or dim < 1:
        raise ConfigError(f"feature_dim must be a positive int, got {feature_dim!r}")
    return dim


def write_synthetic(
    out: str | Path,
    size: str = "small",
    seed: int = 0,
    feature_dim: int | None = None,
    progress: bool = True,
    *,
    config: SynthConfig | None = None,
) -> Path:
    """Write the synthetic dataset into ``out`` (precomp layout + side files) and return ``out``.

    Per split (train, dev, test, testall): ``{split}_ims.npy`` (N, 36, feature_dim) float32,
    ``{split}_caps.txt`` (5N lines), ``{split}_ids.txt`` (N lines), ``{split}_clip.npy`` (N, 512) float32,
    ``{split}_label.txt`` (N lines of N_LABELS 0/1 ints), ``{split}_scenes.jsonl`` (N lines); plus
    ``labels_vocab.txt``, ``dataset_card.json`` and ``README.md``. Same arguments => byte-identical files.
    """
    dim = _check_args(size, seed, feature_dim)
    cfg = config or SynthConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = SIZES[size]
    split_stats: dict[str, dict] = {}
    vocabulary: set[str] = set()
    with progress_bar(total=sum(sizes.values()), desc=f"synth {size}", unit="images", enabled=progress) as bar:
        for split_idx, split in enumerate(SPLITS):
            units = _generate_scenes(seed, split, sizes[split], cfg)
            scenes: list[dict] = []
            captions: list[str] = []
            labels: list[str] = []
            for unit in units:
                key = f"captions:{seed}:{split}:{len(scenes)}"
                for k, (scene, (caps, nouns)) in enumerate(
                    zip(unit, _unit_captions(unit, key, cfg), strict=True)
                ):
                    if len(unit) == 2:
                        scene["twin"] = len(scenes) + 1 - 2 * k
                    scenes.append(scene)
                    captions.extend(caps)
                    hot = [0] * N_LABELS
                    for noun in nouns:
                        hot[_LABEL_INDEX[noun]] = 1
                    labels.append(" ".join(map(str, hot)))
            vocabulary.update(w for c in captions for w in caption_words(c))
            ids = [ID_OFFSETS[split] + i for i in range(len(scenes))]
            records = [
                {"id": i, "twin": None, "twin_kind": None, **s} for i, s in zip(ids, scenes, strict=True)
            ]
            atomic_write_text(out / f"{split}_caps.txt", "".join(c + "\n" for c in captions))
            atomic_write_text(out / f"{split}_ids.txt", "".join(f"{i}\n" for i in ids))
            atomic_write_text(out / f"{split}_label.txt", "".join(line + "\n" for line in labels))
            atomic_write_text(
                out / f"{split}_scenes.jsonl",
                "".join(json.dumps(rec, sort_keys=True) + "\n" for rec in records),
            )
            glob = _global_vectors(scenes, seed, split_idx, cfg)
            atomic_save(out / f"{split}_clip.npy", lambda f, a=glob: np.save(f, a))
            feat_stats = _write_features(out / f"{split}_ims.npy", scenes, seed, split_idx, dim, cfg, bar)
            split_stats[split] = {
                "images": len(scenes),
                "captions": len(captions),
                "twin_pairs": sum(len(u) == 2 for u in units),
                "mean_caption_words": round(sum(len(c.split()) for c in captions) / len(captions), 3),
                "feature_mean": feat_stats["mean"],
                "feature_zero_fraction": feat_stats["zero_fraction"],
            }
    atomic_write_text(out / "labels_vocab.txt", "".join(n + "\n" for n in LABELS_VOCAB))
    card = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "size": size,
        "feature_dim": dim,
        "regions_per_image": N_REGIONS,
        "captions_per_image": CAPTIONS_PER_IMAGE,
        "global_dim": GLOBAL_DIM,
        "splits": split_stats,
        "vocab_sizes": {
            "categories": len(CATEGORIES),
            "attributes": len(ATTRIBUTES),
            "relations": len(RELATIONS),
            "scene_types": len(SCENE_TYPES),
            "clutter": len(CLUTTER),
            "labels": N_LABELS,
            "caption_words": len(vocabulary),
        },
        "config": asdict(cfg),
        "effective_noise": cfg.effective_noise(),
    }
    atomic_write_json(out / "dataset_card.json", card)
    atomic_write_text(out / "README.md", _readme(card))
    return out


def _readme(card: dict) -> str:
    rows = "\n".join(
        f"| {s} | {v['images']} | {v['captions']} | {v['twin_pairs']} |" for s, v in card["splits"].items()
    )
    return f"""# Synthetic image-text retrieval data ({card["generator_version"]})

Generated by `itrlib.data.synth.write_synthetic(size={card["size"]!r}, seed={card["seed"]},
feature_dim={card["feature_dim"]})`. These are NOT natural images: region features are synthesised
from a small symbolic world (objects, attributes, relations, scene types) and captions are template
English that describe part of each scene. Numbers measured on it are not comparable to published
COCO/Flickr30K numbers.

Layout (SCAN/VSE∞ precomp):
- `{{split}}_ims.npy`: float32 (N, {card["regions_per_image"]}, {card["feature_dim"]}) region features;
- `{{split}}_caps.txt`: {card["captions_per_image"]} consecutive caption lines per image;
- `{{split}}_ids.txt`: one integer id per image.

Side files:
- `{{split}}_clip.npy`: float32 (N, {card["global_dim"]}) L2-normalised CLIP-like global vectors (USER CGE);
- `{{split}}_label.txt`: {card["vocab_sizes"]["labels"]} space-separated 0/1 noun labels per image (MVSEN),
  in the order of `labels_vocab.txt`;
- `{{split}}_scenes.jsonl`: the scene structure of each image (objects, attributes, relations, twin);
- `dataset_card.json`: every setting and summary statistics.

| split | images | captions | twin pairs |
|---|---|---|---|
{rows}

The same arguments regenerate byte-identical files. See docs/DATA_CARD.md in the itrlib repository.
"""
