"""Learning-rate schedules against their formulas (nesso-facts.md, "Pretraining recipe" and Axolotl's cosine)."""

from __future__ import annotations

import math

import pytest

from nesso.data.recipe import Section
from nesso.errors import NessoError
from nesso.schedules import Schedule, ScheduleConfig


def make(raw: dict, lr: float, total: int) -> Schedule:
    return Schedule(ScheduleConfig.from_section(Section(raw, "schedule")), lr, total)


def test_wsd_matches_the_zagreus_recipe():
    s = make({"name": "wsd", "warmup_steps": 4000, "decay_start": 750_000, "decay_steps": 50_000, "min_lr": 1e-7},
             3e-3, 800_000)
    eta, m = 3e-3, 1e-7
    expected = {
        0: 0.0,
        1: eta / 4000,
        2000: eta / 2,
        4000: eta,
        4001: eta,
        400_000: eta,
        749_999: eta,
        750_000: eta,  # the decay starts from the peak
        760_000: m + (eta - m) * 40_000 / 50_000,
        775_000: m + (eta - m) / 2,
        799_999: m + (eta - m) / 50_000,
        800_000: m,
        900_000: m,
    }
    for step, lr in expected.items():
        assert s(step) == pytest.approx(lr, rel=1e-12, abs=1e-15), step


def test_axolotl_cosine_with_constant_and_min_ratio():
    eta, total, c, r = 1e-3, 1000, 0.8, 0.3
    s = make({"name": "cosine", "constant_ratio": c, "min_ratio": r}, eta, total)
    w = min(int(0.03 * total), 100)  # Axolotl's default warmup
    assert s.warmup == w == 30
    cosine_end = math.floor(total * c)

    def formula(t: int) -> float:
        if t < w:
            return eta * t / w
        tp = min(t, cosine_end)
        p = (tp - w) / (cosine_end - w)
        return eta * (r + (1 - r) * 0.5 * (1 + math.cos(math.pi * p)))

    for t in (0, 10, 29, 30, 100, 415, 700, 799, 800, 801, 999):
        assert s(t) == pytest.approx(formula(t), rel=1e-12, abs=1e-18), t
    assert s(30) == pytest.approx(eta)
    assert s(415) == pytest.approx(eta * (r + (1 - r) * 0.5))  # halfway through the cosine
    assert s(800) == s(999) == pytest.approx(r * eta)  # flat at r·η after C


def test_constant_with_and_without_warmup():
    assert [make({"name": "constant"}, 0.1, 10)(t) for t in (0, 5, 9)] == [0.1, 0.1, 0.1]
    s = make({"name": "constant", "warmup_steps": 4}, 0.1, 10)
    assert [s(t) for t in (0, 2, 4, 9)] == pytest.approx([0.0, 0.05, 0.1, 0.1])


@pytest.mark.parametrize("raw, message", [
    ({"name": "linear"}, "choose one of"),
    ({"name": "wsd", "warmup_steps": 50, "decay_start": 10, "decay_steps": 5}, "before the end of warmup"),
    ({"name": "cosine", "constant_ratio": 0.01, "warmup_steps": 20}, "raise constant_ratio"),
    ({"name": "cosine", "min_ratio": 1.5}, "fractions"),
    ({"name": "wsd", "warmup_step": 10}, "did you mean 'warmup_steps'"),
    ({"name": "wsd", "min_lr": 1.0}, "above the peak"),
])
def test_bad_schedule_settings_are_clear_errors(raw, message):
    with pytest.raises(NessoError, match=message):
        make(raw, 0.01, 100)
