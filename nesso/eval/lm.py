"""nesso models inside lm-evaluation-harness, and the card's benchmark set.

``import nesso.eval.lm`` registers the model type ``nesso`` with lm-eval, so any lm-eval task runs on any model
reference nesso understands::

    import lm_eval, nesso.eval.lm
    lm_eval.simple_evaluate(model="nesso", model_args="pretrained=default,dtype=bfloat16", tasks=["arc_it"])

Log-likelihoods are computed in batches of right-padded sequences (longest first; requests that share the same
input, like the four answer letters of an MMLU question, share one forward pass), and only the continuation
positions go through the output head. Generation goes through ``nesso.engine.Engine.generate_batch``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nesso.errors import NessoError

try:
    from lm_eval.api.model import TemplateLM
    from lm_eval.api.registry import register_model
    from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
except ImportError:  # pragma: no cover - depends on the environment
    raise NessoError("lm-evaluation-harness is not installed: pip install 'nesso[eval]' "
                     "(or pip install 'lm-eval[ifeval]')") from None

from tqdm import tqdm

from nesso.engine import Engine, SamplingParams
from nesso.tokenizer import IM_END

TASKS_DIR = Path(__file__).parent / "tasks"


@dataclass(frozen=True)
class CardTask:
    name: str  # lm-eval task (or group) name
    lang: str  # "en" | "it"
    column: str  # the card's column
    shots: int
    metric: str  # the card's metric (lm-eval key without the ",none" filter suffix)
    dataset: str  # Hugging Face dataset id
    dataset_config: str | None = None  # None: every config the task uses
    generate: bool = False  # an instruction-following task (chat template by default)


# The card's eight tasks (nesso-facts.md, "Evaluation (card tables)"); column order as in the card's tables.
CARD_TASKS: tuple[CardTask, ...] = (
    CardTask("ifeval", "en", "IFEval", 0, "inst_level_loose_acc", "google/IFEval", generate=True),
    CardTask("arc_challenge", "en", "ARC", 0, "acc_norm", "allenai/ai2_arc", "ARC-Challenge"),
    CardTask("hellaswag", "en", "HellaSwag", 0, "acc_norm", "Rowan/hellaswag"),
    CardTask("mmlu", "en", "MMLU", 5, "acc", "cais/mmlu"),
    CardTask("ifeval-ita", "it", "IFEval", 0, "inst_level_loose_acc", "mii-llm/ifeval-ita", generate=True),
    CardTask("arc_it", "it", "ARC", 0, "acc_norm", "alexandrainst/m_arc", "it"),
    CardTask("hellaswag_it", "it", "HellaSwag", 0, "acc_norm", "alexandrainst/m_hellaswag", "it"),
    CardTask("m_mmlu_it", "it", "MMLU", 5, "acc", "alexandrainst/m_mmlu", "it"),
)
CARD_BY_NAME = {t.name: t for t in CARD_TASKS}


# ---- the lm-eval model --------------------------------------------------------------------------------
@register_model("nesso")
class NessoLM(TemplateLM):
    """lm-eval model backed by a nesso model. ``pretrained`` is any nesso model reference ('default', a preset,
    a directory, a .gguf file, a hub id); ``model``/``tokenizer`` pass objects directly (Python use)."""

    def __init__(self, pretrained: str = "default", dtype: str = "bfloat16", batch_size: int | str | None = 8,
                 max_length: int | None = None, max_gen_toks: int = 256, add_bos_token: bool = False,
                 quantize: str = "none", device: str | None = None, seed: int = 1234,
                 model: Any = None, tokenizer: Any = None, max_batch_size: int | None = None,
                 **unknown: Any) -> None:
        super().__init__()
        if unknown:
            raise NessoError(f"unknown model_args for the nesso model: {', '.join(sorted(unknown))} (known: "
                             "pretrained, dtype, batch_size, max_length, max_gen_toks, add_bos_token, quantize, "
                             "device, seed)")
        if model is None:
            from nesso.loader import load_model
            from nesso.quantize import maybe_quantize

            loaded = load_model(str(pretrained), dtype=dtype)
            maybe_quantize(loaded.model, quantize)
            model, tokenizer, self.source = loaded.model, loaded.tokenizer, loaded.source
        else:
            if tokenizer is None:
                raise NessoError("NessoLM(model=...) needs the tokenizer too")
            self.source = str(pretrained) if pretrained != "default" else type(model).__name__
        if device and str(device).startswith("cuda") and not torch.cuda.is_available():
            # lm-eval's command line asks for cuda by default; a CPU machine runs on the CPU instead
            print(f"nesso: {device} is not available here; evaluating on the CPU", file=sys.stderr)
            device = "cpu"
        if device:
            model = model.to(device)
        self.model, self.tok = model.eval(), tokenizer
        self.engine = Engine(self.model, self.tok)
        self.batch_size = _batch_size(batch_size)
        context = model.config.max_position_embeddings
        self._max_length = _positive_int(max_length or context, "max_length")
        if self._max_length > context:
            raise NessoError(f"max_length={self._max_length} is longer than the model's context ({context})")
        self.max_gen_toks = _positive_int(max_gen_toks, "max_gen_toks")
        self.add_bos_token = _bool(add_bos_token)
        self.seed = _positive_int(seed, "seed", allow_zero=True)
        self._device = self.model.embed_tokens.weight.device

    # ---- TemplateLM plumbing ----------------------------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        return self.tok.eos_id

    @property
    def prefix_token_id(self) -> int:
        # What an empty context is conditioned on: BOS when the tokenizer has one (as HF models in lm-eval).
        bos = self.tok.bos_id
        return bos if bos is not None else self.tok.eos_id

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def tokenizer_name(self) -> str:
        return "nesso-" + self.source.replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return self.tok.chat_template if chat_template else None

    def get_model_info(self) -> dict[str, Any]:
        cfg = self.model.config
        return {"model_source": self.source, "model_num_parameters": cfg.num_parameters()["total"],
                "model_dtype": str(self.model.embed_tokens.weight.dtype).removeprefix("torch.")}

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        ids = self.tok.encode(string)
        bos = self.tok.bos_id
        add = self.add_bos_token if add_special_tokens is None else add_special_tokens
        if add and bos is not None and (not ids or ids[0] != bos):
            ids = [bos] + ids
        return ids

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        text = self.tok.apply_chat_template(chat_history, add_generation_prompt=add_generation_prompt)
        if not add_generation_prompt and chat_history and chat_history[-1].get("role") == "assistant":
            # continue the final assistant message (lm-eval prefills answers this way): leave its turn open
            end = IM_END + "\n"
            if text.endswith(end):
                text = text[: -len(end)]
        return text

    # ---- scoring ----------------------------------------------------------------------------------
    @torch.inference_mode()
    def _loglikelihood_tokens(self, requests: list[tuple[Any, list[int], list[int]]], disable_tqdm: bool = False,
                              override_bs: int | None = None) -> list[tuple[float, bool]]:
        """``requests``: (cache key, context ids, continuation ids). Returns (sum log p(continuation), is_greedy)."""
        groups: dict[tuple[int, ...], list[tuple[int, list[int]]]] = {}
        for i, (_key, context, continuation) in enumerate(requests):
            if not continuation:
                raise NessoError("lm-eval asked to score an empty continuation")
            whole = (list(context) + list(continuation))[-(self.max_length + 1):]
            groups.setdefault(tuple(whole[:-1]), []).append((i, whole[-len(continuation):]))
        inputs = sorted(groups, key=len, reverse=True)
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        bs = override_bs or self.batch_size
        pad = self.tok.pad_id
        head = self.model.lm_head
        for start in tqdm(range(0, len(inputs), bs), disable=disable_tqdm, desc="nesso loglikelihood"):
            batch = inputs[start:start + bs]
            tokens = torch.full((len(batch), len(batch[0])), pad, dtype=torch.long)
            for b, ids in enumerate(batch):
                tokens[b, :len(ids)] = torch.tensor(ids)
            # Right padding needs no mask: under causal attention real tokens never see the pads after them.
            hidden = self.model(tokens.to(self._device), return_hidden=True)
            for b, ids in enumerate(batch):
                n = len(ids)
                for i, target in groups[ids]:
                    c = len(target)
                    logp = head(hidden[b, n - c:n]).float().log_softmax(-1)
                    want = torch.tensor(target, device=logp.device)
                    score = float(logp.gather(1, want[:, None]).sum())
                    greedy = bool((logp.argmax(-1) == want).all())
                    results[i] = (score, greedy)
                    key = requests[i][0]
                    if key is not None:
                        self.cache_hook.add_partial("loglikelihood", key, (score, greedy))
        return results  # type: ignore[return-value]

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        windows: list[tuple[None, list[int], list[int]]] = []
        owners: list[int] = []
        for r, req in enumerate(requests):
            (string,) = req.args
            for context, target in map(make_disjoint_window, get_rolling_token_windows(
                    token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=1)):
                windows.append((None, context, target))
                owners.append(r)
        scores = self._loglikelihood_tokens(windows, disable_tqdm=disable_tqdm)
        totals = [0.0] * len(requests)
        for r, (score, _greedy) in zip(owners, scores):
            totals[r] += score
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    # ---- generation -------------------------------------------------------------------------------
    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        out: list[str | None] = [None] * len(requests)
        by_kwargs: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            by_kwargs.setdefault(json.dumps(req.args[1], sort_keys=True, default=str), []).append(i)
        bar = tqdm(total=len(requests), disable=disable_tqdm, desc="nesso generate_until")
        eos_text = self.tok.decode([self.tok.eos_id])
        for indices in by_kwargs.values():
            params = self._sampling_params(requests[indices[0]].args[1], eos_text)
            budget = self.max_length - params.max_tokens
            if budget < 1:
                raise NessoError(f"max_gen_toks={params.max_tokens} leaves no room for a prompt in the model's "
                                 f"{self.max_length}-token context")
            prompts = {i: self.tok_encode(requests[i].args[0])[-budget:] or [self.prefix_token_id] for i in indices}
            order = sorted(indices, key=lambda i: len(prompts[i]), reverse=True)  # less padding off a CPU

            def done(k: int, gen: Any, order: list[int] = order) -> None:
                out[order[k]] = gen.text
                self.cache_hook.add_partial("generate_until", requests[order[k]].args, gen.text)
                bar.update(1)

            self.engine.generate_batch([prompts[i] for i in order], params, slots=self.batch_size, on_done=done)
        bar.close()
        return out  # type: ignore[return-value]

    def _sampling_params(self, gen_kwargs: dict[str, Any], eos_text: str) -> SamplingParams:
        if not isinstance(gen_kwargs, dict):
            raise NessoError(f"generation kwargs must be a dict, got {gen_kwargs!r}")
        kw = dict(normalize_gen_kwargs(gen_kwargs, self.max_gen_toks))
        until = [s for s in handle_stop_sequences(kw.pop("until", None), eos=eos_text) if s]
        sample = bool(kw.get("do_sample"))
        return SamplingParams(max_tokens=int(kw["max_gen_toks"]),
                              temperature=float(kw.get("temperature") or 0.0) if sample else 0.0,
                              top_p=float(kw.get("top_p") or 1.0), top_k=int(kw.get("top_k") or 0),
                              stop=until, seed=self.seed)


def _batch_size(value: int | str | None) -> int:
    if value in (None, "", "auto") or (isinstance(value, str) and value.startswith("auto")):
        return 8
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise NessoError(f"batch_size must be a positive integer or 'auto' (got {value!r})") from None
    if n < 1:
        raise NessoError(f"batch_size must be a positive integer (got {n})")
    return n


def _positive_int(value: Any, name: str, allow_zero: bool = False) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = -1
    if n < (0 if allow_zero else 1):
        raise NessoError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} integer (got {value!r})")
    return n


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


# ---- datasets: are they reachable? ------------------------------------------------------------------
def hub_offline_by_env() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub answers (respects HF_HUB_OFFLINE / HF_DATASETS_OFFLINE and HF_ENDPOINT)."""
    if hub_offline_by_env():
        return False
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def dataset_cached(dataset: str) -> bool:
    """Whether a hub dataset has files in the local Hugging Face caches (hub cache or datasets' arrow cache)."""
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache/huggingface"))
               / "hub")
    arrow = Path(os.environ.get("HF_DATASETS_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache/huggingface"))
                 / "datasets")
    return (hub / ("datasets--" + dataset.replace("/", "--"))).is_dir() or (
        arrow / dataset.replace("/", "___")).is_dir()


def missing_datasets(datasets: Iterable[str], online: bool | None = None) -> list[str]:
    """The datasets that cannot be loaded: none when the hub is reachable, else those not in the local cache."""
    if online is None:
        online = hub_reachable()
    if online:
        return []
    return sorted({d for d in datasets if d and not dataset_cached(d)})


def task_datasets(names: Iterable[str], index: dict[str, Any]) -> dict[str, set[str]]:
    """Hub datasets each task, group or tag uses, read from lm-eval's task index (no download)."""
    out: dict[str, set[str]] = {}
    for name in names:
        found: set[str] = set()
        _collect(name, index, found, set())
        out[name] = found
    return out


def _collect(name: str, index: dict[str, Any], found: set[str], seen: set[str]) -> None:
    if name in seen:
        return
    seen.add(name)
    entry = index.get(name)
    if entry is None:
        for other, e in index.items():  # a tag: every task that carries it
            if name in (e.tags or ()):
                _collect(other, index, found, seen)
        return
    cfg = entry.cfg or {}
    if cfg.get("dataset_path"):
        kwargs = cfg.get("dataset_kwargs") or {}
        if not kwargs.get("data_files") and not kwargs.get("data_dir"):
            found.add(str(cfg["dataset_path"]))
    children = cfg.get("task")
    if isinstance(children, list):
        for child in children:
            if isinstance(child, str):
                _collect(child, index, found, seen)
            elif isinstance(child, dict) and isinstance(child.get("task"), str):
                _collect(child["task"], index, found, seen)
    elif entry.kind.name == "TAG":
        for other, e in index.items():
            if name in (e.tags or ()):
                _collect(other, index, found, seen)


# ---- running a set of tasks ---------------------------------------------------------------------------
@dataclass
class Run:
    tasks: list[str]
    num_fewshot: int | None
    chat: bool


def plan_runs(tasks: list[str], chat_template: str = "instruct", num_fewshot: int | None = None) -> list[Run]:
    """Group tasks into simple_evaluate calls that share a shot count and chat-template setting.

    chat_template: 'instruct' (the instruction-following tasks get the chat template, the log-likelihood tasks
    none), 'all' or 'none'. Card tasks use the card's shots unless ``num_fewshot`` overrides them."""
    if chat_template not in ("instruct", "all", "none"):
        raise NessoError(f"--chat-template must be instruct, all or none (got {chat_template!r})")
    runs: dict[tuple[int | None, bool], Run] = {}
    for name in tasks:
        card = CARD_BY_NAME.get(name)
        shots = num_fewshot if num_fewshot is not None else (card.shots if card else None)
        generative = bool(card and card.generate) or name.startswith("ifeval")
        chat = chat_template == "all" or (chat_template == "instruct" and generative)
        runs.setdefault((shots, chat), Run([], shots, chat)).tasks.append(name)
    return list(runs.values())


def parse_tasks(spec: str) -> list[str]:
    names = [t.strip() for t in spec.split(",") if t.strip()]
    if not names:
        raise NessoError("--tasks is empty; use 'card' or a comma-separated list of lm-eval task names")
    out: list[str] = []
    for n in names:
        for t in ([t.name for t in CARD_TASKS] if n == "card" else [n]):
            if t not in out:
                out.append(t)
    return out


def check_datasets(tasks: list[str], index: dict[str, Any] | None, online: bool) -> None:
    """Raise, before anything runs, when a task's dataset is neither reachable nor cached."""
    needed: dict[str, set[str]] = {}
    unknown = [t for t in tasks if t not in CARD_BY_NAME]
    for t in tasks:
        if t in CARD_BY_NAME:
            needed[t] = {CARD_BY_NAME[t].dataset}
    if unknown and index is not None:
        needed.update(task_datasets(unknown, index))
    missing = missing_datasets(set().union(*needed.values()) if needed else set(), online)
    if missing:
        which = ", ".join(f"{t} ({', '.join(sorted(d & set(missing)))})" for t, d in needed.items() if d & set(missing))
        raise NessoError(f"the Hugging Face Hub is not reachable and these datasets are not in the local cache: "
                         f"{', '.join(missing)} — needed by {which}. Run once online (or copy the HF cache to this "
                         "machine), or pick other --tasks")


def merge_results(parts: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if key == "samples":
                continue
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key].update(value)
            elif key not in merged:
                merged[key] = value
    return merged


def evaluate(model: str | NessoLM, tasks: list[str], *, limit: float | None = None, chat_template: str = "instruct",
             num_fewshot: int | None = None, model_args: dict[str, Any] | None = None,
             include_path: list[str] | None = None, include_defaults: bool = True, log_samples: bool = False,
             check: bool = True) -> dict[str, Any]:
    """Run ``tasks`` on a nesso model with lm-eval and return one merged lm-eval results dict."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    online = hub_reachable()
    if not online:  # cached datasets load without the network only in offline mode
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if check:  # the card's datasets are known without indexing lm-eval's ~15k task files
        check_datasets([t for t in tasks if t in CARD_BY_NAME], None, online)
    manager = TaskManager(include_path=[str(TASKS_DIR), *(include_path or [])], include_defaults=include_defaults)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise NessoError(f"unknown lm-eval task(s): {', '.join(unknown)} (see `lm-eval ls tasks`)")
    if check:
        check_datasets([t for t in tasks if t not in CARD_BY_NAME], manager.task_index, online)
    lm = model if isinstance(model, NessoLM) else NessoLM(pretrained=model, **(model_args or {}))
    parts = []
    for run in plan_runs(tasks, chat_template, num_fewshot):
        result = simple_evaluate(model=lm, tasks=run.tasks, num_fewshot=run.num_fewshot, limit=limit,
                                 apply_chat_template=run.chat, fewshot_as_multiturn=run.chat,
                                 task_manager=manager, log_samples=log_samples, bootstrap_iters=0)
        if result is None:
            raise NessoError("lm-eval returned no results")
        parts.append(result)
    merged = merge_results(parts)
    if log_samples:
        merged["samples"] = {k: v for p in parts for k, v in (p.get("samples") or {}).items()}
    merged["nesso"] = {"model": lm.source, "tasks": tasks, "limit": limit, "chat_template": chat_template,
                       "runs": [run.__dict__ for run in plan_runs(tasks, chat_template, num_fewshot)]}
    return merged


def write_results(results: dict[str, Any], out_dir: str | Path) -> Path:
    from lm_eval.utils import handle_non_serializable

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        path = out / "results.json"
        tmp = out / ".results.json.tmp"
        tmp.write_text(json.dumps({k: v for k, v in results.items() if k != "samples"}, indent=2,
                                  default=handle_non_serializable, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)
        if results.get("samples"):
            with (out / "samples.jsonl").open("w", encoding="utf-8") as f:
                for task, rows in results["samples"].items():
                    for row in rows:
                        f.write(json.dumps({"task": task, **row}, default=handle_non_serializable,
                                           ensure_ascii=False) + "\n")
    except OSError as e:
        raise NessoError(f"cannot write results to {out}: {e.strerror or e}") from None
    return path


if __name__ == "__main__":  # lm-eval's own command line, with the `nesso` model type registered
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()
