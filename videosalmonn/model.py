"""VideoSalmonn: frozen encoders -> MRC Q-Former connector -> LoRA LLM (paper Fig. 1).

    MediaBatch ─► AVEncoder (no_grad) ─► AVFeatures ─► MultiResolutionConnector ─► ConnectorOutput (B, N, E)
    PromptBatch ─► LLM embeddings (B, L, E) ─► splice media tokens at the placeholders ─► LLM ─► logits / ids

Pure tensor code: no files, no tokenizers (ids come in a PromptBatch), no printing. Building from a config and
loading weights live in `checkpoint.py`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from videosalmonn.config import GenerationConfig, ModelConfig
from videosalmonn.connector.multires import MultiResolutionConnector
from videosalmonn.encoders.audio_visual import AVEncoder
from videosalmonn.llm.language_model import LanguageModel
from videosalmonn.llm.lora import is_lora_parameter
from videosalmonn.losses import answer_cross_entropy, answer_positions, diversity_loss, media_ctc_loss
from videosalmonn.rng import seeded
from videosalmonn.types import Batch, ConnectorOutput, ModelOutput, PromptBatch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class VideoSalmonn(nn.Module):
    def __init__(
        self, cfg: ModelConfig, encoder: AVEncoder | None, connector: MultiResolutionConnector, llm: LanguageModel
    ):
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder  # None once `split_encoder` handed it over: features come in Batch
        self.connector = connector
        self.llm = llm

    @classmethod
    def from_config(
        cls,
        cfg: ModelConfig,
        llm: LanguageModel | None = None,
        encoder: AVEncoder | None = None,
        connector: MultiResolutionConnector | None = None,
    ) -> VideoSalmonn:
        """All parts built from the config with seeded random weights, except those given ready-made (e.g. built
        empty, to be loaded: `checkpoint.load_model`). Each part has its own seed, so giving one changes no other."""
        if encoder is None:
            with seeded(cfg.seed):
                encoder = AVEncoder(cfg.encoders, cfg.media.image_size)
        if llm is None:
            with seeded(cfg.seed + 1):
                llm = LanguageModel.build(cfg.llm)
        if connector is None:
            with seeded(cfg.seed + 2):
                connector = build_connector(cfg, llm.width)
        model = cls(cfg, encoder, connector, llm)
        set_trainable(model)
        return model

    def cast(self, device: torch.device | str | None = None) -> VideoSalmonn:
        """Move to `device` in the config's dtype, keeping what must stay fp32 (RoPE frequencies) and what is
        quantised (int8 weights; a bitsandbytes LLM stays where it was loaded)."""
        dtype = DTYPES[self.cfg.dtype]
        for name, part in self.named_children():
            if name == "llm":
                self.llm.cast(device, dtype)
            else:
                part.to(device=device, dtype=dtype)
        return self

    def split_encoder(self) -> AVEncoder:
        """Hand the frozen encoder over (training runs it apart, as the feature extractor, or reads its cached
        outputs): the model keeps connector + LLM and from now on needs `Batch.features`."""
        if self.encoder is None:
            raise ValueError("the encoder was already split off")
        encoder, self.encoder = self.encoder, None
        return encoder

    def encode(self, batch: Batch) -> ConnectorOutput:
        """Media (or cached encoder features) -> LLM-width media tokens (B, N, E) and their per-sample counts."""
        if batch.features is None and self.encoder is None:
            raise ValueError("the encoder was split off: the batch needs its encoder features")
        features = batch.features if batch.features is not None else self.encoder(batch.media)
        return self.connector(features)

    def embed(self, prompt: PromptBatch, media: ConnectorOutput) -> Tensor:
        """Prompt embeddings (B, L, E) with the media tokens spliced in at the placeholder positions."""
        return splice(self.llm.embed(prompt.input_ids), media, prompt.media_mask)

    def forward(self, batch: Batch, answer_logits_only: bool | None = None) -> ModelOutput:
        """Teacher-forced forward: logits, CE on the labelled (answer) tokens + weighted diversity loss (+ the
        weighted alignment loss of the samples with alignment targets, when `loss.alignment_weight` > 0).

        `logits` are (B, L, V), every position; with `answer_logits_only` (default: in training mode, when the
        batch has labels) they are (N, V), only the N positions that predict a label (`answer_positions`, row-major):
        the LM head skips the prompt, the loss is the same. With labels and `loss.lm_weight` 0 the LLM is not run
        (logits and CE are None): only the connector's losses train it.
        """
        media = self.encode(batch)
        labels = batch.prompt.labels
        weights = self.cfg.loss
        logits = ce = None
        if labels is None or weights.lm_weight > 0:
            if answer_logits_only is None:
                answer_logits_only = self.training
            keep = answer_positions(labels) if answer_logits_only and labels is not None else None
            logits = self.llm(self.embed(batch.prompt, media), batch.prompt.attention_mask, keep)
            if labels is None:
                return ModelOutput(logits)
            ce = answer_cross_entropy(logits, labels)
        div = self.diversity(media)
        align = self.alignment(media, batch.prompt.alignment, batch.prompt.alignment_vocab)
        terms = []
        if ce is not None:
            terms.append(ce if weights.lm_weight == 1 else weights.lm_weight * ce)
        if div is not None:
            terms.append(weights.diversity_weight * div)
        if align is not None:
            terms.append(weights.alignment_weight * align)
        # no term in this batch (stage 1 with no aligned sample): a zero that still has a graph
        loss = sum(terms[1:], terms[0]) if terms else media.embeds.sum() * 0
        return ModelOutput(logits, loss, ce, div, align)

    def diversity(self, media: ConnectorOutput) -> Tensor | None:
        """Diversity loss summed over the configured levels, over each sample's own windows."""
        if self.cfg.loss.diversity_weight == 0:
            return None
        losses = [diversity_loss(media.levels[i][media.window_mask[i]]) for i in self.cfg.loss.diversity_levels]
        return torch.stack(losses).sum()

    def alignment(self, media: ConnectorOutput, targets: Tensor | None, vocab: Tensor | None) -> Tensor | None:
        """CTC of the media tokens against the alignment targets (B, S), indices into `vocab` (C,) (LLM token ids,
        the blank first), read through the LLM's input embeddings; None when the loss is off or no sample has
        targets."""
        if self.cfg.loss.alignment_weight == 0 or targets is None or vocab is None:
            return None
        table = self.llm.embedding_table.detach()[vocab]  # (C, E): the frozen embeddings are the target
        return media_ctc_loss(media.embeds, media.lengths, table, targets, 0, self.cfg.loss.alignment_tau)

    @torch.no_grad()
    def generate(
        self, batch: Batch, gen: GenerationConfig, eos_id: int, pad_id: int, streamer=None, should_stop=None
    ) -> Tensor:
        """Left-padded prompts -> (B, new) generated ids."""
        embeds = self.embed(batch.prompt, self.encode(batch))
        return self.llm.generate(embeds, batch.prompt.attention_mask, gen, eos_id, pad_id, streamer, should_stop)


def build_connector(cfg: ModelConfig, llm_width: int) -> MultiResolutionConnector:
    """The MRC connector of `cfg` for an LLM of width `llm_width`."""
    return MultiResolutionConnector(
        cfg.connector,
        visual_width=cfg.encoders.image_qformer.width,
        tokens_per_frame=cfg.encoders.image_qformer.num_queries,
        whisper_width=cfg.encoders.whisper.width,
        beats_width=cfg.encoders.beats.width,
        llm_width=llm_width,
    )


def splice(embeds: Tensor, media: ConnectorOutput, media_mask: Tensor) -> Tensor:
    """Put each sample's media tokens at its placeholder positions, after checking the counts agree.

    embeds (B, L, E), media.embeds (B, N, E) with media.lengths valid rows, media_mask (B, L) bool.
    """
    counts = media_mask.sum(dim=1)
    if not torch.equal(counts.cpu(), media.lengths.cpu()):
        raise ValueError(f"media placeholders {counts.tolist()} do not match media tokens {media.lengths.tolist()}")
    valid = torch.arange(media.embeds.shape[1], device=embeds.device)[None] < media.lengths[:, None]  # (B, N)
    return embeds.masked_scatter(media_mask[..., None], media.embeds[valid].to(embeds.dtype))


def set_trainable(model: VideoSalmonn) -> None:
    """The one place deciding what trains: the connector (incl. audio pre-projections) and the LoRA adapters."""
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("connector.") or (name.startswith("llm.") and is_lora_parameter(name))


def trainable_names(model: VideoSalmonn) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]
