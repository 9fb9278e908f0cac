"""Other tools' entry points into the package: each module here adapts one tool's interface to `Pipeline`.

    lmms_eval.py       the lmms-eval model plugin (`lmms-eval --model videosalmonn ...`); needs lmms-eval
    lmms_requests.py   its request mapping (media, gen_kwargs, scoring), without lmms-eval

`lmms_eval_models` is what the `lmms_eval.models` entry point names: lmms-eval calls it while building its model
registry, for every run, so it imports nothing of ours (no torch); the plugin class loads only when it is chosen.
"""

from __future__ import annotations

LMMS_MODEL_ID = "videosalmonn"
LMMS_ALIASES = ("video_salmonn",)
LMMS_CLASS = "videosalmonn.integrations.lmms_eval.VideoSalmonnLmms"


def lmms_eval_models():
    """The `lmms_eval.models` entry point: video-SALMONN's lmms-eval `ModelManifest` (a "simple" model, whose
    requests carry `doc_to_visual`)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=LMMS_MODEL_ID, simple_class_path=LMMS_CLASS, aliases=LMMS_ALIASES)
