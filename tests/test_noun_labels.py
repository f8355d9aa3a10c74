"""data labels: spaCy noun tags -> top-N vocabulary from train -> one multi-hot line per image."""

import json
import os

import numpy as np
import pytest

from itrlib.cli import main
from itrlib.data.noun_labels import (
    STAMP_FILE,
    VOCAB_FILE,
    caption_nouns,
    image_labels,
    load_tagger,
    top_nouns,
    write_noun_labels,
)
from itrlib.errors import DataError

TRAIN = [  # image 0
    "A dog runs on the grass.", "The dog chases a ball.", "A brown dog in a park.", "Dog and ball.",
    "A dog plays.",
    # image 1
    "A man rides a bicycle down the street.", "The man wears a hat.", "A cyclist on a street.",
    "Man on a bike.", "A man with a dog on the street.",
]
DEV = ["A cat sleeps on a sofa.", "The cat is asleep.", "A cat.", "A sofa with a cat.", "Cat and ball."]


@pytest.fixture
def precomp(tmp_path):
    root = tmp_path / "precomp"
    root.mkdir()
    (root / "train_caps.txt").write_text("\n".join(TRAIN) + "\n", encoding="utf-8")
    (root / "dev_caps.txt").write_text("\n".join(DEV) + "\n", encoding="utf-8")
    return root


def read_rows(path):
    return [list(map(int, line.split())) for line in path.read_text(encoding="utf-8").splitlines()]


def test_vocabulary_is_the_top_train_nouns_and_labels_are_unions_over_captions(precomp):
    write_noun_labels(precomp, top=4, progress=False)
    # train noun counts: dog 6, man 4, street 3, ball 2, then bicycle/bike/cyclist/grass/hat/park 1 each
    vocab = (precomp / VOCAB_FILE).read_text(encoding="utf-8").split()
    assert vocab == ["dog", "man", "street", "ball"]
    assert read_rows(precomp / "train_label.txt") == [[1, 0, 0, 1], [1, 1, 1, 0]]
    assert read_rows(precomp / "dev_label.txt") == [[0, 0, 0, 1]]  # cat/sofa are not in the train top 4
    assert json.loads((precomp / STAMP_FILE).read_text())["top"] == 4


def test_same_captions_and_top_reuse_the_files_and_a_new_top_rebuilds_them(precomp):
    write_noun_labels(precomp, top=4, progress=False)
    label = precomp / "train_label.txt"
    os.utime(label, ns=(1, 1))
    write_noun_labels(precomp, top=4, progress=False)
    assert label.stat().st_mtime_ns == 1  # reused, not rewritten
    write_noun_labels(precomp, top=2, progress=False)
    assert read_rows(label) == [[1, 0], [1, 1]]


def test_label_files_not_written_by_the_command_are_kept_unless_forced(precomp):
    (precomp / "train_label.txt").write_text("0 1\n1 0\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train_label\.txt, not written by this command.*--force"):
        write_noun_labels(precomp, top=4, progress=False)
    assert (precomp / "train_label.txt").read_text() == "0 1\n1 0\n"
    write_noun_labels(precomp, top=4, force=True, progress=False)
    assert read_rows(precomp / "train_label.txt") == [[1, 0, 0, 1], [1, 1, 1, 0]]


def test_a_wrong_caption_count_is_a_clear_error(precomp):
    (precomp / "dev_caps.txt").write_text("\n".join(DEV[:4]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"dev_caps.txt: 4 captions, not 5 per image"):
        write_noun_labels(precomp, top=4, progress=False)
    assert not (precomp / "train_label.txt").exists()


def test_ties_are_alphabetical_and_unknown_nouns_are_ignored():
    assert top_nouns([["b", "a"], ["c", "a"]], 2) == ["a", "b"]
    labels = image_labels([["a"], ["zzz"], [], ["b", "a"]], ["a", "b"], caps_per_image=2)
    assert labels.dtype == np.uint8 and labels.tolist() == [[1, 0], [1, 1]]


def test_cli_writes_the_labels(precomp, capsys):
    assert main(["data", "labels", "--data-root", str(precomp), "--top", "3", "--no-progress"]) in (0, None)
    assert "wrote the noun labels" in capsys.readouterr().out
    assert (precomp / VOCAB_FILE).read_text(encoding="utf-8").split() == ["dog", "man", "street"]


def test_every_nn_tag_counts_lower_cased_and_not_lemmatised():
    """NNS and NNP as well as NN, as the recipe's ``tag.startswith("NN")``; plurals stay plurals."""
    assert caption_nouns(["Two dogs chase the balls near Paris."], load_tagger(), progress=False) == [
        ["dogs", "balls", "paris"]]


def _images(path, n_images):
    np.save(path, np.zeros((n_images, 1, 2), dtype=np.float32))


def test_captions_are_checked_against_the_images_also_when_the_labels_are_reused(precomp, capsys):
    """One label line per image of {split}_ims.npy: a caption file one image short is an error naming both."""
    _images(precomp / "train_ims.npy", 3)  # train_caps.txt: 10 captions = 2 images
    assert main(["data", "labels", "--data-root", str(precomp), "--top", "3", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert f"{precomp / 'train_caps.txt'}: 10 captions for 3 images in {precomp / 'train_ims.npy'}" in err[0]
    assert not (precomp / "train_label.txt").exists()
    _images(precomp / "train_ims.npy", 2)
    write_noun_labels(precomp, top=3, progress=False)
    _images(precomp / "train_ims.npy", 3)  # same captions and top: the stamp matches
    with pytest.raises(DataError, match="10 captions for 3 images"):
        write_noun_labels(precomp, top=3, progress=False)
