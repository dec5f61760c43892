"""`folder`: the user's own images, labels and class names.

    ROOT/images/<id>.<jpg|jpeg|png|bmp|webp|tif|tiff>
    ROOT/labels/<id>.png     uint8 with 255 = ignore, or 16-bit with 65535 = ignore (more than 254 classes)
    ROOT/classes.txt         one class name per line, in label order ("#" lines are comments)
    ROOT/seen.txt            optional: names of the classes seen in proposal training (Vocabulary.seen)

An image without a label file is allowed (label None: prediction-only folders); evaluation reports it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ovframe import BadInput, Dataset, RequiredFile, Sample, SampleError, Vocabulary
from ovframe.images import IMAGE_SUFFIXES, read_image

from .config import FolderConfig
from .labels import read_label

LAYOUT = "ROOT/images/<id>.jpg|png..., ROOT/labels/<id>.png, ROOT/classes.txt (see docs/evaluating-custom-data.md)"


def _read_names(path: Path, what: str) -> tuple[str, ...]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise BadInput(f"cannot read {what} {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise BadInput(f"{what} {path} is not UTF-8 text") from None
    return tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))


class FolderDataset(Dataset):
    name = "folder"
    Config = FolderConfig

    def __init__(self, config: FolderConfig):
        super().__init__(config)
        self.base = self.base_dir(config)
        self.image_dir, self.label_dir = self.base / "images", self.base / "labels"
        self._vocabulary = self._load_vocabulary(config)
        if not self.image_dir.is_dir():
            raise BadInput(f"{self.image_dir}: no such folder; expected {LAYOUT}")
        self._images: list[Path] = []
        ids: dict[str, Path] = {}
        for entry in sorted(os.scandir(self.image_dir), key=lambda e: e.name):
            path = Path(entry.path)
            if entry.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES or not entry.is_file():
                continue
            if path.stem in ids:
                raise BadInput(
                    f"{self.image_dir}: {ids[path.stem].name} and {path.name} have the same id {path.stem!r}; "
                    f"ids (file names without extension) must be unique"
                )
            ids[path.stem] = path
            self._images.append(path)
        if not self._images:
            raise BadInput(f"{self.image_dir} holds no images ({', '.join(IMAGE_SUFFIXES)}); expected {LAYOUT}")
        if self.label_dir.is_dir():
            orphans = sorted(
                e.name for e in os.scandir(self.label_dir) if e.name.endswith(".png") and e.name[:-4] not in ids
            )
            if orphans:
                raise BadInput(
                    f"{self.label_dir}: {len(orphans)} label file(s) without an image in {self.image_dir}, "
                    f"such as {orphans[0]}; every labels/<id>.png needs an images/<id>.<ext>"
                )

    @staticmethod
    def base_dir(config: FolderConfig) -> Path:
        root = Path(os.path.expanduser(config.root))
        return root / config.split if config.split else root

    @classmethod
    def _class_file(cls, config: FolderConfig, option: str | None, default: str) -> Path | None:
        if option is not None:
            return Path(os.path.expanduser(option))
        base = cls.base_dir(config)
        for folder in (base, Path(os.path.expanduser(config.root))):
            if (folder / default).is_file():
                return folder / default
        return None

    @classmethod
    def required_files(cls, config: FolderConfig) -> list[RequiredFile]:
        base = cls.base_dir(config)
        classes = cls._class_file(config, config.classes, "classes.txt") or base / "classes.txt"
        how = f"make the folder layout {LAYOUT}"
        files = [
            RequiredFile(str(base / "images"), "the images to evaluate", how),
            RequiredFile(str(classes), "class names, one per line in label order", how),
        ]
        if config.seen is not None:
            files.append(RequiredFile(str(Path(os.path.expanduser(config.seen))), "names of the seen classes", how))
        return files

    def _load_vocabulary(self, config: FolderConfig) -> Vocabulary:
        classes = self._class_file(config, config.classes, "classes.txt")
        if classes is None:
            raise BadInput(f"{self.base / 'classes.txt'}: no class-name file; expected {LAYOUT}")
        names = _read_names(classes, "class-name file")
        if not names:
            raise BadInput(f"class-name file {classes} has no names (one per line, in label order)")
        if len(names) > 65535:
            raise BadInput(f"{classes}: {len(names)} classes; labels hold at most 65,535")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise BadInput(f"class-name file {classes} repeats {duplicates}; each class needs its own name")
        seen = None
        seen_file = self._class_file(config, config.seen, "seen.txt")
        if seen_file is not None:
            seen_names = _read_names(seen_file, "seen-class file")
            unknown = sorted(set(seen_names) - set(names))
            if unknown:
                raise BadInput(f"seen-class file {seen_file} names classes not in {classes}: {unknown}")
            seen = tuple(n in set(seen_names) for n in names)
        return Vocabulary(names, seen)

    @classmethod
    def prepare(cls, source: str, root: str, **options: Any) -> None:
        raise BadInput(f"a folder dataset needs no preparation: arrange your files as {LAYOUT}")

    @property
    def vocabulary(self) -> Vocabulary:
        return self._vocabulary

    def __len__(self) -> int:
        return len(self._images)

    def sample_id(self, index: int) -> str:
        return self._images[index].stem

    def __getitem__(self, index: int) -> Sample:
        image_path = self._images[index]
        sample_id = image_path.stem
        image = read_image(image_path, sample_id)
        label_path = self.label_dir / f"{sample_id}.png"
        meta: dict[str, Any] = {"image": str(image_path)}
        label = None
        if label_path.is_file():
            label = read_label(label_path, len(self._vocabulary), sample_id)
            if tuple(label.shape) != tuple(image.shape[1:]):
                raise SampleError(
                    sample_id, f"label {label_path} is {tuple(label.shape)} but image {image_path} is {tuple(image.shape[1:])}"
                )
            meta["label"] = str(label_path)
        return Sample(image, label, sample_id, meta)
