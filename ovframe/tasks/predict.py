"""The `predict` task: segment the user's images with the user's words.

Per image it writes, under <run>/predictions/: NAME.overlay.png (the image, coloured regions and a
legend), NAME.label.png (class indices; 255, or 65535 past 254 classes, is unlabelled) and NAME.json
(the class names and the share of pixels each got). Images go through the pipeline `batch_size` at a
time, so memory stays bounded for folders of any size; an unreadable image is reported and skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import SampleError
from ..images import find_images, read_image
from ..interfaces import Task
from ..io import atomic_path, write_text
from ..records import Sample, Vocabulary
from ..runner import RunContext
from ..visualize import label_image, overlay
from .config import PredictConfig

OTHERS = "others"


def with_others(vocabulary: Vocabulary) -> Vocabulary:
    """A one-class vocabulary gets a second class, "others": with one class every pixel would be it."""
    if len(vocabulary) > 1 or OTHERS in vocabulary.names:
        return vocabulary
    seen = None if vocabulary.seen is None else (*vocabulary.seen, False)
    return Vocabulary((*vocabulary.names, OTHERS), seen)


class Predict(Task):
    name = "predict"
    Config = PredictConfig

    def run(self, ctx: RunContext) -> Mapping[str, Any]:
        cfg: PredictConfig = self.config  # type: ignore[assignment]
        vocabulary = ctx.vocabulary()
        if cfg.others:
            vocabulary = with_others(vocabulary)
        pipeline = ctx.pipeline()
        paths = find_images(cfg.inputs)
        out = ctx.out_dir / "predictions"
        out.mkdir(parents=True, exist_ok=True)
        names = _unique_stems(paths)
        written, failed = 0, 0
        batches = [paths[i : i + cfg.batch_size] for i in range(0, len(paths), cfg.batch_size)]
        for batch in ctx.progress(batches, desc="predict"):
            samples = []
            for path in batch:
                try:
                    with ctx.timings.stage("read"):
                        samples.append(Sample(read_image(path, names[path]), None, names[path], {"path": str(path)}))
                except SampleError as e:
                    ctx.log.warning("skipped %s", e)
                    failed += 1
            if not samples:
                continue
            segmentations = pipeline.segment(samples, vocabulary)
            with ctx.timings.stage("write"):
                for sample, seg in zip(samples, segmentations):
                    self._write(out, sample, seg.labels.cpu().numpy(), vocabulary, cfg.outputs)
                    written += 1
        ctx.log.info("wrote %d prediction(s) to %s%s", written, out, f"; {failed} unreadable" if failed else "")
        return {"images": written, "images_failed": failed, "classes": len(vocabulary)}

    @staticmethod
    def _write(out: Path, sample: Sample, labels: np.ndarray, vocabulary: Vocabulary, outputs: list[str]) -> None:
        stem = out / sample.id
        if "overlay" in outputs:
            picture = overlay(sample.image.permute(1, 2, 0).numpy(), labels, vocabulary.names, title=sample.id)
            with atomic_path(f"{stem}.overlay.png") as tmp:
                picture.save(tmp, format="PNG")
        if "label" in outputs:
            with atomic_path(f"{stem}.label.png") as tmp:
                label_image(labels, len(vocabulary)).save(tmp, format="PNG")
        if "json" in outputs:
            ids, counts = np.unique(labels, return_counts=True)
            fractions = {vocabulary.names[int(k)]: round(float(c) / labels.size, 6) for k, c in zip(ids, counts)}
            info = {
                "image": sample.meta.get("path", sample.id),
                "size": list(labels.shape),
                "classes": list(vocabulary.names),
                "fractions": dict(sorted(fractions.items(), key=lambda kv: -kv[1])),
            }
            write_text(f"{stem}.json", json.dumps(info, indent=2) + "\n")


def _unique_stems(paths: list[Path]) -> dict[Path, str]:
    """Output names: the file stem, made unique with the parent folder's name when two clash."""
    stems: dict[Path, str] = {}
    used: set[str] = set()
    for path in paths:
        stem = path.stem
        if stem in used:
            stem = f"{path.parent.name}_{path.stem}"
        n = 1
        while stem in used:
            n += 1
            stem = f"{path.stem}_{n}"
        used.add(stem)
        stems[path] = stem
    return stems
