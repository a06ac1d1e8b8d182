"""LoRA adapters for the nesso decoder, saved and loaded in PEFT's file layout.

Each targeted ``nn.Linear`` (q/k/v/o and the MLP's gate/up/down projections by default) gains two children,
``lora_A`` [r × in] and ``lora_B`` [out × r], and a forward hook that adds ``B·A·dropout(x) · alpha/r`` to its
output. The linear's own ``weight`` keeps its name, so the base state dict, checkpoints and HF export are
unchanged, and the adapter's parameter names are PEFT's once prefixed: ``layers.3.self_attn.q_proj.lora_A.weight``
is ``base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight`` in ``adapter_model.safetensors``.
Initialisation follows PEFT: A Kaiming-uniform, B zeros, so a fresh adapter leaves the model unchanged.

An adapter directory holds ``adapter_config.json`` (``peft_type: LORA``, ``r``, ``lora_alpha``,
``target_modules``, ``base_model_name_or_path`` …) and ``adapter_model.safetensors``; PEFT's
``PeftModel.from_pretrained`` loads it onto the matching transformers model, and ``nesso.loader.load_model``
loads it onto its base (``base_model_name_or_path`` is any model reference nesso resolves) and merges it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nesso.errors import NessoError

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
_PEFT_FEATURES_UNSUPPORTED = ("use_dora", "layers_to_transform", "rank_pattern", "alpha_pattern", "modules_to_save",
                              "fan_in_fan_out", "layer_replication", "lora_bias", "target_parameters",
                              "trainable_token_indices", "exclude_modules", "use_qalora")


@dataclass
class LoraConfig:
    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(TARGETS))
    use_rslora: bool = False  # scale by alpha/sqrt(r) instead of alpha/r (PEFT's option of the same name)

    @property
    def scaling(self) -> float:
        return self.alpha / (math.sqrt(self.r) if self.use_rslora else self.r)

    def validate(self, where: str = "lora") -> LoraConfig:
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r < 1:
            raise NessoError(f"{where}.r must be a positive whole number (got {self.r!r})")
        if not isinstance(self.alpha, (int, float)) or isinstance(self.alpha, bool) or self.alpha <= 0:
            raise NessoError(f"{where}.alpha must be a positive number (got {self.alpha!r})")
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise NessoError(f"{where}.dropout must be in [0, 1) (got {self.dropout!r})")
        targets = self.target_modules
        if isinstance(targets, str) or not isinstance(targets, (list, tuple)) or not targets:
            raise NessoError(f"{where}.target_modules must be a non-empty list of projection names, e.g. "
                             f"[{', '.join(TARGETS)}] (got {targets!r})")
        unknown = [t for t in targets if t not in TARGETS]
        if unknown:
            raise NessoError(f"{where}.target_modules: {unknown[0]!r} is not a projection nesso adapts; choose "
                             f"from {', '.join(TARGETS)}")
        self.target_modules = [t for t in TARGETS if t in targets]  # canonical order, no duplicates
        return self

    @classmethod
    def from_section(cls, s: Any) -> LoraConfig:
        """Read a recipe's ``lora:`` section (a :class:`nesso.data.recipe.Section`)."""
        c = cls()
        c.r = s.get("r", int, c.r, minimum=1)
        c.alpha = s.get("alpha", float, c.alpha, above=0.0)
        c.dropout = s.get("dropout", float, c.dropout, minimum=0.0)
        c.target_modules = s.get("target_modules", list, list(TARGETS))
        c.use_rslora = s.get("use_rslora", bool, False)
        s.finish()
        return c.validate(s.where)


# ---- attaching, freezing, merging ---------------------------------------------------------------------------
def _lora_hook(module: nn.Linear, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
    x = module.lora_dropout(args[0])
    return output + module.lora_B(module.lora_A(x)) * module.lora_scaling


def target_linears(model: nn.Module, targets: list[str]) -> dict[str, nn.Linear]:
    """Decoder-layer linears whose last name component is one of ``targets``, by nesso parameter path."""
    found = {name: m for name, m in model.named_modules()
             if isinstance(m, nn.Linear) and name.startswith("layers.") and name.rsplit(".", 1)[-1] in targets}
    if not found:
        raise NessoError(f"the model has no linear layers named {', '.join(targets)}")
    return found


def add_lora(model: nn.Module, cfg: LoraConfig, seed: int = 0) -> list[nn.Parameter]:
    """Attach fresh adapters (B = 0: the model's outputs do not change) and return their parameters."""
    cfg.validate()
    if has_lora(model):
        raise NessoError("the model already has LoRA adapters; merge them first (merge_lora) to stack another")
    gen = torch.Generator().manual_seed(seed)
    params: list[nn.Parameter] = []
    for _name, lin in sorted(target_linears(model, cfg.target_modules).items()):
        dev, dtype = lin.weight.device, lin.weight.dtype
        lin.lora_A = nn.Linear(lin.in_features, cfg.r, bias=False, device=dev, dtype=dtype)
        lin.lora_B = nn.Linear(cfg.r, lin.out_features, bias=False, device=dev, dtype=dtype)
        with torch.no_grad():
            # PEFT's default: kaiming_uniform_(a=√5) on A, i.e. U(-1/√in, 1/√in); zeros on B.
            bound = 1.0 / math.sqrt(lin.in_features)
            a = torch.rand(lin.lora_A.weight.shape, generator=gen, dtype=torch.float32) * (2 * bound) - bound
            lin.lora_A.weight.copy_(a.to(dtype))
            lin.lora_B.weight.zero_()
        lin.lora_dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        lin.lora_scaling = cfg.scaling
        lin._lora_handle = lin.register_forward_hook(_lora_hook)
        params += [lin.lora_A.weight, lin.lora_B.weight]
    model.lora_config = cfg
    return params


def has_lora(model: nn.Module) -> bool:
    return any(hasattr(m, "lora_A") for m in model.modules())


def freeze_base(model: nn.Module) -> tuple[int, int]:
    """Train only the adapters; returns (trainable, total) parameter counts."""
    trainable = total = 0
    for name, p in model.named_parameters():
        p.requires_grad_(is_lora_name(name))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    if trainable == 0:
        raise NessoError("the model has no LoRA parameters to train; call add_lora first")
    return trainable, total


def is_lora_name(name: str) -> bool:
    return ".lora_A." in name or ".lora_B." in name


def lora_state_dict(model_or_sd: nn.Module | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    sd = model_or_sd.state_dict() if isinstance(model_or_sd, nn.Module) else model_or_sd
    return {k: v for k, v in sd.items() if is_lora_name(k)}


@torch.no_grad()
def merge_lora(model: nn.Module) -> int:
    """Fold every adapter into its linear's weight (W += s·B·A, computed in fp32) and remove it; returns how
    many linears were merged."""
    return _detach_lora(model, merge=True)


def remove_lora(model: nn.Module) -> int:
    """Drop every adapter without folding it in: the base model as it was."""
    return _detach_lora(model, merge=False)


@torch.no_grad()
def _detach_lora(model: nn.Module, merge: bool) -> int:
    count = 0
    for lin in list(model.modules()):
        if not hasattr(lin, "lora_A"):
            continue
        if merge:
            delta = lin.lora_B.weight.float() @ lin.lora_A.weight.float() * lin.lora_scaling
            lin.weight.copy_((lin.weight.float() + delta.to(lin.weight.device)).to(lin.weight.dtype))
        lin._lora_handle.remove()
        for attr in ("lora_A", "lora_B", "lora_dropout", "lora_scaling", "_lora_handle"):
            delattr(lin, attr)
        count += 1
    if hasattr(model, "lora_config"):
        del model.lora_config
    return count


# ---- PEFT files ---------------------------------------------------------------------------------------------
def to_peft_name(name: str) -> str:
    """nesso ``layers.0.self_attn.q_proj.lora_A.weight`` -> PEFT ``base_model.model.model.layers.0...``."""
    return PEFT_PREFIX + ("" if name.startswith("lm_head.") else "model.") + name


def from_peft_name(key: str) -> str:
    name = key.removeprefix(PEFT_PREFIX).removeprefix("model.")
    return name.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B.")


def adapter_config_dict(cfg: LoraConfig, base: str) -> dict[str, Any]:
    alpha: float | int = int(cfg.alpha) if float(cfg.alpha).is_integer() else cfg.alpha
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
        "revision": None,
        "r": cfg.r,
        "lora_alpha": alpha,
        "lora_dropout": cfg.dropout,
        "target_modules": list(cfg.target_modules),
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "use_rslora": cfg.use_rslora,
        "use_dora": False,
        "modules_to_save": None,
        "layers_to_transform": None,
        "layers_pattern": None,
        "rank_pattern": {},
        "alpha_pattern": {},
    }


def save_adapter(model_or_sd: nn.Module | dict[str, torch.Tensor], out_dir: str | Path, cfg: LoraConfig,
                 base: str, dtype: torch.dtype = torch.float32) -> Path:
    """Write ``adapter_config.json`` + ``adapter_model.safetensors`` atomically (temporary sibling, renamed)."""
    from safetensors.torch import save_file

    tensors = {to_peft_name(k): v.detach().to("cpu", dtype).contiguous()
               for k, v in lora_state_dict(model_or_sd).items()}
    if not tensors:
        raise NessoError("the model has no LoRA adapters to save")
    from nesso.checkpoint import write_dir

    def write(tmp: Path) -> None:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(json.dumps(adapter_config_dict(cfg, base), indent=2) + "\n")

    return write_dir(Path(out_dir).expanduser(), write, "a LoRA adapter")


def is_adapter_dir(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / CONFIG_FILE).is_file() and not (p / "config.json").is_file()


def read_adapter_config(directory: str | Path) -> tuple[LoraConfig, dict[str, Any]]:
    d = Path(directory)
    path = d / CONFIG_FILE
    if not path.is_file():
        raise NessoError(f"{d} has no {CONFIG_FILE}; an adapter directory holds {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NessoError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise NessoError(f"{path} must hold a JSON object")
    if raw.get("peft_type") != "LORA":
        raise NessoError(f"{path}: peft_type is {raw.get('peft_type')!r}; nesso loads LoRA adapters only")
    for key in _PEFT_FEATURES_UNSUPPORTED:
        if raw.get(key):
            raise NessoError(f"{path}: {key} = {raw[key]!r} is a PEFT feature nesso does not load; "
                             "merge the adapter with PEFT and load the merged model instead")
    if raw.get("bias", "none") != "none":
        raise NessoError(f"{path}: bias = {raw['bias']!r}; nesso loads adapters without bias terms (bias: none)")
    targets = raw.get("target_modules")
    if targets == "all-linear":  # PEFT's shorthand: every linear layer but the output head
        targets = list(TARGETS)
    if isinstance(targets, str):
        raise NessoError(f"{path}: target_modules is a pattern ({targets!r}); nesso needs a list of names")
    cfg = LoraConfig(r=raw.get("r"), alpha=raw.get("lora_alpha", raw.get("r")), dropout=raw.get("lora_dropout", 0.0),
                     target_modules=targets or [], use_rslora=bool(raw.get("use_rslora", False)))
    return cfg.validate(str(path)), raw


def read_adapter_weights(directory: str | Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise NessoError(f"{Path(directory)} has no {WEIGHTS_FILE} (nesso reads safetensors adapters only)")
    try:
        raw = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise NessoError(f"{path} is unreadable (corrupt or truncated?): {e}") from None
    return {from_peft_name(k): v for k, v in raw.items()}


def load_adapter(model: nn.Module, directory: str | Path, merge: bool = False,
                 cfg: LoraConfig | None = None) -> LoraConfig:
    """Attach the adapter in ``directory`` to ``model`` (its base) and load its weights; merge it if asked. With
    ``cfg`` (to go on training the adapter) the adapters are attached with those settings — dropout included —,
    which must have the adapter's r, alpha, targets and scaling rule."""
    saved, _ = read_adapter_config(directory)
    if cfg is not None:
        have = (saved.r, saved.alpha, saved.target_modules, saved.use_rslora)
        if (cfg.r, cfg.alpha, cfg.target_modules, cfg.use_rslora) != have:
            raise NessoError(f"adapter {directory} has r={saved.r}, alpha={saved.alpha:g}, targets "
                             f"{saved.target_modules}, use_rslora={saved.use_rslora}; set the LoRA settings to the "
                             "same to go on training it")
    cfg = cfg or saved
    weights = read_adapter_weights(directory)
    add_lora(model, cfg)
    expected = lora_state_dict(model)
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        remove_lora(model)
        what = (f"lacks {len(missing)} tensors its config implies, e.g. {missing[:2]}" if missing else
                f"has {len(unexpected)} tensors this model has no place for, e.g. {unexpected[:2]}")
        raise NessoError(f"adapter {directory} {what}; is it an adapter for this base model?")
    for k, v in expected.items():
        if tuple(weights[k].shape) != tuple(v.shape):
            remove_lora(model)
            raise NessoError(f"adapter {directory}: {k} has shape {tuple(weights[k].shape)} but this model needs "
                             f"{tuple(v.shape)}; the adapter belongs to another base model")
    with torch.no_grad():
        for k, v in expected.items():
            v.copy_(weights[k].to(v.dtype))
    if merge:
        merge_lora(model)
    return cfg


def resolve_base(directory: str | Path) -> str:
    """The adapter's ``base_model_name_or_path`` as a reference nesso's loader understands."""
    d = Path(directory)
    _, raw = read_adapter_config(d)
    base = raw.get("base_model_name_or_path")
    if not isinstance(base, str) or not base.strip():
        raise NessoError(f"{d / CONFIG_FILE} names no base_model_name_or_path; set it to the base model "
                         "('default', a directory, a .gguf file or a hub id)")
    if not Path(base).expanduser().exists() and (d / base).exists():  # a path relative to the adapter
        return str(d / base)
    if Path(base).expanduser().resolve() == d.resolve():
        raise NessoError(f"{d / CONFIG_FILE}: base_model_name_or_path points at the adapter itself")
    return base


def load_adapter_model(directory: str | Path, dtype: torch.dtype = torch.float32, seed: int = 0):
    """``load_model`` for an adapter directory: its base (loaded in fp32), the adapter merged, then ``dtype``."""
    from nesso.loader import Loaded, load_model

    base = resolve_base(directory)
    loaded = load_model(base, torch.float32, seed)
    load_adapter(loaded.model, directory, merge=True)
    loaded.model.to(dtype)
    return Loaded(loaded.model, loaded.tokenizer, f"{loaded.source} + LoRA adapter {directory}")
