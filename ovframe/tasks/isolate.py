"""One image's failure at run time is that image's, not its batch's nor the run's.

`segment_each` runs the pipeline on a batch; when the batch fails (an image no component can handle,
out of memory on a huge one), it runs the images one by one and reports each that fails through
`failed(sample, error)`. BadInput is the recipe's fault (every image would fail): it is raised as is.
`FailureLog` keeps each failure's reason for failures.csv and its traceback in <run>/errors.log (never
on the terminal), and ends a run where every image failed with a failure at run time (exit 1).
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Callable, Sequence

from ..errors import BadInput, OvframeError
from ..records import Sample, Segmentation, Vocabulary

ERRORS_LOG = "errors.log"


def segment_each(
    pipeline, samples: Sequence[Sample], vocabulary: Vocabulary, failed: Callable[[Sample, BaseException], None]
) -> list[tuple[Sample, Segmentation]]:
    """(sample, segmentation) of every sample that could be segmented; the others go to `failed`."""
    try:
        return list(zip(samples, pipeline.segment(samples, vocabulary)))
    except BadInput:
        raise
    except Exception as e:
        _free_memory()
        if len(samples) == 1:
            failed(samples[0], e)
            return []
    out = []
    for sample in samples:
        try:
            out += zip([sample], pipeline.segment([sample], vocabulary))
        except BadInput:
            raise
        except Exception as e:
            _free_memory()
            failed(sample, e)
    return out


def _free_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class FailureLog:
    """Failures at run time of one run: reasons by sample id, tracebacks in <run>/errors.log."""

    def __init__(self, out_dir: Path, log):
        self.path = out_dir / ERRORS_LOG
        self.log = log
        self.reasons: dict[str, str] = {}
        self.succeeded = 0

    def __call__(self, sample: Sample, error: BaseException) -> None:
        reason = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
        self.reasons[sample.id] = reason
        self.log.warning("failed %s: %s (traceback in %s)", sample.id, reason, self.path)
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(f"--- {sample.id}\n{''.join(traceback.format_exception(error))}\n")
        except OSError:
            pass

    def check_some_succeeded(self) -> None:
        """OvframeError (exit 1) when images failed at run time and none succeeded: not an image's fault."""
        if self.reasons and not self.succeeded:
            first_id, first = next(iter(self.reasons.items()))
            raise OvframeError(
                f"every image failed at run time ({len(self.reasons)}); the first, {first_id}: {first}. "
                f"Tracebacks: {self.path}"
            )
