"""Evaluation metrics: hand-computed values, the libraries' own outputs, and the unavailable/fallback paths."""

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jiwer
import numpy as np
import pytest
from pycocoevalcap.cider.cider import Cider

from videosalmonn.errors import InputError
from videosalmonn.evaluation import judge, metrics
from videosalmonn.evaluation.bootstrap import bootstrap_ci, bootstrap_corpus_ci
from videosalmonn.evaluation.metrics import (
    MetricResult,
    avm_correct,
    cider_bootstrap_ci,
    cider_d,
    combine_spider,
    containment_correct,
    multiple_choice_correct,
    python_tokenize,
    spice,
    spider,
    textvqa_accuracy,
    vqa_normalise,
    wer,
    wer_bootstrap_ci,
)

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="PTBTokenizer needs Java, not installed")

# ----------------------------------------------------------------------------------------------------------
# WER


def test_wer_hand_computed_raw():
    # utterance 1: "the" deleted (D=1, N=6); utterance 2: "big" inserted (I=1, N=2) -> (0+1+1)/8
    result = wer(["the cat sat on the mat", "hello world"], ["the cat sat on mat", "hello big world"], normalise=False)
    assert result.value == pytest.approx(2 / 8)
    assert (result.details["substitutions"], result.details["deletions"], result.details["insertions"]) == (0, 1, 1)
    assert result.details["hits"] == 7 and result.details["reference_words"] == 8
    assert result.per_sample == pytest.approx((1 / 6, 1 / 2))


def test_wer_matches_jiwer_without_normalisation():
    refs = ["a quick brown fox", "jumps over the lazy dog", "it is raining"]
    hyps = ["a quick brown box", "jumps over lazy dog today", "it was raining hard"]
    ours = wer(refs, hyps, normalise=False)
    out = jiwer.process_words(refs, hyps)
    assert ours.value == pytest.approx(jiwer.wer(refs, hyps))
    assert (ours.details["substitutions"], ours.details["deletions"], ours.details["insertions"]) == (
        out.substitutions,
        out.deletions,
        out.insertions,
    )


def test_wer_whisper_normaliser():
    ref, hyp = "The colour is twenty five, Mr. Smith!", "the color is 25 mister smith"
    assert wer([ref], [hyp]).value == 0.0  # colour->color, twenty five->25, Mr.->mister
    assert wer([ref], [hyp], normalise=False).value > 0.5
    assert metrics.whisper_normalise("Uh, HELLO (laughs) world.") == "hello world"


def test_wer_empty_references():
    # an empty reference contributes its hypothesis words as insertions; N counts the other utterances
    result = wer(["", "a b"], ["x y", "a b"])
    assert result.value == pytest.approx(2 / 2)
    assert result.details["insertions"] == 2 and result.per_sample == (2.0, 0.0)
    with pytest.raises(InputError, match="no words"):
        wer(["", "(laughs)"], ["a", ""])
    with pytest.raises(InputError):
        wer(["a"], ["a", "b"])


def test_wer_bootstrap_is_seeded_and_brackets_the_value():
    refs = [f"word{i} common words here" for i in range(40)]
    hyps = [r if i % 3 else r.replace("common", "uncommon") for i, r in enumerate(refs)]
    value = wer(refs, hyps, normalise=False).value
    ci = wer_bootstrap_ci(refs, hyps, normalise=False, n=200, seed=3)
    assert ci == wer_bootstrap_ci(refs, hyps, normalise=False, n=200, seed=3)
    assert ci[0] <= value <= ci[1] and ci[0] < ci[1]


# ----------------------------------------------------------------------------------------------------------
# CIDEr-D, SPICE, SPIDEr

CAPTION_REFS = [
    [
        "A man is riding a horse on the beach.",
        "A person rides a brown horse near the sea.",
        "Someone on horseback at the shore.",
    ],
    ["Two dogs play with a red ball in the grass.", "Dogs chasing a ball on a lawn."],
    ["A woman is cooking dinner in the kitchen.", "A lady prepares food at the stove."],
    ["Children are swimming in a pool.", "Kids splash around in the swimming pool."],
]
CAPTION_HYPS = [
    "A man rides a horse on the beach.",
    "Two dogs are playing with a ball.",
    "A woman is cooking in a kitchen.",
    "A cat sleeps on a sofa.",
]


def test_cider_hand_computed():
    # Two items, each hypothesis equal to its single two-word reference, disjoint vocabularies: every n-gram
    # has IDF log(2/1); the 1- and 2-gram cosine similarities are 1, the 3-/4-gram vectors are empty (0);
    # mean over n = (1 + 1 + 0 + 0) / 4, x10 -> 5.0 per item. A wrong caption scores 0.
    assert cider_d([["a b"], ["c d"]], ["a b", "c d"], tokenizer="python").value == pytest.approx(5.0)
    result = cider_d([["a b"], ["c d"]], ["a b", "x y"], tokenizer="python")
    assert result.value == pytest.approx(2.5) and result.per_sample == pytest.approx((5.0, 0.0))


def test_cider_python_tokenizer_matches_library_call():
    gts = {i: [" ".join(python_tokenize(c)) for c in refs] for i, refs in enumerate(CAPTION_REFS)}
    res = {i: [" ".join(python_tokenize(h))] for i, h in enumerate(CAPTION_HYPS)}
    score, scores = Cider().compute_score(gts, res)
    result = cider_d(CAPTION_REFS, CAPTION_HYPS, tokenizer="python")
    assert result.value == pytest.approx(score)
    assert result.per_sample == pytest.approx(tuple(scores))
    assert result.details["tokenizer"] == "python"


@needs_java
def test_cider_ptb_matches_library_pipeline():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": c} for c in refs] for i, refs in enumerate(CAPTION_REFS)})
    res = tok.tokenize({i: [{"caption": h}] for i, h in enumerate(CAPTION_HYPS)})
    score, _ = Cider().compute_score(gts, res)
    result = cider_d(CAPTION_REFS, CAPTION_HYPS, tokenizer="ptb")
    assert result.details["tokenizer"] == "ptb"
    assert result.value == pytest.approx(score)
    # on these ordinary captions the pure-Python tokenizer gives PTB's tokens, hence the same score
    assert cider_d(CAPTION_REFS, CAPTION_HYPS, tokenizer="python").value == pytest.approx(score)


def test_cider_falls_back_to_python_without_java(monkeypatch):
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    result = cider_d(CAPTION_REFS, CAPTION_HYPS, tokenizer="ptb")
    assert result.details["tokenizer"] == "python" and "Java" in result.note
    assert result.value == pytest.approx(cider_d(CAPTION_REFS, CAPTION_HYPS, tokenizer="python").value)


def test_caption_input_errors():
    with pytest.raises(InputError):
        cider_d([[]], ["a"], tokenizer="python")
    with pytest.raises(InputError):
        cider_d([["a"]], ["a", "b"], tokenizer="python")
    with pytest.raises(InputError, match="tokenizer"):
        cider_d([["a"]], ["a"], tokenizer="nltk")


def test_python_tokenize_ptb_conventions():
    assert python_tokenize("He doesn't \"see\" the dog's ball (red)... 1,000 $5 r.c. cars!") == [
        "he",
        "does",
        "n't",
        "see",
        "the",
        "dog",
        "'s",
        "ball",
        "-lrb-",
        "red",
        "-rrb-",
        "1,000",
        "$",
        "5",
        "r.c.",
        "cars",
    ]
    assert python_tokenize("A well-known place; I cannot go.") == ["a", "well-known", "place", "i", "can", "not", "go"]


@pytest.mark.skipif(metrics.spice_unavailable_reason() is None, reason="CoreNLP jars are installed here")
def test_spice_and_spider_unavailable_offline():
    result = spice(CAPTION_REFS, CAPTION_HYPS)
    assert not result.available and result.value is None and "CoreNLP" in result.note
    combined = spider(CAPTION_REFS, CAPTION_HYPS, tokenizer="python")
    assert combined.name == "SPIDEr" and not combined.available and combined.value is None
    assert "SPICE" in combined.note


def test_spice_when_available_parses_the_library_output(monkeypatch):
    import subprocess

    import pycocoevalcap.spice.spice as spice_module

    class FakeSpice:
        def compute_score(self, gts, res):
            assert sorted(gts) == sorted(res) == [0, 1, 2, 3]
            return 0.25, [{"All": {"f": 0.1 * (i + 1)}} for i in range(4)]

    monkeypatch.setattr(metrics, "spice_unavailable_reason", lambda: None)
    monkeypatch.setattr(spice_module, "Spice", FakeSpice)
    result = spice(CAPTION_REFS, CAPTION_HYPS, tokenizer="python")
    assert result.available and result.value == 0.25 and result.per_sample == pytest.approx((0.1, 0.2, 0.3, 0.4))
    combined = spider(CAPTION_REFS, CAPTION_HYPS, tokenizer="python")
    cider = cider_d(CAPTION_REFS, CAPTION_HYPS, tokenizer="python").value
    assert combined.value == pytest.approx((cider + 0.25) / 2)

    class BrokenSpice:
        def compute_score(self, gts, res):
            raise subprocess.CalledProcessError(1, ["java", "-jar", "spice-1.0.jar"])

    monkeypatch.setattr(spice_module, "Spice", BrokenSpice)
    result = spice(CAPTION_REFS, CAPTION_HYPS, tokenizer="python")
    assert not result.available and "CalledProcessError" in result.note


def test_spider_is_mean_of_cider_and_spice():
    cider = MetricResult("CIDEr-D", 0.8, per_sample=(0.6, 1.0), details={"tokenizer": "ptb"})
    fake_spice = MetricResult("SPICE", 0.2, per_sample=(0.1, 0.3))
    result = combine_spider(cider, fake_spice)
    assert result.value == pytest.approx(0.5) and result.per_sample == pytest.approx((0.35, 0.65))
    assert result.details["CIDEr-D"] == 0.8 and result.details["SPICE"] == 0.2


def test_metric_result_never_fakes_a_number():
    with pytest.raises(ValueError):
        MetricResult("SPICE", 0.1, available=False)
    with pytest.raises(ValueError):
        MetricResult("SPICE", None)


def test_cider_bootstrap_is_seeded():
    ci = cider_bootstrap_ci(CAPTION_REFS, CAPTION_HYPS, tokenizer="python", n=20, seed=1)
    assert ci == cider_bootstrap_ci(CAPTION_REFS, CAPTION_HYPS, tokenizer="python", n=20, seed=1)
    assert ci[0] <= ci[1]


# ----------------------------------------------------------------------------------------------------------
# Accuracies


@pytest.mark.parametrize("hits, expected", [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_textvqa_accuracy_leave_one_out(hits, expected):
    # k matching answers out of 10: mean over the 10 leave-one-out subsets of min(1, matches / 3), e.g.
    # k = 3: three subsets keep 2 matches (2/3), seven keep 3 (1) -> (3 * 2/3 + 7) / 10 = 0.9
    answers = ["dakota"] * hits + ["other"] * (10 - hits)
    assert textvqa_accuracy("Dakota.", answers) == pytest.approx(expected)


@pytest.mark.parametrize("hits, expected", [(0, 0.0), (1, 1 / 3), (2, 2 / 3), (3, 1.0), (5, 1.0)])
def test_textvqa_accuracy_simple(hits, expected):
    answers = ["dakota"] * hits + ["other"] * (10 - hits)
    assert textvqa_accuracy("dakota", answers, leave_one_out=False) == pytest.approx(expected)


def test_vqa_normalise():
    assert vqa_normalise("The Two Dogs!") == "2 dogs"  # articles, number words, punctuation
    assert vqa_normalise("  Dont stop.\n") == "don't stop"  # contractions, final period
    assert vqa_normalise("3.5 km") == "3.5 km"  # a period before a digit stays
    assert vqa_normalise("left-hand side") == "left hand side"  # "-" not touching a space -> space
    assert vqa_normalise("coca - cola") == "coca cola"  # "-" touching a space -> deleted
    assert textvqa_accuracy("a Coca-Cola", ["coca cola"] * 10) == 1.0


@pytest.mark.parametrize(
    "prediction, reference, expected",
    [
        ("The man is wearing a hat.", "hat", True),
        ("He wears hats", "hat", False),  # whole words only
        ("It is dark blue.", "dark blue", True),
        ("It is blue and dark", "dark blue", False),  # a contiguous run, in order
        ("No, it is clear.", "no", True),
        ("No it is not, yes", "no", False),  # yes/no: the opposite must not appear
        ("It is not overcast", "no", False),  # "not" is not "no"
        ("Yes", "yes", True),
        ("There are two dogs", "2", True),  # number words count as digits
        ("The woman's bag", "woman's", True),
        ("anything", "", False),
    ],
)
def test_containment_correct(prediction, reference, expected):
    assert containment_correct(prediction, reference) is expected


CANDIDATES = ("clap proudly", "the lady sitting down", "lay on floor", "just picked it up", "crawl")


@pytest.mark.parametrize(
    "prediction, expected",
    [
        ("lay on floor", True),
        ("  Lay on floor. ", True),  # case, outer space, final period
        ('"lay on floor"', True),
        ("lay on the floor", False),  # not exact
        ("lay on floor or crawl", False),
        ("C", True),
        ("(C)", True),
        ("C.", True),  # a bare option letter means that option
        ("C. lay on floor", True),
        ("(C) lay on floor", True),
        ("A", False),
        ("C. crawl", False),  # judged by the text after the letter
    ],
)
def test_multiple_choice_correct(prediction, expected):
    assert multiple_choice_correct(prediction, "lay on floor", CANDIDATES) is expected


def test_multiple_choice_option_starting_with_article():
    options = ("A book", "A magazine", "Groceries")
    assert multiple_choice_correct("A magazine", "A magazine", options)  # not read as letter "A"
    assert multiple_choice_correct("B. A magazine", "A magazine", options)
    assert not multiple_choice_correct("magazine", "A magazine", options)
    assert not multiple_choice_correct("C", "lay on floor")  # letters need candidates


@pytest.mark.parametrize(
    "prediction, reference, expected",
    [
        ("Yes", "Yes", True),
        ("yes.", "Yes", True),
        (" NO ", "No", True),
        ("No", "Yes", False),
        ("Yes, the audio matches the video.", "Yes", False),
        ("", "No", False),
    ],
)
def test_avm_correct(prediction, reference, expected):
    assert avm_correct(prediction, reference) is expected


def test_avm_rejects_non_yes_no_reference():
    with pytest.raises(InputError):
        avm_correct("yes", "maybe")


# ----------------------------------------------------------------------------------------------------------
# AVSSD judge

REFERENCE = "The source of this sound in this scene is people belly laughing."


def test_judge_prompt_is_the_papers_text():
    text = judge.JudgePrompt().render("What is the source of the sound?", "a dog", "a HYPOTHESIS cat")
    assert text == (
        'Is the sound source mentioned in answer "a dog" the same as the sound source mentioned in '
        'answer "a HYPOTHESIS cat"? Answer "Yes" if they are the same, and "No" if they are '
        "different or one does not mention the sound source."
    )


def test_judge_with_fake_client():
    calls = []

    def client(messages):
        calls.append(messages)
        return "Yes, both mention laughing people."

    verdict = metrics.judge_equivalent("What is the source of the sound?", REFERENCE, "People laughing.", client)
    assert verdict.equivalent and bool(verdict) and verdict.judge == "llm"
    assert calls[0] == [{"role": "user", "content": judge.JudgePrompt().render("", REFERENCE, "People laughing.")}]
    assert not judge.judge_equivalent("q", "a dog barking", "a cat", lambda m: "No. They differ.").equivalent
    assert not judge.judge_equivalent("q", "a", "b", lambda m: "I cannot tell").equivalent


@pytest.mark.parametrize(
    "reference, hypothesis, expected",
    [
        (REFERENCE, "A group of people belly laughing.", True),
        (REFERENCE, "People are laughing.", False),  # "belly" missing
        ("In this image, the given audio might originates from pigeon, dove cooing.", "A pigeon.", True),
        ("In this image, the given audio might originates from pigeon, dove cooing.", "Doves are cooing", True),
        (
            "The source of the audio in this picture can be identified as playing acoustic guitar.",
            "Someone plays an acoustic guitar",
            True,
        ),
        ("The source of the audio in this picture can be identified as playing acoustic guitar.", "A piano", False),
    ],
)
def test_string_match_fallback(reference, hypothesis, expected):
    verdict = metrics.string_match_judge("What is the source of the sound?", reference, hypothesis)
    assert verdict.equivalent is expected and verdict.judge == "string-match"


def test_openai_client_over_http():
    seen = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            seen["path"] = self.path
            seen["auth"] = self.headers.get("Authorization")
            seen["body"] = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": "Yes."}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = judge.OpenAIChatClient(f"http://127.0.0.1:{server.server_port}/v1/", model="m", api_key="k")
        verdict = judge.judge_equivalent("q", "a dog", "the dog", client)
    finally:
        server.shutdown()
        server.server_close()
    assert verdict.equivalent and verdict.reply == "Yes."
    assert seen["path"] == "/v1/chat/completions" and seen["auth"] == "Bearer k"
    assert seen["body"]["model"] == "m" and seen["body"]["temperature"] == 0
    assert seen["body"]["messages"][0]["role"] == "user"


def test_openai_client_unreachable_is_a_user_error():
    client = judge.OpenAIChatClient("http://127.0.0.1:9/v1", timeout_s=2)
    with pytest.raises(InputError, match="judge endpoint"):
        client([{"role": "user", "content": "hi"}])


# ----------------------------------------------------------------------------------------------------------
# Bootstrap


def test_bootstrap_ci_seeded_and_contains_mean():
    scores = [1.0] * 37 + [0.0] * 63
    ci = bootstrap_ci(scores, n=1000, seed=0)
    assert ci == bootstrap_ci(scores, n=1000, seed=0)
    assert ci != bootstrap_ci(scores, n=1000, seed=1)
    assert ci[0] < np.mean(scores) < ci[1]
    assert ci[0] > 0.25 and ci[1] < 0.5  # about 0.37 +- 1.96 * 0.048
    assert bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)


def test_bootstrap_input_errors():
    with pytest.raises(InputError):
        bootstrap_ci([])
    with pytest.raises(InputError):
        bootstrap_ci([1.0], confidence=1.0)
    with pytest.raises(InputError):
        bootstrap_corpus_ci(3, lambda idx: float("nan"), n=5)


def test_bootstrap_corpus_recomputes_the_statistic():
    errors, words = np.array([1, 0, 3, 0]), np.array([4, 5, 6, 5])
    ci = bootstrap_corpus_ci(4, lambda idx: errors[idx].sum() / words[idx].sum(), n=300, seed=0)
    assert ci == metrics.wer_ci_from_counts(errors, words, n=300, seed=0)
    assert ci[0] <= 4 / 20 <= ci[1]
