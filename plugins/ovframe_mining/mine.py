"""The `mine-pairs` task: captions -> phrases -> each phrase's best-matching proposal -> (mask, phrase) pairs.

For every image of the recipe's `dataset:` whose samples carry meta["captions"]:
  1. captions are checked (empty, not UTF-8, not text, longer than max_caption_chars: counted and skipped)
     and parsed with spaCy into phrases (phrases.py); the image's phrases are the distinct ones of all
     its captions;
  2. the recipe's `proposals:` generator proposes masks (given the phrases' text embeddings when it
     needs text: a MaskFormer's class logits then also give each proposal's objectness), at its test
     size under the recipe's `resolution: reference` and under its `precision`, as in evaluate and
     predict (masks written at the image's size: binary_masks);
  3. the recipe's `classifier:` scores every proposal against the image's phrases (+ `negatives`):
     probs [N, P], each proposal's distribution over the phrases;
  4. each phrase keeps its best-matching proposal(s) above `threshold` (assign.py), among the proposals
     valid for the classifier, at least `min_area` of the image and, if asked, `min_objectness`.
An image with a single phrase and no negatives has nothing to compare it with and gives no pair (counted).

Output: sharded JSONL with COCO RLE masks (shards.py), resumable after a kill, split over torchrun
processes by shard; at the end (process 0) a summary: metrics.json (pairs, unique phrases, captions
skipped ...), phrases.csv, pairs_per_phrase.csv/.png, failures.csv and, with `precision:`, the pair
precision against ground truth (judge.py) with precision_per_class.csv.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ovframe import BadInput, SampleError, Task, TextEmbeddings, Vocabulary
from ovframe.io import markdown_table, write_csv
from ovframe.pipeline import autocast, test_resize
from ovframe.runner import RunContext

from . import rle
from .assign import assign, objectness
from .config import MinePairsConfig
from .judge import Judge, empty_counts, merge, precision_metrics
from .phrases import PhraseExtractor, check_caption, unique
from .shards import PAIRS_DIR, is_complete, read_stats, remove_partial, write_shard
from .summary import write_tables


MASK_CHUNK = 16
"""Proposals whose mask logits are resized to the image's size at a time (bounds the float memory)."""


def binary_masks(mask_logits: torch.Tensor, size: tuple[int, int], thr: float) -> torch.Tensor:
    """bool [N, H, W] on the CPU: sigmoid(mask logits) > thr at the image's size (h, w). Logits at another
    size (the test size of `resolution: reference`) are resized there first, bilinear (half-pixel
    centres), as the fused scores of evaluate and predict are, a few proposals at a time."""
    n = len(mask_logits)
    if tuple(mask_logits.shape[1:]) == tuple(size):
        return (mask_logits.float().sigmoid() > thr).cpu()
    out = torch.empty((n, *size), dtype=torch.bool)
    for start in range(0, n, MASK_CHUNK):
        logits = mask_logits[start : start + MASK_CHUNK].float()
        logits = F.interpolate(logits[None], size=tuple(size), mode="bilinear", align_corners=False)[0]
        out[start : start + MASK_CHUNK] = (logits.sigmoid() > thr).cpu()
    return out


class PhraseTexts:
    """Text embeddings of phrases, each encoded once per run (the encoder's own disk cache aside)."""

    def __init__(self, encoder: Any):
        self.encoder = encoder
        self.rows: dict[str, torch.Tensor] = {}
        self.model_id = ""

    def add(self, phrases: Sequence[str]) -> None:
        new = unique(p for p in phrases if p not in self.rows)
        if new:
            emb = self.encoder.encode(Vocabulary(tuple(new)))
            self.model_id = emb.model_id
            for phrase, row in zip(new, emb.embeddings):
                self.rows[phrase] = row

    def __call__(self, phrases: Sequence[str]) -> TextEmbeddings:
        self.add(phrases)
        return TextEmbeddings(Vocabulary(tuple(phrases)), torch.stack([self.rows[p] for p in phrases]), self.model_id)


class _Indexed(torch.utils.data.Dataset):
    """(index, Sample or SampleError): an unreadable image never stops the loader."""

    def __init__(self, dataset: Any, indices: list[int]):
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, Any]:
        index = self.indices[i]
        try:
            return index, self.dataset[index]
        except SampleError as e:
            return index, e
        except Exception as e:  # a decoder's own error
            return index, SampleError(self.dataset.sample_id(index), f"{type(e).__name__}: {e}")


def new_stats(k: int, first: int, last: int) -> dict[str, Any]:
    return {
        "shard": k, "first": first, "last": last, "images": 0, "images_failed": {}, "images_without_captions": 0,
        "images_without_phrases": 0, "images_single_phrase": 0, "images_with_pairs": 0, "captions": 0,
        "captions_skipped": {}, "phrase_mentions": 0, "image_phrases": 0, "proposals": 0, "candidates": 0,
        "pairs": 0, "phrases": {}, "extracted": {}, "precision": None,
    }


class MinePairs(Task):
    name = "mine-pairs"
    Config = MinePairsConfig

    def run(self, ctx: RunContext) -> Mapping[str, Any]:
        cfg: MinePairsConfig = self.config  # type: ignore[assignment]
        dataset = ctx.component("dataset")
        self.generator = ctx.component("proposals")
        self.classifier = ctx.component("classifier")
        needs_text = self.generator.needs_text or self.classifier.needs_text
        if needs_text and not ctx.has("text_encoder"):
            raise BadInput(f"{ctx.recipe.origin}: the proposals or the classifier read text: mine-pairs needs a `text_encoder:`")
        self.texts = PhraseTexts(ctx.component("text_encoder")) if needs_text else None
        self.extractor = PhraseExtractor(cfg.phrases)
        self.judge = self._judge(ctx, cfg) if cfg.precision is not None else None
        classifier_thr = getattr(self.classifier.config, "mask_thr", None)
        if classifier_thr is not None and classifier_thr != cfg.mask_thr:
            ctx.log.warning("task.mask_thr %s differs from classifier.mask_thr %s: the masks written are not the regions scored",
                            cfg.mask_thr, classifier_thr)
        ctx.log.info("mine-pairs: phrases by %s (%s), %s proposals, %s classifier", self.extractor.pipeline_name,
                     cfg.phrases.mode, self.generator.name, self.classifier.name)

        total = len(dataset) if cfg.max_images is None else min(cfg.max_images, len(dataset))
        n_shards = math.ceil(total / cfg.shard_images)
        folder = ctx.out_dir / PAIRS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        mine = list(range(ctx.rank, n_shards, ctx.world_size))
        for k in mine:
            remove_partial(folder, k)
        todo = [k for k in mine if not is_complete(folder, k)]
        if len(todo) < len(mine):
            ctx.log.info("resuming: %d of %d shards already mined", len(mine) - len(todo), len(mine))
        for k in todo:
            first, last = k * cfg.shard_images, min((k + 1) * cfg.shard_images, total)
            start = time.perf_counter()
            records, stats = self.mine_shard(ctx, dataset, k, first, last)
            with ctx.timings.stage("write"):
                write_shard(folder, k, records, stats)
            ctx.log.info("shard %d (images %d-%d): %d pairs, %.1f s", k, first, last - 1, len(records), time.perf_counter() - start)
        if ctx.world_size > 1:
            import torch.distributed as dist

            dist.barrier()
        if not ctx.is_main:
            return {}
        return self.summarise(ctx, folder, n_shards, total)

    def _judge(self, ctx: RunContext, cfg: MinePairsConfig) -> Judge:
        spec = cfg.precision
        assert spec is not None
        if spec.dataset is not None:
            options = dict(spec.dataset)
            if "plugin" not in options:
                raise BadInput(f"{ctx.recipe.origin}: task.precision.dataset needs `plugin:`")
            truth = ctx.registry.get("dataset", options.pop("plugin")).build(options)
        else:
            truth = ctx.component("dataset")
        vocabulary = truth.vocabulary
        return Judge(spec, truth if spec.dataset is not None else None, vocabulary.names, vocabulary.seen, self.extractor)

    # -- mining ------------------------------------------------------------------------------
    def mine_shard(self, ctx: RunContext, dataset: Any, k: int, first: int, last: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        cfg: MinePairsConfig = self.config  # type: ignore[assignment]
        stats = new_stats(k, first, last)
        if self.judge is not None:
            stats["precision"] = empty_counts()
        records: list[dict[str, Any]] = []
        loader = torch.utils.data.DataLoader(
            _Indexed(dataset, list(range(first, last))), batch_size=cfg.batch_size, num_workers=cfg.workers, collate_fn=list
        )
        bar = ctx.progress(loader, total=math.ceil((last - first) / cfg.batch_size), desc=f"mine shard {k}")
        for batch in bar:
            samples = []
            for index, item in batch:
                if isinstance(item, SampleError):
                    ctx.log.warning("skipped %s: %s", item.sample_id, item.reason)
                    stats["images_failed"][item.sample_id] = item.reason
                else:
                    samples.append((index, item))
            with ctx.timings.stage("phrases"):
                phrases = self.image_phrases([s for _, s in samples], stats)
            for found in self.mine_batch(ctx, samples, phrases, stats):
                records += found
                stats["images_with_pairs"] += bool(found)
        stats["pairs"] = len(records)
        return records, stats

    def image_phrases(self, samples: list[Any], stats: dict[str, Any]) -> list[list[str]]:
        """The distinct phrases of each sample's usable captions."""
        cfg: MinePairsConfig = self.config  # type: ignore[assignment]
        texts: list[str] = []
        owner: list[int] = []
        skipped: Counter[str] = Counter(stats["captions_skipped"])
        for i, sample in enumerate(samples):
            captions = sample.meta.get("captions") or []
            if not isinstance(captions, (list, tuple)):
                captions = [captions]
            if not captions:
                stats["images_without_captions"] += 1
            stats["captions"] += len(captions)
            for caption in captions:
                reason = check_caption(caption, cfg.max_caption_chars)
                if reason:
                    skipped[reason] += 1
                else:
                    texts.append(caption)
                    owner.append(i)
        stats["captions_skipped"] = dict(sorted(skipped.items()))
        per_image: list[list[str]] = [[] for _ in samples]
        for i, found in zip(owner, self.extractor.extract(texts)):
            per_image[i] += found
            stats["phrase_mentions"] += len(found)
            for p in found:
                stats["extracted"][p] = stats["extracted"].get(p, 0) + 1
        return [unique(p) for p in per_image]

    def mine_batch(self, ctx: RunContext, samples: list[tuple[int, Any]], phrases: list[list[str]],
                   stats: dict[str, Any]) -> list[list[dict[str, Any]]]:
        """The pairs of each image of a batch. The proposals and the classifier see the whole batch at once,
        against the union of its images' phrases; each image's scores are then exactly those against its
        own phrases: MaskFormer's class logits are per class (its columns are taken), and the classifier's
        softmax restricted to a subset of the classes and renormalised is the softmax over that subset
        (an image whose probabilities underflowed in the batch is scored again on its own)."""
        cfg: MinePairsConfig = self.config  # type: ignore[assignment]
        out: list[list[dict[str, Any]]] = [[] for _ in samples]
        todo = []
        for i, ((_, sample), image_phrases) in enumerate(zip(samples, phrases)):
            stats["images"] += 1
            stats["image_phrases"] += len(image_phrases)
            contrast = unique(image_phrases + list(cfg.negatives))
            if not image_phrases:
                stats["images_without_phrases"] += 1
            elif len(contrast) < 2:
                stats["images_single_phrase"] += 1
            else:
                todo.append((i, contrast))
        if not todo:
            return out
        union = unique(p for _, contrast in todo for p in contrast)
        column = {p: j for j, p in enumerate(union)}
        with ctx.timings.stage("test_resize"):  # the recipe's resolution, as evaluate and predict
            batch = test_resize([samples[i][1] for i, _ in todo], self.generator, ctx.recipe.top.resolution)
        with ctx.timings.stage("text"):
            text = self.texts(union) if self.texts is not None else None
        numeric = ctx.recipe.top.precision  # as evaluate and predict: the networks under autocast
        with ctx.timings.stage("proposals"), autocast(self.generator, numeric):
            proposals = self.generator.propose(batch, text if self.generator.needs_text else None)
        with ctx.timings.stage("classify"), autocast(self.classifier, numeric):
            scores = self.classifier.classify(batch, proposals, text if self.classifier.needs_text else None, Vocabulary(tuple(union)))
        for (i, contrast), seen, props, score in zip(todo, batch, proposals, scores):
            cols = torch.tensor([column[p] for p in contrast])
            probs = score.probs.float().cpu()[:, cols]
            total = probs.sum(dim=1, keepdim=True)
            valid = score.valid.cpu()
            if bool((valid & (total.squeeze(1) < 1e-20)).any()):
                with ctx.timings.stage("classify"), autocast(self.classifier, numeric):
                    own = self.classifier.classify([seen], [props], self.texts(contrast) if self.classifier.needs_text else None,
                                                   Vocabulary(tuple(contrast)))[0]
                probs = own.probs.float().cpu()
            else:
                probs = probs / total.clamp_min(1e-30)
            logits = props.class_logits
            if logits is not None and logits.shape[1] == len(union) + 1:
                logits = logits[:, torch.cat([cols, torch.tensor([len(union)])]).to(logits.device)]
            index, sample = samples[i]
            out[i] = self.pairs_of(ctx, index, sample, phrases[i], props.mask_logits, logits, probs, valid, stats)
        return out

    def pairs_of(self, ctx: RunContext, index: int, sample: Any, phrases: list[str], mask_logits: torch.Tensor,
                 class_logits: torch.Tensor | None, probs: torch.Tensor, valid: torch.Tensor, stats: dict[str, Any]) -> list[dict[str, Any]]:
        """The assignment on one image: probs [N, P+negatives] against its phrases, valid [N]."""
        cfg: MinePairsConfig = self.config  # type: ignore[assignment]
        with ctx.timings.stage("assign"):
            binary = binary_masks(mask_logits, sample.size, cfg.mask_thr)  # [N, H, W] at the image's size
            h, w = binary.shape[1:]
            pixels = binary.flatten(1).sum(dim=1)
            candidate = valid & (pixels > 0) & (pixels >= cfg.min_area * h * w)
            obj = objectness(class_logits)
            if cfg.min_objectness is not None and obj is not None:
                candidate &= obj.cpu() >= cfg.min_objectness
            stats["proposals"] += len(binary)
            stats["candidates"] += int(candidate.sum())
            chosen = assign(probs[:, : len(phrases)], candidate, cfg.threshold, cfg.top_k)
        records: list[dict[str, Any]] = []
        masks: dict[int, tuple[np.ndarray, dict[str, Any]]] = {}
        label = self.judge.label(index, sample) if self.judge is not None and chosen else None
        with ctx.timings.stage("write"):
            for a in chosen:
                if a.proposal not in masks:
                    m = binary[a.proposal].numpy()
                    masks[a.proposal] = (m, rle.encode(m))
                m, encoded = masks[a.proposal]
                phrase = phrases[a.phrase]
                record = {"image_id": sample.id}
                if "image" in sample.meta:
                    record["image"] = str(sample.meta["image"])
                record.update({"phrase": phrase, "score": round(a.score, 6), "proposal": a.proposal,
                               "area": int(pixels[a.proposal]), "mask": encoded})
                records.append(record)
                entry = stats["phrases"].setdefault(phrase, [0, 0.0])
                entry[0] += 1
                entry[1] += a.score
                if label is not None:
                    self.judge.update(stats["precision"], label, phrase, m)
        return records

    # -- summary -----------------------------------------------------------------------------
    def summarise(self, ctx: RunContext, folder: Path, n_shards: int, total: int) -> dict[str, Any]:
        cfg: MinePairsConfig = self.config  # type: ignore[assignment]
        missing = [k for k in range(n_shards) if not is_complete(folder, k)]
        if missing:
            raise RuntimeError(f"{folder}: shards {missing[:10]} are missing (a process failed?); run the recipe again to mine them")
        keys = ("images", "images_without_captions", "images_without_phrases", "images_single_phrase", "images_with_pairs",
                "captions", "phrase_mentions", "image_phrases", "proposals", "candidates", "pairs")
        sums = dict.fromkeys(keys, 0)
        skipped: Counter[str] = Counter()
        failed: dict[str, str] = {}
        phrases: dict[str, list[float]] = {}
        extracted: Counter[str] = Counter()
        judged = empty_counts() if self.judge is not None else None
        for k in range(n_shards):
            s = read_stats(folder, k)
            for key in keys:
                sums[key] += s[key]
            skipped.update(s["captions_skipped"])
            failed.update(s["images_failed"])
            extracted.update(s["extracted"])
            for p, (n, score) in s["phrases"].items():
                acc = phrases.setdefault(p, [0, 0.0])
                acc[0] += n
                acc[1] += score
            if judged is not None and s["precision"] is not None:
                merge(judged, s["precision"])
        title = f"{sums['pairs']:,} pairs, {len(phrases):,} phrases, {sums['images']:,} images"
        hist = write_tables(ctx.out_dir, phrases, dict(extracted), cfg.histogram_bins, title)
        write_csv(ctx.out_dir / "failures.csv", [{"id": i, "reason": r} for i, r in sorted(failed.items())], ["id", "reason"])
        metrics: dict[str, Any] = {
            "pairs": sums["pairs"],
            "unique_phrases": len(phrases),
            "images": sums["images"],
            "images_failed": len(failed),
            "images_total": total,
            "images_with_pairs": sums["images_with_pairs"],
            "pairs_per_image": round(sums["pairs"] / sums["images"], 3) if sums["images"] else 0.0,
            "phrases_extracted": len(extracted),
            "phrases_per_image": round(sums["image_phrases"] / sums["images"], 3) if sums["images"] else 0.0,
            "captions": sums["captions"],
            "captions_skipped": sum(skipped.values()),
            **{f"captions_skipped_{r.replace('-', '_')}": n for r, n in sorted(skipped.items())},
            "images_without_captions": sums["images_without_captions"],
            "images_without_phrases": sums["images_without_phrases"],
            "images_single_phrase": sums["images_single_phrase"],
            "proposals": sums["proposals"],
            "candidates": sums["candidates"],
            "mean_score": round(sum(v[1] for v in phrases.values()) / sums["pairs"], 4) if sums["pairs"] else None,
            "shards": n_shards,
            "spacy_pipeline": self.extractor.pipeline_name,
        }
        if judged is not None:
            seen = dict(zip(self.judge.names, self.judge.seen)) if self.judge.seen is not None else None
            metrics.update(precision_metrics(judged, self.judge.config.iou, seen))
            rows = [
                {"class": n, "seen": seen.get(n) if seen else "", "pairs": r[0], "right_iou": r[1], "right_any": r[2],
                 "precision_iou": 100 * r[1] / r[0], "precision_any": 100 * r[2] / r[0], "mean_iou": r[3] / r[0]}
                for n, r in sorted(judged["by_class"].items())
            ]
            write_csv(ctx.out_dir / "precision_per_class.csv", rows)
            top = sorted(judged["unjudged_phrases"].items(), key=lambda kv: -kv[1])
            write_csv(ctx.out_dir / "unjudged_phrases.csv", [{"phrase": p, "pairs": n} for p, n in top], ["phrase", "pairs"])
        ctx.log.info("\n%s", markdown_table([{k: v for k, v in metrics.items() if k.startswith(("pairs", "unique", "images", "precision"))}]))
        ctx.log.info("pairs per phrase:\n%s", markdown_table(hist, ["pairs_per_phrase", "phrases", "pairs"]))
        return metrics
