"""`videosalmonn demo-ui`: upload a video / audio / image, ask, watch the answer stream in.

The page says which model runs (and, for random weights, that its answers are random text), and shows what
the model actually used: the frames it was given (the Pipeline's own 224x224 input frames,
un-normalised for display, with their times), the seconds of video and audio covered, whether there was audio
(a video's own sound track counts), and anything cut. All decoding is `Pipeline.load`; all answering is
`Pipeline.answer_batch` (greedy with the token streamer; beam search shows its answer at the end).

    build_demo(Pipeline.from_pretrained("tiny")).queue().launch()
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import torch

from videosalmonn.errors import VideoSalmonnError
from videosalmonn.media.timeline import IMAGE_MEAN, IMAGE_STD, VIDEO_FPS
from videosalmonn.pipeline import Answer, Pipeline, Request
from videosalmonn.streaming import RowStreamer, TextDeltas
from videosalmonn.types import MediaClip

STEP_TIMEOUT_S = 600  # a generation step slower than this is a hang, not a slow model
DEFAULT_QUESTION = "Describe the video together with the audio in detail."
Frames = list[tuple[np.ndarray, str]]


def ask(
    pipeline: Pipeline,
    video: str | None,
    audio: str | None,
    image: str | None,
    question: str,
    max_tokens: int = 64,
    beams: int = 1,
) -> Iterator[tuple[str, str, Frames]]:
    """(answer so far, what was used (Markdown), frames with captions), first before generating, then per piece."""
    if not question or not question.strip():
        raise VideoSalmonnError("type a question")
    request = Request(question.strip(), video=video or None, audio=audio or None, image=image or None)
    clip = pipeline.load(request)
    frames, used = display_frames(clip), describe(clip, request)
    yield "", used, frames
    gen = replace(pipeline.cfg.generation, max_new_tokens=int(max_tokens), num_beams=int(beams), do_sample=False)
    pieces: queue.Queue = queue.Queue()
    deltas = TextDeltas(pipeline.tokenizer.decode, pipeline.tokenizer.eos_id)
    streamer = RowStreamer([deltas], lambda _, text: pieces.put(("text", text))) if gen.num_beams == 1 else None

    def run():
        try:
            pieces.put(("done", pipeline.answer_batch([request], gen, clips=[clip], streamer=streamer)[0]))
        except Exception as e:
            pieces.put(("error", e))

    threading.Thread(target=run, name="videosalmonn-demo", daemon=True).start()
    text = ""
    while True:
        kind, value = pieces.get(timeout=STEP_TIMEOUT_S)
        if kind == "error":
            raise value
        if kind == "text":
            text += value
            yield text, used, frames
            continue
        answer: Answer = value
        yield answer.text, describe(clip, request, answer), frames
        return


def display_frames(clip: MediaClip) -> Frames:
    """The model's input frames (T, 3, S, S), CLIP-normalised -> uint8 RGB images with their times."""
    if clip.frames is None:
        return []
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    rgb = ((clip.frames.float() * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)  # (T, 3, S, S)
    images = rgb.permute(0, 2, 3, 1).numpy()  # (T, S, S, 3)
    if clip.is_image:
        return [(images[0], "image")]
    return [(img, f"{t:.2f} s") for img, t in zip(images, clip.frame_times)]


def describe(clip: MediaClip, request: Request, answer: Answer | None = None) -> str:
    """What the model used, as a few Markdown lines."""
    cov = clip.coverage
    if clip.is_image:
        visual = "an image (1 frame)"
    elif cov.frames:  # (a long video is encoded as it is decoded: no frames kept)
        visual = (
            f"video: {cov.video_seconds:.2f} s of {cov.media_seconds:.2f} s, {cov.frames} frames "
            f"at {VIDEO_FPS} per second"
        )
    else:
        visual = "no video or image"
    if cov.audio_present:
        source = "the audio file" if request.audio else "the video's own sound track"
        sound = f"audio: **yes**, {cov.audio_seconds:.2f} s from {source}"
    else:
        sound = "audio: **no**" + (" (the video has no sound track)" if request.video else "")
    lines = [f"**The model used** {visual}; {sound}."]
    if answer is not None:
        lines.append(f"{answer.media_tokens} media tokens, {len(answer.token_ids)} answer tokens.")
    lines += [f"- cut: {line}" for line in cov.cut] + [
        f"- note: {line}" for line in cov.notes + (answer.notes if answer else [])
    ]
    return "\n\n".join(lines)


def header(pipeline: Pipeline, model_name: str | None = None) -> str:
    """The page's title and introduction: which model answers, and its notice (random weights) if any."""
    name = model_name or pipeline.cfg.name
    model = f"**Model:** `{name}`" + (f" (config `{pipeline.cfg.name}`)" if name != pipeline.cfg.name else "")
    notice = f"\n\n**Notice:** {pipeline.notice}" if pipeline.notice else ""
    return (
        "# video-SALMONN\nUpload a video (its sound track is used), an image and/or an audio file, "
        f"then ask a question. The frames below are exactly what the model was given.\n\n{model}, on "
        f"{pipeline.device}.{notice}"
    )


def build_demo(pipeline: Pipeline, model_name: str | None = None):
    """The Gradio Blocks page (call `.queue().launch(...)` on it). API name of the button: `/answer`.
    `model_name`: what the page says it runs (default: the config's name)."""
    import gradio as gr

    def answer(video, audio, image, question, max_tokens, beams):
        try:
            yield from ask(pipeline, video, audio, image, question, max_tokens, beams)
        except VideoSalmonnError as e:
            raise gr.Error(str(e)) from None

    with gr.Blocks(title="video-SALMONN") as demo:
        gr.Markdown(header(pipeline, model_name), elem_id="header")
        with gr.Row():
            with gr.Column():
                video = gr.Video(label="Video", sources=["upload"], elem_id="video")
                with gr.Row():
                    image = gr.Image(label="Image", type="filepath", sources=["upload"], elem_id="image")
                    audio = gr.Audio(label="Audio", type="filepath", sources=["upload"], elem_id="audio")
                question = gr.Textbox(label="Question", value=DEFAULT_QUESTION, lines=2, elem_id="question")
                with gr.Row():
                    max_tokens = gr.Slider(
                        1,
                        512,
                        value=min(64, pipeline.cfg.generation.max_new_tokens),
                        step=1,
                        label="Max answer tokens",
                        elem_id="max-tokens",
                    )
                    beams = gr.Slider(
                        1,
                        5,
                        value=1,
                        step=1,
                        label="Beams (1 streams; more shows the answer at the end)",
                        elem_id="beams",
                    )
                button = gr.Button("Ask", variant="primary", elem_id="ask")
            with gr.Column():
                reply = gr.Textbox(label="Answer", lines=6, interactive=False, elem_id="answer")
                used = gr.Markdown(elem_id="used")
                frames = gr.Gallery(label="Frames the model saw", columns=6, height=320, elem_id="frames")
        button.click(
            answer, [video, audio, image, question, max_tokens, beams], [reply, used, frames], api_name="answer"
        )
    return demo
