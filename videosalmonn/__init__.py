"""video-SALMONN: a speech-enhanced audio-visual LLM (ICML 2024).

from videosalmonn import Pipeline
Pipeline.from_pretrained("tiny").answer("Describe the video", video="clip.mp4").text
"""

from __future__ import annotations

__version__ = "0.1.0"

_PUBLIC = {
    "Pipeline": "videosalmonn.pipeline",
    "Request": "videosalmonn.types",
    "Answer": "videosalmonn.pipeline",
    "VideoSalmonn": "videosalmonn.model",
    "load_model": "videosalmonn.checkpoint",
    "ModelConfig": "videosalmonn.config",
    "GenerationConfig": "videosalmonn.config",
    "Turn": "videosalmonn.types",
}
__all__ = list(_PUBLIC)


def __getattr__(name: str):
    """Lazy: `import videosalmonn` stays cheap; torch/transformers load on first use of the API."""
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'videosalmonn' has no attribute {name!r}")
