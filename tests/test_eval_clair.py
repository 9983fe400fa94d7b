"""CLAIR (docs/evaluation.md §8.4) driven by scripted judges: prompt, parsing, retries, averaging, 'not computed'."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from sparrow.eval.clair import (
    ATTEMPTS,
    NOT_COMPUTED,
    CallableJudge,
    ClairParseError,
    OpenAICompatibleJudge,
    clair,
    evaluate_clair,
    format_prompt,
    parse_response,
)


class Scripted:
    """Answers from a list, one per request, remembering the prompts it was asked."""

    def __init__(self, answers: list[str], **settings) -> None:
        self.answers, self.prompts = list(answers), []
        self.settings = {"judge": "scripted", **settings}

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.answers.pop(0)


def test_prompt_is_the_original_text():
    prompt = format_prompt(["a red square"], ["the red square moves"])
    # each statement line ends in a newline and the template adds its own: the original's blank line is kept
    assert prompt.startswith(
        "You are trying to tell if a candidate set of captions is describing the same image "
        "as a reference set of captions.\nCandidate set:\n- a red square\n\nReference set:\n"
        "- the red square moves\n\n"
    )
    assert (
        "On a precise scale from 0 to 100, how likely is it that the candidate set is describing the same image "
        'as the reference set? (JSON format, with a key "score", value between 0 and 100, and a key "reason" '
        "with a string value.)"
    ) in prompt


@pytest.mark.parametrize(
    "answer, expected",
    [
        ('{"score": 85, "reason": "same object"}', (85.0, "same object")),
        ('Sure! {"score": 40} and more text', (40.0, "Unknown")),
        ("I would say 72. Reason: both mention a square", (72.0, "both mention a square")),
        ("0.35", (35.0, "Unknown")),  # a fraction is taken as a share of 100
        ('{"score": 90, "reason": "x"', (90.0, "x")),  # the parser closes the first brace itself
        ("score 90, reason: fine", (90.0, "fine")),  # no brace: the first number, and the text after "reason"
    ],
)
def test_parse_response(answer, expected):
    score, reason = parse_response(answer)
    assert score == pytest.approx(expected[0], abs=1e-12) and reason == expected[1]


def test_no_number_means_ask_again():
    assert parse_response("I cannot tell.") is None
    judge = Scripted(["no idea", '{"score": 60, "reason": "close"}'])
    result = clair(["a"], ["b"], judge)
    assert result.score == pytest.approx(0.6, abs=1e-12) and result.attempts == 2
    assert judge.prompts[0] == judge.prompts[1]


def test_three_failures_score_zero():
    judge = Scripted(["?"] * ATTEMPTS)
    result = clair(["a"], ["b"], judge)
    assert (result.score, result.reason, result.attempts) == (0.0, None, ATTEMPTS)


def test_non_numeric_json_score_raises_naming_the_sample():
    judge = Scripted(['{"score": "high"}'])
    with pytest.raises(ClairParseError, match="sample v7: .*non-numeric score 'high'"):
        evaluate_clair([("a", "b")], judge, names=["v7"])


def test_dataset_mean_and_judge_ensemble():
    one = Scripted(['{"score": 80}', '{"score": 20}'], model="m1")
    two = Scripted(['{"score": 60}', "nothing", '{"score": 40}'], model="m2")
    result = evaluate_clair([("c1", "r1"), ("c2", "r2")], [one, two], names=["v1", "v2"])
    assert result.per_sample == pytest.approx([0.7, 0.3], abs=1e-12)  # per sample, the mean over judges first
    assert result.value == pytest.approx(0.5, abs=1e-12)
    assert [j["model"] for j in result.judges] == ["m1", "m2"]
    assert "- c2\n" in one.prompts[1] and "- r2\n" in one.prompts[1]


def test_without_a_judge_clair_is_not_computed():
    result = evaluate_clair([("a", "b")], None)
    assert result.value is None and result.note == NOT_COMPUTED
    judge = CallableJudge(lambda prompt: '{"score": 50}', model="fn")
    assert evaluate_clair([], judge).value is None
    assert evaluate_clair([("a", "b")], judge).value == pytest.approx(0.5, abs=1e-12)


def test_openai_compatible_judge_against_a_loopback_server():
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, self.headers.get("Authorization"), body))
            reply = {"choices": [{"message": {"content": '{"score": 77, "reason": "ok"}'}}]}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        judge = OpenAICompatibleJudge(
            f"http://127.0.0.1:{server.server_port}/v1", api_key_env="SPARROW_TEST_KEY", seed=3, timeout=10
        )
        import os

        os.environ["SPARROW_TEST_KEY"] = "k"
        try:
            assert clair(["a"], ["b"], judge).score == pytest.approx(0.77, abs=1e-12)
        finally:
            os.environ.pop("SPARROW_TEST_KEY")
    finally:
        server.shutdown()
    path, auth, body = seen[0]
    assert path == "/v1/chat/completions" and auth == "Bearer k"
    assert body["model"] == "gpt-3.5-turbo" and body["temperature"] == 0.5 and body["max_tokens"] == 100
    assert body["seed"] == 3 and body["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}
    assert body["messages"][1]["content"].startswith("You are trying to tell")
