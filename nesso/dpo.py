"""Direct preference optimisation (`nesso dpo RECIPE`) and preference pairs from the agentic dataset
(`nesso data pairs`).

Pairs. Each pair is built from one assistant turn of a dataset row: ``prompt`` = the messages before it,
``chosen`` = the turn itself (the correct call or answer), ``rejected`` = the same turn made wrong in one of these
ways (``kind``):

- ``wrong_tool``: a call names another offered tool (arguments unchanged);
- ``invalid_arguments``: a required argument dropped, a value outside its enum, or the wrong JSON type;
- ``hallucinated_arguments``: an argument the schema does not have, or a value the user never gave;
- ``needless_call``: a call where the turn needs none (no tool fits, a required detail is missing, or the results
  are already there and only the answer is due);
- ``prose_instead_of_call``: text that claims or refuses instead of the call that was needed;
- ``invalid_json``: a structured-output answer with a required field missing or wrapped in prose.

Pairs are written in TRL's conversational preference format: ``{"prompt": [...], "chosen": [assistant message],
"rejected": [assistant message], "tools": [...]}`` plus ``id``, ``lang``, ``category`` and ``kind``.

Loss. Sigmoid DPO: −log σ(β·[(log πθ(y_w) − log πref(y_w)) − (log πθ(y_l) − log πref(y_l))]), log-probabilities
summed over the completion's tokens (the final assistant turn through its ``<|im_end|>``). The reference
log-probabilities are computed once, by the starting model before the first step, and kept (and cached in
``OUT/reference_logps.pt``), so no second model is held in memory. Logged per step: loss, reward accuracy,
chosen/rejected rewards β·(log πθ − log πref), their margin and the policy's log-probabilities.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nesso.data.recipe import expand_path
from nesso.distributed import all_reduce_sum, broadcast_object
from nesso.errors import NessoError
from nesso.sft import (
    AGENTIC_PREFIX,
    PostRecipe,
    PostTrainer,
    StepBatches,
    base_reference,
    chat_of,
    finish_run,
    load_rows,
    load_start_model,
    prepare_run,
    read_jsonl,
    steps_for,
    where_of,
)
from nesso.train import IGNORE_INDEX, Batch

KINDS = ("wrong_tool", "invalid_arguments", "hallucinated_arguments", "needless_call", "prose_instead_of_call",
         "invalid_json")
METRICS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
           "logps/rejected")

_PROSE = {
    "en": ["Done! I've taken care of it.", "Sure, here you go: everything looks fine.",
           "I'm sorry, I don't have access to that information.", "I can't do that right now; please try later.",
           "Of course. It's all set as you asked."],
    "it": ["Fatto! Me ne sono occupato io.", "Certo, ecco qui: è tutto a posto.",
           "Mi dispiace, non ho accesso a queste informazioni.", "Non posso farlo adesso; riprova più tardi.",
           "Certamente. È tutto sistemato come hai chiesto."],
}
_JSON_PREAMBLE = {"en": "Here is the JSON you asked for:", "it": "Ecco il JSON richiesto:"}
_UNKNOWN_ARGS = [("user_id", "u-1042"), ("api_key", "sk-test-0000"), ("confirm", True), ("notes", "as discussed"),
                 ("session_token", "abc123"), ("verbose", True), ("priority_override", "max")]


# ---- pairs from rows ----------------------------------------------------------------------------------------
def _schemas(tools: list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    out = {}
    for t in tools or []:
        fn = t.get("function", t) if isinstance(t, dict) else {}
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            params = fn.get("parameters") if isinstance(fn.get("parameters"), dict) else {}
            out[fn["name"]] = params
    return out


def _arguments(call: dict[str, Any]) -> dict[str, Any] | None:
    raw = call.get("function", {}).get("arguments")
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw) if isinstance(raw, str) else None
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _call(rng: random.Random, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"call_{rng.getrandbits(64):016x}", "type": "function",
            "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}}


def _calls_message(calls: list[dict[str, Any]]) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": calls}


def _with_call(msg: dict[str, Any], k: int, rng: random.Random, name: str, args: dict[str, Any]) -> dict[str, Any]:
    calls = [copy.deepcopy(c) for c in msg["tool_calls"]]
    calls[k] = _call(rng, name, args)
    return _calls_message(calls)


def _wrong_tool(msg, schemas, rng, lang):
    called = {c["function"]["name"] for c in msg["tool_calls"]}
    others = sorted(set(schemas) - called)
    if not others:
        return None
    k = rng.randrange(len(msg["tool_calls"]))
    args = _arguments(msg["tool_calls"][k])
    return None if args is None else _with_call(msg, k, rng, rng.choice(others), args)


def _shift_date(value: str, days: int) -> str | None:
    from datetime import date, timedelta

    try:
        return (date.fromisoformat(value) + timedelta(days=days)).isoformat()
    except ValueError:
        return None


def _pick_call(msg, schemas, rng):
    """One of the turn's calls, at random: (index, name, arguments, the tool's schema properties), or None
    when its arguments are not a JSON object."""
    k = rng.randrange(len(msg["tool_calls"]))
    call = msg["tool_calls"][k]
    name, args = call["function"]["name"], _arguments(call)
    if args is None:
        return None
    return k, name, args, schemas.get(name, {}).get("properties", {}) or {}


def _invalid_arguments(msg, schemas, rng, lang):
    picked = _pick_call(msg, schemas, rng)
    if picked is None:
        return None
    k, name, args, props = picked
    required = [p for p in schemas.get(name, {}).get("required", []) or [] if p in args]
    options = []
    if required:
        options.append(("drop", rng.choice(required)))
    for p, v in args.items():
        spec = props.get(p, {}) if isinstance(props.get(p), dict) else {}
        if spec.get("enum"):
            options.append(("enum", p))
        if isinstance(v, bool):
            options.append(("type", p))
        elif isinstance(v, (int, float)):
            options.append(("type", p))
        elif isinstance(v, str) and spec.get("format") == "date" and _shift_date(v, 0):
            options.append(("type", p))
    if not options:
        return None
    how, p = rng.choice(options)
    bad = dict(args)
    if how == "drop":
        del bad[p]
    elif how == "enum":
        bad[p] = next(x for x in ("other", "any", "default", "unknown") if x not in props[p]["enum"])
    else:
        v = args[p]
        if isinstance(v, bool):
            bad[p] = ("sì" if lang == "it" else "yes") if v else "no"
        elif isinstance(v, (int, float)):
            bad[p] = f"{v}"
        else:  # an ISO date written as the user might say it
            y, m, d = v.split("-")
            bad[p] = f"{int(d)}/{int(m)}/{y}"
    return _with_call(msg, k, rng, name, bad)


def _hallucinated_arguments(msg, schemas, rng, lang):
    picked = _pick_call(msg, schemas, rng)
    if picked is None:
        return None
    k, name, args, props = picked
    options: list[tuple[str, Any]] = [("extra", a) for a in _UNKNOWN_ARGS if a[0] not in props and a[0] not in args]
    for p, v in args.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            options.append(("number", p))
        elif isinstance(v, str) and _shift_date(v, 0):
            options.append(("date", p))
    if not options:
        return None
    how, what = rng.choice(options)
    bad = dict(args)
    if how == "extra":
        bad[what[0]] = what[1]
    elif how == "number":
        v = args[what]
        bad[what] = v * 10 + 7 if isinstance(v, int) else round(v * 10 + 7.5, 2)
    else:
        bad[what] = _shift_date(args[what], rng.randint(1, 9))
    return _with_call(msg, k, rng, name, bad)


def _prose(msg, schemas, rng, lang):
    return {"role": "assistant", "content": rng.choice(_PROSE.get(lang, _PROSE["en"]))}


def _fill(schema: dict[str, Any], rng: random.Random) -> Any:
    """A made-up value of a JSON-schema type: what a model invents when it calls without the facts."""
    if schema.get("enum"):
        return rng.choice(schema["enum"])
    kind = schema.get("type")
    if kind == "integer":
        return rng.randint(1, 20)
    if kind == "number":
        return float(rng.randint(1, 200))
    if kind == "boolean":
        return True
    if kind == "array":
        return [_fill(schema.get("items", {}) or {}, rng)]
    if kind == "object":
        props = schema.get("properties", {}) or {}
        return {p: _fill(props[p], rng) for p in schema.get("required", []) or [] if isinstance(props.get(p), dict)}
    if schema.get("format") == "date":
        return f"2026-0{rng.randint(1, 6)}-1{rng.randint(0, 9)}"
    if schema.get("format") == "email":
        return "user@example.com"
    return "example"


def _needless_call(schemas, rng):
    name = rng.choice(sorted(schemas))
    return _calls_message([_call(rng, name, _fill({"type": "object", **schemas[name]}, rng))])


def _invalid_json(msg, rng, lang, required):
    try:
        obj = json.loads(msg["content"])
    except (json.JSONDecodeError, TypeError):
        return None
    if not isinstance(obj, dict) or not obj:
        return None
    if rng.random() < 0.5:
        bad = dict(obj)
        required = [k for k in required if k in bad]
        del bad[rng.choice(required or sorted(bad))]
        return {"role": "assistant", "content": json.dumps(bad, ensure_ascii=False)}
    text = f"{_JSON_PREAMBLE.get(lang, _JSON_PREAMBLE['en'])}\n```json\n{msg['content']}\n```"
    return {"role": "assistant", "content": text}


def pair_candidates(row: dict[str, Any], rng: random.Random) -> list[tuple[int, str, dict[str, Any]]]:
    """Every (assistant turn, kind, rejected message) this row supports."""
    messages, tools = row["messages"], row.get("tools") or []
    schemas = _schemas(tools)
    lang = row.get("lang", "en")
    out = []
    for t, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") != "assistant" or t == 0:
            continue
        if msg.get("tool_calls"):
            for kind, make in (("wrong_tool", _wrong_tool), ("invalid_arguments", _invalid_arguments),
                               ("hallucinated_arguments", _hallucinated_arguments),
                               ("prose_instead_of_call", _prose)):
                rejected = make(msg, schemas, rng, lang)
                if rejected is not None:
                    out.append((t, kind, rejected))
            continue
        if not isinstance(msg.get("content"), str) or not msg["content"].strip():
            continue
        previous = messages[t - 1]
        if previous.get("role") == "tool":  # the results are in: answer, do not call again
            last_calls = next((m["tool_calls"] for m in reversed(messages[:t])
                               if m.get("role") == "assistant" and m.get("tool_calls")), None)
            if last_calls:
                repeat = [_call(rng, c["function"]["name"], _arguments(c) or {}) for c in last_calls]
                out.append((t, "needless_call", _calls_message(repeat)))
        elif schemas:
            out.append((t, "needless_call", _needless_call(schemas, rng)))
        elif row.get("response_format") or row.get("category") == "structured_json":
            schema = ((row.get("response_format") or {}).get("json_schema") or {}).get("schema") or {}
            rejected = _invalid_json(msg, rng, lang, list(schema.get("required") or []))
            if rejected is not None:
                out.append((t, "invalid_json", rejected))
    return out


def make_pair(row: dict[str, Any], seed: int = 0, index: int = 0) -> dict[str, Any] | None:
    """One preference pair from ``row`` (None when no turn of it can be made wrong), chosen by a generator
    seeded with ``seed`` and the row's id, so the same row always gives the same pair."""
    rng = random.Random(f"{seed}:{row.get('id', index)}")
    candidates = [c for c in pair_candidates(row, rng)
                  if _render_key(c[2]) != _render_key(row["messages"][c[0]])]
    if not candidates:
        return None
    t, kind, rejected = rng.choice(candidates)
    chosen = copy.deepcopy(row["messages"][t])
    return {"id": f"{row.get('id', f'row-{index}')}-t{t}", "lang": row.get("lang"), "category": row.get("category"),
            "kind": kind, "tools": row.get("tools") or [], "prompt": copy.deepcopy(row["messages"][:t]),
            "chosen": [chosen], "rejected": [rejected]}


def _render_key(msg: dict[str, Any]) -> str:
    calls = [(c["function"]["name"], _arguments(c)) for c in msg.get("tool_calls") or []]
    return json.dumps([msg.get("content") or "", calls], sort_keys=True, ensure_ascii=False)


def make_pairs(rows: list[dict[str, Any]], seed: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Pairs for every row that supports one; returns (pairs, rows skipped)."""
    pairs, skipped = [], 0
    for i, row in enumerate(rows):
        chat_of(row, where_of(row, i))
        pair = make_pair(row, seed, i)
        if pair is None:
            skipped += 1
        else:
            pairs.append(pair)
    return pairs, skipped


def load_pairs(spec: str, seed: int = 0, max_pairs: int | None = None) -> tuple[list[dict[str, Any]], str]:
    """Pairs from a pairs JSONL (`nesso data pairs`), or built from rows (agentic:N:SEED, a dataset directory or
    a rows JSONL). Returns (pairs, how they were obtained)."""
    if isinstance(spec, str) and not spec.startswith(AGENTIC_PREFIX) and expand_path(spec).is_file():
        records = read_jsonl(expand_path(spec))
        if records and "chosen" in records[0]:
            pairs = [check_pair(r, where_of(r, i)) for i, r in enumerate(records)]
            how = f"{len(pairs)} pairs from {spec}"
            return (pairs[:max_pairs] if max_pairs else pairs), how
        if records and "messages" not in records[0]:
            raise NessoError(f"{spec}: the first line has neither 'chosen' (a preference pair) nor 'messages' "
                             "(a dataset row)")
        rows = records
    else:
        rows = load_rows(spec)
    pairs, skipped = make_pairs(rows, seed)
    if not pairs:
        raise NessoError(f"none of the {len(rows)} rows of {spec} gives a preference pair")
    return (pairs[:max_pairs] if max_pairs else pairs), f"{len(pairs)} pairs built from {len(rows)} rows of {spec}"


def _one_message(value: Any, where: str, key: str) -> dict[str, Any]:
    if isinstance(value, str):
        return {"role": "assistant", "content": value}
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, dict) or value.get("role") != "assistant":
        raise NessoError(f"{where}: '{key}' must be one assistant message (a list of one, as TRL writes it, an "
                         "object, or a string)")
    return value


def check_pair(record: dict[str, Any], where: str) -> dict[str, Any]:
    prompt = record.get("prompt")
    if not isinstance(prompt, list) or not prompt:
        raise NessoError(f"{where}: 'prompt' must be a non-empty list of chat messages")
    tools = record.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise NessoError(f"{where}: 'tools' must be a list")
    return {**record, "prompt": prompt, "tools": tools or [],
            "chosen": [_one_message(record.get("chosen"), where, "chosen")],
            "rejected": [_one_message(record.get("rejected"), where, "rejected")]}


# ---- tokenising ---------------------------------------------------------------------------------------------
@dataclass
class PairTokens:
    chosen: np.ndarray  # input ids [Lc-1]
    chosen_labels: np.ndarray  # next-token labels, IGNORE_INDEX outside the completion
    rejected: np.ndarray
    rejected_labels: np.ndarray


def completion_tokens(tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                      where: str) -> tuple[np.ndarray, np.ndarray]:
    """(input ids, labels) with labels only on the last assistant turn (its content/calls and ``<|im_end|>``)."""
    try:
        enc = tokenizer.encode_chat(messages, tools or None)
    except NessoError as e:
        raise NessoError(f"{where}: {e}") from None
    ids = np.asarray(enc.ids, dtype=np.int64)
    mask = np.asarray(enc.assistant_mask, dtype=bool)
    on = np.flatnonzero(mask)
    if len(on) == 0:
        raise NessoError(f"{where}: the completion renders to no tokens")
    end = on[-1] + 1
    start = end
    while start > 0 and mask[start - 1]:
        start -= 1
    keep = np.zeros_like(mask)
    keep[start:end] = True
    return ids[:-1], np.where(keep[1:], ids[1:], IGNORE_INDEX)


def tokenize_pairs(tokenizer: Any, pairs: list[dict[str, Any]], max_len: int) -> tuple[list[PairTokens], int]:
    if not tokenizer.has_chatml:
        raise NessoError("the model's tokenizer has no <|im_start|>/<|im_end|> tokens; DPO needs a chat tokenizer")
    out, too_long = [], 0
    for i, p in enumerate(pairs):
        where = where_of(p, i)
        c, cl = completion_tokens(tokenizer, p["prompt"] + p["chosen"], p.get("tools"), where)
        r, rl = completion_tokens(tokenizer, p["prompt"] + p["rejected"], p.get("tools"), where)
        if max(len(c), len(r)) > max_len:
            too_long += 1
            continue
        out.append(PairTokens(c, cl, r, rl))
    if not out:
        raise NessoError(f"every one of the {len(pairs)} pairs is longer than train.seq_len ({max_len}); raise it")
    return out, too_long


def collate_pairs(pairs: list[PairTokens], items: list[int], pad_id: int,
                  reference: torch.Tensor | None = None) -> Batch:
    """[chosen_1..P, rejected_1..P] right-padded (causal attention never looks at the padding behind a token)."""
    seqs = [(pairs[i].chosen, pairs[i].chosen_labels) for i in items] + \
           [(pairs[i].rejected, pairs[i].rejected_labels) for i in items]
    length = max(len(s) for s, _ in seqs)
    input_ids = np.full((len(seqs), length), pad_id, dtype=np.int64)
    labels = np.full((len(seqs), length), IGNORE_INDEX, dtype=np.int64)
    for r, (s, lab) in enumerate(seqs):
        input_ids[r, :len(s)] = s
        labels[r, :len(s)] = lab
    batch: Batch = {"input_ids": torch.from_numpy(input_ids), "labels": torch.from_numpy(labels),
                    "num_loss_tokens": len(items)}  # the loss is a sum over pairs: normalise by pairs
    if reference is not None:
        idx = torch.tensor(items)
        batch["ref_chosen"], batch["ref_rejected"] = reference[idx, 0], reference[idx, 1]
    return batch


# ---- the loss -----------------------------------------------------------------------------------------------
def sequence_logps(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Summed log-probability of each row's labelled tokens; the LM head runs on those positions only."""
    labels = batch["labels"]
    hidden = model(batch["input_ids"], positions=batch.get("positions"), return_hidden=True)
    sel = labels != IGNORE_INDEX
    logits = model.lm_head(hidden[sel]).float()
    token_logps = -F.cross_entropy(logits, labels[sel], reduction="none")
    rows = torch.arange(labels.shape[0], device=labels.device).unsqueeze(1).expand_as(labels)[sel]
    return torch.zeros(labels.shape[0], dtype=torch.float32, device=labels.device).index_add(0, rows, token_logps)


class DPOLoss:
    """``loss_fn(model, batch)`` for the Trainer: the summed sigmoid DPO loss of the batch's pairs. It also keeps
    running sums of the reward statistics, which :meth:`take` hands over once per step."""

    def __init__(self, beta: float = 0.1) -> None:
        if not beta > 0:
            raise NessoError(f"dpo.beta must be > 0 (got {beta})")
        self.beta = beta
        self.sums: torch.Tensor | None = None

    def __call__(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        logps = sequence_logps(model, batch)
        p = logps.shape[0] // 2
        chosen, rejected = logps[:p], logps[p:]
        chosen_rewards = self.beta * (chosen - batch["ref_chosen"].to(chosen))
        rejected_rewards = self.beta * (rejected - batch["ref_rejected"].to(rejected))
        margins = chosen_rewards - rejected_rewards
        losses = -F.logsigmoid(margins)
        with torch.no_grad():
            stats = torch.stack([chosen_rewards.sum(), rejected_rewards.sum(), margins.sum(),
                                 (margins > 0).float().sum(), chosen.sum(), rejected.sum(),
                                 torch.tensor(float(p), device=logps.device)]).double()
            self.sums = stats if self.sums is None else self.sums + stats
        return losses.sum()

    def take(self) -> dict[str, float]:
        """Means over every pair since the last call, across all ranks."""
        if self.sums is None:
            return {}
        sums = all_reduce_sum(self.sums)
        self.sums = None
        n = max(float(sums[-1]), 1.0)
        return {name: float(v) / n for name, v in zip(METRICS, sums[:-1].tolist())}


class DPOTrainer(PostTrainer):
    """PostTrainer that adds the DPO reward statistics to each step's record and to the training log."""

    def __init__(self, *args: Any, dpo_loss: DPOLoss, **kwargs: Any) -> None:
        super().__init__(*args, loss_fn=dpo_loss, **kwargs)
        self.dpo_loss = dpo_loss
        self._window: list[dict[str, float]] = []

    def train_step(self, micro_batches: list[Batch]) -> dict[str, float]:
        out = super().train_step(micro_batches)
        metrics = self.dpo_loss.take()
        self._window.append(metrics)
        return {**out, **metrics}

    def _log(self, rec: dict[str, Any]) -> None:
        window, self._window = self._window, []
        for name in METRICS:
            values = [m[name] for m in window if name in m]
            if values:
                rec[name] = sum(values) / len(values)
        super()._log(rec)


# ---- reference log-probabilities ----------------------------------------------------------------------------
def _fingerprint(pairs: list[PairTokens], model: torch.nn.Module, dtype: str) -> str:
    """Identifies the reference scores: the pairs' tokens, the precision and the starting weights (a per-tensor
    checksum, taken before any sharding so that every rank computes the same key)."""
    h = hashlib.sha256(f"{dtype}|{len(pairs)}".encode())
    with torch.no_grad():
        sums = torch.stack([p.detach().double().sum() for p in model.parameters()])
    h.update(sums.numpy().tobytes())
    for p in pairs:
        for a in (p.chosen, p.chosen_labels, p.rejected, p.rejected_labels):
            h.update(a.tobytes())
    return h.hexdigest()


@torch.no_grad()
def reference_logps(trainer: PostTrainer, pairs: list[PairTokens], pad_id: int, micro: int) -> torch.Tensor:
    """[n, 2] (chosen, rejected) log-probabilities under the trainer's model as it is now (the starting point).
    Under data parallelism each rank scores every world-th pair and the results are summed."""
    model, dist_info = trainer.model, trainer.dist
    n = len(pairs)
    out = torch.zeros(n, 2, dtype=torch.float64, device=dist_info.device)
    mine = list(range(dist_info.rank, math.ceil(n / dist_info.world) * dist_info.world, dist_info.world))
    use_autocast = trainer.cfg.dtype == "bf16" and not trainer.fsdp
    cast = torch.autocast(dist_info.device.type, dtype=torch.bfloat16) if use_autocast else contextlib.nullcontext()
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(mine), micro):
            chunk = mine[s:s + micro]
            items = [i % n for i in chunk]  # ranks past the end repeat pairs so that every rank runs each forward
            batch = collate_pairs(pairs, items, pad_id)
            with cast:
                logps = sequence_logps(model, {k: v.to(dist_info.device) if torch.is_tensor(v) else v
                                               for k, v in batch.items()}).double()
            p = len(items)
            for j, i in enumerate(chunk):
                if i < n:
                    out[i, 0], out[i, 1] = logps[j], logps[p + j]
    finally:
        model.train(was_training)
    return all_reduce_sum(out).float().cpu()


def load_or_compute_reference(trainer: PostTrainer, pairs: list[PairTokens], pad_id: int, micro: int,
                              cache: Path, key: str, say) -> torch.Tensor:
    found = None
    if trainer.dist.is_main and cache.is_file():
        try:
            saved = torch.load(cache, weights_only=True)
            if saved.get("key") == key and tuple(saved["logps"].shape) == (len(pairs), 2):
                found = saved["logps"]
        except Exception:  # an unreadable cache is recomputed, never trusted
            found = None
    found = broadcast_object(found)  # rank 0 decides, so that all ranks run the same forwards (or none)
    if found is not None:
        say(f"reference log-probabilities from {cache}")
        return found
    say(f"scoring {len(pairs):,} pairs with the reference (starting) model, once")
    ref = reference_logps(trainer, pairs, pad_id, micro)
    if trainer.dist.is_main:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp")
        torch.save({"key": key, "logps": ref}, tmp)
        tmp.replace(cache)
    return ref


# ---- `nesso dpo` --------------------------------------------------------------------------------------------
def run_dpo(recipe_path: str | Path, overrides: list[str] | None = None, out_dir: str | None = None,
            export_hf: str | None = None, fresh: bool = False, pairs_source: str | None = None) -> dict[str, Any]:
    recipe = PostRecipe.load(recipe_path, overrides, extra_sections=("dpo",))
    ds = recipe.data
    source = ds.get("pairs", str, None)  # read even when overridden: the key is the recipe's
    source = pairs_source or source
    if source is None:
        raise NessoError("recipe.data.pairs is required: a pairs JSONL (`nesso data pairs`), a rows JSONL, a dataset "
                         "directory or agentic:N:SEED")
    max_pairs = ds.get("max_pairs", int, None, minimum=1)
    ds.finish()
    sec = recipe.extra["dpo"]
    beta = sec.get("beta", float, 0.1, above=0.0)
    sec.get("loss", str, "sigmoid", choices=("sigmoid",))
    sec.finish()
    cfg = recipe.train
    pairs, how = load_pairs(source, recipe.seed, max_pairs)  # bad pairs fail before a run folder or a model exists
    dist_info, out, say = prepare_run(recipe, out_dir, fresh, export_hf)

    loaded, model = load_start_model(recipe, cfg.seq_len, say)
    tokenizer = loaded.tokenizer
    tokens, too_long = tokenize_pairs(tokenizer, pairs, cfg.seq_len)
    key = _fingerprint(tokens, model, cfg.dtype)
    kinds = Counter(p.get("kind", "?") for p in pairs)
    grad_accum = cfg.resolve_grad_accum(dist_info.world)
    pad_id = tokenizer.pad_id
    reference: dict[str, torch.Tensor] = {}

    def make_micro(items: list[int]) -> Batch:
        return collate_pairs(tokens, items, pad_id, reference["logps"])

    stream = StepBatches(len(tokens), make_micro, cfg.micro_batch, grad_accum, dist_info.rank, dist_info.world,
                         recipe.seed)
    if not recipe.steps_given:
        cfg.steps = steps_for(len(tokens), recipe.epochs, stream.per_step)
    from nesso.schedules import Schedule

    schedule = Schedule(recipe.schedule, cfg.lr, cfg.steps)
    loss = DPOLoss(beta)
    run_info = {"recipe": str(recipe_path), "name": recipe.name, "kind": "dpo", "model": recipe.model,
                "data": source, "beta": beta, "pairs": len(tokens), "grad_accum": grad_accum, "world": dist_info.world}
    trainer = DPOTrainer(model, cfg, schedule, out, dist_info, tokenizer=tokenizer, run_info=run_info,
                         lora=recipe.lora, base_ref=base_reference(recipe.model), dpo_loss=loss)
    say(f"{recipe.name}: {loaded.source}; {how}; {len(tokens):,} used "
        f"({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}), {too_long} longer than {cfg.seq_len} "
        f"dropped; beta {beta:g}")
    reference["logps"] = load_or_compute_reference(trainer, tokens, pad_id, cfg.micro_batch,
                                                   out / "reference_logps.pt", key, say)
    start = 0 if fresh else trainer.resume(stream)
    say(f"{cfg.steps:,} steps of {stream.per_step} pairs (micro {cfg.micro_batch} × accum {grad_accum} × world "
        f"{dist_info.world}) ≈ {cfg.steps * stream.per_step / len(tokens):.2f} epochs, lr {cfg.lr:g} "
        f"({recipe.schedule.name}), {cfg.dtype} on {dist_info.device.type}" + (f"; resuming at step {start}" if start else ""))
    records = trainer.fit(stream) if start < cfg.steps else []
    last = {k: records[-1][k] for k in METRICS if records and k in records[-1]}
    if records:
        say(f"reward accuracy {records[-1].get('rewards/accuracies', float('nan')):.2f}, margin "
            f"{records[-1].get('rewards/margins', float('nan')):.3f} (last step)")
    return finish_run(trainer, recipe, out, export_hf, records, say, {"pairs": len(tokens), **last})
