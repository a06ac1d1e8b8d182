"""Supervised fine-tuning (`nesso sft RECIPE`): chat rows → assistant-only labels → packed sequences → Trainer.

Each row (OpenAI ``messages`` + ``tools``, as written by `nesso data agentic` / `nesso data import`) is rendered
with the one chat template by ``Tokenizer.encode_chat``; the loss covers the assistant turns only, each through
its closing ``<|im_end|>`` (Axolotl's ``roles_to_train: [assistant]``, ``train_on_eos: turn``). A row of L tokens
becomes L − 1 (input, next-token label) pairs. Rows longer than ``train.seq_len`` are dropped, as Axolotl does.

Sample packing puts rows into ``seq_len``-token sequences by first-fit-decreasing; every packed row keeps its own
position ids (0, 1, …) and attends only to itself (``doc_ids`` → ``nesso.packed_attention``), so a packed
batch gives the same per-token losses as the rows one by one. Packing happens once; the order of the packed
sequences is reshuffled every epoch.

The shared pieces (row loading, the epoch-ordered batch stream, the recipe's ``model``/``lora``/``train`` keys, the
LoRA-aware trainer) are reused by ``nesso.dpo``.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nesso.data.recipe import Section, expand_path, read_recipe_file
from nesso.distributed import DistInfo, barrier, init_distributed
from nesso.errors import NessoError
from nesso.lora import LoraConfig, add_lora, freeze_base, is_lora_name, load_adapter, merge_lora, save_adapter
from nesso.schedules import Schedule, ScheduleConfig
from nesso.train import IGNORE_INDEX, Batch, TrainConfig, Trainer, clear_run

AGENTIC_PREFIX = "agentic:"


# ---- rows ---------------------------------------------------------------------------------------------------
def load_rows(spec: str | list[str], max_rows: int | None = None) -> list[dict[str, Any]]:
    """Rows from ``agentic:N:SEED[:train|heldout|shipped|synthetic]`` (generated now: the same rows as the split's
    JSONL written by `nesso data agentic --n N --seed SEED`; ``shipped``: N rows for nesso's own tools;
    ``synthetic``: N rows over tools made up per row), a dataset
    directory (its train.jsonl) or a JSONL file — or from a list of those, one after another."""
    if isinstance(spec, list):
        if not spec:
            raise NessoError("the list of data sources is empty; give at least one")
        rows = [row for one in spec for row in load_rows(one)]
        return rows[:max_rows] if max_rows is not None else rows
    if not isinstance(spec, str) or not spec.strip():
        raise NessoError("the data source must be a JSONL path, a dataset directory or agentic:N:SEED")
    if spec.startswith(AGENTIC_PREFIX):
        rows = _generate_rows(spec)
    else:
        path = expand_path(spec)
        if path.is_dir():
            if not (path / "train.jsonl").is_file():
                raise NessoError(f"{path} is a directory without train.jsonl; pass a JSONL file or a directory "
                                 "written by `nesso data agentic`")
            path = path / "train.jsonl"
        rows = read_jsonl(path)
    if max_rows is not None:
        rows = rows[:max_rows]
    if not rows:
        raise NessoError(f"{spec} holds no rows")
    return rows


def _generate_rows(spec: str) -> list[dict[str, Any]]:
    from nesso.agentic_data.generator import OPT_IN_SPLITS, SPLITS, generate, generate_opt_in

    parts = spec[len(AGENTIC_PREFIX):].split(":")
    split = parts.pop() if len(parts) == 3 else "train"
    try:
        n, seed = (int(p) for p in parts)
    except ValueError:
        n = seed = -1
    if len(parts) != 2 or n < 1 or seed < 0 or split not in (*SPLITS, *OPT_IN_SPLITS):
        raise NessoError(f"{spec!r}: write agentic:N:SEED, agentic:N:SEED:heldout, agentic:N:SEED:shipped, "
                         "agentic:N:SEED:synthetic, agentic:N:SEED:mapped or agentic:N:SEED:openings, e.g. "
                         "agentic:5000:0 (N rows in all, as `nesso data agentic --n N --seed SEED`; shipped: N rows for "
                         "nesso's own tools; synthetic: N rows over made-up tools; mapped: N rows over made-up tools "
                         "whose values need converting; openings: N greetings and first questions)")
    if split in OPT_IN_SPLITS:
        return generate_opt_in(split, n, seed)
    rows = generate(n, seed)[split]
    if not rows:
        raise NessoError(f"{spec}: {n} rows leave none in the {split} split; raise N")
    return rows


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.is_file():
        raise NessoError(f"data file {p} does not exist (give a JSONL file, a dataset directory or agentic:N:SEED)")
    rows = []
    try:
        with open(p, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise NessoError(f"{p}:{n}: not valid JSON ({e.msg} at column {e.colno})") from None
                if not isinstance(row, dict):
                    raise NessoError(f"{p}:{n}: each line must be a JSON object (got {type(row).__name__})")
                row.setdefault("_where", f"{p.name}:{n}")
                rows.append(row)
    except (OSError, UnicodeDecodeError) as e:
        raise NessoError(f"cannot read {p}: {e}") from None
    return rows


def where_of(row: dict[str, Any], index: int) -> str:
    return str(row.get("_where") or row.get("id") or f"row {index + 1}")


def chat_of(row: dict[str, Any], where: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    messages, tools = row.get("messages"), row.get("tools")
    if not isinstance(messages, list) or not messages:
        raise NessoError(f"{where}: a row needs a non-empty 'messages' list (OpenAI chat format)")
    if tools is not None and not isinstance(tools, list):
        raise NessoError(f"{where}: 'tools' must be a list of {{'type': 'function', 'function': {{...}}}} objects")
    return messages, tools or None


# ---- tokenising ---------------------------------------------------------------------------------------------
@dataclass
class Sample:
    input_ids: np.ndarray  # [L-1] int64
    labels: np.ndarray  # [L-1] int64, IGNORE_INDEX outside the assistant turns


def tokenize_row(tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                 where: str = "row") -> Sample:
    try:
        enc = tokenizer.encode_chat(messages, tools)
    except NessoError as e:
        raise NessoError(f"{where}: {e}") from None
    ids = np.asarray(enc.ids, dtype=np.int64)
    mask = np.asarray(enc.assistant_mask, dtype=bool)
    labels = np.where(mask[1:], ids[1:], IGNORE_INDEX)
    return Sample(ids[:-1], labels)


@dataclass
class TokenizeReport:
    rows: int = 0
    kept: int = 0
    too_long: int = 0
    no_assistant: int = 0
    tokens: int = 0
    target_tokens: int = 0
    longest: int = 0


def tokenize_rows(tokenizer: Any, rows: list[dict[str, Any]], seq_len: int) -> tuple[list[Sample], TokenizeReport]:
    if not tokenizer.has_chatml:
        raise NessoError("the model's tokenizer has no <|im_start|>/<|im_end|> tokens, so chat rows cannot be "
                         "rendered; start from a model with a ChatML tokenizer (nesso presets, SmolLM2)")
    report = TokenizeReport(rows=len(rows))
    samples = []
    for i, row in enumerate(rows):
        where = where_of(row, i)
        s = tokenize_row(tokenizer, *chat_of(row, where), where)
        report.longest = max(report.longest, len(s.input_ids))
        if len(s.input_ids) > seq_len:
            report.too_long += 1
            continue
        targets = int((s.labels != IGNORE_INDEX).sum())
        if targets == 0:
            report.no_assistant += 1
            continue
        report.kept += 1
        report.tokens += len(s.input_ids)
        report.target_tokens += targets
        samples.append(s)
    if not samples:
        raise NessoError(f"none of the {len(rows)} rows is usable: {report.too_long} longer than train.seq_len "
                         f"({seq_len}; the longest has {report.longest} tokens), {report.no_assistant} without an "
                         "assistant turn")
    return samples, report


# ---- packing ------------------------------------------------------------------------------------------------
def pack_ffd(lengths: list[int], capacity: int) -> list[list[int]]:
    """First-fit-decreasing bin packing: indices grouped into bins whose lengths sum to at most ``capacity``.

    Items are placed longest first into the lowest-numbered bin with room; a max-segment-tree over the bins'
    remaining room finds that bin in O(log n)."""
    n = len(lengths)
    if any(length > capacity or length < 1 for length in lengths):
        raise NessoError(f"cannot pack an item of length outside 1..{capacity}")
    size = 1
    while size < max(n, 1):
        size *= 2
    room = [capacity] * (2 * size)
    bins: list[list[int]] = [[] for _ in range(n)]
    for i in sorted(range(n), key=lambda k: (-lengths[k], k)):
        need, node = lengths[i], 1
        while node < size:
            node = 2 * node if room[2 * node] >= need else 2 * node + 1
        bins[node - size].append(i)
        room[node] -= need
        node //= 2
        while node:
            room[node] = max(room[2 * node], room[2 * node + 1])
            node //= 2
    return [b for b in bins if b]


def collate(samples: list[Sample], rows: list[list[int]], pad_id: int) -> Batch:
    """One micro-batch: each row is a list of sample indices laid end to end (packed), padded to the longest row.

    ``positions`` restart at 0 for every sample; ``doc_ids`` (sample number within the row, -1 for padding) make
    the loss use a mask that keeps attention inside each sample. A single unpadded sample needs no mask."""
    length = max(sum(len(samples[i].input_ids) for i in row) for row in rows)
    b = len(rows)
    input_ids = np.full((b, length), pad_id, dtype=np.int64)
    labels = np.full((b, length), IGNORE_INDEX, dtype=np.int64)
    positions = np.zeros((b, length), dtype=np.int64)
    doc_ids = np.full((b, length), -1, dtype=np.int64)
    for r, row in enumerate(rows):
        at = 0
        for d, i in enumerate(row):
            s = samples[i]
            n = len(s.input_ids)
            input_ids[r, at:at + n] = s.input_ids
            labels[r, at:at + n] = s.labels
            positions[r, at:at + n] = np.arange(n)
            doc_ids[r, at:at + n] = d
            at += n
    batch = {"input_ids": torch.from_numpy(input_ids), "labels": torch.from_numpy(labels),
             "positions": torch.from_numpy(positions)}
    if (doc_ids != 0).any():
        batch["doc_ids"] = torch.from_numpy(doc_ids)
    return batch


# ---- the batch stream ---------------------------------------------------------------------------------------
class StepBatches:
    """Items (packed sequences, preference pairs) in a fresh seeded order each epoch; step k of rank r takes
    ``micro × accum`` consecutive items of the global stream, after the items of steps < k and ranks < r.
    ``state_dict`` is the number of steps taken, which is all a resume needs."""

    def __init__(self, n_items: int, make_micro: Callable[[list[int]], Batch], micro: int, accum: int,
                 rank: int = 0, world: int = 1, seed: int = 0, shuffle: bool = True) -> None:
        if n_items < 1:
            raise NessoError("there is nothing to train on")
        self.n, self.make_micro = n_items, make_micro
        self.micro, self.accum, self.rank, self.world = micro, accum, rank, world
        self.seed, self.shuffle = seed, shuffle
        self.step = 0
        self._orders: dict[int, np.ndarray] = {}

    @property
    def per_step(self) -> int:
        return self.micro * self.accum * self.world

    def item(self, g: int) -> int:
        epoch, k = divmod(g, self.n)
        if not self.shuffle:
            return k
        order = self._orders.get(epoch)
        if order is None:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            self._orders = {epoch: order}  # one epoch at a time is all a stream needs
        return int(order[k])

    def batches_for(self, step: int) -> list[Batch]:
        start = step * self.per_step + self.rank * self.micro * self.accum
        return [self.make_micro([self.item(start + m * self.micro + j) for j in range(self.micro)])
                for m in range(self.accum)]

    def __iter__(self):
        while True:
            batches = self.batches_for(self.step)
            self.step += 1
            yield batches

    def epochs(self) -> float:
        return self.step * self.per_step / self.n

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "items": self.n, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("items") not in (None, self.n):
            raise NessoError(f"the checkpoint was trained on {state['items']} sequences but the data now makes "
                             f"{self.n}; resume with the same data and seq_len, or start with --fresh")
        self.step = int(state["step"])


def steps_for(n_items: int, epochs: float, per_step: int) -> int:
    return max(1, math.ceil(epochs * n_items / per_step))


# ---- recipes ------------------------------------------------------------------------------------------------
@dataclass
class PostRecipe:
    """What SFT and DPO recipes share: model reference, optional LoRA, train (with ``epochs``), schedule."""

    name: str
    seed: int
    model: str
    lora: LoraConfig | None
    train: TrainConfig
    epochs: float
    steps_given: bool
    schedule: ScheduleConfig
    data: Section
    extra: dict[str, Section] = field(default_factory=dict)
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    lora_init: str | None = None  # lora.init: an adapter directory whose weights the LoRA starts from

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | None = None,
             extra_sections: tuple[str, ...] = ()) -> PostRecipe:
        raw = read_recipe_file(path, overrides)
        top = Section(raw, "recipe")
        name = top.get("name", str)
        seed = top.get("seed", int, 0)
        model = top.get("model", str)
        lora_section = top.section("lora")
        has_lora = raw.get("lora") is not None
        lora_init = lora_section.get("init", str, None) if has_lora else None  # read before from_section's finish()
        lora = LoraConfig.from_section(lora_section) if has_lora else None
        train_raw = top.section("train").raw  # validates that it is a mapping
        train_raw = dict(train_raw)
        epochs = Section({"epochs": train_raw.pop("epochs", None)}, "recipe.train").get("epochs", float, 1.0,
                                                                                         above=0.0)
        steps_given = train_raw.get("steps") is not None
        train = TrainConfig.from_section(Section(train_raw, "recipe.train"), name, seed)
        schedule_raw = dict(top.section("schedule").raw)
        schedule_raw.setdefault("name", "cosine")
        schedule = ScheduleConfig.from_section(Section(schedule_raw, "recipe.schedule"))
        data = top.section("data")
        extra = {key: top.section(key) for key in extra_sections}
        top.finish()
        return cls(name, seed, model, lora, train, epochs, steps_given, schedule, data, extra, raw, lora_init)


def base_reference(ref: str) -> str:
    """How an adapter names its base: an absolute path for local models, the reference itself otherwise."""
    p = expand_path(ref)
    return str(p.resolve()) if p.exists() else ref


# ---- the trainer --------------------------------------------------------------------------------------------
class PostTrainer(Trainer):
    """The shared Trainer, aware of LoRA: checkpoints and exports hold the adapter (PEFT files) instead of the
    full weights, and :meth:`export_merged` writes the base with the adapter folded in."""

    def __init__(self, *args: Any, lora: LoraConfig | None = None, base_ref: str = "", **kwargs: Any) -> None:
        self.lora, self.base_ref = lora, base_ref
        super().__init__(*args, **kwargs)

    def _full_state_dict(self) -> dict[str, torch.Tensor]:
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            return get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return {k: v.detach().cpu() for k, v in self.model.state_dict().items()}

    def export_hf(self, out: str | Path) -> Path | None:
        """Full fine-tuning: an HF model directory. LoRA: an adapter directory (adapter_config.json +
        adapter_model.safetensors) that PEFT and `nesso`'s loader read. Collective under FSDP."""
        if self.lora is None:
            return super().export_hf(out)
        sd = self._full_state_dict()
        if not self.dist.is_main:
            return None
        return save_adapter({k: v for k, v in sd.items() if is_lora_name(k)}, out, self.lora, self.base_ref)

    def export_merged(self, out: str | Path) -> Path | None:
        """An HF model directory with the adapter merged in (the plain export when there is no adapter)."""
        if self.lora is None:
            return super().export_hf(out)
        from nesso.checkpoint import load_state_dict_into, save_hf
        from nesso.model import empty_model

        sd = self._full_state_dict()
        if not self.dist.is_main:
            return None
        cfg = self.model_config
        export = empty_model(cfg, torch.float32)
        add_lora(export, self.lora)
        if cfg.tie_word_embeddings:
            sd.pop("lm_head.weight", None)
        load_state_dict_into(export, sd, "the trained model")
        merge_lora(export)
        return save_hf(export, self.tokenizer, out, dtype=self.cfg.export_dtype)


def seed_everything(seed: int) -> None:
    seed %= 2**32
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_run(recipe: PostRecipe, out_dir: str | None, fresh: bool,
                export_hf: str | None = None) -> tuple[DistInfo, Path, Callable]:
    cfg = recipe.train
    if out_dir:
        cfg.out_dir = out_dir
    if export_hf:  # refused now rather than after the training
        from nesso.checkpoint import check_replaceable

        check_replaceable(expand_path(export_hf))
    dist_info = init_distributed(cfg.device)
    say = print if dist_info.is_main else (lambda _msg: None)
    if cfg.threads and dist_info.device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    seed_everything(recipe.seed + dist_info.rank)
    out = expand_path(cfg.out_dir)
    if fresh and dist_info.is_main:
        clear_run(out, final=True)
    barrier()
    return dist_info, out, say


def load_start_model(recipe: PostRecipe, seq_len: int, say: Callable[[str], None]):
    """The model to fine-tune (fp32 master weights), with LoRA adapters (fresh, or from ``lora.init``) and a frozen
    base if asked."""
    from nesso.loader import load_model

    loaded = load_model(recipe.model, torch.float32, seed=recipe.seed)
    model = loaded.model
    if seq_len > model.config.max_position_embeddings:
        raise NessoError(f"train.seq_len ({seq_len}) exceeds the model's max_position_embeddings "
                         f"({model.config.max_position_embeddings})")
    if recipe.lora is not None:
        if recipe.lora_init:
            load_adapter(model, expand_path(recipe.lora_init), cfg=recipe.lora)
            say(f"LoRA weights from {recipe.lora_init}")
        else:
            add_lora(model, recipe.lora, seed=recipe.seed)
        trainable, total = freeze_base(model)
        say(f"LoRA r={recipe.lora.r} alpha={recipe.lora.alpha:g} dropout={recipe.lora.dropout:g} on "
            f"{', '.join(recipe.lora.target_modules)}: {trainable:,} trainable of {total:,} parameters "
            f"({trainable / total:.2%})")
    return loaded, model


def finish_run(trainer: PostTrainer, recipe: PostRecipe, out: Path, export_hf: str | None,
               records: list[dict[str, Any]], say: Callable[[str], None], extra: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    plot = trainer.plot(recipe.name)
    final = trainer.export_hf(out / "final")
    merged = trainer.export_merged(expand_path(export_hf)) if export_hf else None
    barrier()
    summary = {"steps": trainer.step, "out_dir": str(out), "final": str(out / "final"),
               "kind": "lora" if recipe.lora else "full", "merged": str(merged) if merged else None,
               "checkpoint": str(trainer.latest_checkpoint() or ""), "loss_plot": str(plot) if plot else None,
               "first_loss": records[0]["loss"] if records else None,
               "last_loss": records[-1]["loss"] if records else None, **(extra or {})}
    if records:
        what = "adapter (PEFT files)" if recipe.lora else "model (HF directory)"
        say(f"step {trainer.step}: loss {records[0]['loss']:.3f} -> {records[-1]['loss']:.3f}; {what} in "
            f"{final}" + (f"; merged model in {merged}" if merged else "") + f"; log {trainer.log_path}")
    if math.isnan(summary["last_loss"] or 0.0):
        raise NessoError("the loss became NaN; lower train.lr or check the data")
    return summary


# ---- `nesso sft` --------------------------------------------------------------------------------------------
def run_sft(recipe_path: str | Path, overrides: list[str] | None = None, out_dir: str | None = None,
            export_hf: str | None = None, fresh: bool = False, data: str | None = None) -> dict[str, Any]:
    recipe = PostRecipe.load(recipe_path, overrides)
    ds = recipe.data
    source = ds.get("train", (str, list), None)  # read even when overridden: the key is the recipe's
    source = data or source
    if source is None:
        raise NessoError("recipe.data.train is required: a JSONL file, a dataset directory or agentic:N:SEED (or a "
                         "list of those)")
    packing = ds.get("sample_packing", bool, True)
    max_rows = ds.get("max_rows", int, None, minimum=1)
    ds.finish()
    cfg = recipe.train
    rows = load_rows(source, max_rows)  # a bad data source fails before a run folder or a model exists
    dist_info, out, say = prepare_run(recipe, out_dir, fresh, export_hf)

    loaded, model = load_start_model(recipe, cfg.seq_len, say)
    tokenizer = loaded.tokenizer
    samples, rep = tokenize_rows(tokenizer, rows, cfg.seq_len)
    lengths = [len(s.input_ids) for s in samples]
    bins = pack_ffd(lengths, cfg.seq_len) if packing else [[i] for i in range(len(samples))]
    grad_accum = cfg.resolve_grad_accum(dist_info.world)
    pad_id = tokenizer.pad_id

    def make_micro(items: list[int]) -> Batch:
        return collate(samples, [bins[i] for i in items], pad_id)

    stream = StepBatches(len(bins), make_micro, cfg.micro_batch, grad_accum, dist_info.rank, dist_info.world,
                         recipe.seed)
    if not recipe.steps_given:
        cfg.steps = steps_for(len(bins), recipe.epochs, stream.per_step)
    schedule = Schedule(recipe.schedule, cfg.lr, cfg.steps)
    run_info = {"recipe": str(recipe_path), "name": recipe.name, "kind": "sft", "model": recipe.model,
                "data": source, "grad_accum": grad_accum, "world": dist_info.world, "rows": rep.rows,
                "samples": rep.kept, "sequences": len(bins)}
    trainer = PostTrainer(model, cfg, schedule, out, dist_info, tokenizer=tokenizer, run_info=run_info,
                          lora=recipe.lora, base_ref=base_reference(recipe.model))
    start = 0 if fresh else trainer.resume(stream)
    fill = rep.tokens / (len(bins) * cfg.seq_len) if packing else None
    no_target = f", {rep.no_assistant} without an assistant turn" if rep.no_assistant else ""
    say(f"{recipe.name}: {loaded.source}; {rep.kept:,} of {rep.rows:,} rows ({rep.too_long} longer than "
        f"{cfg.seq_len}{no_target} dropped), {rep.tokens:,} tokens of which {rep.target_tokens:,} trained (assistant turns)"
        + (f", packed into {len(bins):,} sequences ({fill:.0%} full)" if packing else ", unpacked"))
    say(f"{cfg.steps:,} steps of {stream.per_step} sequences (micro {cfg.micro_batch} × accum {grad_accum} × "
        f"world {dist_info.world}) ≈ {cfg.steps * stream.per_step / len(bins):.2f} epochs, lr {cfg.lr:g} "
        f"({recipe.schedule.name}), {cfg.dtype} on {dist_info.device.type}" + (f"; resuming at step {start}" if start else ""))
    records = trainer.fit(stream) if start < cfg.steps else []
    return finish_run(trainer, recipe, out, export_hf, records, say,
                      {"rows": rep.rows, "samples": rep.kept, "sequences": len(bins), "epochs": stream.epochs()})
