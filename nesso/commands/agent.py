"""`nesso chat`, `nesso run`, `nesso demo`: the agent on a model with real local tools."""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
from pathlib import Path
from typing import Any

from nesso.commands.model import MODEL_HELP, add_model_options
from nesso.errors import NessoError

# Words frequent in one language's requests and not the other's (no "a"/"in": both languages have them).
_WORDS = {
    "en": frozenset("the an of to is are was what whats how much many which who when where why do does did can could "
                    "would please me my you your it its this that for with from and or not today tomorrow now time "
                    "convert calculate tell show find give hi hello thanks thank".split()),
    "it": frozenset("il lo la gli le un una uno di del della dello dei delle degli che è e non per con su mi ti ci "
                    "si sono sei ho ha hai quanto quanta quanti quante quale quali come cosa dove quando perché "
                    "oggi domani ieri adesso ora ore anche ma più al alla alle ai agli nel nella dal dalla "
                    "fa puoi dimmi calcola converti trova fammi qual ciao grazie buongiorno buonasera salve scusa prego".split()),
}


def guess_language(text: str) -> str:
    """'it' or 'en' for a request, by the function words each language uses (ties: 'en'). Enough to pick which of
    the embedded model's trained system prompts to open a conversation with; not a general language detector."""
    words = re.findall(r"[a-zàèéìíòóù]+", text.lower())
    it = sum(w in _WORDS["it"] for w in words) + sum(ch in "àèéìòù" for ch in text.lower())
    en = sum(w in _WORDS["en"] for w in words)
    return "it" if it > en else "en"


def system_prompt(today: datetime.date | None = None, lang: str = "en") -> str:
    """The default system turn in ``lang`` ('en' or 'it'): one of the phrasings the embedded model was trained
    with, with today's date (a prompt it never saw makes the 135M model much less likely to call tools). Its
    training rows always pair an Italian request with an Italian system turn: under an English one it answers an
    Italian request in English (and `nesso demo` sent a unit conversion to the calculator)."""
    from nesso.agentic_data.render import long_date

    day = long_date(today or datetime.date.today(), lang)
    if lang == "it":
        return ("Sei Nesso, un assistente per il lavoro e la vita di tutti i giorni. Usa gli strumenti quando "
                f"servono. Oggi è {day}.")
    return f"You are Nesso, an assistant for work and everyday tasks. Use the tools when they help. Today is {day}."


def system_prompt_for(user: str) -> str:
    """The default system turn for a conversation that opens with ``user``: in that request's language."""
    return system_prompt(lang=guess_language(user))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chat", help="interactive agent with tools (streams; /reset, /tools, /trace, /quit)")
    _common(p)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("run", help="one request through the agent (or JSON output with --json-schema)")
    p.add_argument("prompt")
    _common(p)
    p.add_argument("--json-schema", metavar="FILE", help="answer with JSON that validates against this schema")
    p.add_argument("--tool-choice", default="auto", help="auto, required, none, or a tool name")
    p.add_argument("--trace", metavar="FILE", help="save the step trace as JSON")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="a few English and Italian tasks end to end with the shipped tools")
    p.add_argument("model", nargs="?", default="default", help=MODEL_HELP)
    p.add_argument("--require-tool", action="store_true",
                   help="the first step must call a tool (for base models never taught the tool format; "
                        "default: the model decides)")
    p.add_argument("--limit", type=int, default=None, help="run only the first N tasks")
    add_model_options(p)
    p.set_defaults(func=cmd_demo)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", default="default", help=MODEL_HELP)
    p.add_argument("--tools", nargs="*", metavar="MODULE:ATTR",
                   help="tools to offer (default: nesso.tools:DEFAULT_TOOLS); none with --tools and no value")
    p.add_argument("--system", default=None, help="system prompt (default: nesso's, with today's date)")
    p.add_argument("--max-steps", type=int, default=6)
    p.add_argument("--max-tokens", type=int, default=384)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--no-constrain", action="store_true", help="turn grammar-constrained tool calls off")
    add_model_options(p)


def _tools(args: argparse.Namespace) -> list:
    from nesso.agent import load_tools
    from nesso.tools import default_tools

    if args.tools is None:
        return default_tools()
    return load_tools(args.tools)


def _agent(args: argparse.Namespace, tools: list):
    from nesso.agent import Agent
    from nesso.commands.model import load_for_inference
    from nesso.engine import Engine, SamplingParams

    if args.max_steps < 1:
        raise NessoError("--max-steps must be at least 1")
    params = SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature)
    loaded = load_for_inference(args)
    engine = Engine(loaded.model, loaded.tokenizer)
    return Agent(engine, tools, system_prompt=args.system or system_prompt_for, max_steps=args.max_steps,
                 constrained=not args.no_constrain, params=params), loaded


def _show(events, out=None) -> Any:
    """Print streamed text, tool calls and results; return the AgentResult."""
    out = out or sys.stdout
    result, at_line_start = None, True
    for ev in events:
        if ev.kind == "text":
            out.write(ev.text)
            at_line_start = ev.text.endswith("\n")
        elif ev.kind == "call":
            if not at_line_start:
                out.write("\n")
            out.write(f"  → {ev.step.name}({json.dumps(ev.step.arguments, ensure_ascii=False)})\n")
            at_line_start = True
        elif ev.kind == "result":
            mark = "←" if ev.step.ok else "✗"
            text = ev.step.result if len(ev.step.result) <= 300 else ev.step.result[:300] + "…"
            out.write(f"  {mark} {text}\n")
        elif ev.kind == "done":
            result = ev.result
            if result.stopped != "answer":
                out.write(f"\n[{result.answer}]")
        out.flush()
    out.write("\n")
    return result


def cmd_chat(args: argparse.Namespace) -> int:
    tools = _tools(args)
    agent, loaded = _agent(args, tools)
    print(f"nesso chat — {loaded.source}; tools: {', '.join(t.name for t in tools) or 'none'}")
    print("Type /reset, /tools, /trace or /quit.")
    last = None
    while True:
        try:
            line = input("\n> ").strip()
        except EOFError:
            print()
            return 0
        if not line:
            continue
        if line in ("/quit", "/exit"):
            return 0
        if line == "/reset":
            agent.reset()
            print("(conversation cleared)")
            continue
        if line == "/tools":
            for t in tools:
                print(f"  {t.name}: {t.description}")
            continue
        if line == "/trace":
            print(last.trace_json() if last else "(no turn yet)")
            continue
        if line.startswith("/"):
            print("commands: /reset /tools /trace /quit")
            continue
        before = len(agent.messages)
        try:
            last = _show(agent.events(line))
        except (NessoError, KeyboardInterrupt) as e:
            # A failed or interrupted turn is dropped whole, so the next one does not follow a dangling request.
            del agent.messages[before:]
            why = "interrupted" if isinstance(e, KeyboardInterrupt) else f"error: {e}"
            print(f"\n({why}; the turn was dropped and the conversation is as before it; /reset starts a new one)")


def cmd_run(args: argparse.Namespace) -> int:
    if args.json_schema:
        return _run_json(args)
    tools = _tools(args)
    choice: Any = args.tool_choice
    if choice not in ("auto", "required", "none"):
        if choice not in {t.name for t in tools}:
            raise NessoError(f"--tool-choice {choice!r} is not one of the tools: {', '.join(t.name for t in tools)}")
        choice = {"type": "function", "function": {"name": choice}}
    agent, _ = _agent(args, tools)
    result = _show(agent.events(args.prompt, tool_choice=choice))
    if args.trace:
        Path(args.trace).write_text(result.trace_json() + "\n", encoding="utf-8")
    return 0 if result.stopped == "answer" else 1


def _run_json(args: argparse.Namespace) -> int:
    from nesso.commands.model import load_for_inference
    from nesso.engine import Engine, SamplingParams
    from nesso.grammar import compiler_for

    path = Path(args.json_schema)
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NessoError(f"schema file {path} does not exist") from None
    except UnicodeDecodeError:
        raise NessoError(f"{path} is not UTF-8 text; save the schema as UTF-8 JSON") from None
    except json.JSONDecodeError as e:
        raise NessoError(f"{path} is not valid JSON: {e}") from None
    loaded = load_for_inference(args)
    engine = Engine(loaded.model, loaded.tokenizer)
    constraint = compiler_for(loaded.tokenizer, loaded.model.config.vocab_size).for_json(schema)
    messages = [{"role": "system", "content": (args.system or system_prompt_for(args.prompt))
                 + " Answer only with JSON that follows this schema: "
                 + json.dumps(schema, ensure_ascii=False)}, {"role": "user", "content": args.prompt}]
    prompt = loaded.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    out = engine.generate(prompt, SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature), constraint)
    print(out.text)
    if out.finish_reason == "length":
        import jsonschema

        try:
            jsonschema.validate(json.loads(out.text), schema)
            how = "the JSON above was closed early so that it stays valid"
        except (json.JSONDecodeError, jsonschema.ValidationError):
            how = "the JSON above is cut short"
        raise NessoError(f"the answer reached --max-tokens {args.max_tokens} before the model finished it ({how}); "
                         "raise --max-tokens for the whole answer")
    return 0


DEMO_TASKS = [
    ("en", "What time is it in Tokyo right now?"),
    ("it", "Che ore sono a Tokyo?"),
    ("en", "How much is 17.5% of 2,340 euros?"),
    ("it", "Quanti chilometri sono 26,2 miglia?"),
    ("it", "Quanti ordini ha fatto Giulia a marzo 2026?"),
    ("en", "Which product category brought the most revenue in the shop database?"),
]


def cmd_demo(args: argparse.Namespace) -> int:
    from nesso.tools import default_tools

    ns = argparse.Namespace(model=args.model, dtype=args.dtype, quantize=args.quantize, max_steps=3,
                            max_tokens=160, temperature=0.0, no_constrain=False, system=None)
    tools = default_tools()
    agent, loaded = _agent(ns, tools)
    agent.parallel = False
    # Every demo task needs a tool. The embedded model was taught when to call one; a base model that never was
    # (e.g. smollm2-135m-instruct) does not open a call on its own, and --require-tool forces its first step.
    choice: Any = ["required", "auto"] if args.require_tool else "auto"
    print(f"nesso demo — model: {loaded.source}; tools: {', '.join(t.name for t in tools)}")
    print("first step: " + ("must call a tool (constrained); then the model answers from the result"
                            if args.require_tool else "the model decides whether to call a tool") + "\n")
    answered = 0
    tasks = DEMO_TASKS[: args.limit] if args.limit else DEMO_TASKS
    for lang, task in tasks:
        agent.reset()
        print(f"[{lang}] {task}")
        result = _show(agent.events(task, tool_choice=choice))
        answered += result.stopped == "answer"
        print()
    print(f"{answered}/{len(tasks)} tasks reached a final answer.")
    return 0
