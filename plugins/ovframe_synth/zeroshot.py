"""Zero-shot region classification: how well a CLIP names ground-truth regions, seen and unseen.

The monitor of CLIP pretraining. For each labelled image, every class present is one region (its
ground-truth mask, as the `ground-truth-masks` proposals give); the region is cropped the way OVSeg's
region classifier crops it (tight box, background filled with the mean colour, normalised, resized
bicubic to the model's input) and classified against every class name of the vocabulary in a prompt.
Accuracy (zs_acc) is the share of regions whose best name is their class; zs_macc averages it over
the classes present (chance = 1 / K whatever the class frequencies); both over all, seen and unseen
classes (the vocabulary's seen flags).

For the synthetic world's vocabularies it also tells what a CLIP gets right about things: each thing
region is named again among the thing names alone, and zs_thing_colour / zs_thing_shape are the
shares whose best thing name has the region's colour / shape (chance 1/6 and 1/5); zs_macc_things and
zs_macc_stuff are the class-mean accuracies (40-way) over the two kinds.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from ovframe import IGNORE_INDEX, Dataset

from . import world


def masked_crop(image: torch.Tensor, mask: torch.Tensor, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 [3, H, W] image and a non-empty bool [H, W] mask -> float [3, size, size] CLIP input."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    t, b, l, r = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    m = mask[t:b, l:r].float()
    mean_t = torch.tensor(mean).view(3, 1, 1) * 255
    std_t = torch.tensor(std).view(3, 1, 1) * 255
    crop = image[:, t:b, l:r].float() * m + (1 - m) * mean_t
    crop = (crop - mean_t) / std_t
    return F.interpolate(crop[None], size=(size, size), mode="bicubic", align_corners=False)[0]


@torch.no_grad()
def zero_shot_regions(
    model: torch.nn.Module,
    tokenizer: Callable[[list[str]], torch.Tensor],
    dataset: Dataset,
    num_images: int,
    *,
    template: str = "a photo of a {}.",
    mean: Sequence[float],
    std: Sequence[float],
    device: Any = "cpu",
    chunk: int = 128,
) -> dict[str, Any]:
    """Top-1 accuracy of naming each ground-truth region among all the dataset's class names."""
    vocabulary = dataset.vocabulary
    was_training = model.training
    model.eval()
    size = model.visual.image_size
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    text = F.normalize(model.encode_text(tokenizer([template.format(n) for n in vocabulary.names]).to(device)).float(), dim=-1)
    crops, classes = [], []
    for i in range(min(num_images, len(dataset))):
        sample = dataset[i]
        if sample.label is None:
            raise ValueError(f"zero-shot evaluation needs labelled samples; {sample.id} has none")
        for c in torch.unique(sample.label).tolist():
            if c != IGNORE_INDEX:
                crops.append(masked_crop(sample.image, sample.label == c, size, mean, std))
                classes.append(c)
    scores = []
    for start in range(0, len(crops), chunk):
        batch = torch.stack(crops[start : start + chunk]).to(device)
        image = F.normalize(model.encode_image(batch).float(), dim=-1)
        scores.append((image @ text.T).cpu())
    model.train(was_training)
    truth = torch.tensor(classes, dtype=torch.long)
    score = torch.cat(scores) if scores else torch.zeros(0, len(vocabulary))
    correct = score.argmax(dim=1) == truth
    out: dict[str, Any] = {"zs_regions": float(len(truth)), "zs_acc": _mean(correct), "zs_macc": _class_mean(correct, truth),
                           "zs_chance": 1.0 / len(vocabulary)}
    if vocabulary.seen is not None:
        seen = torch.tensor(vocabulary.seen)[truth] if len(truth) else torch.zeros(0, dtype=torch.bool)
        out.update(zs_acc_seen=_mean(correct[seen]), zs_acc_unseen=_mean(correct[~seen]),
                   zs_macc_seen=_class_mean(correct[seen], truth[seen]), zs_macc_unseen=_class_mean(correct[~seen], truth[~seen]))
    out.update(_attributes(score, truth, correct, vocabulary.names))
    out["zs_per_class"] = {vocabulary.names[c]: round(float(correct[truth == c].float().mean()), 4) for c in torch.unique(truth).tolist()}
    return out


def _attributes(score: torch.Tensor, truth: torch.Tensor, correct: torch.Tensor, names: Sequence[str]) -> dict[str, float]:
    """Colour and shape of thing regions (named among the vocabulary's thing names only), and the class
    mean over things and over stuff; {} for a vocabulary with no world thing name. score: [R, K];
    correct: bool [R], whether each region's best name among all K is its class."""
    info = [world.CLASSES[world.CLASS_INDEX[n]] if n in world.CLASS_INDEX else None for n in names]
    things = [k for k, c in enumerate(info) if c is not None and c.is_thing]
    if not things or not len(truth):
        return {}
    is_thing = torch.tensor([c is not None and c.is_thing for c in info])[truth]
    is_stuff = torch.tensor([c is not None and not c.is_thing for c in info])[truth]
    out = {"zs_macc_things": _class_mean(correct[is_thing], truth[is_thing]),
           "zs_macc_stuff": _class_mean(correct[is_stuff], truth[is_stuff])}
    rows = torch.nonzero(is_thing).flatten().tolist()
    best = [things[int(j)] for j in score[rows][:, things].argmax(dim=1)] if rows else []
    pairs = [(info[int(truth[r])], info[b]) for r, b in zip(rows, best)]
    out["zs_thing_colour"] = sum(t.colour == p.colour for t, p in pairs) / len(pairs) if pairs else float("nan")
    out["zs_thing_shape"] = sum(t.shape == p.shape for t, p in pairs) / len(pairs) if pairs else float("nan")
    return out


def _mean(x: torch.Tensor) -> float:
    return float(x.float().mean()) if x.numel() else float("nan")


def _class_mean(correct: torch.Tensor, truth: torch.Tensor) -> float:
    """Accuracy averaged over the classes present (a model naming one class for everything gets 1/K
    of the classes right, whatever the class frequencies)."""
    classes = torch.unique(truth)
    return float(torch.stack([correct[truth == c].float().mean() for c in classes]).mean()) if len(classes) else float("nan")
