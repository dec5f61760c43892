"""The `maskformer` proposal generator: test-time resize and padding, the network, and both undone.

`test_size(h, w)` is detectron2's ResizeShortestEdge size: short side `test_short_side`, long side
capped at `test_max_size`. Under the pipeline's `resolution: reference` the pipeline has already
resized the image to it (uint8, as the reference; the sample carries meta[TEST_RESIZED_FROM]) and
this generator does not resize again. Otherwise (`resolution: original`, or a direct call) it resizes
the image itself (float, bilinear with antialiasing) and resizes the mask logits back.

Per image: normalise, pad the batch (zeros after normalisation) to a multiple of `size_divisibility`;
run the network; take the last decoder layer; upsample the mask logits (bilinear) to the padded size,
crop the padding away and, if the image was resized here, resize (bilinear) to the sample's own size.
Class logits are [Q, K+1] against the vocabulary of the text embeddings given at call time, no-object last.
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch
import torch.nn.functional as F

from ovframe import BadInput, ProposalGenerator, Proposals, RequiredFile, Sample, TextEmbeddings
from ovframe.records import TEST_RESIZED_FROM
from ovframe.files import resolve_path

from .config import MaskFormerConfig
from .mapper import resized_shape
from .model import MaskFormerModel
from .weights import check_architecture, load_state, read_metadata, TEXT_MODEL_KEY

log = logging.getLogger("ovframe")

HOW_TO_GET = (
    "train it with `ovframe run RECIPE` where RECIPE has `task: train-proposals` and this same `proposals:` "
    "section (the weights are written to <run dir>/maskformer.safetensors); for the released OVSeg Swin-B model, "
    "convert its checkpoint: `python -m ovframe_maskformer.convert ovseg_swinbase_vitL14_ft_mpt.pth OUT.safetensors`"
)


class MaskFormerProposals(ProposalGenerator):
    name = "maskformer"
    Config = MaskFormerConfig

    def __init__(self, config: MaskFormerConfig):
        super().__init__(config)
        self.config: MaskFormerConfig = config
        self.model: MaskFormerModel | None = None
        self.text_model: str = ""
        if config.weights is not None:
            path = resolve_path(config.weights)
            embed_dim = check_architecture(path, config) or config.embed_dim
            if embed_dim is None:
                raise BadInput(f"{path}: records no architecture; give proposals.embed_dim (the CLIP dimension it was trained with)")
            self.model = MaskFormerModel(config, embed_dim)
            load_state(self.model, path)
            self.model.eval()
            self.text_model = read_metadata(path).get(TEXT_MODEL_KEY, "")

    @classmethod
    def required_files(cls, config: MaskFormerConfig) -> list[RequiredFile]:
        out = []
        if config.weights is not None:
            out.append(RequiredFile(str(resolve_path(config.weights)), f"maskformer weights ({config.backbone})", HOW_TO_GET, config.sha256))
        if isinstance(config.backbone_pretrained, str) and config.weights is None:
            out.append(
                RequiredFile(
                    str(resolve_path(config.backbone_pretrained)),
                    f"ImageNet weights of the timm backbone {config.backbone}",
                    f"save timm's `{config.backbone}` pretrained state_dict (safetensors) on a machine with internet access, or set backbone_pretrained: false",
                )
            )
        return out

    def build_untrained(self, embed_dim: int) -> MaskFormerModel:
        """A fresh network (backbone from `backbone_pretrained`) for training against `embed_dim`-d text."""
        if self.config.embed_dim is not None and self.config.embed_dim != embed_dim:
            raise BadInput(f"proposals.embed_dim is {self.config.embed_dim} but the text encoder gives {embed_dim}-d embeddings")
        pretrained = self.config.backbone_pretrained
        file = str(resolve_path(pretrained)) if isinstance(pretrained, str) else None
        if pretrained is True:
            raise BadInput("backbone_pretrained: true would download weights; give a local weights file instead")
        self.model = MaskFormerModel(self.config, embed_dim, pretrained_file=file).to(self.device)
        return self.model

    # -- inference ----------------------------------------------------------------------------
    def test_size(self, h: int, w: int) -> tuple[int, int] | None:
        cfg = self.config
        return None if cfg.test_short_side is None else resized_shape(h, w, cfg.test_short_side, cfg.test_max_size)

    def preprocess(self, samples: Sequence[Sample]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """-> images [B, 3, Hp, Wp] normalised and padded, and each image's size after resizing."""
        cfg = self.config
        assert self.model is not None
        mean = torch.tensor(cfg.pixel_mean, device=self.device).view(3, 1, 1)
        std = torch.tensor(cfg.pixel_std, device=self.device).view(3, 1, 1)
        images, sizes = [], []
        for s in samples:
            img = s.image.to(self.device).float()
            size = None if TEST_RESIZED_FROM in s.meta else self.test_size(*s.size)
            if size is not None and size != s.size:
                img = F.interpolate(img[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
            images.append((img - mean) / std)
            sizes.append(tuple(img.shape[-2:]))
        div = max(cfg.size_divisibility, self.model.size_divisibility)
        hp = -(-max(h for h, _ in sizes) // div) * div
        wp = -(-max(w for _, w in sizes) // div) * div
        batch = torch.zeros(len(images), 3, hp, wp, device=self.device)
        for i, img in enumerate(images):
            batch[i, :, : img.shape[1], : img.shape[2]] = img
        return batch, sizes  # type: ignore[return-value]

    def propose(self, samples: Sequence[Sample], text: TextEmbeddings | None) -> list[Proposals]:
        if self.model is None:
            raise BadInput(
                "maskformer has no weights: set `proposals.weights` to a trained file (" + HOW_TO_GET + ")"
            )
        if text is None:
            raise BadInput("maskformer classifies against the vocabulary's text embeddings: the recipe needs a `text_encoder:`")
        if text.embeddings.shape[1] != self.model.embed_dim:
            raise BadInput(
                f"the text encoder gives {text.embeddings.shape[1]}-d embeddings but the maskformer weights were trained "
                f"against {self.model.embed_dim}-d ones ({self.text_model or 'unknown encoder'}); use the text encoder they were trained with"
            )
        if self.text_model and text.model_id and text.model_id != self.text_model:
            log.warning("maskformer was trained against text encoder %s, now given %s", self.text_model, text.model_id)
        if not samples:
            return []
        self.model.eval()
        with torch.inference_mode():
            batch, sizes = self.preprocess(samples)
            out = self.model(batch, text.embeddings.to(self.device).float())
            logits, masks = out["pred_logits"][-1], out["pred_masks"][-1]
            proposals = []
            for i, s in enumerate(samples):
                m = F.interpolate(masks[i : i + 1], size=batch.shape[-2:], mode="bilinear", align_corners=False)
                h, w = sizes[i]
                m = m[:, :, :h, :w]
                if (h, w) != s.size:
                    m = F.interpolate(m, size=s.size, mode="bilinear", align_corners=False)
                proposals.append(Proposals(mask_logits=m[0].float(), class_logits=logits[i].float()))
        return proposals
