"""Prompt layouts: golden token ids, labels only on answers, placeholders, padding, limits."""

import pytest
import torch
from conftest import GOLDEN, needs_golden

from videosalmonn.errors import InputError
from videosalmonn.llm.tokenizer import load_tokenizer
from videosalmonn.prompting.conversation import IGNORE, collate_prompts, encode, encode_conversation
from videosalmonn.prompting.templates import Llama2Style, OfficialStyle, Piece
from videosalmonn.types import Turn


def texts(pieces):
    return [p.text if p.text is not None else ("<media>" if p.media else p.special) for p in pieces]


def test_official_layout_pieces():
    pieces = OfficialStyle().render(
        [Turn("user", "Describe the video"), Turn("assistant", "A band."), Turn("user", "Who sings?")]
    )
    assert texts(pieces) == [
        "bos",
        "USER: <Img>",
        "<media>",
        "</Img> Describe the video\nASSISTANT:",
        "A band.",
        "eos",
        "USER: Who sings?\nASSISTANT:",
    ]
    assert [p.target for p in pieces] == [False, False, False, False, True, True, False]


def test_llama2_layout_pieces():
    pieces = Llama2Style().render([Turn("user", "Q1"), Turn("assistant", "A1"), Turn("user", "Q2")])
    assert texts(pieces) == [
        "bos",
        "[INST] <Img>",
        "<media>",
        "</Img> Q1 [/INST]",
        "A1",
        "eos",
        "bos",
        "[INST] Q2 [/INST]",
    ]


def test_bad_conversations():
    with pytest.raises(InputError, match="start with a user turn"):
        OfficialStyle().render([Turn("assistant", "hi")])
    with pytest.raises(InputError, match="turn 2 should be a assistant"):
        OfficialStyle().render([Turn("user", "a"), Turn("user", "b")])


@needs_golden
def test_golden_ids_and_targets(golden_json, golden_tensors):
    tok = load_tokenizer(GOLDEN / "ckpt" / "vicuna-13b-v1.5-tiny")
    assert tok.encode("USER: <Img>") == golden_json["llama"]["prompt_start_ids"]
    for case in ("av", "video_only", "audioimage"):
        conv = golden_json["cases"][case]["manifest"][0]["conversation"]
        g = golden_tensors(case)
        media = g["train.H" if "train.H" in g else "H"].shape[1]
        pieces = OfficialStyle().render([Turn("user", conv[0]["value"]), Turn("assistant", conv[1]["value"])])
        enc = encode(pieces, tok, media, 512)
        assert enc.labels == g["train.targets"][0].tolist()
        assert sum(enc.media) == media
        n_after = g["text_after_ids"].shape[1]
        start = 1 + len(golden_json["llama"]["prompt_start_ids"]) + media
        assert enc.ids[start : start + n_after] == g["text_after_ids"][0].tolist()


def test_collate_left_and_right():
    tok = load_tokenizer(None)
    a = encode([Piece(special="bos"), Piece(text="hello"), Piece(media=True)], tok, 3, 512)
    b = encode(
        [
            Piece(special="bos"),
            Piece(text="a longer prompt here"),
            Piece(media=True),
            Piece(text="answer", target=True),
        ],
        tok,
        2,
        512,
    )
    left = collate_prompts([a, b], tok.pad_id, "left")
    assert left.attention_mask[0].tolist()[-len(a.ids) :] == [1] * len(a.ids)
    assert left.attention_mask[0, 0] == 0 and left.input_ids[0, 0] == tok.pad_id
    assert left.media_mask.sum(1).tolist() == [3, 2]
    assert (left.labels[0] == IGNORE).all() and (left.labels[1] != IGNORE).sum() == len(tok.encode("answer"))
    right = collate_prompts([a, b], tok.pad_id, "right")
    assert right.attention_mask[0, : len(a.ids)].all() and right.attention_mask[0, len(a.ids) :].sum() == 0
    assert torch.equal(right.input_ids[1], left.input_ids[1])


def test_too_long_text_is_an_error_not_a_cut():
    tok = load_tokenizer(None)
    with pytest.raises(InputError, match="the prompt is .* tokens long; the limit is 8"):
        encode([Piece(text="one two three four five six seven eight nine ten")], tok, 0, 8)


def test_encode_conversation_renders_then_encodes():
    """Turns -> ids in the style's layout: bos, first user piece, N media placeholders, question; answer labelled."""
    tok = load_tokenizer(None)
    turns = [Turn("user", "What plays?"), Turn("assistant", "A piano.")]
    enc = encode_conversation(turns, OfficialStyle(), tok, 4, 512)
    assert enc.ids[0] == tok.bos_id and sum(enc.media) == 4 and enc.ids[-1] == tok.eos_id
    assert enc.ids[1 : 1 + len(tok.encode("USER: <Img>"))] == tok.encode("USER: <Img>")
    assert [i for i, label in zip(enc.ids, enc.labels) if label != IGNORE] == tok.encode("A piano.") + [tok.eos_id]
    assert enc.ids == encode(OfficialStyle().render(turns), tok, 4, 512).ids
    assert (
        encode_conversation(turns[:1], Llama2Style(), tok, 0, 512).ids
        != encode_conversation(turns[:1], OfficialStyle(), tok, 0, 512).ids
    )
    with pytest.raises(InputError, match="start with a user turn"):
        encode_conversation([Turn("assistant", "x")], OfficialStyle(), tok, 0, 512)
    with pytest.raises(InputError, match="the answer is 120 tokens long; the limit is 32"):
        encode_conversation(
            [Turn("user", "Q"), Turn("assistant", " ".join(["word"] * 40))], OfficialStyle(), tok, 0, 32
        )
