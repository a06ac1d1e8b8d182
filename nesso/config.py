"""Model configuration: one dataclass, named presets, and the mapping to/from a Hugging Face Llama config."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from nesso.errors import NessoError


@dataclass
class ModelConfig:
    vocab_size: int = 128_256
    hidden_size: int = 960
    intermediate_size: int = 2560
    num_layers: int = 32
    num_heads: int = 15
    num_kv_heads: int = 5
    head_dim: int = 64
    max_position_embeddings: int = 4096
    rope_theta: float = 10_000.0
    # Llama-3.x style frequency scaling ({"rope_type": "llama3", "factor": ..., ...}); None = plain RoPE.
    rope_scaling: dict[str, Any] | None = None
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = True
    init_std: float = 0.03227
    bos_token_id: int | None = 128_000
    eos_token_id: int | list[int] | None = 128_003
    pad_token_id: int | None = 128_003
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        problems = []
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                     "num_kv_heads", "head_dim", "max_position_embeddings"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                problems.append(f"{name} must be a positive integer (got {value!r})")
        if not problems and self.num_heads % self.num_kv_heads:
            problems.append(f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})")
        if not problems and self.head_dim % 2:
            problems.append(f"head_dim ({self.head_dim}) must be even for RoPE")
        if problems:
            raise NessoError("invalid model config: " + "; ".join(problems))

    # ---- parameter accounting -------------------------------------------------------------
    def num_parameters(self) -> dict[str, int]:
        h, kv = self.hidden_size, self.num_kv_heads * self.head_dim
        q = self.num_heads * self.head_dim
        attn = h * q + 2 * h * kv + q * h
        mlp = 3 * h * self.intermediate_size
        per_layer = attn + mlp + 2 * h
        embedding = self.vocab_size * h
        head = 0 if self.tie_word_embeddings else self.vocab_size * h
        non_embedding = self.num_layers * per_layer + h + head
        return {"embedding": embedding, "non_embedding": non_embedding, "total": embedding + non_embedding}

    def flops_per_token(self, seq_len: float, trained_matmul: int | None = None, head_share: float = 1.0) -> float:
        """Training FLOPs per token (forward + backward): 6N plus the attention score term (PaLM appendix B), for
        tokens attending over ``seq_len`` positions (packed samples: their mean length, weighted by tokens).
        ``trained_matmul``: how many matrix parameters get a weight gradient when not all do (LoRA: the adapters'),
        so a frozen matrix counts 4 FLOPs per parameter (forward, input gradient) instead of 6.
        ``head_share``: the share of tokens whose hidden state reaches the output head (the trainer's losses run it
        on labelled positions only: ~15% of an SFT batch)."""
        counts = self.num_parameters()
        head = self.vocab_size * self.hidden_size  # a matmul per token that reaches it, tied to the embedding or not
        body = counts["non_embedding"] - (0 if self.tie_word_embeddings else head)
        per_param = 6 if trained_matmul is None else 4
        matmul = per_param * (body + head_share * head) + (0 if trained_matmul is None else 6 * trained_matmul)
        return matmul + 12 * self.num_layers * self.num_heads * self.head_dim * seq_len

    # ---- Hugging Face interop ---------------------------------------------------------------
    def to_hf(self, torch_dtype: str = "bfloat16") -> dict[str, Any]:
        cfg = {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "max_position_embeddings": self.max_position_embeddings,
            "rope_theta": self.rope_theta,
            "rope_scaling": self.rope_scaling,
            "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": self.tie_word_embeddings,
            "initializer_range": self.init_std,
            "hidden_act": "silu",
            "attention_bias": False,
            "attention_dropout": 0.0,
            "mlp_bias": False,
            "pretraining_tp": 1,
            "use_cache": True,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "pad_token_id": self.pad_token_id,
            "torch_dtype": torch_dtype,
        }
        return cfg

    @classmethod
    def from_hf(cls, cfg: dict[str, Any]) -> ModelConfig:
        model_type = cfg.get("model_type")
        if model_type not in ("llama", None):
            raise NessoError(f"config.json has model_type {model_type!r}; nesso reads Llama checkpoints "
                             "(model_type 'llama')")
        act = cfg.get("hidden_act", "silu")
        if act != "silu":
            raise NessoError(f"config.json hidden_act {act!r} is not supported (Llama uses 'silu')")
        if cfg.get("attention_bias") or cfg.get("mlp_bias"):
            raise NessoError("config.json asks for attention/MLP biases, which Llama checkpoints nesso reads do not have")
        try:
            heads = int(cfg["num_attention_heads"])
            hidden = int(cfg["hidden_size"])
            rope_scaling = cfg.get("rope_scaling")
            rope_theta = cfg.get("rope_theta")
            if rope_theta is None and isinstance(cfg.get("rope_parameters"), dict):  # transformers v5 layout
                params = cfg["rope_parameters"]
                rope_theta = params.get("rope_theta")
                if params.get("rope_type", "default") != "default":
                    rope_scaling = params
            if rope_scaling and rope_scaling.get("rope_type", rope_scaling.get("type")) in ("default", None):
                rope_scaling = None
            return cls(
                vocab_size=int(cfg["vocab_size"]),
                hidden_size=hidden,
                intermediate_size=int(cfg["intermediate_size"]),
                num_layers=int(cfg["num_hidden_layers"]),
                num_heads=heads,
                num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
                head_dim=int(cfg.get("head_dim") or hidden // heads),
                max_position_embeddings=int(cfg.get("max_position_embeddings", 2048)),
                rope_theta=float(rope_theta if rope_theta is not None else 10_000.0),
                rope_scaling=rope_scaling,
                rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
                tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
                init_std=float(cfg.get("initializer_range", 0.02)),
                bos_token_id=cfg.get("bos_token_id"),
                eos_token_id=cfg.get("eos_token_id"),
                pad_token_id=cfg.get("pad_token_id"),
            )
        except KeyError as e:
            raise NessoError(f"config.json is missing the key {e.args[0]!r} that a Llama config needs") from None
        except (TypeError, ValueError) as e:
            raise NessoError(f"config.json has a value of the wrong type: {e}") from None

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, ModelConfig] = {
    # Zagreus-0.4B / Nesso-0.4B: SmolLM2-360M's shape with the Llama-3.2 vocabulary.
    "nesso-0.4b": ModelConfig(),
    # CPU-sized models on the same code path and vocabulary.
    "nesso-micro": ModelConfig(hidden_size=256, intermediate_size=768, num_layers=4, num_heads=4,
                               num_kv_heads=2, head_dim=64, max_position_embeddings=1024),
    "nesso-nano": ModelConfig(hidden_size=64, intermediate_size=192, num_layers=2, num_heads=4,
                              num_kv_heads=2, head_dim=16, max_position_embeddings=512),
}


def get_preset(name: str) -> ModelConfig:
    if name not in PRESETS:
        raise NessoError(f"unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}")
    return PRESETS[name].replace()
