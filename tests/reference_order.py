"""The reference's order of operations at test time, written out from its formulas for the tests
(reference/ovseg.md and the detectron2 calls it makes), independently of ovframe's pipeline code.

    image (uint8) --ResizeShortestEdge (Pillow bilinear)--> test size
      -> normalise, pad to a multiple of 32 (zeros), network, mask logits x4 bilinear to the padded size,
         crop the padding                                       [proposals at the test size]
      -> CLIP crops cut from the resized image; p = p_prop^(1-λ) · p_clip^λ (p_clip = 1 if invalid)
      -> semseg[k] = Σ_q p[q,k] sigmoid(mask[q])                 [at the test size]
      -> bilinear (half-pixel centres) to the image's size, argmax
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def d2_output_shape(h: int, w: int, short: int, max_size: int) -> tuple[int, int]:
    """detectron2's ResizeShortestEdge.get_output_shape."""
    scale = short * 1.0 / min(h, w)
    newh, neww = (short * 1.0, scale * w) if h < w else (scale * h, short * 1.0)
    if max(newh, neww) > max_size:
        scale = max_size * 1.0 / max(newh, neww)
        newh, neww = newh * scale, neww * scale
    return int(newh + 0.5), int(neww + 0.5)


def pil_resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """What detectron2's ResizeTransform.apply_image does with a uint8 image: Pillow, (w, h), BILINEAR."""
    hwc = image.permute(1, 2, 0).numpy()
    out = np.asarray(Image.fromarray(hwc).resize((size[1], size[0]), Image.BILINEAR))
    return torch.from_numpy(out.copy()).permute(2, 0, 1)


def np_bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[C, h, w] -> [C, H, W]: bilinear with half-pixel centres, edges clamped (align_corners=False)."""

    def axis(n_in: int, n_out: int):
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    y0, y1, ly = axis(x.shape[1], size[0])
    x0, x1, lx = axis(x.shape[2], size[1])
    rows = x[:, y0] * (1 - ly)[None, :, None] + x[:, y1] * ly[None, :, None]
    return rows[:, :, x0] * (1 - lx)[None, None] + rows[:, :, x1] * lx[None, None]


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def network_masks(model, image: torch.Tensor, mean, std, text: torch.Tensor, divisibility: int = 32):
    """One image through a MaskFormer network as the reference runs it alone: normalise, pad to a multiple
    of `divisibility` with zeros, last decoder layer, mask logits x4 to the padded size, padding cropped.
    -> mask logits [Q, h, w], class logits [Q, K+1] (float64 NumPy)."""
    h, w = image.shape[-2:]
    hp, wp = -(-h // divisibility) * divisibility, -(-w // divisibility) * divisibility
    x = torch.zeros(1, 3, hp, wp)
    x[0, :, :h, :w] = (image.float() - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    with torch.no_grad():
        out = model(x, text)
    masks = F.interpolate(out["pred_masks"][-1], size=(hp, wp), mode="bilinear", align_corners=False)[0, :, :h, :w]
    return masks.double().numpy(), out["pred_logits"][-1][0].double().numpy()


def ensemble(class_logits: np.ndarray, clip_probs: np.ndarray, valid: np.ndarray, lam: float) -> np.ndarray:
    """p = softmax(K+1)[:, :K]^(1-λ) · p_clip^λ, p_clip = 1 on invalid proposals."""
    p_prop = softmax(class_logits)[:, :-1]
    p_clip = np.where(valid[:, None], clip_probs, 1.0)
    return p_prop ** (1 - lam) * p_clip**lam


def semseg(p: np.ndarray, mask_logits: np.ndarray) -> np.ndarray:
    return np.einsum("qk,qhw->khw", p, sigmoid(mask_logits))


def assert_same_labels(labels: torch.Tensor, want: np.ndarray, rel: float = 1e-5, max_ties: float = 1e-3) -> None:
    """labels equal the argmax of `want` [K, H, W] wherever its best two classes are not tied within
    float32 noise (`rel` of the best score); such near-ties are at most `max_ties` of the pixels."""
    top2 = np.sort(want, axis=0)[-2:]
    decided = (top2[1] - top2[0]) > rel * np.abs(top2[1])
    got = labels.cpu().numpy()
    assert (~decided).mean() <= max_ties, f"{(~decided).sum()} near-tied pixels"
    wrong = (got != want.argmax(0)) & decided
    assert not wrong.any(), f"{wrong.sum()} of {wrong.size} pixels differ from the re-computation"
