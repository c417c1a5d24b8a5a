"""The data pipeline: every image mode/size in, one uint8 format out; CSV rules; the cache; the sampler."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from datasets import (
    DeviceSampler,
    ImageSet,
    decode,
    digit_splits,
    load_digits,
    load_faces,
    load_folder,
    read_csv,
    split_val,
)
from hw3.augment import STRONG_OPS, augment_digits, shuffle_patches, strong_digits, texture_mix
from hw3.cli import DataWarning, UserError


def write_digits(root, domain="mnistm", split="train", images=None, csv_text=None):
    folder = root / "digits" / domain / split
    folder.mkdir(parents=True, exist_ok=True)
    images = images if images is not None else {f"{i}.png": Image.new("RGB", (28, 28), (i * 20, 0, 0))
                                                for i in range(10)}
    for name, im in images.items():
        im.save(folder / name)
    if csv_text is None:
        csv_text = "image_name,label\n" + "".join(f"{n},{i % 10}\n" for i, n in enumerate(images))
    (root / "digits" / domain / f"{split}.csv").write_text(csv_text, newline="")
    return folder


@pytest.mark.parametrize("mode,size", [("RGB", 28), ("L", 28), ("L", 16), ("RGBA", 40), ("P", 28), ("1", 28),
                                       ("RGB", 33), ("I;16", 28), ("LA", 17), ("CMYK", 28)])
def test_decode_any_mode_and_size(tmp_path, mode, size):
    rng = np.random.default_rng(0)
    if mode == "I;16":
        im = Image.fromarray((rng.random((size, size)) * 65535).astype(np.uint16))
    else:
        im = Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).convert(mode)
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    im.save(path)
    a = decode(path, 28)
    assert a.shape == (3, 28, 28) and a.dtype == np.uint8
    if mode == "I;16":  # 16-bit values are scaled, not clipped to white
        assert 60 < a.mean() < 200


def test_gray_becomes_three_equal_channels(tmp_path):
    Image.fromarray(np.arange(28 * 28, dtype=np.uint8).reshape(28, 28) % 251, "L").save(tmp_path / "g.png")
    a = decode(tmp_path / "g.png", 28)
    assert (a[0] == a[1]).all() and (a[1] == a[2]).all() and a.max() > 200


def test_load_digits_labels_and_order(tmp_path):
    write_digits(tmp_path)
    s = load_digits(tmp_path, "mnistm", "train", use_cache=False)
    assert s.images.shape == (10, 3, 28, 28) and s.images.dtype == torch.uint8
    assert s.labels.tolist() == list(range(10))
    assert s.images[3, 0, 0, 0].item() == 60  # the red channel of image 3


def test_cache_is_used_and_invalidated(tmp_path, monkeypatch):
    monkeypatch.setenv("HW3_CACHE", str(tmp_path / "cache"))
    folder = write_digits(tmp_path)
    first = load_digits(tmp_path, "mnistm", "train")
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
    assert not any(p.suffix == ".pt" for p in folder.iterdir())  # nothing written into the user's data
    again = load_digits(tmp_path, "mnistm", "train")
    assert torch.equal(first.images, again.images)
    csv = tmp_path / "digits" / "mnistm" / "train.csv"
    csv.write_text(csv.read_text().replace("0.png,0", "0.png,7"))
    assert load_digits(tmp_path, "mnistm", "train").labels[0].item() == 7


def test_csv_bom_crlf_and_extra_columns(tmp_path):
    names = [f"{i}.png" for i in range(3)]
    text = "\ufeffimage_name,label,extra\r\n" + "".join(f"{n},{i},x\r\n" for i, n in enumerate(names))
    write_digits(tmp_path, images={n: Image.new("L", (28, 28)) for n in names}, csv_text=text)
    assert load_digits(tmp_path, "mnistm", "train", use_cache=False).labels.tolist() == [0, 1, 2]


@pytest.mark.parametrize("csv_text,words", [
    ("image_name,digit\n0.png,1\n", ["lacks column", "label"]),
    ("image_name,label\n0.png,1\n0.png,1\n", ["twice"]),
    ("image_name,label\n0.png,12\n", ["out of range"]),
    ("image_name,label\n0.png,one\n", ["non-numeric"]),
    ("image_name,label\nnope.png,1\n", ["missing", "nope.png"]),
    ("image_name,label\n", ["no rows"]),
])
def test_bad_csv(tmp_path, csv_text, words):
    write_digits(tmp_path, images={"0.png": Image.new("L", (28, 28))}, csv_text=csv_text)
    with pytest.raises(UserError) as e:
        load_digits(tmp_path, "mnistm", "train", use_cache=False)
    for w in words:
        assert w in str(e.value)


@pytest.mark.parametrize("values,expected", [(["0", "1"], [0, 1]), (["0.0", "1.0"], [0, 1]), (["-1", "1"], [0, 1])])
def test_face_attribute_encodings(tmp_path, values, expected):
    folder = tmp_path / "face" / "train"
    folder.mkdir(parents=True)
    for i in range(2):
        Image.new("RGB", (70, 60)).save(folder / f"{i}.png")
    (tmp_path / "face" / "train.csv").write_text(
        "image_name,Male,Smiling\n" + "".join(f"{i}.png,1,{v}\n" for i, v in enumerate(values)))
    s = load_faces(tmp_path, "train", "Smiling", use_cache=False)
    assert s.images.shape == (2, 3, 64, 64) and s.labels.tolist() == expected
    with pytest.raises(UserError, match="lacks column"):
        load_faces(tmp_path, "train", "Eyeglasses", use_cache=False)


def test_corrupt_images_skipped_in_training_but_fatal_in_prediction(tmp_path):
    images = {f"{i}.png": Image.new("L", (28, 28), i) for i in range(4)}
    folder = write_digits(tmp_path, images=images)
    (folder / "1.png").write_bytes(b"")                                      # zero bytes
    (folder / "2.png").write_bytes((folder / "3.png").read_bytes()[:30])    # truncated
    with pytest.warns(UserWarning, match="skipping 2"):
        s = load_digits(tmp_path, "mnistm", "train", use_cache=False)
    assert s.names == ["0.png", "3.png"] and s.labels.tolist() == [0, 3]
    with pytest.raises(UserError, match="cannot decode"):
        load_folder(folder, 28)


def test_load_folder_sorted_ignores_non_images(tmp_path):
    for n in ["b.png", "a.jpg", "c.png"]:
        Image.new("RGB", (10, 12)).save(tmp_path / n)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.warns(UserWarning, match="non-image"):
        s = load_folder(tmp_path, 28)
    assert s.names == ["a.jpg", "b.png", "c.png"] and s.images.shape == (3, 3, 28, 28)


@pytest.mark.parametrize("make,words", [
    (lambda p: p / "absent", ["not found"]),
    (lambda p: (p / "empty").mkdir() or p / "empty", ["no images"]),
    (lambda p: (p / "f.png").write_bytes(b"x") and p / "f.png", ["got a file"]),
])
def test_bad_folders(tmp_path, make, words):
    with pytest.raises(UserError) as e:
        load_folder(make(tmp_path), 28)
    for w in words:
        assert w in str(e.value)


def test_unknown_domain(tmp_path):
    with pytest.raises(UserError, match="unknown domain 'mnistx'"):
        load_digits(tmp_path, "mnistx", "train")


def test_split_and_sampler_are_seeded_and_disjoint():
    tr, va = split_val(100, 0.1, seed=3)
    assert len(va) == 10 and len(set(tr.tolist()) | set(va.tolist())) == 100
    assert torch.equal(split_val(100, 0.1, seed=3)[1], va)
    data = ImageSet(torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1).expand(50, 3, 2, 2).contiguous(),
                    [str(i) for i in range(50)], torch.arange(50))
    full = DeviceSampler(data, torch.device("cpu"), torch.Generator().manual_seed(0)).sample(8)[1]
    halves = [DeviceSampler(data, torch.device("cpu"), torch.Generator().manual_seed(0)).sample(8, r, 2)[1]
              for r in range(2)]
    assert torch.equal(torch.cat(halves), full)  # two ranks see disjoint halves of the same global batch


def test_augment_keeps_range_and_shape():
    x = torch.rand(16, 3, 28, 28) * 2 - 1
    y = augment_digits(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1 and not torch.allclose(x, y)


def test_strong_view_is_the_weak_one_plus_its_ops():
    """With no op picked the strong view is exactly the weak one (the same draws first); with ops it is another
    image in range, and the same seed gives the same view."""
    x = torch.rand(16, 3, 28, 28) * 2 - 1
    weak = augment_digits(x, torch.Generator().manual_seed(0))
    assert torch.allclose(strong_digits(x, torch.Generator().manual_seed(0), n_ops=0), weak, atol=1e-5)
    strong = strong_digits(x, torch.Generator().manual_seed(0))
    assert strong.shape == x.shape and strong.min() >= -1 and strong.max() <= 1
    changed = (strong - weak).abs().flatten(1).amax(1) > 1e-3
    assert changed.float().mean() > 0.8  # two ops per image: nearly every image moves
    assert torch.equal(strong, strong_digits(x, torch.Generator().manual_seed(0)))
    every = strong_digits(x, torch.Generator().manual_seed(0), n_ops=len(STRONG_OPS))
    assert not torch.allclose(every, strong)


def test_read_csv_not_found(tmp_path):
    with pytest.raises(UserError, match="CSV not found"):
        read_csv(tmp_path / "x.csv", ["image_name"])


def test_shuffle_patches_moves_whole_tiles():
    x = torch.arange(2 * 3 * 28 * 28, dtype=torch.float).reshape(2, 3, 28, 28)
    y = shuffle_patches(x, torch.Generator().manual_seed(0), patch=4)
    assert y.shape == x.shape and not torch.equal(x, y)
    for img_x, img_y in zip(x, y):  # same 4x4 tiles (with their 3 channels), in another order
        tiles = lambda im: sorted(tuple(im[:, i:i + 4, j:j + 4].flatten().tolist())
                                  for i in range(0, 28, 4) for j in range(0, 28, 4))
        assert tiles(img_x) == tiles(img_y)


def test_is_grey_by_majority():
    from datasets import is_grey

    grey = torch.randint(0, 256, (4, 1, 5, 5), dtype=torch.uint8).expand(4, 3, 5, 5).clone()
    assert is_grey(grey)
    colour = grey.clone()
    colour[:3, 0, 2, 2] = colour[:3, 1, 2, 2] + 1  # one pixel off in three of four images
    assert not is_grey(colour)
    colour[1:3] = grey[1:3]                         # one of four left
    assert is_grey(colour)


def test_texture_mix_draws_the_digit_into_the_background():
    g = torch.Generator().manual_seed(0)
    digit = -torch.ones(8, 3, 28, 28)
    digit[:, :, 8:20, 12:16] = 1.0                                        # a white bar on black
    colour = torch.tensor([0.2, 0.6, 0.9]).view(1, 3, 1, 1)              # a flat background, in [0, 1]
    background = (colour * 2 - 1).expand(8, 3, 28, 28)
    assert torch.equal(texture_mix(digit, background, g, p=0.0), digit)
    mixed = (texture_mix(digit, background, g, p=1.0) + 1) / 2            # back to [0, 1]
    # |background - digit| (MNIST-M's recipe): the background's colour off the digit, its complement on it
    assert torch.allclose(mixed[:, :, 0, 0], colour.view(1, 3).expand(8, 3), atol=1e-6)
    assert torch.allclose(mixed[:, :, 10, 13], 1 - colour.view(1, 3).expand(8, 3), atol=1e-6)


def test_digit_splits_warn_of_absent_classes_and_can_take_the_test_split(tmp_path):
    """Like the mnist data: train/ holds no 9s, test/ only 9s."""
    colours = lambda n, c: {f"{c}_{i}.png": Image.new("RGB", (28, 28), (c * 20, i, 0)) for i in range(n)}  # noqa: E731
    train = {k: v for c in range(9) for k, v in colours(4, c).items()}
    write_digits(tmp_path, "mnist", "train", train, "image_name,label\n" + "".join(f"{n},{n[0]}\n" for n in train))
    test = colours(5, 9)
    write_digits(tmp_path, "mnist", "test", test, "image_name,label\n" + "".join(f"{n},9\n" for n in test))
    with pytest.warns(DataWarning, match=r"mnist train/ has no images of class 9: .*--source-test"):
        tr, va, te = digit_splits(tmp_path, "mnist", 0.25, seed=0)
    assert len(tr.names) + len(va.names) == 36 and 9 not in tr.labels and te.labels.tolist() == [9] * 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every class present: no warning
        tr, va, te = digit_splits(tmp_path, "mnist", 0.25, seed=0, with_test=True)
    both = torch.cat([tr.labels, va.labels])
    assert len(both) == 41 and (both == 9).sum() == 5 and set(tr.names) | set(va.names) == set(train) | set(test)
