"""Caption datasets for mine-pairs: samples carry meta["captions"] (list of str) and no label.

coco-captions   COCO Captions 2017 read with pycocotools, beside the COCO images (detectron2's layout):
                    ROOT/coco/train2017/*.jpg                 (val2017 likewise)
                    ROOT/coco/annotations/captions_train2017.json
                `ovframe prepare coco-captions --source DOWNLOAD` puts annotations_trainval2017.zip's
                caption files (and train2017.zip's images, when the folder does not exist) there.
caption-folder  your own images: ROOT/images/<id>.<jpg|png|...> and ROOT/captions.jsonl, one
                {"id": "<id>", "captions": ["...", ...]} a line (synth-export writes this layout).
                Lines that are not JSON or not UTF-8 are reported and skipped; their captions count as bad.

Any other dataset whose samples carry meta["captions"] (the synthetic world's `synth`) is mined the same way.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

from ovframe import BadInput, Dataset, RequiredFile, Sample, Vocabulary
from ovframe.images import IMAGE_SUFFIXES, read_image

from .config import CaptionFolderConfig, CocoCaptionsConfig

log = logging.getLogger("ovframe.mining")
COCO_DOWNLOAD = (
    "a folder holding annotations_trainval2017.zip and train2017.zip / val2017.zip from http://images.cocodataset.org/"
    " (annotations/annotations_trainval2017.zip, zips/train2017.zip), or their unpacked folders"
)


class CaptionDataset(Dataset):
    """Images with captions and no labels: subclasses fill `entries` with (image file, captions, extra meta)."""

    entries: list[tuple[Path, list[Any], dict[str, Any]]]

    @property
    def vocabulary(self) -> Vocabulary:
        raise BadInput(f"dataset {self.name!r} holds captioned images without class labels; give the recipe a `vocabulary:`")

    def __len__(self) -> int:
        return len(self.entries)

    def sample_id(self, index: int) -> str:
        return self.entries[index][0].stem

    def captions(self, index: int) -> list[Any]:
        return list(self.entries[index][1])

    def __getitem__(self, index: int) -> Sample:
        path, captions, extra = self.entries[index]
        image = read_image(path, path.stem)
        return Sample(image, None, path.stem, {"captions": list(captions), "image": str(path), **extra})


class CocoCaptions(CaptionDataset):
    name = "coco-captions"
    Config = CocoCaptionsConfig

    def __init__(self, config: CocoCaptionsConfig):
        super().__init__(config)
        self.annotations, self.image_dir = self.paths(config)
        for path, what in ((self.annotations, "caption annotations"), (self.image_dir, "images")):
            if not path.exists():
                raise BadInput(f"{path}: no COCO {what}; {self.how_to_get(config)}")
        try:
            from pycocotools.coco import COCO
        except ImportError:
            raise BadInput("coco-captions reads COCO with pycocotools: pip install 'ovframe[mining]'") from None
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            try:
                coco = COCO(str(self.annotations))
            except (ValueError, KeyError, UnicodeDecodeError) as e:
                raise BadInput(f"{self.annotations} is not a COCO captions file: {e}") from None
        self.entries = []
        for image_id in sorted(coco.getImgIds()):
            captions = [a.get("caption") for a in coco.imgToAnns.get(image_id, [])]
            self.entries.append((self.image_dir / coco.imgs[image_id]["file_name"], captions, {"coco_id": int(image_id)}))
        if not self.entries:
            raise BadInput(f"{self.annotations} lists no images")

    @staticmethod
    def root(config: CocoCaptionsConfig) -> Path:
        return Path(os.path.expanduser(config.root or os.environ.get("DETECTRON2_DATASETS") or "datasets"))

    @classmethod
    def paths(cls, config: CocoCaptionsConfig) -> tuple[Path, Path]:
        coco = cls.root(config) / "coco"
        return coco / "annotations" / f"captions_{config.split}2017.json", coco / f"{config.split}2017"

    @classmethod
    def how_to_get(cls, config: CocoCaptionsConfig) -> str:
        return (
            f"make it with `ovframe prepare coco-captions --source DOWNLOAD --root {cls.root(config)}`, DOWNLOAD being "
            f"{COCO_DOWNLOAD}; see docs/mining.md"
        )

    @classmethod
    def required_files(cls, config: CocoCaptionsConfig) -> list[RequiredFile]:
        annotations, images = cls.paths(config)
        how = cls.how_to_get(config)
        return [
            RequiredFile(str(annotations), f"COCO Captions {config.split}2017 annotations", how),
            RequiredFile(str(images), f"COCO {config.split}2017 images", how),
        ]

    @classmethod
    def prepare(cls, source: str, root: str, splits: list[str] | None = None, **options: Any) -> None:
        """Copy captions_<split>2017.json (from the annotations zip or folder) to ROOT/coco/annotations/ and the
        images to ROOT/coco/<split>2017/ unless that folder exists."""
        src = Path(os.path.expanduser(source))
        if not src.exists():
            raise BadInput(f"{src}: no such file or folder; --source is {COCO_DOWNLOAD}")
        out = Path(os.path.expanduser(root)) / "coco"
        for split in splits or ["train", "val"]:
            if split not in ("train", "val"):
                raise BadInput(f"coco-captions has the splits train and val, not {split!r}")
            name = f"captions_{split}2017.json"
            if not _copy_found(src, lambda n, name=name: n.endswith("/" + name) or n == name, out / "annotations", flat=True):
                if splits:
                    raise BadInput(f"{src} holds no {name}; --source is {COCO_DOWNLOAD}")
                continue
            images = out / f"{split}2017"
            if images.is_dir():
                print(f"{images} exists; images not copied")
                continue
            folder = f"{split}2017/"
            if not _copy_found(src, lambda n, f=folder: f in n and n.lower().endswith(".jpg"), images, flat=True):
                raise BadInput(f"{src} holds no {folder}*.jpg images (nor {split}2017.zip); --source is {COCO_DOWNLOAD}")
            print(f"coco-captions {split}: {images}")


def _copy_found(src: Path, wanted: Any, dest: Path, flat: bool) -> int:
    """Copy every file under `src` (a folder, a zip, or a folder of zips) whose path matches into `dest`."""
    copied = 0
    dest.mkdir(parents=True, exist_ok=True)
    folders = [src] if src.is_dir() else []
    zips = [src] if src.is_file() and src.suffix == ".zip" else []
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder).as_posix()
            if path.is_file() and path.suffix == ".zip":
                zips.append(path)
            elif path.is_file() and wanted(rel):
                target = dest / path.name
                if not target.exists():
                    shutil.copyfile(path, target)
                copied += 1
    for archive in zips:
        with zipfile.ZipFile(archive) as z:
            for member in z.namelist():
                if member.endswith("/") or not wanted(member):
                    continue
                target = dest / Path(member).name
                if not target.exists():
                    tmp = target.with_name(f".{target.name}.tmp")
                    with z.open(member) as f, open(tmp, "wb") as g:
                        shutil.copyfileobj(f, g)
                    os.replace(tmp, target)
                copied += 1
    return copied


class CaptionFolder(CaptionDataset):
    name = "caption-folder"
    Config = CaptionFolderConfig

    def __init__(self, config: CaptionFolderConfig):
        super().__init__(config)
        self.root = Path(os.path.expanduser(config.root))
        self.image_dir = self.root / "images"
        self.captions_file = Path(os.path.expanduser(config.captions)) if config.captions else self.root / "captions.jsonl"
        if not self.image_dir.is_dir():
            raise BadInput(f"{self.image_dir}: no such folder; expected ROOT/images/<id>.jpg|png and ROOT/captions.jsonl")
        images = sorted(
            (p for p in self.image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")),
            key=lambda p: p.name,
        )
        stems = [p.stem for p in images]
        if len(set(stems)) != len(stems):
            raise BadInput(f"{self.image_dir}: two images share an id (file name without extension)")
        if not images:
            raise BadInput(f"{self.image_dir} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        captions, self.problems = read_captions_jsonl(self.captions_file)
        self.entries = [(p, captions.get(p.stem, []), {}) for p in images]
        unknown = sorted(set(captions) - set(stems))
        if unknown:
            log.warning("%s: %d id(s) without an image in %s, such as %r (ignored)", self.captions_file, len(unknown), self.image_dir, unknown[0])
        for problem in self.problems[:10]:
            log.warning("%s: %s (skipped)", self.captions_file, problem)

    @classmethod
    def required_files(cls, config: CaptionFolderConfig) -> list[RequiredFile]:
        root = Path(os.path.expanduser(config.root))
        captions = Path(os.path.expanduser(config.captions)) if config.captions else root / "captions.jsonl"
        how = 'one {"id": ID, "captions": [...]} object a line, ID the file name of images/<ID>.<ext> without extension'
        return [RequiredFile(str(root / "images"), "the captioned images", "ROOT/images/<id>.jpg|png"),
                RequiredFile(str(captions), "the captions", how)]


def read_captions_jsonl(path: Path) -> tuple[dict[str, list[Any]], list[str]]:
    """{id: captions} and the problems found (line numbers). Bytes that are not UTF-8 are kept as lone
    surrogates, so that the caption they are in is counted as not UTF-8 and skipped, not the whole line."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise BadInput(f"cannot read the captions file {path}: {e.strerror or e}") from None
    captions: dict[str, list[Any]] = {}
    problems: list[str] = []
    for n, line in enumerate(raw.split(b"\n"), 1):
        text = line.decode("utf-8", errors="surrogateescape").strip()
        if not text or text.startswith("#"):
            continue
        try:
            rec = json.loads(text)
        except ValueError as e:
            problems.append(f"line {n}: not JSON ({e})")
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("id"), str) or not isinstance(rec.get("captions"), list):
            problems.append(f'line {n}: expected {{"id": "<image id>", "captions": ["...", ...]}}')
            continue
        captions.setdefault(rec["id"], []).extend(rec["captions"])
    return captions, problems
