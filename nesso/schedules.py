"""Learning-rate schedules, as functions of the number of optimizer updates already done (``step`` = 0 for the
first update, so a linear warmup starts at 0 as in Nanotron and Hugging Face).

- ``wsd`` (warmup-stable-decay, Zagreus pretraining): η·t/W for t ≤ W; η until ``decay_start`` D; then linear
  from η to ``min_lr`` m over ``decay_steps`` S: m + (η − m)·(S − (t − D))/S; m afterwards.
- ``cosine`` (Axolotl's cosine with ``constant_ratio`` c and ``min_ratio`` r, T total steps): η·t/W for t < W;
  else C = ⌊T·c⌋, t' = min(t, C), p = (t' − W)/(C − W), η·(r + (1 − r)·½(1 + cos πp)). Warmup defaults to
  min(⌊0.03·T⌋, 100).
- ``constant``: η after an optional linear warmup.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from nesso.data.recipe import Section
from nesso.errors import NessoError

NAMES = ("wsd", "cosine", "constant")


@dataclass
class ScheduleConfig:
    name: str = "wsd"
    warmup_steps: int | None = None
    decay_start: int | None = None  # wsd: step where the linear decay begins (default: total - decay_steps)
    decay_steps: int | None = None  # wsd: length of the decay (default: 10% of total)
    min_lr: float = 0.0  # wsd: the floor reached at the end of the decay
    constant_ratio: float = 1.0  # cosine: fraction of the run over which the cosine runs
    min_ratio: float = 0.0  # cosine: floor as a fraction of the peak LR

    @classmethod
    def from_section(cls, s: Section) -> ScheduleConfig:
        cfg = cls(name=s.get("name", str, "wsd", choices=NAMES))
        cfg.warmup_steps = s.get("warmup_steps", int, None, minimum=0)
        if cfg.name == "wsd":
            cfg.decay_start = s.get("decay_start", int, None, minimum=0)
            cfg.decay_steps = s.get("decay_steps", int, None, minimum=0)
            cfg.min_lr = s.get("min_lr", float, 0.0, minimum=0.0)
        elif cfg.name == "cosine":
            cfg.constant_ratio = s.get("constant_ratio", float, 1.0, above=0.0)
            cfg.min_ratio = s.get("min_ratio", float, 0.0, minimum=0.0)
            if cfg.constant_ratio > 1 or cfg.min_ratio > 1:
                raise NessoError(f"{s.where}: constant_ratio and min_ratio are fractions in [0, 1]")
        s.finish()
        return cfg


class Schedule:
    def __init__(self, cfg: ScheduleConfig, peak_lr: float, total_steps: int) -> None:
        if peak_lr <= 0 or total_steps < 1:
            raise NessoError("a schedule needs a positive learning rate and at least one step")
        self.cfg, self.peak, self.total = cfg, peak_lr, total_steps
        if cfg.name == "wsd":
            self.warmup = cfg.warmup_steps if cfg.warmup_steps is not None else 0
            self.decay_steps = cfg.decay_steps if cfg.decay_steps is not None else max(1, total_steps // 10)
            self.decay_start = cfg.decay_start if cfg.decay_start is not None else total_steps - self.decay_steps
            if self.decay_start < self.warmup:
                raise NessoError(f"schedule: decay_start ({self.decay_start}) comes before the end of warmup "
                                 f"({self.warmup})")
            if cfg.min_lr > peak_lr:
                raise NessoError(f"schedule.min_lr ({cfg.min_lr}) is above the peak learning rate ({peak_lr})")
        elif cfg.name == "cosine":
            self.warmup = cfg.warmup_steps if cfg.warmup_steps is not None else min(int(0.03 * total_steps), 100)
            self.cosine_end = math.floor(total_steps * cfg.constant_ratio)
            if self.cosine_end <= self.warmup:
                raise NessoError(f"schedule: the cosine ends at step {self.cosine_end} (total × constant_ratio), "
                                 f"not after the {self.warmup} warmup steps; raise constant_ratio or the steps")
        else:
            self.warmup = cfg.warmup_steps or 0

    def __call__(self, step: int) -> float:
        eta, w, cfg = self.peak, self.warmup, self.cfg
        if cfg.name == "wsd":
            if w > 0 and step <= w:
                return eta * step / w
            if step < self.decay_start:
                return eta
            d, s, m = self.decay_start, self.decay_steps, cfg.min_lr
            if step < d + s:
                return m + (eta - m) * (s - (step - d)) / s
            return m
        if step < w:
            return eta * step / w
        if cfg.name == "cosine":
            t = min(step, self.cosine_end)
            p = (t - w) / (self.cosine_end - w)
            r = cfg.min_ratio
            return eta * (r + (1 - r) * 0.5 * (1 + math.cos(math.pi * p)))
        return eta

    def state_dict(self) -> dict[str, Any]:
        return {"config": asdict(self.cfg), "peak_lr": self.peak, "total_steps": self.total}
