"""AVSSD scoring: "is the generated answer equivalent to the reference?" (paper App. C and D).

The paper: VGGSS answers are full sentences ("The source of this sound in this scene is people belly
laughing."), so string matching does not work and ChatGPT (GPT-3.5-turbo) judged equivalence with the
App. D prompt (`VGGSS_JUDGE_PROMPT`, quoted exactly). Here:

* `judge_equivalent(question, reference, hypothesis, client)`: that prompt, sent as one user message to any
  OpenAI-compatible chat endpoint through `client` (a callable: messages -> reply text). `OpenAIChatClient`
  is a 30-line urllib client (no `openai` dependency); tests pass a fake.
* `string_match_judge(question, reference, hypothesis)`: an offline FALLBACK, not the paper's metric. Its
  numbers are not comparable with Table 3; results carry its name so a report can say so.
"""

from __future__ import annotations

import ipaddress
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from videosalmonn.errors import InputError

ChatClient = Callable[[list[dict[str, str]]], str]  # OpenAI-style messages -> the reply's text

VGGSS_JUDGE_PROMPT = (
    'Is the sound source mentioned in answer "REFERENCE" the same as the sound source '
    'mentioned in answer "HYPOTHESIS"? Answer "Yes" if they are the same, and "No" if they '
    "are different or one does not mention the sound source."
)


@dataclass(frozen=True)
class JudgePrompt:
    """A judge prompt with the paper's placeholders QUESTION, REFERENCE and HYPOTHESIS (App. D, Table 8)."""

    template: str = VGGSS_JUDGE_PROMPT

    def render(self, question: str, reference: str, hypothesis: str) -> str:
        """Fill the placeholders in one pass, so a placeholder word inside an answer is left alone."""
        values = {"QUESTION": question, "REFERENCE": reference, "HYPOTHESIS": hypothesis}
        return re.sub(r"QUESTION|REFERENCE|HYPOTHESIS", lambda m: values[m.group(0)], self.template)


@dataclass(frozen=True)
class JudgeVerdict:
    """One judgement: the decision, the judge's raw reply (kept for audit) and which judge gave it."""

    equivalent: bool
    reply: str
    judge: str

    def __bool__(self) -> bool:
        return self.equivalent


def judge_equivalent(
    question: str, reference: str, hypothesis: str, client: ChatClient, prompt: JudgePrompt = JudgePrompt()
) -> JudgeVerdict:
    """Ask the chat model whether `hypothesis` names the same sound source as `reference` (paper App. D)."""
    reply = client([{"role": "user", "content": prompt.render(question, reference, hypothesis)}])
    return JudgeVerdict(parse_yes_no(reply), reply, "llm")


def parse_yes_no(reply: str) -> bool:
    """True iff the reply's first yes/no word is "yes" (replies look like "Yes." or "No, they differ")."""
    match = re.search(r"\b(yes|no)\b", reply.lower())
    return match is not None and match.group(1) == "yes"


@dataclass(frozen=True)
class OpenAIChatClient:
    """POST {base_url}/chat/completions with temperature 0; returns choices[0].message.content.

    `base_url` is e.g. "https://api.openai.com/v1" or a local vLLM/llama.cpp server's ".../v1". The paper used
    model "gpt-3.5-turbo".

    The API key is a credential: it goes only over https, or over http to this machine (loopback), unless
    `allow_http_key`; redirects are never followed (urllib would resend the key to wherever they point).
    """

    base_url: str
    model: str = "gpt-3.5-turbo"
    api_key: str | None = None
    timeout_s: float = 60.0
    allow_http_key: bool = False

    def __call__(self, messages: list[dict[str, str]]) -> str:
        body = json.dumps({"model": self.model, "messages": messages, "temperature": 0}).encode()
        headers = {"Content-Type": "application/json"}
        url = self.base_url.rstrip("/") + "/chat/completions"
        if self.api_key:
            _check_key_transport(url, self.allow_http_key)
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with _NO_REDIRECTS.open(request, timeout=self.timeout_s) as response:
                payload = json.loads(response.read().decode())
        except urllib.error.HTTPError as e:
            if 300 <= e.code < 400:
                raise InputError(
                    f"judge endpoint {url}: redirected ({e.code}) to {e.headers.get('Location')}; redirects are not "
                    "followed (the API key would go with them): give the final URL as --judge-url"
                ) from None
            raise InputError(f"judge endpoint {url}: {e}") from e
        except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as e:
            raise InputError(f"judge endpoint {url}: {e}") from e
        try:
            return payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as e:
            raise InputError(f"judge endpoint {url}: unexpected reply {str(payload)[:200]}") from e


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError with the 3xx code


_NO_REDIRECTS = urllib.request.build_opener(_RefuseRedirects)


def _check_key_transport(url: str, allow_http: bool) -> None:
    """The key goes over https, or plain http to a loopback host, or anywhere with `allow_http`."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" or allow_http:
        return
    if parts.scheme == "http" and _is_loopback(parts.hostname or ""):
        return
    raise InputError(
        f"judge endpoint {url}: refusing to send $OPENAI_API_KEY over {parts.scheme or 'no scheme'} to "
        f"{parts.hostname}: use https, unset the key, or pass --judge-allow-http"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------------------
# Offline fallback (NOT the paper's metric)

# The four sentence templates of the SAVEBench VGGSS references (all 847 match one); group 1 is the label.
_REFERENCE_TEMPLATES = [
    re.compile(r"the source of the audio in this picture can be identified as (.+?)\.?$"),
    re.compile(r"the source of this sound in this scene is (.+?)\.?$"),
    re.compile(r"from this picture, it can be found that the given sound is produced by (.+?)\.?$"),
    re.compile(r"in this image, the given audio might originates from (.+?)\.?$"),
]
# Words that say nothing about *which* source it is; dropped from the label before matching.
_GENERIC = {"a", "an", "the", "of", "by", "on", "in", "with", "and", "playing", "sound", "sounds", "noise"}


def string_match_judge(question: str, reference: str, hypothesis: str) -> JudgeVerdict:
    """FALLBACK heuristic, labelled "string-match": equivalent iff the hypothesis contains every content word
    of at least one alternative of the reference's sound-source label.

    The label is the VGGSound class name inside the reference sentence (e.g. "pigeon, dove cooing"); commas
    separate alternatives ("pigeon" | "dove cooing"); generic words ("playing", articles) are dropped, and
    words are compared after removing a plural "s". A reference outside the four templates is used whole.
    """
    label = source_label(reference)
    hyp_words = {_stem(w) for w in _words(hypothesis)}
    alternatives = [[_stem(w) for w in _words(alt) if w not in _GENERIC] for alt in label.split(",")]
    equivalent = any(alt and all(w in hyp_words for w in alt) for alt in alternatives)
    return JudgeVerdict(equivalent, f"label={label!r}", "string-match")


def source_label(reference: str) -> str:
    """The sound-source label of a VGGSS reference sentence (the whole sentence if no template matches)."""
    text = reference.strip().lower()
    for template in _REFERENCE_TEMPLATES:
        match = template.match(text)
        if match:
            return match.group(1)
    return text


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word
