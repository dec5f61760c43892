"""The `predict` task: segment the user's images with the user's words.

Under <run>/predictions/, per image NAME:
    NAME.overlay.png   the input beside the coloured prediction, a legend of the classes and their shares
    NAME.label.png     class indices (255, or 65535 past 254 classes, is unlabelled)
    NAME.json          class names, pixel shares, one segment per class present (class, score, area,
                       bbox, COCO RLE): ovframe.results.SegmentationResult.to_json
and for the whole run predictions/coco.json (COCO images, categories and scored annotations, which
pycocotools and COCO tools read; category_id = class index + 1), and <run>/summary.md: per class, its
share of all pixels and the number of images it appears in (what `ovframe predict` prints).

Images go through the pipeline `batch_size` at a time, so memory stays bounded for folders of any
size. The inputs are checked before any model loads (missing paths, folders without images, nothing
readable: exit 2); an unreadable image is reported and skipped, an image over `max_image_pixels` is
shrunk to fit, and one that fails at run time is listed in <run>/failures.csv (its traceback in
errors.log) while the others are written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from ..errors import BadInput, SampleError
from ..images import find_images, read_image, unreadable_images
from ..interfaces import Task
from ..io import atomic_path, markdown_table, write_csv, write_json, write_text
from ..records import Sample, Vocabulary
from ..results import CocoCollector, SegmentationResult, make_result
from ..runner import RunContext
from .config import PredictConfig
from .isolate import FailureLog, segment_each
from .names import safe_name

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
        # the user's inputs are checked before any model loads
        paths = find_images(cfg.inputs)
        unreadable = unreadable_images(paths)
        if len(unreadable) == len(paths):
            shown = "\n".join(f"  {p}: {why}" for p, why in list(unreadable.items())[:5])
            raise BadInput(f"none of the {len(paths)} input file(s) is an image ovframe can read:\n{shown}")
        vocabulary = ctx.vocabulary()
        if cfg.others:
            vocabulary = with_others(vocabulary)
        pipeline = ctx.pipeline()
        out = ctx.out_dir / "predictions"
        out.mkdir(parents=True, exist_ok=True)
        names = _unique_stems(paths)
        coco = CocoCollector(vocabulary.names)
        pixels = dict.fromkeys(vocabulary.names, 0)
        images_with = dict.fromkeys(vocabulary.names, 0)
        failures = FailureLog(ctx.out_dir, ctx.log)
        unread: dict[str, str] = {}
        written = 0
        batches = [paths[i : i + cfg.batch_size] for i in range(0, len(paths), cfg.batch_size)]
        for batch in ctx.progress(batches, total=len(paths), desc="predict", weight=len):
            samples = []
            for path in batch:
                if path in unreadable:
                    ctx.log.warning("skipped %s: not an image ovframe can read (%s)", path, unreadable[path])
                    unread[names[path]] = unreadable[path]
                    continue
                try:
                    with ctx.timings.stage("read"):
                        image = read_image(path, names[path], max_pixels=cfg.max_image_pixels, downscale=True)
                    samples.append(Sample(image, None, names[path], {"path": str(path)}))
                except SampleError as e:
                    ctx.log.warning("skipped %s", e)
                    unread[names[path]] = e.reason
            if not samples:
                continue
            segmented = segment_each(pipeline, samples, vocabulary, failures)
            with ctx.timings.stage("write"):
                for sample, seg in segmented:
                    result = make_result(sample.image, seg, vocabulary.names, id=sample.id)
                    self._write(out, sample, result, cfg.outputs)
                    coco.add(result, sample.meta["path"])
                    for s in result.segments:
                        pixels[s.label] += s.area
                        images_with[s.label] += 1
                    written += 1
        failed = {**unread, **failures.reasons}
        write_csv(ctx.out_dir / "failures.csv", [{"id": k, "reason": v} for k, v in sorted(failed.items())], columns=["id", "reason"])
        if not written:
            if failures.reasons:
                failures.check_some_succeeded()
            raise BadInput(f"none of the {len(paths)} image(s) could be read; see {ctx.out_dir / 'failures.csv'}")
        if "json" in cfg.outputs:
            write_json(out / "coco.json", coco.to_dict())
        total = max(sum(pixels.values()), 1)
        summary = [
            {"class": name, "pixels": f"{100 * pixels[name] / total:.1f}%", "images": f"{images_with[name]}/{written}"}
            for name in sorted(vocabulary.names, key=lambda n: (-pixels[n], vocabulary.names.index(n)))
        ]
        write_text(ctx.out_dir / "summary.md", markdown_table(summary, ["class", "pixels", "images"]) + "\n")
        ctx.log.info("wrote %d prediction(s) to %s%s", written, out, f"; {len(failed)} failed (failures.csv)" if failed else "")
        return {
            "images": written,
            "images_failed": len(failed),
            "classes": len(vocabulary),
            "shares": {name: round(pixels[name] / total, 6) for name in vocabulary.names},
            "images_with": images_with,
        }

    @staticmethod
    def _write(out: Path, sample: Sample, result: SegmentationResult, outputs: list[str]) -> None:
        stem = out / sample.id
        if "overlay" in outputs:
            with atomic_path(f"{stem}.overlay.png") as tmp:
                result.overlay(title=Path(sample.meta.get("path", sample.id)).name).save(tmp, format="PNG")
        if "label" in outputs:
            with atomic_path(f"{stem}.label.png") as tmp:
                result.label_image().save(tmp, format="PNG")
        if "json" in outputs:
            info = {"image": sample.meta.get("path", sample.id), **result.to_json()}
            write_text(f"{stem}.json", _readable_json(info))


def _readable_json(info: dict[str, Any]) -> str:
    """One key per line and one segment per line (an RLE string is long; a list per number is longer)."""
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in info.items() if k != "segments"]
    segments = ",\n".join(f"    {json.dumps(s)}" for s in info.get("segments", []))
    lines.append(f'  "segments": [\n{segments}\n  ]' if segments else '  "segments": []')
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _unique_stems(paths: list[Path]) -> dict[Path, str]:
    """Output names: the file stem (made safe: `..png` cannot write outside predictions/), made unique
    with the parent folder's name when two clash."""
    stems: dict[Path, str] = {}
    used: set[str] = set()
    for path in paths:
        own = safe_name(path.stem).replace("/", "_")
        stem = own
        if stem in used:
            stem = safe_name(f"{path.parent.name}_{own}").replace("/", "_")
        n = 1
        while stem in used:
            n += 1
            stem = f"{own}_{n}"
        used.add(stem)
        stems[path] = stem
    return stems
