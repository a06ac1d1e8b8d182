"""The embedded agentic model: nesso's LoRA adapter on SmolLM2-135M-Instruct, shipped inside the package, is what
``default`` loads; it calls the right tool with the right arguments in English and Italian on its own."""

from __future__ import annotations

import datetime
import json

import pytest
import torch
from safetensors import safe_open

from nesso.agentic_data import TOOL_BY_NAME
from nesso.commands.agent import guess_language, system_prompt
from nesso.engine import Engine, SamplingParams
from nesso.grammar import compiler_for
from nesso.loader import BASE, EMBEDDED_ADAPTER, load_model
from nesso.toolcalls import parse_tool_calls
from nesso.tools import default_tools

pytestmark = pytest.mark.skipif(not (EMBEDDED_ADAPTER / "adapter_model.safetensors").is_file(),
                                reason="this checkout has no embedded adapter")


@pytest.fixture(scope="module")
def agentic():
    return load_model("default", dtype="bfloat16")


def test_shipped_adapter_is_a_small_peft_lora_on_the_embedded_base():
    weights = EMBEDDED_ADAPTER / "adapter_model.safetensors"
    assert weights.stat().st_size <= 25 * 2**20
    config = json.loads((EMBEDDED_ADAPTER / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["task_type"] == "CAUSAL_LM"
    assert config["base_model_name_or_path"] == BASE
    with safe_open(str(weights), "pt") as f:
        keys = list(f.keys())
        assert all(k.startswith("base_model.model.model.layers.") for k in keys)
        assert all(f.get_tensor(k).dtype.is_floating_point for k in keys)
    assert len(keys) == 30 * 7 * 2  # 30 layers × 7 projections × (A, B)


def test_default_is_the_base_with_the_adapter_merged(agentic, smollm_bf16):
    assert agentic.source.startswith("default (nesso-smollm2-agentic")
    ours, base = agentic.model.state_dict(), smollm_bf16.model.state_dict()
    assert torch.equal(ours["embed_tokens.weight"], base["embed_tokens.weight"])  # not a target module
    assert not torch.equal(ours["layers.0.self_attn.q_proj.weight"], base["layers.0.self_attn.q_proj.weight"])


def _first_call(loaded, user: str, tools: list[dict]):
    """The model's first reply under the system turn `nesso chat`/`run`/`demo` use (the request's language, on a
    fixed date)."""
    engine = Engine(loaded.model, loaded.tokenizer)
    messages = [{"role": "system", "content": system_prompt(datetime.date(2026, 11, 26), guess_language(user))},
                {"role": "user", "content": user}]
    prompt = loaded.tokenizer.apply_chat_template(messages, tools, add_generation_prompt=True)
    constraint = compiler_for(loaded.tokenizer, loaded.model.config.vocab_size).for_tools(tools, "auto")
    out = engine.generate(prompt, SamplingParams(max_tokens=80), constraint)
    parsed = parse_tool_calls(out.text, tools)
    assert not parsed.errors, out.text
    return parsed.calls


SHIPPED = [t.spec for t in default_tools()]
HELDOUT = [TOOL_BY_NAME[n].schema() for n in ("calculate_tip", "get_weather_alerts", "send_email")]


@pytest.mark.parametrize("user,tools,name,arguments", [
    ("Che ore sono a Tokyo?", SHIPPED, "get_current_time", {"timezone": "Asia/Tokyo"}),
    ("What time is it in London?", SHIPPED, "get_current_time", {"timezone": "Europe/London"}),
    # held-out tools: never seen in training
    ("Calculate a 15% tip on a 84 dollar bill split between 3 people.", HELDOUT, "calculate_tip",
     {"bill_amount": 84, "tip_percent": 15, "people": 3}),
    ("Ci sono allerte meteo a Bologna?", HELDOUT, "get_weather_alerts", {"region": "Bologna"}),
])
def test_fixed_requests_call_the_expected_tool(agentic, user, tools, name, arguments):
    calls = _first_call(agentic, user, tools)  # greedy, constrained ('auto': the model decides to call)
    assert [(c.name, c.arguments) for c in calls] == [(name, arguments)]
