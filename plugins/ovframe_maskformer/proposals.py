"""The `maskformer` proposal generator: test-time resize and padding, the network, and both undone.

`test_size(h, w)` is detectron2's ResizeShortestEdge size: short side `test_short_side`, long side
capped at `test_max_size`. Under the pipeline's `resolution: reference` the pipeline has already
resized the image to it (uint8, as the reference; the sample carries meta[TEST_RESIZED_FROM]) and
this generator does not resize again. Otherwise (`resolution: original`, or a direct call) it resizes
the image itself (float, bilinear with antialiasing) and resizes the mask logits back.

Per image: normalise, pad (zeros after normalisation) to a multiple of `size_divisibility` (each image
to its own padded size by default, as the reference's one-image batches; `batch_padding: shared` pads a
batch to its largest image); run the network; take the last decoder layer; upsample the mask logits
(bilinear) to the padded size, crop the padding away and, if the image was resized here, resize
(bilinear) to the sample's own size. Class logits are [Q, K+1] against the vocabulary of the text
embeddings given at call time, no-object last.
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch
import torch.nn.functional as F

from ovframe import BadInput, ProposalGenerator, Proposals, RequiredFile, Sample, TextEmbeddings
from ovframe.records import TEST_RESIZED_FROM
from ovframe.files import resolve_path
from ovframe.loading import skip_init

from .config import D2_BACKBONES, MaskFormerConfig
from .mapper import resized_shape
from .model import MaskFormerModel
from .weights import TEXT_MODEL_KEY, check_architecture, config_for_weights, load_state, read_metadata

log = logging.getLogger("ovframe")

HOW_TO_GET = (
    "train it with `ovframe run RECIPE` where RECIPE has `task: train-proposals` and this same `proposals:` "
    "section (the weights are written to <run dir>/maskformer.safetensors); for the released OVSeg Swin-B model, "
    "convert its checkpoint: `python -m ovframe_maskformer.convert ovseg_swinbase_vitL14_ft_mpt.pth OUT.safetensors`"
)


def pretrained_how_to(backbone: str) -> str:
    """Where the ImageNet initialisation of a backbone comes from."""
    family = D2_BACKBONES.get(backbone, ("timm", {}))[0]
    if family == "swin":
        return ("the official Swin release (github.com/microsoft/Swin-Transformer, e.g. swin_base_patch4_window12_384_22k.pth "
                "for d2-swin-b), read with weights_only=True")
    if family == "resnet":
        return ("detectron2's ImageNet ResNet (R-103.pkl for d2-r101c, R-50.pkl for d2-r50) converted once to safetensors "
                "where you trust it (pickle.load -> torch.from_numpy per array -> safetensors)")
    return f"save timm's `{backbone}` pretrained state_dict (safetensors) on a machine with internet access"


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
            saved = check_architecture(path, config)
            built = config_for_weights(config, saved) if saved is not None else config
            if built.embed_dim is None:
                raise BadInput(f"{path}: records no architecture; give proposals.embed_dim (the CLIP dimension it was trained with)")
            with skip_init():  # load_state fills every tensor, and refuses a file that lacks one
                self.model = MaskFormerModel(built, built.embed_dim)
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
                    f"ImageNet weights of the backbone {config.backbone}",
                    pretrained_how_to(config.backbone) + ", or set backbone_pretrained: false",
                )
            )
        return out

    def export_graph(self):
        """The network (last decoder layer), for `ovframe export` (see export.py)."""
        from .export import proposals_graph

        return proposals_graph(self)

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

    def network_input(self, sample: Sample) -> torch.Tensor:
        """float [3, h, w], normalised: the image at its test size (resized here unless the pipeline has)."""
        cfg = self.config
        img = sample.image.to(self.device, non_blocking=True).float()
        size = None if TEST_RESIZED_FROM in sample.meta else self.test_size(*sample.size)
        if size is not None and size != sample.size:
            img = F.interpolate(img[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
        mean = torch.tensor(cfg.pixel_mean, device=self.device).view(3, 1, 1)
        std = torch.tensor(cfg.pixel_std, device=self.device).view(3, 1, 1)
        return (img - mean) / std

    def padded_size(self, h: int, w: int) -> tuple[int, int]:
        assert self.model is not None
        div = max(self.config.size_divisibility, self.model.size_divisibility)
        return -(-h // div) * div, -(-w // div) * div

    def batches(self, images: Sequence[torch.Tensor]) -> list[list[int]]:
        """Indices of the images that go through the network together. `per-image` padding (the reference,
        which tests one image at a time): only images of the same padded size share a batch, so each is
        padded to its own size and a result never depends on the other images of the batch."""
        if self.config.batch_padding == "shared":
            return [list(range(len(images)))]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(self.padded_size(*img.shape[-2:]), []).append(i)
        return list(groups.values())

    def pad(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """[B, 3, Hp, Wp]: each image at the top left, zeros (after normalisation) elsewhere."""
        hp, wp = self.padded_size(max(i.shape[1] for i in images), max(i.shape[2] for i in images))
        batch = torch.zeros(len(images), 3, hp, wp, device=self.device)
        for i, img in enumerate(images):
            batch[i, :, : img.shape[1], : img.shape[2]] = img
        return batch

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
        self.model.eval()
        gpu = torch.device(self.device).type == "cuda"
        if gpu:  # convolutions run faster on NHWC tensors there (a no-op once converted)
            self.model.to(memory_format=torch.channels_last)
        proposals: list[Proposals | None] = [None] * len(samples)
        with torch.inference_mode():
            embeddings = text.embeddings.to(self.device).float()
            images = [self.network_input(s) for s in samples]
            for group in self.batches(images):
                batch = self.pad([images[i] for i in group])
                if gpu:
                    batch = batch.contiguous(memory_format=torch.channels_last)
                out = self.model(batch, embeddings)
                logits, masks = out["pred_logits"][-1], out["pred_masks"][-1]
                for b, i in enumerate(group):
                    # the reference's undo: upsample to the padded size, crop the padding, resize to the sample
                    # (in fp32 also under a bf16/fp16 autocast: mask logits are thresholded and fused later)
                    m = F.interpolate(masks[b : b + 1].float(), size=batch.shape[-2:], mode="bilinear", align_corners=False)
                    h, w = images[i].shape[-2:]
                    m = m[:, :, :h, :w]
                    if (h, w) != samples[i].size:
                        m = F.interpolate(m, size=samples[i].size, mode="bilinear", align_corners=False)
                    proposals[i] = Proposals(mask_logits=m[0].float(), class_logits=logits[b].float())
        return proposals  # type: ignore[return-value]
