"""A folder of damaged and extreme images: every good image is evaluated or predicted, every bad one is
reported with its reason, the run finishes (and resumes), and predict refuses bad input before any model loads."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from support import ToyPlugin, write

from ovframe import BadInput, ComponentConfig, RegionClassifier, SampleError, hookimpl
from ovframe.cli import main
from ovframe.images import check_size, read_image, unreadable_images
from ovframe.recipes import load_recipe
from ovframe.runner import RunContext, run_recipe


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims to be width x height: its header only (a decompression bomb's first bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def encoded(array: np.ndarray, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **options)
    return buf.getvalue()


RNG = np.random.default_rng(0)
PICTURE = RNG.integers(0, 255, (20, 30, 3), dtype=np.uint8)
DAMAGED = {  # name -> bytes: each must be reported, never the end of the run
    "truncated.png": encoded(PICTURE, "PNG")[:60],
    "truncated.jpg": encoded(PICTURE, "JPEG")[:200],
    "empty.png": b"",
    "text.png": b"this is not an image",
    "bomb.png": png_header(30_000, 30_000),  # 900 MP: PIL's own bomb check
    "large.png": png_header(5_000, 4_000),  # 20 MP: over the default limit, refused from the header
    "html.jpg": b"<html><body>404</body></html>",
}
ODD_BUT_FINE = {  # name -> (bytes, (height, width) read)
    "sixteen-bit.png": (encoded(RNG.integers(0, 65535, (12, 9), dtype=np.uint16), "PNG"), (12, 9)),
    "palette.png": (encoded(PICTURE[..., 0], "PNG"), (20, 30)),
    "grey-alpha.webp": (encoded(np.dstack([PICTURE[..., 0], PICTURE[..., 1]]), "WEBP"), (20, 30)),
    "thin.png": (encoded(PICTURE[:1], "PNG"), (1, 30)),
    "cmyk.jpg": (b"", (20, 30)),
}


def cmyk_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(PICTURE).convert("CMYK").save(buf, format="JPEG")
    return buf.getvalue()


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_damaged_files_are_a_sample_error(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(DAMAGED[name])
    with pytest.raises(SampleError) as e:
        read_image(path, "x")
    words = "over the limit" if name == "large.png" else "cannot read image"
    assert words in e.value.reason


@pytest.mark.parametrize("name", sorted(ODD_BUT_FINE))
def test_odd_but_valid_files_are_read(tmp_path, name):
    data, (h, w) = ODD_BUT_FINE[name]
    path = tmp_path / name
    path.write_bytes(data or cmyk_jpeg())
    image = read_image(path)
    assert image.dtype == torch.uint8 and tuple(image.shape) == (3, h, w)


def test_over_the_limit_is_shrunk_when_asked(tmp_path):
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((300, 400, 3), dtype=np.uint8)).save(path)
    with pytest.raises(SampleError, match=r"400 x 300 = 120,000 pixels, over the limit of 10,000"):
        read_image(path, max_pixels=10_000)
    small = read_image(path, max_pixels=10_000, downscale=True)
    h, w = small.shape[1:]
    assert h * w <= 10_000 and abs(w / h - 4 / 3) < 0.05
    with pytest.raises(SampleError, match="empty"):
        check_size((0, 5), "p", "x")
    # a phone photo stored sideways (EXIF orientation 6): shrunk, and still turned upright
    photo = tmp_path / "sideways.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.zeros((300, 400, 3), dtype=np.uint8)).save(photo, exif=exif)
    assert tuple(read_image(photo).shape) == (3, 400, 300)
    h, w = read_image(photo, max_pixels=10_000, downscale=True).shape[1:]
    assert h * w <= 10_000 and h > w


def test_a_sliver_keeps_one_row_through_the_maskformer_resize():
    from ovframe_maskformer.mapper import resized_shape

    assert resized_shape(1, 4000, 128, 256) == (1, 256)
    assert resized_shape(4000, 1, 640, 2560) == (2560, 1)
    assert resized_shape(480, 640, 640, 2560) == (640, 853)  # ordinary images: detectron2's sizes


# -- evaluate over a damaged folder ---------------------------------------------------------------
def folder_dataset(root, n_good=6):
    """A `folder` dataset: n_good fabricated images with labels, plus every damaged file (with a label)."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("a\nb\nc\n")
    good = []
    for i in range(n_good):
        label = np.zeros((16, 16), dtype=np.uint8)
        label[4:12, i % 8 : i % 8 + 6] = 1 + i % 2
        Image.fromarray(np.stack([label * 80] * 3, -1).astype(np.uint8)).save(root / "images" / f"good{i}.png")
        Image.fromarray(label).save(root / "labels" / f"good{i}.png")
        good.append(f"good{i}")
    for name, data in DAMAGED.items():
        stem = name.replace(".", "-")
        (root / "images" / f"{stem}.png").write_bytes(data)
        Image.fromarray(np.zeros((16, 16), dtype=np.uint8)).save(root / "labels" / f"{stem}.png")
    return good


class FlakyConfig(ComponentConfig):
    """The oracle classifier, except that it fails at run time on the samples named while `switch` exists (test only)."""

    fail_on: list[str] = []
    error: str = "RuntimeError"
    switch: str = ""
    needs_text = False


class Flaky(RegionClassifier):
    name = "flaky"
    Config = FlakyConfig

    def __init__(self, config):
        super().__init__(config)
        from ovframe import get_registry

        self.oracle = get_registry().get("classifier", "oracle").build({})

    def classify(self, samples, proposals, text, vocabulary):
        for sample in samples:
            if sample.id in self.config.fail_on and (not self.config.switch or os.path.exists(self.config.switch)):
                raise {"RuntimeError": RuntimeError, "MemoryError": MemoryError}[self.config.error](f"cannot handle {sample.id}")
        return self.oracle.classify(samples, proposals, text, vocabulary)


class FlakyPlugin:
    @hookimpl
    def register_region_classifiers(self, register):
        register(Flaky)


@pytest.fixture
def flaky_registry(toy_registry):
    toy_registry.add_plugin(FlakyPlugin(), name="flaky")
    return toy_registry


def evaluate_recipe(tmp_path, data, fail_on=(), **task):
    options = ", ".join(f"{k}: {v}" for k, v in {"batch_size": 4, **task}.items())
    return write(
        tmp_path / "eval.yaml",
        f"name: eval\noutput_dir: {tmp_path / 'runs'}\ndevice: cpu\ndataset: {{plugin: folder, root: {data}}}\n"
        f"proposals: ground-truth-masks\nclassifier: {{plugin: oracle}}\nfuser: clip-only\n"
        f"task: {{plugin: evaluate, {options}}}\n",
    )


def failures(run_dir):
    lines = (run_dir / "failures.csv").read_text().splitlines()[1:]
    return {line.split(",", 1)[0]: line.split(",", 1)[1] for line in lines}


def test_every_good_image_of_a_damaged_folder_is_evaluated(tmp_path, toy_registry, capsys):
    good = folder_dataset(tmp_path / "data")
    f = evaluate_recipe(tmp_path, tmp_path / "data")
    assert main(["run", str(f)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    run_dir = tmp_path / "runs" / "eval"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["images"] == len(good) and metrics["images_failed"] == len(DAMAGED) and metrics["mIoU"] == 100.0
    failed = failures(run_dir)
    assert set(failed) == {name.replace(".", "-") for name in DAMAGED}
    assert "over the limit of 16,777,216" in failed["large-png"] and "DecompressionBomb" in failed["bomb-png"]


def test_an_image_that_fails_at_run_time_is_reported_and_tried_again(tmp_path, flaky_registry, capsys):
    good = folder_dataset(tmp_path / "data")
    switch = tmp_path / "fail"
    switch.write_text("on")
    f = evaluate_recipe(tmp_path, tmp_path / "data")
    f.write_text(f.read_text().replace(
        "classifier: {plugin: oracle}", f"classifier: {{plugin: flaky, fail_on: [good1, good4], error: MemoryError, switch: {switch}}}"
    ))
    assert main(["run", str(f)]) == 0
    assert "Traceback" not in capsys.readouterr().err  # tracebacks go to errors.log only
    run_dir = tmp_path / "runs" / "eval"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["images"] == len(good) - 2 and metrics["images_failed"] == len(DAMAGED) + 2
    assert failures(run_dir)["good1"] == "MemoryError: cannot handle good1"
    assert "Traceback" in (run_dir / "errors.log").read_text()
    # more memory now: a resumed run (metrics.json gone, as after a kill) evaluates them, and only them
    (run_dir / "metrics.json").unlink()
    switch.unlink()
    assert main(["run", str(f)]) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["images"] == len(good) and metrics["images_failed"] == len(DAMAGED) and metrics["mIoU"] == 100.0
    assert "resuming: 11 of 13 images already counted" in (run_dir / "log.txt").read_text()


def test_a_run_where_every_image_fails_at_run_time_fails(tmp_path, flaky_registry, capsys):
    folder_dataset(tmp_path / "data", n_good=3)
    f = evaluate_recipe(tmp_path, tmp_path / "data")
    f.write_text(f.read_text().replace("classifier: {plugin: oracle}", "classifier: {plugin: flaky, fail_on: [good0, good1, good2]}"))
    assert main(["run", str(f)]) == 1
    err = capsys.readouterr().err
    assert "every image failed (3 at run time)" in err and "Traceback" not in err


def test_the_pixel_limit_is_a_task_option(tmp_path, toy_registry):
    good = folder_dataset(tmp_path / "data")
    f = evaluate_recipe(tmp_path, tmp_path / "data", max_image_pixels=100)  # every 16 x 16 image is over
    with pytest.raises(BadInput, match="none of the 13 images could be evaluated"):
        run_recipe(load_recipe(f, registry=toy_registry), toy_registry)
    failed = failures(tmp_path / "runs" / "eval")
    assert all("over the limit of 100" in failed[g] for g in good)


# -- predict: inputs checked before any model loads ---------------------------------------------------
@pytest.fixture
def no_models(monkeypatch):
    """Fail the test if predict gets as far as building its pipeline."""

    def refuse(self):
        raise AssertionError("the pipeline was built before the inputs were checked")

    monkeypatch.setattr(RunContext, "pipeline", refuse)


PREDICT_RECIPE = "name: p\ndevice: cpu\nproposals: {plugin: grid, cells: 2}\nclassifier: {plugin: mean-colour, colours: {a: [0, 0, 0]}}\nfuser: clip-only\n"


@pytest.mark.parametrize(
    "case, words",
    [
        ("missing", "nothere.png: no such file or folder"),
        ("empty-folder", "no image files in this folder"),
        ("unreadable-folder", "none of the 3 input file(s) is an image ovframe can read"),
        ("batch-size-0", "--batch-size: must be at least 1"),
        ("duplicates", "class names must be distinct; repeated: 'cat'"),
        ("binary-vocab", "must be UTF-8 text; this file has a NUL byte"),
        ("duplicate-vocab-file", "class names must be distinct; repeated: 'sofa'"),
    ],
)
def test_predict_refuses_bad_input_before_loading_models(tmp_path, toy_registry, no_models, capsys, case, words):
    recipe = write(tmp_path / "p.yaml", PREDICT_RECIPE)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(PICTURE).save(photos / "ok.png")
    inputs, vocab = [str(photos)], ["--vocab", "cat,sofa"]
    if case == "missing":
        inputs = [str(photos / "ok.png"), str(tmp_path / "nothere.png")]
    elif case == "empty-folder":
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "notes.txt").write_text("no pictures")
        inputs = [str(tmp_path / "empty")]
    elif case == "unreadable-folder":
        (tmp_path / "bad").mkdir()
        for name in ("text.png", "empty.png", "html.jpg"):
            (tmp_path / "bad" / name).write_bytes(DAMAGED[name])
        inputs = [str(tmp_path / "bad")]
    elif case == "batch-size-0":
        vocab += ["--batch-size", "0"]
    elif case == "duplicates":
        vocab = ["--vocab", "cat, sofa,cat"]
    elif case == "binary-vocab":
        (tmp_path / "v.txt").write_bytes(b"cat\n\x00\x01\x02")
        vocab = ["--vocab-file", str(tmp_path / "v.txt")]
    elif case == "duplicate-vocab-file":
        (tmp_path / "v.txt").write_text("sofa\ncat\n# comment\nsofa\n")
        vocab = ["--vocab-file", str(tmp_path / "v.txt")]
    code = main(["predict", *inputs, *vocab, "--recipe", str(recipe), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and words in err and "Traceback" not in err, err


def test_predict_keeps_outputs_inside_predictions_and_survives_a_bomb(tmp_path, toy_registry, capsys):
    recipe = write(tmp_path / "p.yaml", PREDICT_RECIPE)
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("..png", "...png", "a.png"):
        Image.fromarray(PICTURE).save(photos / name, format="PNG")
    (photos / "b.png").write_bytes(DAMAGED["bomb.png"])
    (photos / "c.png").write_bytes(DAMAGED["truncated.png"])
    out = tmp_path / "out"
    assert main(["predict", str(photos), "--vocab", "cat,sofa", "--recipe", str(recipe), "--out", str(out), "--batch-size", "5"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.label.png"))
    assert len(written) == 3 and all(p.startswith("out/predictions/") for p in written), written
    assert json.loads((out / "metrics.json").read_text())["images_failed"] == 2
    assert set(failures(out)) == {"b", "c"}
