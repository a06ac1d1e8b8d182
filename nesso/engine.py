"""Generation: prefill + decode over a static KV cache, sampling, stop handling, streaming, batching, and
grammar-constrained decoding. One engine serves the CLI, the agent, the server and the evaluators."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from nesso.decode_graph import DecodeGraph
from nesso.errors import NessoError
from nesso.model import KVCache, Transformer
from nesso.tokenizer import Tokenizer
from nesso.toolcalls import TOOL_CLOSE, TOOL_OPEN


@dataclass
class SamplingParams:
    max_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    # Constrained outputs: no token loops inside tool calls / JSON, closed in time to fit max_tokens (_fit).
    structure_guard: bool = True

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            problems.append(f"max_tokens must be a positive integer (got {self.max_tokens!r})")
        if self.temperature < 0:
            problems.append(f"temperature must be >= 0 (got {self.temperature})")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1] (got {self.top_p})")
        if self.top_k < 0:
            problems.append(f"top_k must be >= 0 (got {self.top_k})")
        if self.repetition_penalty <= 0:
            problems.append(f"repetition_penalty must be > 0 (got {self.repetition_penalty})")
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if any(not isinstance(s, str) or not s for s in self.stop):
            problems.append("stop strings must be non-empty strings")
        if problems:
            raise NessoError("; ".join(problems))


@dataclass
class Generation:
    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" (eos, stop string, grammar end) or "length"
    prompt_tokens: int
    seconds: float = 0.0

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


class Constraint:
    """What a grammar engine must provide to steer one sequence (see nesso.grammar)."""

    def allowed(self) -> torch.Tensor:  # bool [vocab]
        raise NotImplementedError

    def advance(self, token: int) -> None:
        raise NotImplementedError

    @property
    def done(self) -> bool:
        raise NotImplementedError

    @property
    def structured(self) -> bool:  # True while inside JSON (no repetition penalty there)
        return True

    def accepts(self, token: int) -> bool:
        allowed = self.allowed()
        return token < allowed.shape[0] and bool(allowed[token])

    def mask_logits(self, logits: torch.Tensor, ban: int | None = None) -> None:
        """Set the logits of the tokens the grammar does not allow (and of ``ban``, where another is allowed) to
        -inf, in place."""
        allowed = self.allowed().clone()
        if ban is not None and ban < allowed.shape[0] and allowed[ban] and int(allowed.sum()) > 1:
            allowed[ban] = False
        if not allowed.any():
            raise NessoError("the grammar allows no token here (constraint error)")
        logits[: allowed.shape[0]].masked_fill_(~allowed.to(logits.device), float("-inf"))
        logits[allowed.shape[0]:] = float("-inf")

    def closing_path(self, after: int | None, limit: int, previous: int | None = None) -> list[int] | None:
        """The tokens that finish the output after ``after`` (None: from here, ``previous`` the last token) along
        the closing path, or None where that takes more than ``limit`` tokens, none is found, or this grammar
        cannot tell."""
        return None

    def completes(self, tokens: list[int]) -> bool:
        """Whether ``tokens``, from here, are legal and finish the output (a cheap re-check of a known path)."""
        return False

    def closing_token(self, previous: int | None = None) -> int:  # the closing path's first token from here
        raise NotImplementedError


class _Detokenizer:
    """Incremental text from ids: emits only complete UTF-8 characters, decodes a small window per step."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer, self.ids, self.prefix, self.read = tokenizer, [], 0, 0

    def push(self, token: int) -> str:
        self.ids.append(token)
        prev = self.tokenizer.decode(self.ids[self.prefix:self.read])
        new = self.tokenizer.decode(self.ids[self.prefix:])
        if new.endswith("\ufffd"):  # a multi-byte character is not complete yet
            return ""
        self.prefix, self.read = self.read, len(self.ids)
        return new[len(prev):]


def _inside_call(text: str, pos: int) -> bool:
    """Whether ``pos`` lies inside a ``<tool_call>`` block of ``text`` (after its opening tag, before its close)."""
    return text.rfind(TOOL_OPEN, 0, pos) > text.rfind(TOOL_CLOSE, 0, pos)


class _Sequence:
    def __init__(self, prompt: list[int], params: SamplingParams, constraint: Constraint | None,
                 tokenizer: Tokenizer) -> None:
        self.prompt, self.params, self.constraint = prompt, params, constraint
        self.out: list[int] = []
        self.sampled: list[int] = []  # every sampled id, stop tokens included
        self.text = ""
        self.detok = _Detokenizer(tokenizer)
        self.finish: str | None = None
        self.closing = False  # the structure guard closed the output to fit max_tokens
        self.path: list[int] | None = None  # a checked closing path after the last token (in the guard's window)
        self.emitted = 0  # chars of self.text already streamed
        self.holdback = max((len(s) for s in params.stop), default=0)
        self.generator = None
        if params.seed is not None:
            self.generator = torch.Generator().manual_seed(params.seed)
        self.seen = torch.tensor(sorted(set(prompt)), dtype=torch.long)

    def in_structured_region(self) -> bool:
        if self.constraint is not None and self.constraint.structured:
            return True
        return _inside_call(self.text, len(self.text))


class Engine:
    """Generation with one model. On a CPU, prepare the model with ``nesso.quantize.maybe_quantize(model, "none")``
    (or ``"int8"``) first, as the CLI does: it routes decode steps through nesso's CPU kernels; without it they run
    on PyTorch ops, with the same results up to bf16 rounding, several times slower (embedded model: 16 vs 62 tok/s)."""

    def __init__(self, model: Transformer, tokenizer: Tokenizer) -> None:
        if tokenizer.vocab_size > model.config.vocab_size:
            raise NessoError(f"tokenizer has {tokenizer.vocab_size} ids but the model only "
                             f"{model.config.vocab_size} rows")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.stop_ids = tokenizer.stop_ids
        self.max_len = model.config.max_position_embeddings
        # Batch-1 CPU generations replay a recorded decode step (nesso.decode_graph) where the model allows it;
        # False: every step through the model's forward.
        self.decode_graph = True

    @property
    def device(self) -> torch.device:
        return self.model.embed_tokens.weight.device

    # ---- public API ---------------------------------------------------------------------------
    def generate(self, prompt: list[int] | str, params: SamplingParams | None = None,
                 constraint: Constraint | None = None) -> Generation:
        return self.generate_batch([prompt], params, [constraint])[0]

    def stream(self, prompt: list[int] | str, params: SamplingParams | None = None,
               constraint: Constraint | None = None,
               on_finish: Callable[[Generation], None] | None = None) -> Iterator[str]:
        """Text deltas as they are decoded; text that might become a stop string is held back until it
        cannot. ``on_finish`` receives the complete Generation."""
        ids = self._ids(prompt)
        seq = _Sequence(ids, params or SamplingParams(), constraint, self.tokenizer)
        start = time.perf_counter()
        for _ in self._run([seq]):
            delta = self._take_delta(seq)
            if delta:
                yield delta
        delta = self._take_delta(seq, final=True)
        if delta:
            yield delta
        if on_finish:
            on_finish(self._result(seq, time.perf_counter() - start))

    def generate_batch(self, prompts: list[list[int] | str], params: SamplingParams | list[SamplingParams] | None = None,
                       constraints: list[Constraint | None] | None = None, slots: int | None = None,
                       on_done: Callable[[int, Generation], None] | None = None) -> list[Generation]:
        """Generations for ``prompts``, in order. On a CPU several prompts go through a ContinuousBatch of ``slots``
        rows (default: all of them): each prompt is prefilled whole and alone and a finished row takes the next
        prompt at once, so with nesso's bf16 or int8 kernels a prompt gets exactly the tokens ``generate`` gives it
        on a fresh cache, whichever prompts share its steps. Elsewhere prompts run ``slots`` at a time, left-padded
        (a row's bf16 numbers then depend on its batch-mates). ``on_done(i, generation)`` follows each finish."""
        if not prompts:
            return []
        plist = params if isinstance(params, list) else [params or SamplingParams()] * len(prompts)
        clist = constraints or [None] * len(prompts)
        if len(plist) != len(prompts) or len(clist) != len(prompts):
            raise NessoError(f"{len(prompts)} prompts need as many sampling parameters and constraints "
                             f"(got {len(plist)} and {len(clist)})")
        slots = max(1, min(slots or len(prompts), len(prompts)))
        if len(prompts) > 1 and self.device.type == "cpu":
            return self._generate_continuous(prompts, plist, clist, slots, on_done)
        results: list[Generation] = []
        for start in range(0, len(prompts), slots):
            seqs = [_Sequence(self._ids(p), sp, c, self.tokenizer)
                    for p, sp, c in zip(prompts[start:start + slots], plist[start:start + slots],
                                        clist[start:start + slots])]
            t0 = time.perf_counter()
            for _ in self._run(seqs):
                pass
            elapsed = time.perf_counter() - t0
            for s in seqs:
                results.append(self._result(s, elapsed))
                if on_done:
                    on_done(len(results) - 1, results[-1])
        return results

    def _generate_continuous(self, prompts: list[list[int] | str], plist: list[SamplingParams],
                             clist: list[Constraint | None], slots: int,
                             on_done: Callable[[int, Generation], None] | None) -> list[Generation]:
        ids = [self._ids(p) for p in prompts]
        # Room for the longest prompt and its budget from the start: a cache that grows drops the recorded steps.
        room = max(len(i) + sp.max_tokens for i, sp in zip(ids, plist))
        batch = ContinuousBatch(self, slots=slots, capacity=min(self.max_len, room + 1), reuse_prefix=False)
        seqs = [batch.sequence(i, sp, c) for i, sp, c in zip(ids, plist, clist)]
        results: list[Generation | None] = [None] * len(seqs)
        waiting, running = list(range(len(seqs)))[::-1], {}
        while waiting or running:
            while waiting and batch.free:
                i = waiting.pop()
                batch.add(seqs[i])
                running[i] = seqs[i]
            batch.step()
            for i in [i for i, s in running.items() if s.finish]:
                seq = running.pop(i)
                error = batch.error(seq)
                if error:
                    raise NessoError(error)
                results[i] = batch.result(seq)
                batch.remove(seq)
                if on_done:
                    on_done(i, results[i])
        return results  # type: ignore[return-value]

    # ---- internals --------------------------------------------------------------------------------
    def _ids(self, prompt: list[int] | str) -> list[int]:
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        if not ids:
            raise NessoError("the prompt is empty")
        if len(ids) >= self.max_len:
            raise NessoError(f"the prompt has {len(ids)} tokens; the model's context is {self.max_len}")
        return ids

    def _result(self, seq: _Sequence, seconds: float) -> Generation:
        return Generation(seq.text, list(seq.out), seq.finish or "length", len(seq.prompt), seconds)

    def _take_delta(self, seq: _Sequence, final: bool = False) -> str:
        limit = len(seq.text) if (final or seq.finish) else max(seq.emitted, len(seq.text) - seq.holdback + 1)
        if seq.holdback == 0:
            limit = len(seq.text)
        delta = seq.text[seq.emitted:limit]
        seq.emitted = max(seq.emitted, limit)
        return delta

    @torch.inference_mode()
    def _run(self, seqs: list[_Sequence]) -> Iterator[None]:
        model, b = self.model, len(seqs)
        lengths = [len(s.prompt) for s in seqs]
        longest = max(lengths)
        budget = max(s.params.max_tokens for s in seqs)
        total = min(longest + budget, self.max_len)
        for s in seqs:  # a request may not run past the context window
            s.params = _with_max_tokens(s.params, min(s.params.max_tokens, self.max_len - len(s.prompt)))
        reuse = 0
        if b == 1:
            before = model.caches
            model.setup_caches(1, max(total, min(self.max_len, 4096)))
            if model.caches is before:
                reuse = min(_common_prefix(model.cached_ids, seqs[0].prompt), longest - 1)
        else:
            model.setup_caches(b, total)
        model.cached_ids = []
        pads = [longest - n for n in lengths]
        tokens = torch.full((b, longest), self.tokenizer.pad_id, dtype=torch.long)
        for i, s in enumerate(seqs):
            tokens[i, pads[i]:] = torch.tensor(s.prompt)
        pad_t = torch.tensor(pads)
        positions = (torch.arange(longest).unsqueeze(0) - pad_t.unsqueeze(1)).clamp(min=0)
        key_valid = torch.arange(total).unsqueeze(0) >= pad_t.unsqueeze(1)  # [B, S]: left padding is masked
        padded = any(pads)
        mask = None
        if padded:
            causal = torch.ones(longest, longest, dtype=torch.bool).tril()
            mask = (causal.unsqueeze(0) & key_valid[:, None, :longest]).unsqueeze(1)
            # Padding queries attend to themselves so no row is all -inf (NaN would leak into the cache).
            mask |= torch.eye(longest, dtype=torch.bool)
            mask = mask.to(self.device)
        logits = model(tokens[:, reuse:].to(self.device), positions=positions[:, reuse:].to(self.device),
                       attn_mask=mask, cache_start=reuse, last_only=True)[:, -1].float()
        pos = longest
        next_positions = torch.tensor(lengths)
        # Batch 1 on a CPU with nesso's kernels: the first decode step is recorded, the others replay it in one C call.
        graph: DecodeGraph | None = None
        use_graph = self.decode_graph and b == 1 and self.device.type == "cpu"
        while True:
            step_tokens = torch.full((b,), self.tokenizer.pad_id, dtype=torch.long)
            for i, s in enumerate(seqs):
                if s.finish:
                    continue
                tok = self._sample(s, logits[i])
                step_tokens[i] = tok
                self._accept(s, tok)
            yield
            if all(s.finish for s in seqs) or pos >= total:
                for s in seqs:
                    s.finish = s.finish or "length"
                if b == 1:
                    model.cached_ids = seqs[0].prompt + seqs[0].sampled[:-1]
                return
            out = None
            if use_graph:
                if graph is None:
                    out, graph = DecodeGraph.capture(model, int(step_tokens[0]), pos)
                    use_graph = graph is not None
                else:
                    out = graph.replay(int(step_tokens[0]), pos)
            if out is None:
                dmask = key_valid[:, None, None, :pos + 1].to(self.device) if padded else None
                out = model(step_tokens.unsqueeze(1).to(self.device), positions=next_positions.unsqueeze(1).to(self.device),
                            attn_mask=dmask, cache_start=pos)
            logits = out[:, -1].float()
            pos += 1
            next_positions += 1

    def _fit(self, seq: _Sequence, tok: int) -> int:
        """Keep a constrained output completable within max_tokens (part of the structure guard).

        A 135M model can loop inside a free JSON string ("ogre/ogre/ogre/...") until max_tokens cuts the output,
        which would leave it invalid. Over the last CLOSE_WINDOW tokens of the budget the guard keeps a closing
        path (close the string, then the brackets, then end; walked on a copy of the grammar) that fits the tokens
        left. Each token the model picks must leave one: the known path, re-checked after the token (~1 us; inside
        a string or a number it stays the same), else a new walk (~0.1 ms). If neither fits, the known path's
        next token is taken instead: the output stays valid, and its finish_reason is "length", since the budget,
        not the model, ended it. Where no path fits from here either, the model's token stands."""
        c = seq.constraint
        if c is None or not seq.params.structure_guard or tok in self.stop_ids:
            return tok
        left = seq.params.max_tokens - len(seq.out)
        if left > CLOSE_WINDOW:
            seq.path = None
            return tok
        path = seq.path
        if path is not None:
            rest = path[1:] if path and path[0] == tok else path
            if len(rest) <= left - 1 and c.completes([tok, *rest]):
                seq.path = rest
                return tok
        after = c.closing_path(after=tok, limit=left - 1)
        if after is not None:
            seq.path = after
            return tok
        previous = seq.out[-1] if seq.out else None
        if path is None:  # just entered the window: no checked path from here yet
            path = c.closing_path(None, left, previous)
            if path is None:  # no completion that fits from here either: the guard cannot help
                return tok
        seq.closing = True
        if not path:  # the output could end here: end it
            seq.path = None
            return c.closing_token(previous)
        seq.path = path[1:]
        return path[0]

    def _sample(self, seq: _Sequence, logits: torch.Tensor) -> int:
        p, c = seq.params, seq.constraint
        # Only where something depends on it: the region test scans the text, which grows every step.
        structured = (p.repetition_penalty != 1.0 or (c is not None and p.structure_guard)) and seq.in_structured_region()
        if p.repetition_penalty != 1.0 and not structured:
            logits = logits.clone()
            seen = torch.cat([seq.seen, torch.tensor(seq.out, dtype=torch.long)]).unique().to(logits.device)
            vals = logits[seen]
            logits[seen] = torch.where(vals > 0, vals / p.repetition_penalty, vals * p.repetition_penalty)
        if c is None:
            return self._pick(seq, logits)
        # A token that would extend a loop inside the JSON is banned where the grammar allows another.
        loop = loop_continuation(seq.out) if structured and p.structure_guard else None
        if loop is None and p.top_p == 1.0 and p.top_k == 0:
            # Pick from the whole distribution first and keep the token if the grammar accepts it (~1 us): the
            # same token greedy decoding of the masked logits gives, and for temperature sampling the same
            # distribution (rejected draws are redrawn from the masked one). The mask is only built when needed.
            tok = self._pick(seq, logits)
            if c.accepts(tok):
                return self._fit(seq, tok)
        logits = logits.clone()
        c.mask_logits(logits, loop)
        return self._fit(seq, self._pick(seq, logits))

    def _pick(self, seq: _Sequence, logits: torch.Tensor) -> int:
        p = seq.params
        if p.temperature == 0:
            return _argmax(logits)
        logits = logits / p.temperature
        if p.top_k and p.top_k < logits.shape[0]:
            kth = torch.topk(logits, p.top_k).values[-1]
            logits[logits < kth] = float("-inf")
        probs = torch.softmax(logits, dim=-1)
        if p.top_p < 1.0:
            sorted_probs, idx = torch.sort(probs, descending=True)
            cum = torch.cumsum(sorted_probs, dim=-1)
            drop = cum - sorted_probs > p.top_p
            sorted_probs[drop] = 0.0
            probs = torch.zeros_like(probs).scatter_(0, idx, sorted_probs)
        return int(torch.multinomial(probs.cpu(), 1, generator=seq.generator))

    def _accept(self, seq: _Sequence, tok: int) -> None:
        seq.sampled.append(tok)
        if seq.constraint is not None:
            seq.constraint.advance(tok)
        if tok in self.stop_ids:
            seq.finish = "length" if seq.closing else "stop"
            return
        seq.out.append(tok)
        seq.text += seq.detok.push(tok)
        # Stop strings end free text only: inside a constrained call or JSON output they would cut it invalid.
        if seq.constraint is None or not seq.constraint.structured:
            for s in seq.params.stop:
                cut = seq.text.find(s, max(0, seq.emitted - len(s)))
                while cut != -1 and seq.constraint is not None and _inside_call(seq.text, cut):
                    cut = seq.text.find(s, cut + 1)
                if cut != -1:
                    seq.text = seq.text[:cut]
                    seq.finish = "stop"
                    return
        if seq.constraint is not None and seq.constraint.done:
            seq.finish = "length" if seq.closing else "stop"
        elif len(seq.out) >= seq.params.max_tokens:
            seq.finish = "length"


class _BatchPlan:
    """Where the next forward of a ContinuousBatch writes: one row from ``start`` (prefill), or every row
    [0, rows) at its own column ``write`` (decode), attending to columns [0, width)."""

    def __init__(self) -> None:
        self.row: int | None = None
        self.write: torch.Tensor | None = None
        self.visible: torch.Tensor | None = None  # decode: how many columns each row attends to
        self.width = 0


class _SlotCache:
    """One layer's keys/values for a ContinuousBatch: row r holds slot r's tokens from column 0 on. The last
    column is scratch that idle rows write to during a decode step, so their cached prefix stays intact."""

    def __init__(self, plan: _BatchPlan, slots: int, capacity: int, heads: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device) -> None:
        self.plan = plan
        shape = (slots, heads, capacity + 1, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)

    @property
    def capacity(self) -> int:
        return self.k.shape[2] - 1

    def kernel_rows(self, b: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """For a decode step's one-token attention kernel (``nesso.model.Attention``): the first ``b`` rows' keys and
        values, where each row writes and how many columns it sees; None during a prefill."""
        p = self.plan
        if p.row is not None or p.write is None or p.visible is None or p.write.shape[0] != b:
            return None
        return self.k[:b], self.v[:b], p.write, p.visible

    def grow(self, capacity: int) -> None:
        old = self.capacity
        for name in ("k", "v"):
            t = getattr(self, name)
            new = t.new_zeros((t.shape[0], t.shape[1], capacity + 1, t.shape[3]))
            new[:, :, :old] = t[:, :, :old]
            setattr(self, name, new)

    def update(self, start: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.plan
        if p.row is not None:
            end = start + k.shape[2]
            self.k[p.row, :, start:end] = k[0]
            self.v[p.row, :, start:end] = v[0]
            return self.k[p.row:p.row + 1, :, :end], self.v[p.row:p.row + 1, :, :end]
        rows = torch.arange(k.shape[0], device=k.device)
        self.k[rows, :, p.write] = k[:, :, 0]
        self.v[rows, :, p.write] = v[:, :, 0]
        return self.k[: k.shape[0], :, : p.width], self.v[: k.shape[0], :, : p.width]


class ContinuousBatch:
    """Sequences that join and leave between decode steps (continuous batching, as a server needs).

    Each sequence owns a slot, i.e. a row of a per-layer KV cache where its tokens sit from column 0, so a
    sequence admitted mid-flight needs no padding and others never wait for it to catch up. ``add`` prefills a
    sequence and samples its first token; ``step`` decodes one token for every unfinished sequence. A free slot
    keeps the ids it last held, and a new prompt that starts with them (the next turn of a conversation) only
    prefills the rest. The batch owns the model while it runs a forward: use it from one thread."""

    REUSE_MIN = 16  # a shorter shared prefix is not worth a higher slot (idle rows below it cost compute)

    def __init__(self, engine: Engine, slots: int = 8, capacity: int = 256, reuse_prefix: bool = True) -> None:
        if slots < 1:
            raise NessoError(f"a batch needs at least one slot (got {slots})")
        self.engine, self.slots = engine, slots
        # False: every prompt is prefilled whole. A prefill split at a reused prefix rounds differently in bf16
        # (other matrix shapes), so a prompt's tokens would depend on which prompt held its slot before.
        self.reuse_prefix = reuse_prefix
        self.rows: list[_Sequence | None] = [None] * slots
        self.cached: list[list[int]] = [[] for _ in range(slots)]  # ids whose K/V fill each row's columns
        self.pending: dict[int, int] = {}  # row -> sampled token not yet fed to the model
        self.errors: dict[int, str] = {}  # id(seq) -> why the sequence failed (its own grammar, not the batch)
        self.started: dict[int, float] = {}
        self.reused_tokens = 0  # prompt tokens served from a slot's cache instead of prefilled (a statistic)
        self.plan = _BatchPlan()
        cfg = engine.model.config
        self._caches: list[_SlotCache] | None = None
        self._capacity = max(1, min(capacity, engine.max_len))
        self._kv = (cfg.num_layers, cfg.num_kv_heads, cfg.head_dim)
        # Decode steps replay recorded ones (nesso.decode_graph) on a CPU: one graph per step shape — a sequence
        # alone in row r, or rows [0, hi) — and cache memory, None where the model allows none. A graph serves
        # whichever sequences hold those rows: it reads the tokens and slots it is given.
        self._graphs: dict[tuple, DecodeGraph | None] = {}
        self._slot_buffers: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # hi -> (write, visible) a graph reads

    # ---- public -------------------------------------------------------------------------------
    def sequence(self, prompt: list[int] | str, params: SamplingParams | None = None,
                 constraint: Constraint | None = None) -> _Sequence:
        """A new sequence for ``add``; its max_tokens is clamped to what the context window leaves."""
        ids = self.engine._ids(prompt)
        params = params or SamplingParams()
        params = _with_max_tokens(params, min(params.max_tokens, self.engine.max_len - len(ids)))
        return _Sequence(ids, params, constraint, self.engine.tokenizer)

    @property
    def active(self) -> list[_Sequence]:
        return [s for s in self.rows if s is not None]

    @property
    def free(self) -> int:
        return self.rows.count(None)

    @torch.inference_mode()
    def add(self, seq: _Sequence) -> None:
        """Admit ``seq``: prefill it into a free slot and sample its first token (it may finish right away)."""
        row, reuse = self._pick_slot(seq.prompt)
        self.reused_tokens += reuse
        self.started[id(seq)] = time.perf_counter()
        self.rows[row] = seq
        self._ensure_capacity(len(seq.prompt))
        self.cached[row] = []  # stale until the prefill succeeds
        self.plan.row = row
        ids = torch.tensor([seq.prompt[reuse:]], device=self.engine.device)
        positions = torch.arange(reuse, len(seq.prompt), device=self.engine.device).unsqueeze(0)
        logits = self._forward(ids, positions, None, reuse)[0, -1].float()
        self.cached[row] = list(seq.prompt)
        self._sample_into(row, seq, logits)

    @torch.inference_mode()
    def step(self) -> None:
        """Decode one token for every sequence still running."""
        running = [r for r, s in enumerate(self.rows) if s is not None and not s.finish]
        if not running:
            return
        graphs = self.engine.decode_graph and self.engine.device.type == "cpu"
        if len(running) == 1 and graphs:
            r = running[0]
            logits = self._step_alone(r)
            if logits is not None:
                self.cached[r].append(self.pending.pop(r))
                self._sample_into(r, self.rows[r], logits[0, -1].float())
                return
        hi = running[-1] + 1
        lengths = [len(self.cached[r]) for r in range(hi)]
        self._ensure_capacity(max(lengths[r] for r in running) + 1)
        capacity = self._caches[0].capacity
        tokens = torch.full((hi, 1), self.engine.tokenizer.pad_id, dtype=torch.long)
        positions = torch.zeros((hi, 1), dtype=torch.long)
        write = torch.full((hi,), capacity, dtype=torch.long)  # idle rows write to the scratch column
        visible = torch.ones(hi, dtype=torch.long)  # idle rows see column 0 only (never an all-masked row)
        for r in running:
            tokens[r, 0] = self.pending[r]
            positions[r, 0] = write[r] = lengths[r]
            visible[r] = lengths[r] + 1
        width = int(visible.max())
        mask = (torch.arange(width).unsqueeze(0) < visible.unsqueeze(1))[:, None, None, :]
        device = self.engine.device
        self.plan.row, self.plan.width = None, width
        if graphs:  # the buffers a recorded step reads its rows' slots from, rewritten in place
            slots = self._slot_buffers.get(hi)
            if slots is None:
                slots = self._slot_buffers[hi] = (torch.empty(hi, dtype=torch.long), torch.empty(hi, dtype=torch.long))
            slots[0].copy_(write)
            slots[1].copy_(visible)
            self.plan.write, self.plan.visible = slots
            out = self._step_rows(hi, tokens[:, 0], positions[:, 0], mask, slots)
        else:
            self.plan.write, self.plan.visible = write.to(device), visible.to(device)
            out = None
        if out is None:
            out = self._forward(tokens.to(device), positions.to(device), mask.to(device), 0)
        logits = out[:, -1].float()
        for r in running:
            self.cached[r].append(self.pending.pop(r))
            self._sample_into(r, self.rows[r], logits[r])

    def remove(self, seq: _Sequence) -> None:
        """Free ``seq``'s slot (finished, failed or cancelled); its cached ids stay for prefix reuse."""
        for r, s in enumerate(self.rows):
            if s is seq:
                self.rows[r] = None
                self.pending.pop(r, None)
        self.started.pop(id(seq), None)

    def error(self, seq: _Sequence) -> str | None:
        return self.errors.get(id(seq))

    def take_delta(self, seq: _Sequence) -> str:
        """New text since the last call, holding back what may still become a stop string."""
        return self.engine._take_delta(seq)

    def result(self, seq: _Sequence) -> Generation:
        self.errors.pop(id(seq), None)
        return self.engine._result(seq, time.perf_counter() - self.started.get(id(seq), time.perf_counter()))

    def reset(self) -> None:
        """Drop every sequence and the cache (after a failed forward left it in an unknown state)."""
        self.rows = [None] * self.slots
        self.cached = [[] for _ in range(self.slots)]
        self.pending.clear()
        self._caches = None
        self._graphs.clear()

    # ---- internals ----------------------------------------------------------------------------
    def _pick_slot(self, prompt: list[int]) -> tuple[int, int]:
        free = [r for r, s in enumerate(self.rows) if s is None]
        if not free:
            raise NessoError("no free slot in the batch")
        if not self.reuse_prefix:
            return free[0], 0
        reuse = {r: min(_common_prefix(self.cached[r], prompt), len(prompt) - 1) for r in free}
        best = max(free, key=lambda r: (reuse[r], -r))
        if reuse[best] < self.REUSE_MIN:
            best = free[0]
        return best, reuse[best]

    def _ensure_capacity(self, needed: int) -> None:
        limit = self.engine.max_len
        if self._caches is None:
            layers, heads, head_dim = self._kv
            weight = self.engine.model.embed_tokens.weight
            cap = min(limit, max(self._capacity, needed))
            self._caches = [_SlotCache(self.plan, self.slots, cap, heads, head_dim, weight.dtype, weight.device)
                            for _ in range(layers)]
        cap = self._caches[0].capacity
        if needed > cap:
            cap = min(limit, max(needed, 2 * cap))
            for c in self._caches:
                c.grow(cap)
            self._graphs.clear()  # recorded on the old cache memory

    def _step_alone(self, r: int) -> torch.Tensor | None:
        """The decode step of the one running sequence (row ``r``) through a recorded step: logits [1, 1, V], or
        None where no graph can run it (the caller takes the batched forward)."""
        pos = len(self.cached[r])
        self._ensure_capacity(pos + 1)
        key = ("alone", r, self._caches[0].k.data_ptr(), self._caches[0].capacity)
        if key in self._graphs:
            graph = self._graphs[key]
            return None if graph is None else graph.replay(self.pending[r], pos)
        with self._model_on([KVCache.over(c.k[r:r + 1], c.v[r:r + 1]) for c in self._caches]) as model:  # the row
            logits, self._graphs[key] = DecodeGraph.capture(model, self.pending[r], pos)
        return logits

    def _step_rows(self, hi: int, tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor,
                   slots: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor | None:
        """The decode step of rows [0, hi) through a recorded step: logits [hi, 1, V], or None where no graph can
        run it (the caller takes the eager forward)."""
        key = ("rows", hi, self._caches[0].k.data_ptr(), self._caches[0].capacity)
        if key in self._graphs:
            graph = self._graphs[key]
            return None if graph is None else graph.replay_rows(tokens, positions)
        with self._model_on(self._caches) as model:
            logits, self._graphs[key] = DecodeGraph.capture_rows(model, tokens, positions, mask, slots)
        return logits

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None,
                 start: int) -> torch.Tensor:
        with self._model_on(self._caches) as model:
            return model(ids, positions=positions, attn_mask=mask, cache_start=start, last_only=True)

    @contextmanager
    def _model_on(self, caches: list) -> Iterator[Transformer]:
        """The engine's model with ``caches`` (the slot caches, or views of them) standing in for its own."""
        model = self.engine.model
        saved, saved_ids = model.caches, model.cached_ids
        model.caches = caches
        try:
            yield model
        finally:
            model.caches, model.cached_ids = saved, saved_ids

    def _sample_into(self, row: int, seq: _Sequence, logits: torch.Tensor) -> None:
        try:
            tok = self.engine._sample(seq, logits)
            self.engine._accept(seq, tok)
        except NessoError as e:  # this sequence's grammar failed; the others go on
            self.errors[id(seq)] = str(e)
            seq.finish = seq.finish or "error"
            return
        if not seq.finish:
            self.pending[row] = tok


LOOP_PERIOD, LOOP_SPAN = 16, 12
# The budget check runs over the last this many tokens; a call that needs more than this to complete could still be
# opened too late (no tool call or schema here comes near it).
CLOSE_WINDOW = 128


def loop_continuation(ids: list[int], max_period: int = LOOP_PERIOD, min_span: int = LOOP_SPAN) -> int | None:
    """The token that would extend a loop at the end of ``ids``: the shortest cycle of at most ``max_period`` tokens
    that the last ``max(min_span, 2 * period + 1)`` tokens repeat. None when the end is not such a loop."""
    n = len(ids)
    for period in range(1, max_period + 1):
        span = max(min_span, 2 * period + 1)
        if n < span:
            break
        if all(ids[-i] == ids[-i - period] for i in range(1, span - period + 1)):
            return ids[-period]
    return None


def _argmax(logits: torch.Tensor) -> int:
    """``int(torch.argmax(logits))`` (first index of the maximum, NaN counting as the maximum): NumPy's for fp32 CPU
    rows, about 10x faster than PyTorch's on one thread for a 128k vocabulary (9 vs 110 us)."""
    if logits.dtype == torch.float32 and logits.is_cpu and logits.dim() == 1:
        return int(logits.numpy().argmax())
    return int(torch.argmax(logits))


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _with_max_tokens(params: SamplingParams, n: int) -> SamplingParams:
    if n == params.max_tokens:
        return params
    import dataclasses

    return dataclasses.replace(params, max_tokens=max(1, n))
