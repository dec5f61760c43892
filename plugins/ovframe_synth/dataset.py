"""The `synth` dataset: synthetic scenes as ovframe Samples, generated on the fly.

Label views (config `labels`):
    all   label indices into the 40 world classes (world.CLASS_NAMES), vocabulary with seen flags.
    seen  the proposal-training view: label indices into the 27 seen classes only, unseen-class pixels
          IGNORE_INDEX; the vocabulary holds the seen class names only, so a trainer cannot even use
          the unseen names as negatives (as COCO-Stuff training knows only COCO's 171 names).
    none  no label (caption pretraining); vocabulary as for `all`.

With `twins: true`, images 2k and 2k+1 are twins: scene k, and scene k with every object's shape
moved 1-4 places along the shapes (scene.make_scene's shape_shift); hard negatives for pretraining.

Sample.meta: captions (list of str, the first names every class present), split, seed, index, and
objects (class name and visible box [y0, x0, y1, x1] of each object whose class is labelled in this
view; absent for labels: none).
"""

from __future__ import annotations

import numpy as np
import torch

from ovframe import IGNORE_INDEX, Dataset, Sample, Vocabulary

from . import world
from .config import SynthDatasetConfig
from .scene import SPLITS, Scene, WorldSpec, make_scene


class SynthDataset(Dataset):
    name = "synth"
    Config = SynthDatasetConfig

    def __init__(self, config: SynthDatasetConfig):
        super().__init__(config)
        cfg = config
        self.spec = WorldSpec(
            image_size=cfg.image_size,
            min_objects=cfg.objects[0],
            max_objects=cfg.objects[1],
            min_size=cfg.object_size[0],
            max_size=cfg.object_size[1],
            captions=cfg.captions,
            closeups=cfg.closeups,
            cutouts=cfg.cutouts,
        )
        if cfg.labels == "seen":
            self._vocabulary = Vocabulary(tuple(world.CLASSES[i].name for i in world.SEEN_IDS), (True,) * len(world.SEEN_IDS))
            lut = np.full(len(world.CLASSES), IGNORE_INDEX, np.int64)
            lut[list(world.SEEN_IDS)] = np.arange(len(world.SEEN_IDS))
        else:
            self._vocabulary = Vocabulary(world.CLASS_NAMES, world.SEEN)
            lut = np.arange(len(world.CLASSES), dtype=np.int64)
        self._lut = lut  # world class id -> label value of this view

    @property
    def vocabulary(self) -> Vocabulary:
        return self._vocabulary

    def __len__(self) -> int:
        return int(self.config.num_images)

    def sample_id(self, index: int) -> str:
        return f"{self.config.split}-s{self.config.seed}-{index:06d}"

    def scene(self, index: int) -> Scene:
        """The full scene behind sample `index` (objects, regions, caption records), all classes."""
        if not 0 <= index < len(self):
            raise IndexError(f"synth {self.config.split}: index {index} out of range 0..{len(self) - 1}")
        cfg = self.config
        if not cfg.twins:
            return make_scene(cfg.seed, cfg.split, index, self.spec)
        base, second = divmod(index, 2)
        shift = 1 + int(np.random.default_rng([cfg.seed, SPLITS[cfg.split], base, 1]).integers(4)) if second else 0
        return make_scene(cfg.seed, cfg.split, base, self.spec, shape_shift=shift)

    def label_of(self, scene: Scene) -> np.ndarray:
        """int64 [H, W] of this view (all / seen with IGNORE_INDEX; an object photo's backdrop IGNORE_INDEX)."""
        return np.where(scene.label >= 0, self._lut[scene.label], IGNORE_INDEX)

    def __getitem__(self, index: int) -> Sample:
        scene = self.scene(index)
        cfg = self.config
        image = torch.from_numpy(scene.image).permute(2, 0, 1).contiguous()
        meta: dict = {
            "captions": [c.text for c in scene.captions],
            "split": cfg.split,
            "seed": cfg.seed,
            "index": index,
        }
        label = None
        if cfg.labels != "none":
            label = torch.from_numpy(self.label_of(scene))
            meta["objects"] = [
                {"class": world.CLASSES[o.class_id].name, "box": _box(o.visible)}
                for o in scene.objects
                if self._lut[o.class_id] != IGNORE_INDEX
            ]
        return Sample(image=image, label=label, id=self.sample_id(index), meta=meta)


def _box(mask: np.ndarray) -> list[int]:
    """[y0, x0, y1, x1] (end-exclusive) of a non-empty bool mask."""
    ys, xs = np.nonzero(mask)
    return [int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1]
