"""`videosalmonn serve`: an OpenAI-compatible HTTP API over `Pipeline` (FastAPI + uvicorn).

    settings.py   ServeSettings: limits, batching, allowed root (one frozen dataclass)
    schema.py     the OpenAI chat-completions request (strict), its translation to a `Request`, error objects
    media.py      data: URLs / base64 / paths inside --allowed-root -> temporary local files, size checks
    batcher.py    the request queue and the worker thread that batches requests into `Pipeline.answer_batch`
    app.py        create_app(pipeline, settings): the endpoints
    cli.py        `serve` and `demo-ui` sub-commands

No model logic lives here: media is decoded by `Pipeline.load`, answers come from `Pipeline.answer_batch`, token
streaming is `videosalmonn.streaming` (shared with the Gradio demo).
"""

from videosalmonn.serving.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]


def create_app(pipeline, settings: ServeSettings | None = None):
    """The FastAPI app serving `pipeline` (imported lazily: fastapi is an optional dependency)."""
    from videosalmonn.serving.app import create_app as _create_app

    return _create_app(pipeline, settings or ServeSettings())
