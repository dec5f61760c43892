"""Registers the CLIP family: text encoder, region classifiers, adapters and the train-adapter task."""

from ovframe import hookimpl, lazy

from .config import (
    BackgroundCropConfig,
    ClipTextConfig,
    FullFinetuneConfig,
    MaskedCropConfig,
    MaskPromptConfig,
    MaskPromptFinetuneConfig,
    TrainAdapterConfig,
)


@hookimpl
def register_text_encoders(register):
    register(lazy("ovframe_clip.text:ClipTextEncoder", name="clip-text", config=ClipTextConfig))


@hookimpl
def register_region_classifiers(register):
    register(lazy("ovframe_clip.classifiers:MaskedCropClassifier", name="clip-masked-crop", config=MaskedCropConfig))
    register(lazy("ovframe_clip.classifiers:BackgroundCropClassifier", name="clip-background-crop", config=BackgroundCropConfig))


@hookimpl
def register_adapters(register):
    register(lazy("ovframe_clip.adapters:MaskPromptTuning", name="mask-prompt-tuning", config=MaskPromptConfig))
    register(lazy("ovframe_clip.adapters:FullFinetune", name="full-finetune", config=FullFinetuneConfig))
    register(lazy("ovframe_clip.adapters:MaskPromptFinetune", name="mpt+ft", config=MaskPromptFinetuneConfig))


@hookimpl
def register_tasks(register):
    register(lazy("ovframe_clip.train:TrainAdapter", name="train-adapter", config=TrainAdapterConfig))
