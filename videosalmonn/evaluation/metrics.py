"""SAVE benchmark metrics (paper App. C) as pure functions: references and predictions in, numbers out.

| task(s)                  | metric                                      | here                         |
|--------------------------|---------------------------------------------|------------------------------|
| ASR, AVSR                | WER after Whisper's English normaliser      | `wer`                        |
| AAC                      | SPIDEr = (CIDEr-D + SPICE) / 2              | `spider`, `cider_d`, `spice` |
| IC (and AVSD, ours)      | CIDEr(-D)                                   | `cider_d`                    |
| OCR (TextVQA)            | VQA accuracy, "each hit contributes 1/3"    | `textvqa_accuracy`           |
| VQA (GQA), MUSIC-AVQA    | reference contained word by word            | `containment_correct`        |
| Video QA, AVQA           | in-context multiple choice, exact match     | `multiple_choice_correct`    |
| AVM                      | yes/no, exact match                         | `avm_correct`                |
| AVSSD                    | ChatGPT judge (App. D)                      | `judge.judge_equivalent`     |

Values are in natural units (WER 0.026, CIDEr 0.896, accuracy 0.378); the paper prints them x100.
Corpus metrics return a `MetricResult`; per-sample decisions return a bool or float. The AVSSD judge
(judge.py) and the bootstrap intervals (bootstrap.py) live in their own files and are re-exported here.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np

from videosalmonn.errors import InputError
from videosalmonn.evaluation.bootstrap import bootstrap_ci, bootstrap_corpus_ci
from videosalmonn.evaluation.judge import JudgePrompt, JudgeVerdict, judge_equivalent, string_match_judge

__all__ = [
    "MetricResult",
    "whisper_normalise",
    "wer",
    "wer_counts",
    "wer_bootstrap_ci",
    "wer_ci_from_counts",
    "cider_d",
    "cider_bootstrap_ci",
    "spice",
    "spider",
    "combine_spider",
    "tokenize_captions",
    "python_tokenize",
    "spice_unavailable_reason",
    "textvqa_accuracy",
    "vqa_normalise",
    "containment_correct",
    "multiple_choice_correct",
    "avm_correct",
    "accuracy",
    "JudgePrompt",
    "JudgeVerdict",
    "judge_equivalent",
    "string_match_judge",
    "bootstrap_ci",
    "bootstrap_corpus_ci",
]

Tokenizer = Literal["ptb", "python"]


@dataclass(frozen=True)
class MetricResult:
    """One number with its provenance. `value` is None exactly when `available` is False (then `note` says
    why: never a made-up number). `per_sample` holds each sample's own value where the metric has one;
    `details` holds counts and settings (WER's S/D/I, which tokenizer was used, confidence intervals)."""

    name: str
    value: float | None
    available: bool = True
    note: str = ""
    per_sample: tuple[float, ...] | None = None
    details: Mapping[str, float | int | str] = field(default_factory=dict)

    def __post_init__(self):
        if self.available != (self.value is not None):
            raise ValueError(f"{self.name}: value must be None exactly when the metric is unavailable")


def unavailable(name: str, reason: str) -> MetricResult:
    return MetricResult(name, None, available=False, note=reason)


# ---------------------------------------------------------------------------------------------------------
# WER (ASR, AVSR)


@functools.cache
def _whisper_normaliser():
    """Whisper's EnglishTextNormalizer as packaged by whisper-normalizer, whose spelling map (english.json,
    British -> American, 1,739 entries) ships inside the package and is read with importlib.resources, so no
    hub access is needed."""
    from whisper_normalizer.english import EnglishTextNormalizer

    if not resources.files("whisper_normalizer").joinpath("normalizers/english.json").is_file():
        raise InputError("whisper-normalizer is installed without normalizers/english.json; reinstall it")
    return EnglishTextNormalizer()


def whisper_normalise(text: str) -> str:
    """Whisper's English normalisation (lower case, no punctuation, "twenty five" -> "25", colour -> color,
    fillers such as "uh" removed, bracketed asides removed)."""
    return _whisper_normaliser()(text)


def wer_counts(
    references: Sequence[str], hypotheses: Sequence[str], normalise: bool = True
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Per-utterance errors (S + D + I) and reference word counts, plus corpus totals (jiwer.process_words).

    An empty (or normalised-to-empty) reference is fine: its hypothesis words count as insertions.
    """
    import jiwer

    _check_pairs(references, hypotheses)
    refs = [whisper_normalise(r) if normalise else r for r in references]
    hyps = [whisper_normalise(h) if normalise else h for h in hypotheses]
    out = jiwer.process_words(refs, hyps)
    errors = np.array([_chunk_errors(chunks) for chunks in out.alignments], dtype=np.int64)
    words = np.array([len(r) for r in out.references], dtype=np.int64)
    totals = {
        "substitutions": out.substitutions,
        "deletions": out.deletions,
        "insertions": out.insertions,
        "hits": out.hits,
        "reference_words": int(words.sum()),
    }
    return errors, words, totals


def _chunk_errors(chunks) -> int:
    n = 0
    for c in chunks:
        if c.type in ("substitute", "delete"):
            n += c.ref_end_idx - c.ref_start_idx
        elif c.type == "insert":
            n += c.hyp_end_idx - c.hyp_start_idx
    return n


def wer(references: Sequence[str], hypotheses: Sequence[str], normalise: bool = True) -> MetricResult:
    """Corpus word error rate = (S + D + I) / N over all utterances (paper: ASR, AVSR).

    With `normalise` (the default, as for Whisper's reported WERs) both sides go through Whisper's English
    normaliser first; otherwise words are the raw whitespace-separated tokens (case-sensitive).
    `per_sample` is each utterance's errors / max(reference words, 1); `details` has S, D, I, hits, N.
    """
    errors, words, totals = wer_counts(references, hypotheses, normalise)
    if totals["reference_words"] == 0:
        raise InputError("WER is undefined: the references contain no words")
    value = (totals["substitutions"] + totals["deletions"] + totals["insertions"]) / totals["reference_words"]
    per_sample = tuple(float(e) / max(int(w), 1) for e, w in zip(errors, words))
    note = "Whisper English normaliser" if normalise else "no normalisation"
    return MetricResult(
        "WER", float(value), note=note, per_sample=per_sample, details={**totals, "normalised": int(normalise)}
    )


def wer_bootstrap_ci(
    references: Sequence[str],
    hypotheses: Sequence[str],
    normalise: bool = True,
    n: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """CI of the corpus WER: resample utterances, recompute sum(errors) / sum(reference words)."""
    errors, words, _ = wer_counts(references, hypotheses, normalise)
    return wer_ci_from_counts(errors, words, n, seed, confidence)


def wer_ci_from_counts(
    errors: np.ndarray, words: np.ndarray, n: int = 1000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float]:
    def statistic(idx: np.ndarray) -> float:
        total = words[idx].sum()
        return errors[idx].sum() / total if total else float("nan")

    return bootstrap_corpus_ci(len(errors), statistic, n, seed, confidence)


# ---------------------------------------------------------------------------------------------------------
# Captioning: CIDEr-D, SPICE, SPIDEr (AAC, IC)

# pycocoevalcap's PUNCTUATIONS, dropped after PTB tokenisation. Its "-LRB-" etc. are upper-case while
# `-lowerCase` output is lower-case, so bracket tokens survive the official filter (and ours).
_PTB_PUNCTUATION = {
    "''",
    "'",
    "``",
    "`",
    "-LRB-",
    "-RRB-",
    "-LCB-",
    "-RCB-",
    ".",
    "?",
    "!",
    ",",
    ":",
    "-",
    "--",
    "...",
    ";",
}
_BRACKETS = {"(": " -lrb- ", ")": " -rrb- ", "{": " -lcb- ", "}": " -rcb- ", "[": " -lsb- ", "]": " -rsb- "}
_BRACKET_TOKENS = {t.strip() for t in _BRACKETS.values()}
_ALWAYS_SPLIT = re.compile(r"([;?!`]+|\.{2,}|-{2,}|[%$])")  # a run is one token: "!!!!" survives the filter
_SPLIT_UNLESS_IN_NUMBER = re.compile(r"(?<!\d)([,:])|([,:])(?!\d)")
_CLITIC = re.compile(r"(\w)(n't|'s|'re|'ve|'ll|'d|'m)$")
_INITIALS = re.compile(r"(?:[a-z]\.)+")  # "r.c." "u.s."
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "jr", "sr", "co", "corp", "inc", "ltd", "vs", "etc", "mt", "ave"}
_CLITICS = {"n't", "'s", "'re", "'ve", "'ll", "'d", "'m"}
_PTB_SPLITS = {
    "cannot": ["can", "not"],
    "gonna": ["gon", "na"],
    "gotta": ["got", "ta"],
    "wanna": ["wan", "na"],
    "gimme": ["gim", "me"],
    "lemme": ["lem", "me"],
}


def python_tokenize(text: str) -> list[str]:
    """Pure-Python stand-in for pycocoevalcap's PTBTokenizer (Java), used when Java is absent.

    It imitates `PTBTokenizer -preserveLines -lowerCase` followed by pycocoevalcap's punctuation filter:
    * lower-case; drop double quotes;
    * brackets become -lrb- -rrb- -lcb- -rcb- -lsb- -rsb- tokens (pycocoevalcap's filter lists them in
      upper case, so the lower-cased tokens survive it in the official pipeline too);
    * split off ; ? ! ` (a run such as "!!!" stays one token), "..", "--", % and $; split off , and :
      unless inside a number (1,000  2:10); split a final - or / off a word;
    * split a final "." off a word unless it is an initialism ("r.c.") or a common abbreviation ("st.");
    * split clitics ("don't" -> "do n't", "man's" -> "man 's") and "cannot" -> "can not", "gonna" -> "gon na";
    * keep hyphenated words whole; drop the punctuation tokens.
    On SAVEBench's 5,000 Flickr30k and 847 VGGSS references it gives PTB's tokens exactly (99.8% of the AVSD
    answers), so CIDEr-D differs from the official value at most in the last digits.
    """
    text = text.replace("\n", " ").lower().replace('"', " ")
    for bracket, token in _BRACKETS.items():
        text = text.replace(bracket, token)
    text = _ALWAYS_SPLIT.sub(lambda m: " ... " if m.group(0).startswith(".") else f" {m.group(0)} ", text)
    text = _SPLIT_UNLESS_IN_NUMBER.sub(lambda m: f" {m.group(0)} ", text)
    tokens: list[str] = []
    for word in text.split():
        tokens += _split_word(word)
    return [t for t in tokens if t and t not in _PTB_PUNCTUATION]


def _split_word(word: str) -> list[str]:
    tail: list[str] = []
    if len(word) > 1 and word[-1] in "-/" and word not in _BRACKET_TOKENS:
        word, tail = word[:-1], [word[-1]]
    if (
        len(word) > 1
        and word.endswith(".")
        and not word.endswith("...")
        and not (_INITIALS.fullmatch(word) or word[:-1] in _ABBREVIATIONS)
    ):
        word, tail = word[:-1], ["."]
    if word not in _CLITICS:
        word = word.strip("'")
    if word in _PTB_SPLITS:
        return [*_PTB_SPLITS[word], *tail]
    match = _CLITIC.search(word)
    if match and word not in _CLITICS:
        return [word[: match.start(2)], match.group(2), *tail]
    return [word, *tail]


def java_available() -> bool:
    return shutil.which("java") is not None


def tokenize_captions(
    captions: Mapping[int, Sequence[str]], tokenizer: Tokenizer = "ptb"
) -> tuple[dict[int, list[str]], Tokenizer, str]:
    """{id: [caption, ...]} -> ({id: [tokenised caption, ...]}, tokenizer used, note).

    "ptb" is the official COCO-caption pipeline (Stanford PTBTokenizer via Java); without Java, or if the
    tokenizer fails, it falls back to `python_tokenize` and says so in the note.
    """
    if tokenizer not in ("ptb", "python"):
        raise InputError(f"unknown caption tokenizer {tokenizer!r}: use 'ptb' or 'python'")
    if tokenizer == "ptb":
        if not java_available():
            note = "PTBTokenizer needs Java, which was not found: used the pure-Python tokenizer"
            return _python_tokenize_all(captions), "python", note
        try:
            return _ptb_tokenize_all(captions), "ptb", "PTBTokenizer (Java)"
        except (OSError, RuntimeError) as e:
            note = f"PTBTokenizer failed ({e}): used the pure-Python tokenizer"
            return _python_tokenize_all(captions), "python", note
    return _python_tokenize_all(captions), "python", "pure-Python tokenizer (not the official PTB)"


def _python_tokenize_all(captions: Mapping[int, Sequence[str]]) -> dict[int, list[str]]:
    return {k: [" ".join(python_tokenize(c)) for c in v] for k, v in captions.items()}


def _ptb_tokenize_all(captions: Mapping[int, Sequence[str]]) -> dict[int, list[str]]:
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    out = PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in captions.items()})
    if any(len(out.get(k, [])) != len(v) for k, v in captions.items()):
        raise RuntimeError("PTBTokenizer returned a different number of lines than it was given")
    return out


def _caption_inputs(
    references: Sequence[Sequence[str]], hypotheses: Sequence[str]
) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    _check_pairs(references, hypotheses)
    for i, refs in enumerate(references):
        if isinstance(refs, str) or len(refs) == 0:
            raise InputError(f"caption sample {i}: give a non-empty list of reference captions")
    return {i: list(r) for i, r in enumerate(references)}, {i: [h] for i, h in enumerate(hypotheses)}


def cider_d(
    references: Sequence[Sequence[str]], hypotheses: Sequence[str], tokenizer: Tokenizer = "ptb"
) -> MetricResult:
    """CIDEr-D (Vedantam et al., 2015) via pycocoevalcap's `Cider` (which is the -D variant: n = 1..4,
    sigma = 6 length penalty, clipped counts, x10), after tokenisation (`tokenize_captions`).

    The IDF is computed over the evaluated set, so a score depends on the whole set, not just its sample;
    `per_sample` holds each sample's score within this set. Paper: IC (Flickr30k, "following InstructBLIP")
    and, with SPICE, SPIDEr for AAC.
    """
    from pycocoevalcap.cider.cider import Cider

    gts, res = _caption_inputs(references, hypotheses)
    gts_tok, used, note = tokenize_captions(gts, tokenizer)
    res_tok, _, _ = tokenize_captions(res, used)
    score, scores = Cider().compute_score(gts_tok, res_tok)
    return MetricResult(
        "CIDEr-D", float(score), note=note, per_sample=tuple(float(s) for s in scores), details={"tokenizer": used}
    )


def cider_bootstrap_ci(
    references: Sequence[Sequence[str]],
    hypotheses: Sequence[str],
    tokenizer: Tokenizer = "ptb",
    n: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """CI of corpus CIDEr-D: tokenise once, then recompute CIDEr-D (IDF included) on each resampled set.

    Cost: one CIDEr-D computation per resample (about 1 s per 1,000 samples on one CPU core).
    """
    from pycocoevalcap.cider.cider import Cider

    gts, res = _caption_inputs(references, hypotheses)
    gts_tok, used, _ = tokenize_captions(gts, tokenizer)
    res_tok, _, _ = tokenize_captions(res, used)

    def statistic(idx: np.ndarray) -> float:
        g = {j: gts_tok[int(i)] for j, i in enumerate(idx)}
        r = {j: res_tok[int(i)] for j, i in enumerate(idx)}
        return float(Cider().compute_score(g, r)[0])

    return bootstrap_corpus_ci(len(gts), statistic, n, seed, confidence)


SPICE_CORENLP_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")


def _spice_dir() -> Path | None:
    try:
        import pycocoevalcap.spice as spice_package
    except ImportError:
        return None
    return Path(spice_package.__file__).parent


def spice_unavailable_reason() -> str | None:
    """None when SPICE can run offline; otherwise why not.

    pycocoevalcap's `Spice()` downloads Stanford CoreNLP 3.6.0 on first use (not on PyPI, apt or npm), so
    SPICE runs only if both jars were put into pycocoevalcap/spice/lib beforehand, and Java is present.
    """
    spice_dir = _spice_dir()
    if spice_dir is None or not (spice_dir / "spice-1.0.jar").is_file():
        return "pycocoevalcap with spice/spice-1.0.jar is not installed"
    missing = [j for j in SPICE_CORENLP_JARS if not (spice_dir / "lib" / j).is_file()]
    if missing:
        return (
            f"SPICE needs Stanford CoreNLP 3.6.0 ({', '.join(missing)}) in {spice_dir / 'lib'}; "
            "pycocoevalcap would download it from nlp.stanford.edu, which is not done here"
        )
    if not java_available():
        return "SPICE needs Java, which was not found"
    return None


def spice(references: Sequence[Sequence[str]], hypotheses: Sequence[str], tokenizer: Tokenizer = "ptb") -> MetricResult:
    """SPICE (Anderson et al., 2016; scene-graph F-score) via pycocoevalcap, on the same tokenised text as
    CIDEr-D. Returns an explicit "unavailable" result (value None, with the reason) when it cannot run."""
    gts, res = _caption_inputs(references, hypotheses)
    reason = spice_unavailable_reason()
    if reason is not None:
        return unavailable("SPICE", reason)
    from pycocoevalcap.spice.spice import Spice

    gts_tok, used, note = tokenize_captions(gts, tokenizer)
    res_tok, _, _ = tokenize_captions(res, used)
    try:  # SPICE 1.0 under Java 17 is untested
        score, scores = Spice().compute_score(gts_tok, res_tok)
    except (OSError, subprocess.SubprocessError, ValueError, KeyError) as e:
        return unavailable("SPICE", f"SPICE failed to run: {type(e).__name__}: {e}")
    per_sample = tuple(float(s["All"]["f"]) for s in scores)
    return MetricResult("SPICE", float(score), note=note, per_sample=per_sample, details={"tokenizer": used})


def combine_spider(cider: MetricResult, spice_result: MetricResult) -> MetricResult:
    """SPIDEr = (CIDEr-D + SPICE) / 2 (Liu et al., 2017; paper: AAC). Unavailable when SPICE is."""
    if not spice_result.available:
        return unavailable("SPIDEr", f"needs SPICE: {spice_result.note}")
    assert cider.value is not None and spice_result.value is not None
    per_sample = None
    if cider.per_sample is not None and spice_result.per_sample is not None:
        per_sample = tuple((c + s) / 2 for c, s in zip(cider.per_sample, spice_result.per_sample))
    return MetricResult(
        "SPIDEr",
        (cider.value + spice_result.value) / 2,
        note=cider.note,
        per_sample=per_sample,
        details={
            "CIDEr-D": cider.value,
            "SPICE": spice_result.value,
            "tokenizer": str(cider.details.get("tokenizer", "")),
        },
    )


def spider(
    references: Sequence[Sequence[str]], hypotheses: Sequence[str], tokenizer: Tokenizer = "ptb"
) -> MetricResult:
    """SPIDEr of a caption set; "unavailable" (never a number) when SPICE cannot run."""
    return combine_spider(cider_d(references, hypotheses, tokenizer), spice(references, hypotheses, tokenizer))


# ---------------------------------------------------------------------------------------------------------
# OCR: TextVQA accuracy

# The EvalAI / VQA answer normalisation, ported from facebookresearch/mmf `EvalAIAnswerProcessor`
# (pythia/tasks/processors.py @ c46b3b33, BSD licence), the processor of TextVQA's official evaluation.
_VQA_CONTRACTIONS = {
    "aint": "ain't",
    "arent": "aren't",
    "cant": "can't",
    "couldve": "could've",
    "couldnt": "couldn't",
    "couldn'tve": "couldn't've",
    "couldnt've": "couldn't've",
    "didnt": "didn't",
    "doesnt": "doesn't",
    "dont": "don't",
    "hadnt": "hadn't",
    "hadnt've": "hadn't've",
    "hadn'tve": "hadn't've",
    "hasnt": "hasn't",
    "havent": "haven't",
    "hed": "he'd",
    "hed've": "he'd've",
    "he'dve": "he'd've",
    "hes": "he's",
    "howd": "how'd",
    "howll": "how'll",
    "hows": "how's",
    "Id've": "I'd've",
    "I'dve": "I'd've",
    "Im": "I'm",
    "Ive": "I've",
    "isnt": "isn't",
    "itd": "it'd",
    "itd've": "it'd've",
    "it'dve": "it'd've",
    "itll": "it'll",
    "let's": "let's",
    "maam": "ma'am",
    "mightnt": "mightn't",
    "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've",
    "mightve": "might've",
    "mustnt": "mustn't",
    "mustve": "must've",
    "neednt": "needn't",
    "notve": "not've",
    "oclock": "o'clock",
    "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at",
    "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at",
    "shant": "shan't",
    "shed've": "she'd've",
    "she'dve": "she'd've",
    "she's": "she's",
    "shouldve": "should've",
    "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll",
    "somebodys": "somebody's",
    "someoned": "someone'd",
    "someoned've": "someone'd've",
    "someone'dve": "someone'd've",
    "someonell": "someone'll",
    "someones": "someone's",
    "somethingd": "something'd",
    "somethingd've": "something'd've",
    "something'dve": "something'd've",
    "somethingll": "something'll",
    "thats": "that's",
    "thered": "there'd",
    "thered've": "there'd've",
    "there'dve": "there'd've",
    "therere": "there're",
    "theres": "there's",
    "theyd": "they'd",
    "theyd've": "they'd've",
    "they'dve": "they'd've",
    "theyll": "they'll",
    "theyre": "they're",
    "theyve": "they've",
    "twas": "'twas",
    "wasnt": "wasn't",
    "wed've": "we'd've",
    "we'dve": "we'd've",
    "weve": "we've",
    "werent": "weren't",
    "whatll": "what'll",
    "whatre": "what're",
    "whats": "what's",
    "whatve": "what've",
    "whens": "when's",
    "whered": "where'd",
    "wheres": "where's",
    "whereve": "where've",
    "whod": "who'd",
    "whod've": "who'd've",
    "who'dve": "who'd've",
    "wholl": "who'll",
    "whos": "who's",
    "whove": "who've",
    "whyll": "why'll",
    "whyre": "why're",
    "whys": "why's",
    "wont": "won't",
    "wouldve": "would've",
    "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've",
    "yall": "y'all",
    "yall'll": "y'all'll",
    "y'allll": "y'all'll",
    "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've",
    "y'all'dve": "y'all'd've",
    "youd": "you'd",
    "youd've": "you'd've",
    "you'dve": "you'd've",
    "youll": "you'll",
    "youre": "you're",
    "youve": "you've",
}
_VQA_NUMBERS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_VQA_ARTICLES = {"a", "an", "the"}
_VQA_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")  # sic: removes every "." not followed by a digit
_VQA_COMMA_STRIP = re.compile(r"(?<=\d)(\,)+(?=\d)")
_VQA_PUNCTUATION = [
    ";",
    r"/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
]


def vqa_normalise(answer: str) -> str:
    """The official TextVQA/VQA answer normalisation (EvalAI), step by step:

    1. lower-case; delete "," and "?"; "'s" -> " 's"; newlines/tabs -> spaces; strip;
    2. each of ; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !  is deleted if it touches a space (or the text has a
       digit,digit comma), otherwise replaced by a space; then every "." not followed by a digit is deleted
       (the original passes re.UNICODE as `count`, i.e. at most 32 periods; no answer has more);
    3. number words "none", "zero".."ten" -> digits; articles a/an/the dropped; "dont" -> "don't" etc.
    """
    text = answer.lower().replace(",", "").replace("?", "").replace("'s", " 's")
    text = text.replace("\n", " ").replace("\t", " ").strip()
    out = text
    for p in _VQA_PUNCTUATION:
        if p + " " in text or " " + p in text or _VQA_COMMA_STRIP.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    out = _VQA_PERIOD_STRIP.sub("", out)
    words = [_VQA_NUMBERS.get(w, w) for w in out.lower().split()]
    words = [_VQA_CONTRACTIONS.get(w, w) for w in words if w not in _VQA_ARTICLES]
    return " ".join(words)


def textvqa_accuracy(prediction: str, answers: Sequence[str], leave_one_out: bool = True) -> float:
    """TextVQA accuracy of one prediction against its (10) human answers (Singh et al., 2019; paper App. C:
    "each hit in the reference answer contributes 1/3").

    Both sides are `vqa_normalise`d and compared exactly. With k of the n answers equal to the prediction:
    * `leave_one_out=True` (official TextVQA/VQA evaluator): the mean over the n ways of leaving one human
      answer out of min(1, matches among the other n-1 / 3); for n = 10 that gives k = 1 -> 0.3,
      k = 2 -> 0.6, k = 3 -> 0.9, k >= 4 -> 1.0;
    * `leave_one_out=False`: the textbook shorthand min(1, k / 3) (k = 1 -> 1/3, k = 3 -> 1.0).
    """
    if isinstance(answers, str) or len(answers) == 0:
        raise InputError("give the list of human answers (TextVQA has 10 per question)")
    pred = vqa_normalise(prediction)
    gts = [vqa_normalise(a) for a in answers]
    k = sum(g == pred for g in gts)
    if not leave_one_out:
        return min(1.0, k / 3)
    return sum(min(1.0, (k - (g == pred)) / 3) for g in gts) / len(gts)


# ---------------------------------------------------------------------------------------------------------
# Open answers (GQA, MUSIC-AVQA), multiple choice (NExT-QA, AVQA), yes/no (AVM)

_NUMBER_WORDS = {
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_OPPOSITE = {"yes": "no", "no": "yes"}


def answer_words(text: str) -> list[str]:
    """Words for word-by-word matching: lower-case runs of letters/digits (an inner apostrophe is kept:
    "man's"); every other character separates words; the number words zero..ten become digits."""
    words = re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())
    return [_NUMBER_WORDS.get(w, w) for w in words]


def containment_correct(prediction: str, reference: str) -> bool:
    """Paper App. C (VQA, Video QA open answers): correct iff the reference answer occurs in the generated
    answer, matched word by word (as a contiguous run of whole `answer_words`, so "no" is not found in
    "not" or "nothing"); for a yes/no reference the opposite word must not occur anywhere."""
    ref, pred = answer_words(reference), answer_words(prediction)
    if not ref:
        return False
    found = any(pred[i : i + len(ref)] == ref for i in range(len(pred) - len(ref) + 1))
    opposite = _OPPOSITE.get(" ".join(ref))
    return found and (opposite is None or opposite not in pred)


_LETTERS = "ABCDEFGHIJ"
_BARE_LETTER = re.compile(r"^\(?([A-J])\)?[.:]?$")  # "C", "(C)", "C."
_LETTER_PREFIX = re.compile(r"^\(?([A-J])(?:\)|\.|:|\)\.)\s+(.+)$", re.DOTALL)  # "C. text", "(C) text"


def _choice_text(text: str) -> str:
    """Exact-match normalisation: strip surrounding whitespace and quotes, collapse inner whitespace,
    casefold, drop trailing periods. Nothing else, so "a magazine" still differs from "magazine"."""
    text = " ".join(text.strip().strip("\"'").split())
    return text.casefold().rstrip(".").rstrip()


def multiple_choice_correct(prediction: str, reference: str, candidates: Sequence[str] = ()) -> bool:
    """Paper App. C (Video QA, AVQA): "one hit is counted only when the generated answer exactly matches
    the reference". Exact after `_choice_text` (case, outer whitespace/quotes, trailing period).

    An option letter is also accepted, because models often answer that way: a bare "B" / "(B)" / "B." means
    `candidates[1]`; "B. text" / "(B) text" is judged by its text (the letter is dropped). A reply that names
    the reference and other things ("lay on floor or crawl") is wrong: it does not match exactly.
    """
    pred = prediction.strip()
    if candidates:
        bare, prefixed = _BARE_LETTER.match(pred), _LETTER_PREFIX.match(pred)
        if bare and _LETTERS.index(bare.group(1)) < len(candidates):
            pred = candidates[_LETTERS.index(bare.group(1))]
        elif prefixed:
            pred = prefixed.group(2)
    return _choice_text(pred) == _choice_text(reference)


def avm_correct(prediction: str, reference: str) -> bool:
    """AVM (paper App. C, "the same measurement" as multiple choice): the answer must be exactly "yes" or
    "no" (case, surrounding whitespace/quotes and final punctuation ignored) and equal the reference."""
    pred = prediction.strip().strip("\"'").rstrip(".!").strip().casefold()
    ref = reference.strip().rstrip(".").casefold()
    if ref not in _OPPOSITE:
        raise InputError(f"AVM references are Yes/No, got {reference!r}")
    return pred == ref


def accuracy(name: str, hits: Sequence[float], note: str = "") -> MetricResult:
    """Mean of per-sample scores (1/0 hits, or TextVQA's soft scores)."""
    if len(hits) == 0:
        raise InputError(f"{name}: no samples to score")
    return MetricResult(
        name, float(np.mean(hits)), note=note, per_sample=tuple(float(h) for h in hits), details={"samples": len(hits)}
    )


def _check_pairs(references: Sequence, hypotheses: Sequence) -> None:
    if len(references) != len(hypotheses):
        raise InputError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if len(references) == 0:
        raise InputError("nothing to score: no references")
