"""Qualitative retrieval: ranked examples against a per-query loop, scene sketches, image sources, the
gallery figures and the retrieval-time projection."""

import dataclasses
import json
import types

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from itrlib.errors import DataError
from itrlib.evaluation.examples import image_retrieval, sample_queries, text_retrieval
from itrlib.suite.inference_time import projected_times
from itrlib.suite.report.gallery import CORRECT, WRONG, image_retrieval_figure, image_source, text_retrieval_figure
from itrlib.suite.report.scene_sketch import GROUND, draw_scene, layout, read_scenes


def _ranked(row: np.ndarray) -> list[int]:
    """Items best first, ties by index (the obvious loop)."""
    return sorted(range(len(row)), key=lambda j: (-row[j], j))


@pytest.fixture()
def scores():
    rng = np.random.default_rng(3)
    s = rng.normal(size=(6, 30)).astype(np.float32)
    s[:, 7] = s[:, 8]  # a tie
    return s


def test_text_retrieval_matches_a_loop(scores):
    examples = text_retrieval(scores, [0, 4, 5], k=4, caps_per_image=5)
    for example in examples:
        order = _ranked(scores[example.query])
        gt = range(5 * example.query, 5 * example.query + 5)
        assert list(example.top) == order[:4]
        assert example.gt_rank == 1 + min(order.index(c) for c in gt)
        assert example.correct == tuple(c in gt for c in order[:4])
        assert example.gt == tuple(gt)


def test_image_retrieval_matches_a_loop(scores):
    examples = image_retrieval(scores, [0, 8, 29], k=3, caps_per_image=5)
    for example in examples:
        order = _ranked(scores[:, example.query])
        assert list(example.top) == order[:3]
        assert example.gt_rank == 1 + order.index(example.query // 5)
        assert example.correct == tuple(i == example.query // 5 for i in order[:3])
    perfect = np.repeat(np.eye(6, dtype=np.float32), 5, axis=1)
    assert all(e.gt_rank == 1 and e.correct[0] for e in image_retrieval(perfect, range(30), k=2))
    assert all(e.gt_rank == 1 and all(e.correct) for e in text_retrieval(perfect, range(6), k=5))


def test_bad_queries_and_shapes_are_refused(scores):
    with pytest.raises(ValueError, match="outside"):
        text_retrieval(scores, [6])
    with pytest.raises(ValueError, match="outside"):
        image_retrieval(scores, [-1])
    with pytest.raises(ValueError, match=r"N_img\*5"):
        text_retrieval(scores[:, :29], [0])
    with pytest.raises(ValueError, match="k must be"):
        text_retrieval(scores, [0], k=0)


def test_sample_queries_are_distinct_sorted_and_seeded():
    a = sample_queries(100, 5, seed=1)
    assert a == sample_queries(100, 5, seed=1) and a != sample_queries(100, 5, seed=2)
    assert a == sorted(set(a)) and all(0 <= q < 100 for q in a)
    assert sample_queries(3, 5) == [0, 1, 2]


SCENE = {"id": 7, "scene": "park", "objects": [
    {"attributes": ["red"], "category": "man", "salience": 1.0},
    {"attributes": ["large", "brown"], "category": "horse", "salience": 1.0},
    {"attributes": ["small"], "category": "ball", "salience": 1.0},
    {"attributes": [], "category": "table", "salience": 1.0}],
    "relations": [[0, "riding", 1], [2, "under", 3]]}


def test_scene_layout_follows_the_relations():
    (mx, my, _), (hx, hy, hh), (bx, by, bh), (tx, ty, th) = layout(SCENE)
    assert mx == hx and my > hy + 0.5 * hh  # the rider sits on the horse
    assert bx == tx and by < ty and bh <= th  # the ball is under the table
    assert layout(SCENE) == layout(SCENE)  # deterministic per id
    assert all(0 <= y <= GROUND for _, y, _ in layout({**SCENE, "relations": []}))


def test_every_smoke_scene_draws(smoke_data):
    scenes = read_scenes(smoke_data, "test")
    assert len(scenes) == 40
    fig, ax = plt.subplots()
    for scene in scenes[:10]:
        ax.clear()
        draw_scene(ax, scene)
    texts = [t.get_text() for t in ax.texts]
    assert any(scenes[9]["objects"][0]["category"] in t for t in texts)
    plt.close(fig)
    with pytest.raises(DataError, match="scene descriptions"):
        read_scenes(smoke_data, "nosuchsplit")


def test_image_sources(smoke_data, tmp_path):
    ids = [11, 12]
    plt.imsave(tmp_path / "11.png", np.zeros((4, 4, 3)))
    folder = image_source(smoke_data, "test", ids, image_dir=tmp_path, pattern="{id}.png")
    assert folder.kind == "image folder" and folder.path(0) == tmp_path / "11.png"
    fig, ax = plt.subplots()
    folder.draw(ax, 0)
    assert ax.images
    with pytest.raises(DataError, match=r"12\.png does not exist"):
        folder.draw(ax, 1)
    with pytest.raises(DataError, match="does not exist"):
        image_source(smoke_data, "test", ids, image_dir=tmp_path / "missing")
    with pytest.raises(DataError, match="40 scenes for 2 images"):
        image_source(smoke_data, "test", ids)
    assert image_source(tmp_path, "test", ids).kind == "image ids only"
    (tmp_path / "test_scenes.jsonl").write_text("\n".join(json.dumps({**SCENE, "id": i}) for i in ids))
    assert image_source(tmp_path, "test", ids).kind == "scene sketches"
    plt.close(fig)


def test_gallery_figures_mark_correct_and_wrong(tmp_path):
    scores = np.repeat(np.eye(2, dtype=np.float32), 5, axis=1)
    wrong = scores[::-1].copy()
    captions = [f"caption {i}" for i in range(10)]
    images = image_source(tmp_path, "test", [5, 6])
    text = {"good": text_retrieval(scores, [0, 1]), "bad": text_retrieval(wrong, [0, 1])}
    fig = text_retrieval_figure(text, captions, images, "t")
    colours = {t.get_text().split(" (")[0]: t.get_color() for ax in fig.axes for t in ax.texts
               if "GT rank" in t.get_text()}
    assert colours == {"good": CORRECT, "bad": WRONG}
    image = {"good": image_retrieval(scores, [3]), "bad": image_retrieval(wrong, [3])}
    fig2 = image_retrieval_figure(image, captions, images, "i", k=2)
    frames = [ax.spines["top"].get_edgecolor() for ax in fig2.axes if ax.get_title().startswith("#")]
    assert len(frames) == 4 and matplotlib.colors.to_hex(frames[0]) == CORRECT  # good: #1 correct
    assert matplotlib.colors.to_hex(frames[2]) == WRONG  # bad: #1 wrong
    plt.close("all")


def test_projected_times_scale_each_phase():
    timing = {"encode_images": 2.0, "encode_captions": 3.0, "match": 4.0, "images": 10, "captions": 50,
              "pairs": 500}
    projected = projected_times(timing, 100, 1000)
    assert projected == {"encode": 2.0 * 10 + 3.0 * 20, "match": 4.0 * 200, "total": 80.0 + 800.0}


def test_the_query_picker_is_a_widget_in_jupyterlab_and_one_line_in_a_headless_kernel(monkeypatch):
    import sys

    import ipywidgets

    from itrlib.suite.report.gallery import HeadlessPicker, query_picker

    drawn = []

    def draw(query):
        drawn.append(query)
        return plt.figure()

    monkeypatch.setitem(sys.modules, "ipykernel", sys.modules.get("ipykernel", object()))
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)  # papermill and nbval
    headless = query_picker(draw, [4, 9])
    assert isinstance(headless, HeadlessPicker) and "JupyterLab" in repr(headless) and drawn == []
    monkeypatch.setenv("JPY_SESSION_NAME", "notebooks/mvsen/06_gallery.ipynb")
    picker = query_picker(draw, [4, 9])
    assert isinstance(picker, ipywidgets.interactive) and drawn == [4]  # the first query drawn at once
    plt.close("all")


def test_the_examples_check_recounts_rankings_from_the_scores(scores):
    from itrlib.suite.studies.mvsen_gallery import Gallery, examples_check

    data = types.SimpleNamespace(caps_per_image=5)
    gallery = Gallery("test", data=data, images=None, scores={"A": scores, "B": -scores})
    line = examples_check(gallery, [0, 5], [7, 29])
    assert line == ("test: image queries [0, 5], caption queries [7, 29]; top-3 and ground-truth ranks of A, B "
                    "agree with their scores: True")

    class Shuffled(Gallery):  # a ranking that does not follow the scores (e.g. a broken sort)
        def text_examples(self, images, k=5):
            examples = super().text_examples(images, k)
            return {label: [dataclasses.replace(e, top=e.top[::-1]) for e in rows] for label, rows in examples.items()}

    assert examples_check(Shuffled("test", data, None, {"A": scores}), [0], [7]).endswith("False")
