"""Schemathesis against the server's own OpenAPI spec: generated valid and invalid requests for every operation
never get a 5xx, and responses match the spec. Bounded: few examples, a tiny model, completions capped at 8
tokens by the server."""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from nesso.server.app import create_app, running

EXAMPLES = {GenerationMode.POSITIVE: 8, GenerationMode.NEGATIVE: 8}
GENERATING = {"POST /v1/chat/completions": 30, "POST /v1/agent/chat": 16}  # more examples where the model runs
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzz_url(llama_tokenizer):
    from tests.test_server import tiny_engine

    with running(create_app(tiny_engine(llama_tokenizer, seed=3), "tiny", slots=4, max_tokens_cap=8)) as url:
        yield url


def reach_generation(label: str, body: dict) -> None:
    """Make every other valid request one the server can run, so fuzzing reaches the model and the grammar
    rather than stopping at a cheap 400/404 (unknown model, unsupported logprobs, a turn that is not the user's)."""
    if label == "POST /v1/chat/completions":
        body["model"] = "tiny"
        for key in ("logit_bias", "logprobs", "top_logprobs"):
            body.pop(key, None)
        if not body.get("stream"):
            body.pop("stream_options", None)
        turns = [{k: v for k, v in m.items() if k != "tool_calls"} for m in body["messages"] if m.get("role") != "tool"]
        body["messages"] = turns or [{"role": "user", "content": ""}]
    elif label == "POST /v1/agent/chat":
        body["messages"] = [{"role": "user", "content": "Quanto fa 2+2?"}]
        body["tools"] = [t for t in body.get("tools") or [] if t in ("calculator", "list_tables")] or None


def fuzz(op, mode: GenerationMode, base_url: str, calls: dict[str, int]) -> None:
    examples = GENERATING.get(op.label, EXAMPLES[mode]) if mode is GenerationMode.POSITIVE else EXAMPLES[mode]
    seen = [0]

    @hypothesis.given(case=op.as_strategy(generation_mode=mode))
    @hypothesis.settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                         phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case) -> None:
        seen[0] += 1
        if mode is GenerationMode.POSITIVE and isinstance(case.body, dict) and seen[0] % 2:
            reach_generation(op.label, case.body)
        response = case.call(base_url=base_url, timeout=60)
        calls["n"] += 1
        calls["ok"] += response.status_code == 200
        assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} {response.text}"
        if mode is GenerationMode.POSITIVE or response.status_code < 400:
            case.validate_response(response, checks=CHECKS)

    run()


def test_generated_requests_never_get_a_server_error(fuzz_url):
    schema = schemathesis.openapi.from_url(fuzz_url + "/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert {"POST /v1/chat/completions", "GET /v1/models", "GET /health", "POST /v1/agent/chat"} <= labels
    calls = {"n": 0, "ok": 0}
    unsatisfiable: list[str] = []  # no invalid input exists (e.g. a path parameter that takes any string)
    for op in operations:
        has_input = bool(op.body) or any(True for _ in op.iter_parameters())
        for mode in EXAMPLES:
            if mode is GenerationMode.POSITIVE or has_input:
                try:
                    fuzz(op, mode, fuzz_url, calls)
                except hypothesis.errors.Unsatisfiable:
                    unsatisfiable.append(f"{op.label} {mode.value}")
    assert unsatisfiable == ["GET /v1/models/{model_id} negative"]
    assert calls["n"] >= 40 and calls["ok"] >= 10  # it did exercise the server, successes included
