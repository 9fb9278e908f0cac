"""video-SALMONN: a speech-enhanced audio-visual LLM (ICML 2024)."""

__version__ = "0.1.0"
