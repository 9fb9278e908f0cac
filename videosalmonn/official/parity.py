"""`videosalmonn check-official DIR`: reproduce a golden directory's official numbers with our code.

Every recorded stage is compared twice:
* `isolated`: our stage fed with the golden tensor(s) of the stage(s) before it, so an error is located;
* `end_to_end`: everything from the media files, through our decoders, encoders, connector and LLM.
Float stages report the max abs error (tolerance 1e-4, fp32); ids and token stages report the number of
positions that differ (must be 0). The golden data were made in fp32 with the official fp16 casts neutralised
(golden.json `neutralised_casts_and_monkeypatches`); `GoldenDir.config()` does the same.

Two official quirks are not bugs we reproduce in our model, so the check handles them explicitly:
* the official training forward masks every `</s>` as an attention key (`ids != pad`, spec §10.13); the check
  feeds that mask to reproduce `train.answer_logits` and also reports the loss with our own mask (equal: the
  final `</s>` predicts nothing);
* decoded RGB frames of another FFmpeg build may differ by +-1 (golden README §6): the raw-frame stages allow
  1 pixel value; if the frames are not bit-identical, end-to-end stages downstream of the frames are reported
  but not judged (a note says so), and their isolated versions still are.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from videosalmonn.checkpoint import load_model
from videosalmonn.config import GenerationConfig
from videosalmonn.llm.tokenizer import load_tokenizer
from videosalmonn.media.audio import load_audio
from videosalmonn.media.features import audio_features
from videosalmonn.media.image import load_image, transform_image
from videosalmonn.media.timeline import (AUDIO_FRAMES_PER_SLOT, OFFICIAL_MAX_AUDIO_SECONDS, OFFICIAL_MAX_VIDEO_SECONDS,
                                         SAMPLE_RATE)
from videosalmonn.media.video import sample_frames, transform_frames
from videosalmonn.model import VideoSalmonn
from videosalmonn.official.golden import GoldenCase, GoldenDir
from videosalmonn.official.tolerance import (PIXEL_TOLERANCE, POWER_TOLERANCE, TOLERANCE, beats_fbank_error,
                                             max_abs_error)
from videosalmonn.prompting.conversation import collate_prompts, encode
from videosalmonn.prompting.instruction import load_instruction_tokenizer
from videosalmonn.prompting.templates import Turn, prompt_style
from videosalmonn.types import AVFeatures

DIVERSITY_WEIGHT = 0.01      # golden `train_div` (official diversity_loss_factor default)
VISUAL_STAGES = ("eva_out", "instructblip_query_out", "joint_X", "mrc_low_out", "mrc_coarse_out", "H",
                 "media_embeds", "inputs_embeds", "greedy_path_logits", "train.")


@dataclass
class Report:
    values: dict[str, float | int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unjudged: set[str] = field(default_factory=set)

    def float(self, key: str, ours: Tensor, golden: Tensor, tol: float = TOLERANCE, error=max_abs_error,
              what: str = "max abs error"):
        if ours.shape != golden.shape:
            self.values[key] = math.inf
            self.failed.append(f"{key}: shape {tuple(ours.shape)} vs golden {tuple(golden.shape)}")
            return
        err = error(ours, golden)
        self.values[key] = err
        if not err <= tol and key not in self.unjudged:
            self.failed.append(f"{key}: {what} {err:.3g} > {tol:g}")

    def log_power(self, key: str, ours: Tensor, golden: Tensor):
        """BEATs log-fbank: error in the power domain relative to each frame's peak (`official.tolerance`)."""
        self.float(key, ours, golden, POWER_TOLERANCE, beats_fbank_error, "power error / frame peak")

    def ids(self, key: str, ours: list[int] | Tensor, golden: list[int] | Tensor):
        ours, golden = _as_list(ours), _as_list(golden)
        diff = sum(a != b for a, b in zip(ours, golden)) + abs(len(ours) - len(golden))
        self.values[key] = diff
        if diff and key not in self.unjudged:
            self.failed.append(f"{key}: {diff} token(s) differ")

    @property
    def ok(self) -> bool:
        return not self.failed


def check_official(root: str) -> Report:
    golden = GoldenDir(root)
    cfg = golden.config()
    model = load_model(cfg, "cpu")
    checker = _Checker(golden, model, load_tokenizer(cfg.weights.llm),
                       load_instruction_tokenizer(cfg.weights.qformer_tokenizer))
    for case in golden.cases():
        with torch.no_grad():
            checker.run(case)
    return checker.report


def _as_list(x) -> list[int]:
    return x.flatten().tolist() if isinstance(x, Tensor) else list(x)


class _Checker:
    def __init__(self, golden: GoldenDir, model: VideoSalmonn, tokenizer, instruction_tokenizer):
        self.golden, self.model, self.tok, self.itok = golden, model, tokenizer, instruction_tokenizer
        self.cfg = model.cfg
        self.report = Report()

    # ---------------------------------------------------------------------------------------- one case

    def run(self, case: GoldenCase):
        r, g, name = self.report, case.tensors, case.name
        paths = case.entry["image_name"]
        paths = [paths] if isinstance(paths, str) else paths
        visual_path = self.golden.path(paths[0]) if case.data_type != "audio" else None
        is_image = case.data_type == "audioimage"
        audio_path = self.golden.path(paths[1] if len(paths) > 1 else paths[0]) if (
            len(paths) > 1 or case.data_type == "audio") else None
        prompt = case.entry["conversation"][0]["value"]
        answer = case.entry["conversation"][1]["value"]

        frames = self.visual(case, visual_path, is_image) if visual_path else None
        feats = self.audio(case, audio_path) if audio_path else None
        ids, mask = self.itok([prompt])
        if "instructblip_input_ids" in g:
            r.ids(f"{name}/instructblip_input_ids/end_to_end", ids, g["instructblip_input_ids"])
        if "instructblip_attention_mask" in g:
            r.ids(f"{name}/instructblip_attention_mask/end_to_end",
                  torch.cat([torch.ones(1, self.cfg.encoders.image_qformer.num_queries, dtype=torch.long), mask], 1),
                  g["instructblip_attention_mask"])

        visual = self.visual_encoder(case, frames, ids, mask)                       # (1, Tv, Q, Dv) or None
        whisper, beats = self.audio_encoders(case, feats) if feats else (None, None)
        # generation path: a missing audio stream is absent (official replaces it by zeros, spec §1.8)
        media, levels = self.connector(case, visual, is_image, whisper, beats, audio_present=feats is not None,
                                       tag="", modality=(1.0, 1.0))
        self.generation(case, prompt, media)
        self.training(case, prompt, answer, visual, is_image, whisper, beats, media, levels)

    # ---------------------------------------------------------------------------------------- media

    def visual(self, case: GoldenCase, path, is_image: bool) -> Tensor:
        r, g, name = self.report, case.tensors, case.name
        if is_image:
            frames = transform_image(load_image(path), self.cfg.media.image_size)             # (1, 3, S, S)
            if "image" in g:
                r.float(f"{name}/image/end_to_end", frames, g["image"])
            return frames
        sampled = sample_frames(path, "official", max_seconds=OFFICIAL_MAX_VIDEO_SECONDS)
        raw = sampled.frames                                                                     # (T, H, W, 3)
        raw_chw = raw.permute(0, 3, 1, 2)
        exact = True
        if "raw_frames_sum_f64" in g:
            sums = raw_chw.double().sum(dim=(2, 3))
            r.float(f"{name}/raw_frames_sum_f64/end_to_end", sums, g["raw_frames_sum_f64"],
                    tol=PIXEL_TOLERANCE * raw_chw[0, 0].numel())
            exact &= torch.equal(sums, g["raw_frames_sum_f64"])
        if "raw_frame0_u8" in g:
            r.float(f"{name}/raw_frame0_u8/end_to_end", raw_chw[0].int(), g["raw_frame0_u8"].int(),
                    tol=PIXEL_TOLERANCE)
            exact &= torch.equal(raw_chw[0], g["raw_frame0_u8"])
        hashes = case.expected.get("raw_frame_sha256")
        if hashes:
            ours = [hashlib.sha256(f.contiguous().numpy().tobytes()).hexdigest() for f in raw_chw]
            mismatched = sum(a != b for a, b in zip(ours, hashes)) + abs(len(ours) - len(hashes))
            r.values[f"{name}/raw_frame_sha256/end_to_end"] = mismatched
            exact &= mismatched == 0
        clips = case.expected.get("clips")
        if clips:
            ours = [(c.first_pts, c.last_pts, c.n_frames) for c in sampled.clips]
            r.ids(f"{name}/clips/end_to_end", [x for c in ours for x in c],
                  [x for c in clips for x in (c["first_pts"], c["last_pts"], c["n_frames"])])
        if not exact:
            r.notes.append(f"{name}: decoded frames are not bit-identical to the official decoder's "
                           "(another FFmpeg build); end-to-end visual stages are reported, not judged")
            r.unjudged |= {f"{name}/{s}/end_to_end" for s in VISUAL_STAGES}
        frames = transform_frames(raw, self.cfg.media.image_size)                                # (T, 3, S, S)
        if "frames_sum_f64" in g:
            per_pixel = frames.double().sum(dim=(2, 3)) / frames[0, 0].numel()
            r.float(f"{name}/frames_sum_f64/end_to_end", per_pixel, g["frames_sum_f64"] / frames[0, 0].numel())
        if "frames_sel" in g:
            r.float(f"{name}/frames_sel/end_to_end", frames[g["frames_sel_index"]], g["frames_sel"])
        if "frames_mask" in g:
            r.ids(f"{name}/frames_mask/end_to_end", torch.ones(frames.shape[0], dtype=torch.long), g["frames_mask"])
        return frames

    def audio(self, case: GoldenCase, path):
        r, g, name = self.report, case.tensors, case.name
        samples = load_audio(path, self.cfg.media.audio_channels).samples
        samples = samples[:OFFICIAL_MAX_AUDIO_SECONDS * SAMPLE_RATE]
        feats = audio_features(samples, self.cfg.media.beats_fp16_waveform)
        if "whisper_logmel" in g:
            r.float(f"{name}/whisper_logmel/end_to_end", feats.mel[0], g["whisper_logmel"])
        if "beats_fbank" in g:
            r.log_power(f"{name}/beats_fbank/end_to_end", feats.fbank[0][None], g["beats_fbank"])
        return feats

    # ---------------------------------------------------------------------------------------- encoders

    def visual_encoder(self, case: GoldenCase, frames, ids, mask):
        r, g, name = self.report, case.tensors, case.name
        vision = self.model.encoder.vision
        if frames is None:
            return None
        if "eva_out" in g:
            r.float(f"{name}/eva_out/end_to_end", vision.eva_features(frames), g["eva_out"])
            golden_frames = g.get("frames_sel", g.get("image"))
            rows = g["frames_sel_index"] if "frames_sel" in g else slice(None)
            if golden_frames is not None:
                r.float(f"{name}/eva_out/isolated", vision.eva_features(golden_frames), g["eva_out"][rows])
        n = frames.shape[0]
        out = vision(frames, ids.expand(n, -1), mask.expand(n, -1))                            # (N, Q, Dv)
        if "instructblip_query_out" in g:
            r.float(f"{name}/instructblip_query_out/end_to_end", out, g["instructblip_query_out"])
            if "eva_out" in g:
                m = g["eva_out"].shape[0]
                iso = vision.query(vision.ln_vision(g["eva_out"]), g["instructblip_input_ids"].expand(m, -1),
                                   g["instructblip_attention_mask"][:, out.shape[1]:].expand(m, -1))
                r.float(f"{name}/instructblip_query_out/isolated", iso, g["instructblip_query_out"])
        return out[None]                                                                         # (1, N, Q, Dv)

    def audio_encoders(self, case: GoldenCase, feats):
        r, g, name = self.report, case.tensors, case.name
        enc = self.model.encoder
        whisper = enc.whisper(feats.mel)                                                          # (1, 1500, Dw)
        beats = enc.beats(feats.fbank[0][None])                                                   # (1, Tb, Db)
        if "whisper_encoder_out" in g:
            r.float(f"{name}/whisper_encoder_out/end_to_end", whisper, g["whisper_encoder_out"])
            r.float(f"{name}/whisper_encoder_out/isolated", enc.whisper(g["whisper_logmel"][None]),
                    g["whisper_encoder_out"])
        if "beats_out" in g:
            r.float(f"{name}/beats_out/end_to_end", beats, g["beats_out"])
            r.float(f"{name}/beats_out/isolated", enc.beats(g["beats_fbank"]), g["beats_out"])
        return whisper, beats

    # ---------------------------------------------------------------------------------------- connector

    def features(self, visual, is_image, whisper, beats, audio_present, modality) -> AVFeatures:
        if visual is None:
            visual = torch.zeros(1, 0, self.cfg.encoders.image_qformer.num_queries, self.cfg.encoders.image_qformer.width)
        if not audio_present:
            whisper = torch.zeros(1, 0, self.cfg.encoders.whisper.width)
            beats = torch.zeros(1, 0, self.cfg.encoders.beats.width)
        else:
            beats = F.pad(beats, (0, 0, 0, whisper.shape[1] - beats.shape[1]))
        return AVFeatures(visual, torch.tensor([visual.shape[1]]), torch.tensor([is_image]), whisper, beats,
                          torch.tensor([whisper.shape[1] // AUDIO_FRAMES_PER_SLOT]), torch.tensor([modality]))

    def connector(self, case: GoldenCase, visual, is_image, whisper, beats, audio_present, tag, modality):
        """Sync + MRC + projection, end to end and isolated; returns our (1, N, E) media embeddings and the
        end-to-end Q-Former outputs of every level."""
        r, g, name = self.report, case.tensors, case.name
        conn = self.model.connector
        f = self.features(visual, is_image, whisper, beats, audio_present, modality)
        audio = conn.sync.project_audio(f)
        if audio_present and "audio_embeds" in g and not tag:
            r.float(f"{name}/audio_embeds/end_to_end", audio, g["audio_embeds"])
            gw = g["whisper_encoder_out"]
            gb = F.pad(g["beats_out"], (0, 0, 0, gw.shape[1] - g["beats_out"].shape[1]))
            iso_f = AVFeatures(f.visual, f.visual_slots, f.is_image, gw, gb, f.audio_slots, f.modality_mask)
            r.float(f"{name}/audio_embeds/isolated", conn.sync.project_audio(iso_f), g["audio_embeds"])
        x, slot_mask, padded = conn.sync.align(f.visual, f.visual_slots, f.is_image, audio, f.audio_slots,
                                               f.modality_mask)
        q = x.shape[2]
        outputs, levels = self.mrc(case, tag, x, slot_mask, "end_to_end")
        # isolated: from the nearest recorded upstream golden tensors
        if not tag:
            if "joint_X" in g:
                gx = g["joint_X"].view(1, -1, q, x.shape[-1])
                r.float(f"{name}/joint_X/end_to_end", x[:, :gx.shape[1]], gx)
                gv = g["instructblip_query_out"][None]
                ga = g["audio_embeds"]
                ix, _, _ = conn.sync.align(gv, f.visual_slots, f.is_image, ga, f.audio_slots, f.modality_mask)
                r.float(f"{name}/joint_X/isolated", ix[:, :gx.shape[1]], gx)
                gx = F.pad(gx, (0, 0, 0, 0, 0, x.shape[1] - gx.shape[1]))
                self.mrc(case, tag, gx, g["mrc_low_encoder_mask"].view(1, -1, q)[:, :, 0], "isolated")
            elif "instructblip_query_out" in g or "audio_embeds" in g:
                gv = g["instructblip_query_out"][None] if visual is not None else f.visual
                ga = g["audio_embeds"] if audio_present and "audio_embeds" in g else audio
                ix, imask, _ = conn.sync.align(gv, f.visual_slots, f.is_image, ga, f.audio_slots, f.modality_mask)
                self.mrc(case, tag, ix, imask, "isolated")
            if "mrc_low_encoder_mask" in g:
                r.ids(f"{name}/mrc_low_encoder_mask/end_to_end",
                      slot_mask.repeat_interleave(q, dim=1).view(-1, q).long(), g["mrc_low_encoder_mask"].long())
        return outputs, levels

    def mrc(self, case: GoldenCase, tag: str, x: Tensor, slot_mask: Tensor, mode: str) -> tuple[Tensor, list]:
        r, g, name = self.report, case.tensors, case.name
        conn = self.model.connector
        xn = conn.norm(x)
        levels = [conn.level(i, xn, slot_mask) for i in range(len(conn.cfg.levels))]
        fine, coarse = levels[0], levels[-1]
        h = torch.cat([lv.reshape(1, -1, lv.shape[-1]) for lv in levels], dim=-1)
        media = conn.proj(h)
        if not tag:
            for key, ours in (("mrc_low_out", fine), ("mrc_coarse_out", coarse)):
                if key in g:
                    r.float(f"{name}/{key}/{mode}", ours.reshape(g[key].shape), g[key])
        if f"{tag}H" in g:
            r.float(f"{name}/{tag}H/{mode}", h, g[f"{tag}H"])
        if f"{tag}media_embeds" in g:
            r.float(f"{name}/{tag}media_embeds/{mode}", media, g[f"{tag}media_embeds"])
        if mode == "isolated" and "mrc_low_out" in g and not tag:      # the last two stages from golden inputs
            gh = torch.cat([g["mrc_low_out"].reshape(1, -1, g["mrc_low_out"].shape[-1]),
                            g["mrc_coarse_out"].reshape(1, -1, g["mrc_coarse_out"].shape[-1])], dim=-1)
            r.float(f"{name}/H/isolated_from_levels", gh, g["H"])
            r.float(f"{name}/media_embeds/isolated_from_H", conn.proj(g["H"]), g["media_embeds"])
        return media, levels

    # ---------------------------------------------------------------------------------------- LLM

    def prompt(self, prompt: str, answer: str | None, n_media: int):
        turns = [Turn("user", prompt)] + ([Turn("assistant", answer)] if answer is not None else [])
        pieces = prompt_style(self.cfg.llm.prompt_style).render(turns)
        enc = encode(pieces, self.tok, n_media, self.cfg.llm.max_text_tokens)
        return collate_prompts([enc], self.tok.pad_id, side="left")

    def generation(self, case: GoldenCase, prompt: str, media: Tensor):
        r, g, name = self.report, case.tensors, case.name
        llm = self.model.llm
        batch = self.prompt(prompt, None, media.shape[1])
        if "text_after_ids" in g:
            text_ids = self.tok.encode("</Img> " + prompt + "\nASSISTANT:")
            r.ids(f"{name}/text_after_ids/end_to_end", text_ids, g["text_after_ids"])
        embeds = self._splice(batch, media)
        r.float(f"{name}/inputs_embeds/end_to_end", embeds, g["inputs_embeds"])
        iso = self._splice(batch, g["media_embeds"])
        r.float(f"{name}/inputs_embeds/isolated", iso, g["inputs_embeds"])
        mask = batch.attention_mask
        greedy = case.expected["greedy20"]["ids"][0]
        for mode, e in (("end_to_end", embeds), ("isolated", g["inputs_embeds"])):
            path = torch.cat([e, llm.embed(torch.tensor([greedy[:-1]]))], dim=1)
            logits = llm(path, torch.ones(path.shape[:2], dtype=torch.long))[0, e.shape[1] - 1:]
            r.float(f"{name}/greedy_path_logits/{mode}", logits, g["greedy_path_logits"])
        runs = {"greedy20": GenerationConfig(max_new_tokens=20, num_beams=1, repetition_penalty=1.0),
                "beam20": GenerationConfig(max_new_tokens=20, num_beams=5, repetition_penalty=1.5),
                "beam_default": GenerationConfig(max_new_tokens=self.cfg.llm.max_text_tokens, num_beams=5,
                                                 repetition_penalty=1.5)}
        for run, gen in runs.items():
            if run not in case.expected:
                continue
            want = case.expected[run]
            for mode, e in (("end_to_end", embeds), ("isolated", g["inputs_embeds"])):
                ids = llm.generate(e, mask, gen, self.tok.eos_id, self.tok.pad_id)[0].tolist()
                r.ids(f"{name}/{run}_ids/{mode}", ids, want["ids"][0])
                if mode == "end_to_end":
                    text = self.tok.decode(ids, skip_special_tokens=False)
                    r.ids(f"{name}/{run}_text/end_to_end", list(text), list(want["text"][0]))

    def training(self, case: GoldenCase, prompt: str, answer: str, visual, is_image, whisper, beats, media,
                 levels):
        """Teacher-forced forward on the manifest answer (official `forward(generate=False)`, eval mode)."""
        r, g, name = self.report, case.tensors, case.name
        if "train" not in case.expected:
            return
        # training keeps the unpaired dummy audio of a video-only sample, masked (spec §1.8, golden README §4)
        if whisper is None and visual is not None:
            feats = audio_features(load_audio(self.golden.dummy_audio(), self.cfg.media.audio_channels)
                                   .samples[:OFFICIAL_MAX_AUDIO_SECONDS * SAMPLE_RATE])
            whisper = self.model.encoder.whisper(feats.mel)
            beats = self.model.encoder.beats(feats.fbank[0][None])
            media, levels = self.connector(case, visual, is_image, whisper, beats, True, "train.", (1.0, 0.0))
        batch = self.prompt(prompt, answer, media.shape[1])
        r.ids(f"{name}/train.targets/end_to_end", batch.labels, g["train.targets"])
        official_mask = batch.attention_mask.clone()
        official_mask[(batch.input_ids == self.tok.eos_id) & ~batch.media_mask] = 0    # ids != pad (spec §10.13)
        r.ids(f"{name}/train.attention_mask/end_to_end", official_mask, g["train.attention_mask"])
        embeds = self._splice(batch, media)
        if "train.inputs_embeds" in g:
            r.float(f"{name}/train.inputs_embeds/end_to_end", embeds, g["train.inputs_embeds"])
        golden_media = g.get("train.media_embeds", g["media_embeds"])
        inputs = {"end_to_end": embeds, "isolated": g.get("train.inputs_embeds", self._splice(batch, golden_media))}
        positions = g["train.answer_logit_positions"]
        ce_e2e = None
        for mode, e in inputs.items():
            logits = self.model.llm(e, official_mask)
            r.float(f"{name}/train.answer_logits/{mode}", logits[0, positions], g["train.answer_logits"])
            ce = F.cross_entropy(logits[0, :-1].float(), batch.labels[0, 1:], ignore_index=-100)
            r.float(f"{name}/train.loss/{mode}", ce.reshape(1), torch.tensor([case.expected["train"]["loss"]]),
                    tol=1e-5)
            if mode == "end_to_end":
                ce_e2e = ce
                own = self.model.llm(e, batch.attention_mask)
                ce_own = F.cross_entropy(own[0, :-1].float(), batch.labels[0, 1:], ignore_index=-100)
                r.float(f"{name}/train.loss_with_our_mask/{mode}", ce_own.reshape(1),
                        torch.tensor([case.expected["train"]["loss"]]), tol=1e-5)
        if "train_div" in case.expected:
            from videosalmonn.losses import diversity_loss

            want = torch.tensor([case.expected["train_div"]["diversity_loss"]])
            coarse = levels[-1].reshape(-1, *levels[-1].shape[2:])
            r.float(f"{name}/train.diversity_loss/end_to_end", diversity_loss(coarse).reshape(1), want, tol=1e-5)
            if "train.diversity_query" in g:
                r.float(f"{name}/train.diversity_query/end_to_end", coarse, g["train.diversity_query"])
                r.float(f"{name}/train.diversity_loss/isolated",
                        diversity_loss(g["train.diversity_query"]).reshape(1), want, tol=1e-5)
            total = ce_e2e + DIVERSITY_WEIGHT * diversity_loss(coarse)
            r.float(f"{name}/train_div.loss/end_to_end", total.reshape(1),
                    torch.tensor([case.expected["train_div"]["loss"]]), tol=1e-5)

    def _splice(self, batch, media: Tensor) -> Tensor:
        from videosalmonn.model import splice
        from videosalmonn.types import ConnectorOutput

        out = ConnectorOutput(media, torch.tensor([media.shape[1]]), (), ())
        return splice(self.model.llm.embed(batch.input_ids), out, batch.media_mask)
