"""Segment images from Python, in the style of a Hugging Face pipeline.

    from ovframe.api import Segmenter
    segmenter = Segmenter("demo")                        # a shipped recipe's name, or a recipe file
    result = segmenter("photo.jpg", "red star, lava, sky")
    result.class_names, result.labels, result.shares, result.segments, result.overlay()
    results = segmenter(["a.jpg", "https://example.org/b.png", pil_image, array], ["cat", "sofa"])

Images: file paths, http(s) URLs, PIL images, numpy arrays and torch tensors. Arrays are [H, W]
(grey) or [H, W, C]; tensors [C, H, W] or [H, W, C] (C = 1, 3 or 4; a 3-D tensor whose first and last
dimensions could both be channels is read as [C, H, W], an array as [H, W, C]); uint8, or float in
[0, 1]. A 4-D array or tensor is a batch. An alpha channel is dropped, as files are read (Pillow's
convert("RGB")). An image over the pixel limit (Segmenter.max_image_pixels) is shrunk to fit, by the
function `ovframe predict` uses. One image in gives one SegmentationResult; a list or a batch gives a list.

Vocabulary: a list of names (a name may carry synonyms: "road, route"), or one string of
comma-separated names; None uses the recipe's vocabulary (its `vocabulary:` or its dataset's classes).
A single name gets a second class, "others", as `ovframe predict` does.

Importing this module is light (torch and the models load when a Segmenter is made); PIL, pycocotools
and the dataset (for the recipe's own vocabulary) load when first needed.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from .errors import BadInput

if TYPE_CHECKING:
    import torch

    from .records import Vocabulary
    from .results import SegmentationResult

URL_SCHEMES = ("http://", "https://")
URL_TIMEOUT = 30.0
URL_MAX_BYTES = 64 << 20
SEGMENTER_KINDS = ("text_encoder", "proposals", "classifier", "adapter", "fuser")
"""The recipe sections a Segmenter builds (not the dataset, not the task)."""


def vocabulary_names(vocabulary: str | Iterable[str]) -> tuple[str, ...]:
    """Class names from one comma-separated string ("cat, sofa,wall") or a list of names (which may
    hold commas: synonyms). BadInput when there is none or a name repeats."""
    if isinstance(vocabulary, str):
        names = [n.strip() for n in vocabulary.split(",")]
    else:
        names = [str(n).strip() for n in vocabulary]
    from .recipes.schema import check_class_names

    names = [n for n in names if n]
    if not names:
        raise BadInput('the vocabulary needs at least one class name, e.g. "cat, sofa, wall"')
    try:
        check_class_names(names)
    except ValueError as e:
        raise BadInput(str(e)) from None
    return tuple(names)


def _read_url(url: str) -> bytes:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=URL_TIMEOUT) as response:
            data = response.read(URL_MAX_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise BadInput(f"cannot read image {url}: {getattr(e, 'reason', None) or e}") from None
    if len(data) > URL_MAX_BYTES:
        raise BadInput(f"{url}: larger than {URL_MAX_BYTES >> 20} MiB; download it and pass the file")
    return data


def _from_pil(image: Any, max_pixels: int) -> "torch.Tensor":
    from PIL import ImageOps

    from .images import pil_to_tensor, shrink_to_fit

    return pil_to_tensor(shrink_to_fit(ImageOps.exif_transpose(image).convert("RGB"), max_pixels))


def _hwc_to_tensor(array: Any, what: str, max_pixels: int) -> "torch.Tensor":
    """numpy [H, W] or [H, W, C] (C = 1, 3, 4), uint8 or float in [0, 1] -> uint8 [3, H, W], shrunk to
    `max_pixels` as files are."""
    import numpy as np
    from PIL import Image

    from .images import pil_to_tensor, shrink_to_fit

    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise BadInput(f"{what}: expected [H, W] or [H, W, C] with C = 1, 3 or 4, got shape {tuple(array.shape)}")
    if array.dtype == np.uint8:
        pass
    elif np.issubdtype(array.dtype, np.floating):
        if array.size and (not np.isfinite(array).all() or array.min() < 0 or array.max() > 1):
            raise BadInput(
                f"{what}: float images are read as values in [0, 1], got {array.min():.3g}..{array.max():.3g}; "
                f"divide by 255 or pass uint8"
            )
        array = np.round(array.astype(np.float32) * 255).astype(np.uint8)
    else:
        raise BadInput(f"{what}: expected uint8, or float in [0, 1], got {array.dtype}")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return pil_to_tensor(shrink_to_fit(Image.fromarray(np.ascontiguousarray(array[:, :, :3])), max_pixels))


def to_image_tensor(image: Any, what: str = "image", max_pixels: int | None = None) -> "torch.Tensor":
    """One image of any supported kind (see the module docstring) -> uint8 [3, H, W] RGB. An image over
    `max_pixels` (default DEFAULT_MAX_IMAGE_PIXELS) is shrunk to fit, as `ovframe predict` shrinks files:
    by ovframe.images.shrink_to_fit."""
    import numpy as np
    import torch

    from .config import DEFAULT_MAX_IMAGE_PIXELS
    from .errors import SampleError
    from .images import read_image

    limit = DEFAULT_MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    if isinstance(image, (str, os.PathLike)):
        text = os.fspath(image)
        url = isinstance(text, str) and text.lower().startswith(URL_SCHEMES)
        try:
            if url:
                return read_image(io.BytesIO(_read_url(text)), text, max_pixels=limit, downscale=True, name=text)
            return read_image(image, max_pixels=limit, downscale=True)
        except SampleError as e:
            raise BadInput(e.reason) from None
    if type(image).__module__.startswith("PIL."):
        return _from_pil(image, limit)
    if isinstance(image, np.ndarray):
        return _hwc_to_tensor(image, what, limit)
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim == 3 and t.shape[0] in (1, 3, 4):
            t = t.permute(1, 2, 0)  # [C, H, W] -> [H, W, C]
        if t.dtype not in (torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64):
            raise BadInput(f"{what}: expected a uint8 or float tensor, got {t.dtype}")
        if t.dtype in (torch.float16, torch.bfloat16):
            t = t.float()
        return _hwc_to_tensor(t.numpy(), what, limit)
    raise BadInput(
        f"{what}: cannot use {type(image).__name__} as an image (give a path, an http(s) URL, a PIL image, "
        f"a numpy array or a torch tensor)"
    )


def _as_list(images: Any) -> tuple[list[Any], bool]:
    """(the images, whether one image was given)."""
    import numpy as np

    if isinstance(images, (list, tuple)):
        return list(images), False
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images), False
    if type(images).__module__.startswith("torch") and getattr(images, "ndim", 0) == 4:
        return list(images.unbind(0)), False
    return [images], True


def _image_id(image: Any, index: int) -> str:
    if isinstance(image, (str, os.PathLike)):
        text = os.fspath(image)
        name = Path(str(text).split("?")[0].rstrip("/")).stem if isinstance(text, str) else ""
        return name or f"image{index}"
    return f"image{index}"


def _check_fit(recipe: Any, registry: Any) -> None:
    """The recipe's pipeline segments unlabelled images here: refuse what cannot (before any model loads)."""
    from .compat import problems

    parts = {k: (s.spec.name, s.config) for k, s in recipe.sections.items() if k in SEGMENTER_KINDS}
    found = problems(parts, registry, labelled=False)
    if found:
        raise BadInput(f"{recipe.origin}: " + "; ".join(f"{p.section}: {p.message}" for p in found))


class Segmenter:
    """A recipe's pipeline (text encoder, proposals, classifier + adapter, fuser), built once; call it
    on images with any vocabulary. Text embeddings are computed once per vocabulary."""

    def __init__(
        self,
        recipe: str | os.PathLike = "demo",
        *,
        overrides: Sequence[str] = (),
        device: str | None = None,
        batch_size: int = 2,
        max_image_pixels: int | None = None,
    ):
        from .config import DEFAULT_MAX_IMAGE_PIXELS
        from .files import check_required_files
        from .recipes import load_recipe
        from .registry import get_registry
        from .runner import RunContext, Timings, resolve_device

        if batch_size < 1:
            raise BadInput(f"batch_size must be at least 1, got {batch_size}")
        if max_image_pixels is not None and max_image_pixels < 1:
            raise BadInput(f"max_image_pixels must be at least 1, got {max_image_pixels}")
        registry = get_registry()
        recipe_ = load_recipe(recipe, list(overrides), registry=registry, fit="pipeline")
        _check_fit(recipe_, registry)
        needed = []
        for kind in SEGMENTER_KINDS:  # the dataset's files are not needed to segment your images
            section = recipe_.section(kind)
            if section is not None:
                needed += section.spec.load().required_files(section.config)
        check_required_files(needed)
        device_ = resolve_device(device or recipe_.top.device)
        self.recipe = recipe_
        self.batch_size = batch_size
        task = recipe_.section("task")
        from_recipe = getattr(task.config, "max_image_pixels", None) if task is not None else None
        self.max_image_pixels: int = max_image_pixels or from_recipe or DEFAULT_MAX_IMAGE_PIXELS
        """Images over this many pixels are shrunk to fit, as `ovframe predict` shrinks them: this
        argument, else the recipe's `task.max_image_pixels` (`overrides=["task.max_image_pixels=N"]`),
        else 4096 x 4096."""
        self.ctx = RunContext(recipe_, Path(recipe_.top.output_dir) / recipe_.name, registry, device_, timings=Timings(device_))
        self.pipeline = self.ctx.pipeline()
        self._default: Vocabulary | None = None

    @classmethod
    def from_recipe(cls, recipe: str | os.PathLike, overrides: Sequence[str] = (), device: str | None = None, **options: Any) -> "Segmenter":
        """The same as Segmenter(recipe, overrides=..., device=...)."""
        return cls(recipe, overrides=overrides, device=device, **options)

    @property
    def timings(self) -> dict[str, dict[str, float]]:
        """Seconds per pipeline stage over all calls so far."""
        return self.ctx.timings.summary()

    def vocabulary(self, vocabulary: "str | Iterable[str] | Vocabulary | None" = None) -> "Vocabulary":
        """The Vocabulary a call with `vocabulary` uses ("others" added to a single name)."""
        from .records import Vocabulary
        from .tasks.predict import with_others

        if isinstance(vocabulary, Vocabulary):
            return with_others(vocabulary)
        if vocabulary is not None:
            return with_others(Vocabulary(vocabulary_names(vocabulary)))
        if self._default is None:
            try:
                self._default = self.ctx.vocabulary()
            except BadInput as e:
                raise BadInput(f"no vocabulary given, and the recipe's cannot be used ({e}); pass vocabulary=[...]") from None
        return with_others(self._default)

    def __call__(
        self,
        images: Any,
        vocabulary: "str | Iterable[str] | Vocabulary | None" = None,
        *,
        batch_size: int | None = None,
        keep_image: bool = True,
    ) -> "SegmentationResult | list[SegmentationResult]":
        """Segment one image (-> a SegmentationResult) or several (-> a list). `keep_image=False` saves
        memory on large batches (the results then cannot draw overlays)."""
        import torch

        from .records import Sample
        from .results import make_result

        items, single = _as_list(images)
        vocab = self.vocabulary(vocabulary)
        size = batch_size or self.batch_size
        results: list[SegmentationResult] = []
        with torch.no_grad():
            for start in range(0, len(items), size):
                chunk = items[start : start + size]
                samples = [
                    Sample(to_image_tensor(im, f"image {start + j}", self.max_image_pixels), None, _image_id(im, start + j))
                    for j, im in enumerate(chunk)
                ]
                for sample, seg in zip(samples, self.pipeline.segment(samples, vocab)):
                    results.append(make_result(sample.image, seg, vocab.names, id=sample.id, keep_image=keep_image))
        return results[0] if single else results

    def segment(self, images: Any, vocabulary: "str | Iterable[str] | Vocabulary | None" = None, **options: Any) -> "list[SegmentationResult]":
        """Like calling the Segmenter, but always a list."""
        out = self(images, vocabulary, **options)
        return out if isinstance(out, list) else [out]

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={s.spec.name}" for k, s in self.recipe.sections.items() if k in SEGMENTER_KINDS)
        return f"Segmenter({self.recipe.name!r}: {parts}; device {self.ctx.device})"
