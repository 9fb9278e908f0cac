"""The causal LM seen through three methods: `embed(ids)`, `forward(embeds, mask)`, `generate(embeds, mask)`.

This is the only place that knows how Hugging Face and peft nest the model (`base_model.model.model...`).
Numerics follow the official path (spec §6.1, Appendix A.7): eager attention (`llm.attention=sdpa` on request),
RoPE frequencies kept in fp32 even when the model runs in fp16, unmerged LoRA. A checkpoint is loaded into an empty
model, shard by shard, straight onto its device (`llm/loading.py`), or onto the devices of `llm.device_map`
(`llm/placement.py`, dispatched by `cast`); `llm.quantization` is in `llm/quantization.py`.
Positions follow the attention mask, so left-padded batches give every sample the positions it would have alone
(the official batch > 1 bugs, spec §10.7, cannot happen).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from videosalmonn.config import GenerationConfig, LLMConfig
from videosalmonn.errors import CheckpointError, ConfigError
from videosalmonn.kernels import attention_kernels
from videosalmonn.llm import quantization
from videosalmonn.llm.loading import empty_causal_lm, load_into, weight_files
from videosalmonn.llm.lora import apply_lora, is_lora_parameter, materialize_empty_adapters
from videosalmonn.llm.placement import Placement, plan
from videosalmonn.rng import seeded
from videosalmonn.weights import check_loading_info, resolve_model

HF_GENERATION_LOGGER = "transformers.generation.utils"
HF_PENALTY_WARNING = "Passing `repetition_penalty` with `inputs_embeds`"  # a UserWarning of HF's generate


def _not_our_penalty_note(record: logging.LogRecord) -> bool:
    """False for HF's log line saying our repetition-penalty processor replaces its own: intended (see `generate`)."""
    message = record.getMessage()
    return not (message.startswith("A custom logits processor") and "RepetitionPenaltyLogitsProcessor" in message)


# Set once, at import (never per call, never from a worker thread): HF's two notes about the repetition penalty
# describe what `generate` wants, the penalty on generated tokens only, applied by our own processor.
logging.getLogger(HF_GENERATION_LOGGER).addFilter(_not_our_penalty_note)
warnings.filterwarnings("ignore", message=HF_PENALTY_WARNING, category=UserWarning, module=r"transformers\.generation")


class GenerationAborted(Exception):
    """Raised out of `LanguageModel.generate` once its `should_stop()` is true (checked before every step)."""


def _abort_when(should_stop: Callable[[], bool]):
    """A transformers StoppingCriteria that raises GenerationAborted: beam search honours stopping criteria
    (it cannot take a streamer), so this is how a cancelled beam search stops within one decoding step."""
    from transformers import StoppingCriteria

    class AbortWhen(StoppingCriteria):
        def __call__(self, input_ids: Tensor, scores: Tensor, **kwargs) -> Tensor:
            if should_stop():
                raise GenerationAborted
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    return AbortWhen()


class LanguageModel(nn.Module):
    def __init__(self, model: nn.Module, quantized: str = "none", placement: Placement | None = None):
        super().__init__()
        self.model = model  # HF causal LM, possibly wrapped by peft
        self.quantized = quantized  # none | int8 (Int8Linear) | bnb-int8 | bnb-nf4 (placed by bitsandbytes)
        self.placement = placement  # llm.device_map: where each layer lives (dispatched by `cast`)
        from transformers import GenerationConfig as HFGenerationConfig

        # decoding settings come only from our GenerationConfig: drop the checkpoint's (temperature, max_length)
        model.generation_config = HFGenerationConfig()
        self._rope_fp32 = {
            name: m.inv_freq.detach().float().clone() for name, m in model.named_modules() if hasattr(m, "inv_freq")
        }

    @classmethod
    def build(
        cls,
        cfg: LLMConfig,
        source: str | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> LanguageModel:
        """Load an HF causal LM from `source` (dir or hub id) straight onto `device` in `dtype` (nothing is built
        first; with `cfg.device_map`, onto the devices of its map), or a random LLaMA of the config's dims;
        quantised as `cfg.quantization` says, then LoRA."""
        how = quantization.backend(cfg.quantization, device)
        placement = None
        if source is None and cfg.device_map is not None:
            raise ConfigError("llm.device_map places a pretrained LLM: set weights.llm (a random one is built whole)")
        if source is None:
            base = _random_llama(cfg, dtype)
            if how.startswith("bnb-"):
                raise ConfigError(
                    f"llm.quantization={cfg.quantization} with bitsandbytes loads a checkpoint: set weights.llm "
                    "(a random LLM can use llm.quantization=int8 without bitsandbytes)"
                )
            if how == "int8":
                quantization.to_int8(base)
        elif how.startswith("bnb-"):
            base = _load_bitsandbytes(source, cfg, dtype, device, how.removeprefix("bnb-"))
        else:
            base, placement = _load_pretrained(source, cfg, dtype, torch.device(device or "cpu"), int8=how == "int8")
        if cfg.lora is not None:
            base = apply_lora(base, cfg.lora)
            if placement is not None:  # adapters of `disk` layers: peft leaves them on meta, like their base
                materialize_empty_adapters(base)
        return cls(base, quantized=how, placement=placement)

    @property
    def width(self) -> int:
        return self.model.get_input_embeddings().embedding_dim

    def cast(self, device: torch.device | str | None, dtype: torch.dtype) -> LanguageModel:
        """Move to `device` in `dtype` (int8 weights stay int8); a bitsandbytes model stays where it was loaded;
        a placed one (`llm.device_map`) is cast to `dtype` where it is, then dispatched by its map (once: load
        every weight, the delta's LoRA too, before the first cast)."""
        if self.placement is not None:
            with torch.no_grad():
                for p in self.model.parameters():
                    if p.is_floating_point() and not p.is_meta:
                        p.data = p.data.to(dtype)
            self.placement.dispatch(self.model)
        elif not self.quantized.startswith("bnb-"):
            self.to(device=device, dtype=dtype)
        self.restore_rope_precision()
        return self

    def is_offloaded(self, tensor: Tensor) -> bool:
        """True for a weight of a `disk` module of `llm.device_map`: on meta by design until its forward."""
        return self.placement is not None and self.placement.is_offloaded(tensor)

    def restore_rope_precision(self) -> None:
        """Put the fp32 RoPE frequencies back after a dtype cast (`.half()` would round them, spec §6.1)."""
        for name, m in self.model.named_modules():
            if name in self._rope_fp32:
                m.inv_freq = self._rope_fp32[name].to(m.inv_freq.device)
                if hasattr(m, "original_inv_freq"):
                    m.original_inv_freq = m.inv_freq.clone()

    @property
    def embedding_table(self) -> Tensor:
        """The input-embedding matrix (V, E): what a token id looks like to the LLM."""
        return self.model.get_input_embeddings().weight

    def embed(self, ids: Tensor) -> Tensor:
        """(B, L) ids -> (B, L, E) input embeddings (on the ids' device, wherever a device map put the table)."""
        return self.model.get_input_embeddings()(ids).to(ids.device)

    def forward(self, embeds: Tensor, attention_mask: Tensor, keep: Tensor | None = None) -> Tensor:
        """(B, L, E) embeddings + (B, L) mask -> (B, L, V) logits, or with `keep` ((B, L) bool) the logits of the
        kept positions only, (N, V) in row-major order (as `x[keep]` orders them): the LM head runs on those alone."""
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        with attention_kernels(embeds.device, embeds.dtype):  # llm.attention=sdpa in bfloat16 on an AVX2 CPU
            out = self.model(
                inputs_embeds=embeds,
                attention_mask=attention_mask,
                position_ids=positions,
                use_cache=False,
                logits_to_keep=0 if keep is None else keep,  # HF: 0 keeps all; a bool (B, L) mask gives (N, V)
            )
        return out.logits

    @torch.no_grad()
    def generate(
        self,
        embeds: Tensor,
        attention_mask: Tensor,
        gen: GenerationConfig,
        eos_id: int,
        pad_id: int,
        streamer=None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Tensor:
        """Left-padded (B, L, E) prompt embeddings -> (B, new) generated ids (padded with `pad_id` after EOS).

        `should_stop()` is asked after every decoding step; true raises GenerationAborted (greedy, sampling and
        beam search alike).

        Greedy, beam search (repetition penalty on generated tokens only, as official) or sampling; decoding is
        done by Hugging Face `generate` with an explicit config (none of the checkpoint's defaults leak in).
        """
        from transformers import GenerationConfig as HFGenerationConfig
        from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor, StoppingCriteriaList

        hf = HFGenerationConfig(
            max_new_tokens=gen.max_new_tokens,
            do_sample=gen.do_sample,
            num_beams=gen.num_beams,
            repetition_penalty=gen.repetition_penalty,
            length_penalty=gen.length_penalty,
            early_stopping=False,
            temperature=gen.temperature if gen.do_sample else None,
            top_p=gen.top_p if gen.do_sample else None,
            top_k=gen.top_k if gen.do_sample else None,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
            bos_token_id=None,
        )
        # The penalty sees only generated tokens, like the official call (spec §6.3). Our own instance replaces
        # the one generate() builds: transformers 5.24 skips the first <left-padding> generated tokens of a
        # padded row when generating from inputs_embeds, so padded rows would be penalised differently.
        processors = LogitsProcessorList()
        if gen.repetition_penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(float(gen.repetition_penalty)))
        rng = contextlib.nullcontext()
        if gen.do_sample and gen.seed is not None:  # seeded generators of the CPU and the used devices, forked
            rng = seeded(gen.seed, {embeds.device} | {p.device for p in self.model.parameters() if not p.is_meta})
        with rng, attention_kernels(embeds.device, embeds.dtype):
            return self.model.generate(
                inputs_embeds=embeds,
                attention_mask=attention_mask,
                generation_config=hf,
                logits_processor=processors,
                stopping_criteria=StoppingCriteriaList([_abort_when(should_stop)] if should_stop else []),
                streamer=streamer,
            )

    def enable_activation_checkpointing(self) -> None:
        """Recompute each decoder layer's activations in the backward pass instead of keeping them (training)."""
        self.model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})

    def merge_lora(self, inplace: bool = False) -> nn.Module:
        """The HF causal LM with the LoRA adapters merged into its weights (peft `merge_and_unload`), e.g. to
        `save_pretrained`. Merges a copy unless `inplace` (saves memory; this LM's adapters are then merged away)."""
        if not any(is_lora_parameter(name) for name, _ in self.model.named_parameters()):
            raise CheckpointError("the LLM has no LoRA adapters to merge")
        if self.quantized != "none":
            raise CheckpointError(
                f"the LLM is quantised ({self.quantized}): merge LoRA into a model loaded with llm.quantization=none"
            )
        model = self.model if inplace else copy.deepcopy(self.model)
        return model.merge_and_unload()


KNOWN_IGNORED = ("rotary_emb.inv_freq",)  # RoPE frequencies: recomputed, stored by older checkpoints (Vicuna v1.5)


def _random_llama(cfg: LLMConfig, dtype: torch.dtype) -> nn.Module:
    """A random LLaMA of the config's dims (seeded by the caller) in `dtype` on the CPU."""
    from transformers import LlamaConfig, LlamaForCausalLM

    hf_cfg = LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.width,
        intermediate_size=cfg.mlp_width,
        num_hidden_layers=cfg.depth,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_positions,
        rms_norm_eps=cfg.rms_eps,
        rope_theta=cfg.rope_theta,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
        # std 1/sqrt(width) (not HF's 0.02): a random tiny LM whose logits can become peaked, so it
        # can learn through LoRA + connector alone (a trained LM head has this scale)
        initializer_range=cfg.width**-0.5,
    )
    hf_cfg._attn_implementation = cfg.attention
    base = LlamaForCausalLM(hf_cfg).to(dtype)
    with torch.no_grad():  # LM head ~ N(0, 1): logits can be as peaked as a trained model's
        base.lm_head.weight.normal_(0.0, 1.0)
    return base


def _load_pretrained(
    source: str, cfg: LLMConfig, dtype: torch.dtype, device: torch.device, int8: bool
) -> tuple[nn.Module, Placement | None]:
    """An HF causal LM whose every weight came from `source`, built empty and filled shard by shard on `device`
    (`int8`: the decoder projections quantised as they arrive; `cfg.device_map`: each on the device of its module,
    the Placement returned); missing or unexpected keys are an error."""
    from transformers import AutoConfig

    path = resolve_model(source)
    try:
        hf_cfg = AutoConfig.from_pretrained(str(path))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{source}: cannot read the LLM config ({_first_line(e)})") from None
    _check_dims(hf_cfg, cfg, source)
    model = empty_causal_lm(hf_cfg, cfg.attention, int8=int8)
    placement = plan(model, cfg, dtype)
    files = weight_files(path)
    load_into(
        model, files, source=f"{source} (LLM)", device=device, dtype=dtype, ignore=KNOWN_IGNORED, placement=placement
    )
    return model.eval(), placement


def _load_bitsandbytes(source: str, cfg: LLMConfig, dtype: torch.dtype, device, how: str) -> nn.Module:
    """transformers' big-model loading with a bitsandbytes config, onto `device` (CUDA)."""
    from transformers import AutoModelForCausalLM

    path = resolve_model(source)
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            str(path),
            dtype=dtype,
            attn_implementation=cfg.attention,
            quantization_config=quantization.bnb_config(how, dtype),
            device_map={"": str(device)},
            output_loading_info=True,
        )
    except (OSError, ValueError, RuntimeError, ImportError) as e:
        raise CheckpointError(f"{source}: cannot load the LLM with bitsandbytes {how} ({_first_line(e)})") from None
    check_loading_info(info, f"{source} (LLM)", ignore=KNOWN_IGNORED)
    _check_dims(model.config, cfg, source)
    return model


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _check_dims(hf_cfg, cfg: LLMConfig, source: str) -> None:
    pairs = {
        "width": (hf_cfg.hidden_size, cfg.width),
        "depth": (hf_cfg.num_hidden_layers, cfg.depth),
        "vocab_size": (hf_cfg.vocab_size, cfg.vocab_size),
    }
    wrong = [f"llm.{k}: checkpoint {a}, config {b}" for k, (a, b) in pairs.items() if a != b]
    if wrong:
        raise CheckpointError(f"{source}: LLM does not match the config ({'; '.join(wrong)})")
