"""The `synth-export` task: write a dataset to the `folder` layout that ovframe's folder reader takes.

    ROOT/images/<id>.png     RGB
    ROOT/labels/<id>.png     uint8 class indices in classes.txt order; 255 = ignore (IGNORE_INDEX)
    ROOT/classes.txt         one class name per line, in label order
    ROOT/seen.txt            the names of the classes seen in proposal training (when the vocabulary says)
    ROOT/captions.jsonl      one JSON object per image, in dataset order: {"id": ..., "captions": [...]}
    ROOT/dataset.json        what was exported (the dataset's recipe section) and how many images

Writes are atomic; a re-run keeps the images and labels already there (resume) and refuses a ROOT
that holds an export of a different dataset.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from PIL import Image

from ovframe import IGNORE_INDEX, BadInput, Dataset, RunContext, Sample, SampleError, Task
from ovframe.io import atomic_path, write_json, write_text

from .config import SynthExportConfig

IGNORE_VALUE = 255


class _Items(torch.utils.data.Dataset):
    def __init__(self, dataset: Dataset, n: int):
        self.dataset, self.n = dataset, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Sample | SampleError:
        try:
            return self.dataset[i]
        except SampleError as e:
            return e
        except Exception as e:  # a reader's own error: report and skip, like evaluate does
            return SampleError(self.dataset.sample_id(i), f"{type(e).__name__}: {e}")


def label_png(label: torch.Tensor, num_classes: int) -> Image.Image:
    """uint8 label picture: class index, IGNORE_VALUE where IGNORE_INDEX."""
    if num_classes > IGNORE_VALUE:
        raise BadInput(f"the folder layout stores labels as uint8 PNG (255 = ignore): at most 255 classes, got {num_classes}")
    values = label.numpy()
    out = np.where(values == IGNORE_INDEX, IGNORE_VALUE, values).astype(np.uint8)
    return Image.fromarray(out)


def _save_png(path: Path, picture: Image.Image) -> None:
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")


class SynthExport(Task):
    name = "synth-export"
    Config = SynthExportConfig

    def run(self, ctx: RunContext) -> Mapping[str, Any]:
        cfg: SynthExportConfig = self.config  # type: ignore[assignment]
        if ctx.world_size > 1:
            raise BadInput("synth-export runs in one process; run it without torchrun")
        dataset: Dataset = ctx.component("dataset")
        vocabulary = dataset.vocabulary
        root = Path(cfg.root).expanduser()
        n = len(dataset) if cfg.max_images is None else min(cfg.max_images, len(dataset))
        provenance = {"dataset": ctx.recipe.sections["dataset"].dump(), "images": n, "classes": len(vocabulary)}
        self._claim(root, provenance)
        write_text(root / "classes.txt", "".join(name + "\n" for name in vocabulary.names))
        if vocabulary.seen is not None:
            write_text(root / "seen.txt", "".join(nm + "\n" for nm, s in zip(vocabulary.names, vocabulary.seen) if s))

        captions: list[str] = []
        written = kept = 0
        failed: dict[str, str] = {}
        loader = torch.utils.data.DataLoader(_Items(dataset, n), batch_size=1, num_workers=cfg.workers, collate_fn=list)
        for (item,) in ctx.progress(loader, total=n, desc=f"export {root}"):
            if isinstance(item, SampleError):
                ctx.log.warning("skipped %s: %s", item.sample_id, item.reason)
                failed[item.sample_id] = item.reason
                continue
            image_path = root / "images" / f"{item.id}.png"
            label_path = root / "labels" / f"{item.id}.png"
            if image_path.exists() and (item.label is None or label_path.exists()):
                kept += 1
            else:
                _save_png(image_path, Image.fromarray(np.ascontiguousarray(item.image.permute(1, 2, 0).numpy())))
                if item.label is not None:
                    _save_png(label_path, label_png(item.label, len(vocabulary)))
                written += 1
            if "captions" in item.meta:
                captions.append(json.dumps({"id": item.id, "captions": list(item.meta["captions"])}))
        if captions:
            write_text(root / "captions.jsonl", "".join(line + "\n" for line in captions))
        if failed:
            write_json(root / "failures.json", failed)
        ctx.log.info("exported %d image(s) to %s (%d written, %d kept from an earlier run, %d failed)",
                     written + kept, root, written, kept, len(failed))
        return {"images": written + kept, "written": written, "kept": kept, "images_failed": len(failed),
                "classes": len(vocabulary), "root": str(root)}

    @staticmethod
    def _claim(root: Path, provenance: dict[str, Any]) -> None:
        """Refuse a ROOT that holds something else; mark it as this export's."""
        marker = root / "dataset.json"
        if marker.exists():
            try:
                previous = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                previous = None
            if previous != json.loads(json.dumps(provenance)):
                raise BadInput(
                    f"{root} holds an export of a different dataset (see {marker}); choose another root or delete it"
                )
        elif root.exists() and any(root.iterdir()):
            raise BadInput(f"{root} exists and is not empty (and is not an earlier export); choose another root")
        write_json(marker, provenance)
