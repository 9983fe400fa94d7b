"""CLAIR: an LLM judges whether a candidate caption describes the same thing as a reference (Chan et al., 2023).

The prompt is the original text (kept verbatim in :data:`CLAIR_PROMPT`); parsing follows the original and its
VideoGLaMM / SPARROW ports (docs/evaluation.md §8.4): up to 3 requests; the text between the first ``{`` and the next ``}``
as JSON with ``score`` (and ``reason``, default "Unknown"); failing that, the first number in the text (a value
below 1 is taken as a fraction and multiplied by 100) and whatever follows the word "reason"; if there is no
number, ask again; after 3 failures the score is 0 (reason None). A JSON ``score`` that is not a number is not
caught by the original either: it raises here, naming the sample. The result is ``score / 100``; the dataset
CLAIR is the mean over samples (with several judges, CLAIR_E, the per-sample mean over judges first).

The judge is pluggable: a local ``transformers`` causal LM (:class:`TransformersJudge`) or any OpenAI-compatible
chat-completions endpoint the user configures (:class:`OpenAICompatibleJudge`; VideoGLaMM/SPARROW used
``gpt-3.5-turbo``, temperature 0.5, max_tokens 100, a "You are a helpful assistant." system message). With no
judge, CLAIR is "not computed" and no value is reported.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

CLAIR_PROMPT = """\
You are trying to tell if a candidate set of captions is describing the same image as a reference set of captions.
Candidate set:
{candidate_statements}
Reference set:
{target_statements}
On a precise scale from 0 to 100, how likely is it that the candidate set is \
describing the same image as the reference set? (JSON format, with a key "score", \
value between 0 and 100, and a key "reason" with a string value.)
"""
ATTEMPTS = 3
NOT_COMPUTED = "not computed: no CLAIR judge configured"


class ClairParseError(ValueError):
    """The judge's JSON carries a ``score`` that is not a number (the original code does not catch this)."""


class Judge(Protocol):
    """Anything that answers a prompt; ``settings`` is recorded next to the scores (model, temperature, seed...)."""

    settings: dict[str, Any]

    def __call__(self, prompt: str) -> str: ...


def format_prompt(candidates: Sequence[str], references: Sequence[str]) -> str:
    return CLAIR_PROMPT.format(
        candidate_statements="".join(f"- {c}\n" for c in candidates),
        target_statements="".join(f"- {t}\n" for t in references),
    )


def parse_response(response: str) -> tuple[float, str] | None:
    """(score 0-100, reason) from one answer, or None when it holds no number (the caller asks again)."""
    try:
        inside = "{" + response.split("{")[1].split("}")[0] + "}"
        data = json.loads(inside)
        raw = data["score"]
        try:
            score = float(raw)
        except (TypeError, ValueError) as exc:
            raise ClairParseError(f"CLAIR judge returned a non-numeric score {raw!r}") from exc
        return score, data.get("reason", "Unknown")
    except (json.JSONDecodeError, KeyError, IndexError):
        numbers = re.findall(r"\d*\.?\d+", response)
        if not numbers:
            return None
        score = float(numbers[0])
        if score < 1:
            score *= 100  # some models answer with a fraction
        found = re.findall(r"(?i)reason.*", response)
        reason = found[0].strip()[len("reason") :].replace(":", "").strip() if found else "Unknown"
        return score, reason


@dataclass(frozen=True)
class ClairScore:
    score: float  # in [0, 1] (score / 100)
    reason: str | None
    attempts: int
    responses: tuple[str, ...] = field(repr=False)


def clair(candidates: Sequence[str], references: Sequence[str], judge: Judge, attempts: int = ATTEMPTS) -> ClairScore:
    """CLAIR of one candidate set against one reference set."""
    prompt = format_prompt(candidates, references)
    responses = []
    for _ in range(attempts):
        response = judge(prompt)
        responses.append(response)
        parsed = parse_response(response)
        if parsed is not None:
            return ClairScore(parsed[0] / 100, parsed[1], len(responses), tuple(responses))
    return ClairScore(0.0, None, len(responses), tuple(responses))


@dataclass
class ClairResult:
    value: float | None  # mean over samples, in [0, 1]; None when not computed
    note: str = ""
    per_sample: list[float] = field(default_factory=list)
    details: list[list[ClairScore]] = field(default_factory=list, repr=False)
    judges: list[dict[str, Any]] = field(default_factory=list)


def evaluate_clair(
    pairs: Iterable[tuple[str, str]], judge: Judge | Sequence[Judge] | None, names: Sequence[str] | None = None
) -> ClairResult:
    """Mean CLAIR over (candidate, reference) pairs, one caption each as in video GCG."""
    if judge is None:
        return ClairResult(None, NOT_COMPUTED)
    judges = list(judge) if isinstance(judge, (list, tuple)) else [judge]
    per_sample, details = [], []
    for i, (candidate, reference) in enumerate(pairs):
        scores = []
        for j in judges:
            try:
                scores.append(clair([candidate], [reference], j))
            except ClairParseError as exc:
                raise ClairParseError(f"sample {names[i] if names else i}: {exc}") from exc
        details.append(scores)
        per_sample.append(float(np.mean([s.score for s in scores])))
    if not per_sample:
        return ClairResult(None, "not computed: no samples")
    return ClairResult(
        float(np.mean(per_sample)), "", per_sample, details, [dict(getattr(j, "settings", {})) for j in judges]
    )


# ----------------------------------------------------------------------------------------------------------------
# Judges
# ----------------------------------------------------------------------------------------------------------------
class CallableJudge:
    """Wrap a function ``prompt -> answer`` (scripted answers in tests, or any other client)."""

    def __init__(self, fn: Callable[[str], str], **settings: Any) -> None:
        self.fn = fn
        self.settings = {"judge": "callable", **settings}

    def __call__(self, prompt: str) -> str:
        return self.fn(prompt)


class OpenAICompatibleJudge:
    """POST ``{base_url}/chat/completions`` (OpenAI, vLLM, llama.cpp, ...); the key is read from ``api_key_env``."""

    def __init__(
        self,
        base_url: str,
        model: str = "gpt-3.5-turbo",
        temperature: float = 0.5,
        max_tokens: int = 100,
        system: str | None = "You are a helpful assistant.",
        api_key_env: str | None = "OPENAI_API_KEY",
        seed: int | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.temperature, self.max_tokens = model, temperature, max_tokens
        self.system, self.api_key_env, self.seed, self.timeout = system, api_key_env, seed, timeout
        self.settings = {
            "judge": "openai-compatible",
            "url": self.url,
            "model": model,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "seed": seed,
            "system": system,
        }

    def __call__(self, prompt: str) -> str:
        import urllib.error
        import urllib.request

        messages = ([{"role": "system", "content": self.system}] if self.system else []) + [
            {"role": "user", "content": prompt}
        ]
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if self.seed is not None:
            body["seed"] = self.seed
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                payload = json.loads(reply.read().decode("utf-8"))
        except (urllib.error.URLError, OSError, json.JSONDecodeError) as exc:
            raise RuntimeError(f"CLAIR judge {self.url}: request failed ({exc})") from exc
        try:
            return payload["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as exc:
            raise RuntimeError(f"CLAIR judge {self.url}: unexpected reply {str(payload)[:200]}") from exc


class TransformersJudge:
    """A local causal LM (a path or an already loaded model and tokenizer); greedy when temperature is 0."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any | None = None,
        temperature: float = 0.0,
        max_new_tokens: int = 100,
        seed: int = 0,
        device: str | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        name = model if isinstance(model, str) else type(model).__name__
        if isinstance(model, str):
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(model, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(model, local_files_only=True)
        if tokenizer is None:
            raise ValueError("a loaded model needs its tokenizer")
        self.model = model.to(device) if device else model
        self.model.eval()
        self.tokenizer = tokenizer
        self.temperature, self.max_new_tokens, self.seed = temperature, max_new_tokens, seed
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.settings = {
            "judge": "transformers",
            "model": name,
            "temperature": temperature,
            "max_new_tokens": max_new_tokens,
            "seed": seed,
        }

    def __call__(self, prompt: str) -> str:
        import torch

        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        else:
            text = prompt
        inputs = tok(text, return_tensors="pt").to(self.model.device)
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator)))
        sample = self.temperature > 0
        kwargs = {"do_sample": sample, "max_new_tokens": self.max_new_tokens}
        if sample:
            kwargs["temperature"] = self.temperature
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        with torch.no_grad():
            out = self.model.generate(**inputs, pad_token_id=pad, **kwargs)
        return tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
