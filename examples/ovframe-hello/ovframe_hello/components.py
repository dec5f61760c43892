"""The components themselves (this module imports torch; it is loaded only when a recipe uses them)."""

import torch

from ovframe import Dataset, Fuser, Sample, Segmentation, Vocabulary

from .plugin import HardVoteConfig, SquaresConfig


class Squares(Dataset):
    name = "hello-squares"
    Config = SquaresConfig

    @property
    def vocabulary(self):
        return Vocabulary(("background", "red square", "green square"))

    def __len__(self):
        return self.config.n

    def __getitem__(self, i):
        s = self.config.size
        label = torch.zeros(s, s, dtype=torch.int64)
        label[2 + i % 5 : s // 2, 3 : s // 2 + 1] = 1
        label[s // 2 + 2 :, s // 2 - i % 3 :] = 2
        colours = torch.tensor([[128, 128, 128], [220, 20, 20], [20, 200, 20]], dtype=torch.uint8)
        return Sample(colours[label].permute(2, 0, 1).contiguous(), label, f"square{i}")


class HardVote(Fuser):
    name = "hard-vote"
    Config = HardVoteConfig

    def fuse(self, proposals, scores, vocabulary, output_sizes=None):
        out = []
        for i, (p, s) in enumerate(zip(proposals, scores)):
            confidence, cls = s.probs.max(dim=1)  # [N]
            confidence = confidence * s.valid
            masks = p.mask_logits.sigmoid() > self.config.mask_thr  # [N, H, W]
            per_mask = torch.where(masks, confidence[:, None, None], torch.tensor(-1.0))
            winner = per_mask.argmax(dim=0)  # [H, W]
            scores_map = torch.nn.functional.one_hot(cls[winner], len(vocabulary)).permute(2, 0, 1).float()
            out.append(Segmentation.from_scores(scores_map, output_sizes[i] if output_sizes else None))
        return out
