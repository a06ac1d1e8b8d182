"""The card's three benchmark tables (English, Italian, Overall) from lm-eval result files, next to the models the
card published (``card_results.json``), as Markdown and a PNG chart.

Averages follow the card: each language average is the unweighted mean of its four tasks, rounded to four
decimals (half up), and Overall is the mean of the two rounded averages, rounded the same way. (Averaging the
unrounded means instead gives 0.3544 / 0.3344 / 0.3038 for the first three card rows, not the published
0.3545 / 0.3345 / 0.3039.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from nesso.errors import NessoError

# (task, column) per language, in the card's column order.
COLUMNS = {
    "en": [("ifeval", "IFEval EN"), ("arc_challenge", "ARC EN"), ("hellaswag", "HellaSwag EN"), ("mmlu", "MMLU EN")],
    "it": [("ifeval-ita", "IFEval IT"), ("arc_it", "ARC IT"), ("hellaswag_it", "HellaSwag IT"), ("m_mmlu_it", "MMLU IT")],
}
METRICS = {"ifeval": "inst_level_loose_acc", "arc_challenge": "acc_norm", "hellaswag": "acc_norm", "mmlu": "acc",
           "ifeval-ita": "inst_level_loose_acc", "arc_it": "acc_norm", "hellaswag_it": "acc_norm", "m_mmlu_it": "acc"}


@dataclass
class ModelRow:
    name: str
    scores: dict[str, float] = field(default_factory=dict)
    origin: str = "card"  # "card" or the result files it came from
    published: dict[str, float] = field(default_factory=dict)

    def average(self, lang: str) -> Decimal | None:
        values = [self.scores.get(task) for task, _ in COLUMNS[lang]]
        if any(v is None for v in values):
            return None
        return round4(sum(Decimal(repr(v)) for v in values) / len(values))

    def overall(self) -> Decimal | None:
        en, it = self.average("en"), self.average("it")
        return None if en is None or it is None else round4((en + it) / 2)


def round4(x: Decimal) -> Decimal:
    return x.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


# ---- inputs ---------------------------------------------------------------------------------------------
def card_rows() -> list[ModelRow]:
    data = json.loads(resources.files("nesso.eval").joinpath("card_results.json").read_text(encoding="utf-8"))
    return [ModelRow(m["name"], dict(m["scores"]), "card", dict(m.get("published", {}))) for m in data["models"]]


def card_source() -> str:
    data = json.loads(resources.files("nesso.eval").joinpath("card_results.json").read_text(encoding="utf-8"))
    return data["source"]


def result_files(paths: list[str]) -> list[Path]:
    """Result JSON files: the paths given, and for directories every ``results*.json`` below them."""
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(path.rglob("results*.json"))
            if not found:
                raise NessoError(f"{path} holds no results*.json file (lm-eval writes results_<date>.json, "
                                 "`nesso eval lm` writes results.json)")
            out += found
        elif path.is_file():
            out.append(path)
        else:
            raise NessoError(f"{path} does not exist")
    return out


def model_name(results: dict[str, Any], path: Path) -> str:
    nesso = results.get("nesso")
    if isinstance(nesso, dict) and nesso.get("model"):
        return str(nesso["model"])
    config = results.get("config") or {}
    args = config.get("model_args")
    if isinstance(args, dict) and args.get("pretrained"):
        return str(args["pretrained"])
    if isinstance(args, str):
        for part in args.split(","):
            key, _, value = part.partition("=")
            if key.strip() == "pretrained" and value.strip():
                return value.strip()
    return str(config.get("model_name") or path.parent.name or path.stem)


def scores_from(results: dict[str, Any], path: Path) -> dict[str, float]:
    table = results.get("results")
    if not isinstance(table, dict):
        raise NessoError(f"{path} is not an lm-eval results file (no 'results' object)")
    scores: dict[str, float] = {}
    for task, metric in METRICS.items():
        entry = table.get(task)
        if not isinstance(entry, dict):
            continue
        value = entry.get(f"{metric},none")
        if value is None:  # another filter name: take the first one for this metric
            value = next((v for k, v in sorted(entry.items()) if k.split(",")[0] == metric
                          and not k.startswith(f"{metric}_stderr")), None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            scores[task] = float(value)
    return scores


def rows_from_results(paths: list[str], name: str | None = None) -> list[ModelRow]:
    """One row per model: files of the same model (or every file, when ``name`` is given) are merged."""
    rows: dict[str, ModelRow] = {}
    for path in result_files(paths):
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise NessoError(f"cannot read {path} as JSON: {e}") from None
        if not isinstance(results, dict):
            raise NessoError(f"{path} is not an lm-eval results file (not a JSON object)")
        scores = scores_from(results, path)
        if not scores:
            raise NessoError(f"{path} has none of the card's tasks ({', '.join(METRICS)})")
        label = name or model_name(results, path)
        row = rows.setdefault(label, ModelRow(label, origin=str(path)))
        if row.origin != str(path):
            row.origin += f", {path}"
        row.scores.update(scores)
    return list(rows.values())


# ---- rendering --------------------------------------------------------------------------------------------
def _fmt(x: float | Decimal | None, best: bool = False) -> str:
    if x is None:
        return "—"
    text = f"{Decimal(repr(x)) if isinstance(x, float) else x:.4f}"
    return f"**{text}**" if best else text


def _best(values: list[float | Decimal | None]) -> float | Decimal | None:
    present = [Decimal(repr(v)) if isinstance(v, float) else v for v in values if v is not None]
    return max(present) if len(present) > 1 else None  # bold marks the best of several, not a lone value


def _is(value: float | Decimal | None, best: float | Decimal | None) -> bool:
    if value is None or best is None:
        return False
    return (Decimal(repr(value)) if isinstance(value, float) else value) == best


def _label(row: ModelRow) -> str:
    return row.name if row.origin == "card" else f"{row.name} (this run)"


def markdown(rows: list[ModelRow]) -> str:
    out = []
    for lang, title in (("en", "English"), ("it", "Italian")):
        cols = COLUMNS[lang]
        header = [c for _, c in cols] + [f"Avg {lang.upper()}"]
        out += [f"### {title}", "", "| Model | " + " | ".join(f"{h} ↑" for h in header) + " |",
                "|---|" + "---|" * len(header)]
        bests = [_best([r.scores.get(t) for r in rows]) for t, _ in cols] + [_best([r.average(lang) for r in rows])]
        for r in rows:
            values: list[float | Decimal | None] = [r.scores.get(t) for t, _ in cols] + [r.average(lang)]
            out.append(f"| {_label(r)} | " + " | ".join(_fmt(v, _is(v, b)) for v, b in zip(values, bests)) + " |")
        out.append("")
    out += ["### Overall", "", "| Model | Avg EN | Avg IT | Overall ↑ |", "|---|---|---|---|"]
    best = _best([r.overall() for r in rows])
    for r in rows:
        out.append(f"| {_label(r)} | {_fmt(r.average('en'))} | {_fmt(r.average('it'))} | "
                   f"{_fmt(r.overall(), _is(r.overall(), best))} |")
    out.append("")
    sources = [f"- {_label(r)}: {r.origin}" for r in rows if r.origin != "card"]
    out += ["Card rows: " + card_source(), ""]
    if sources:
        out += ["This run's rows come from:", *sources, ""]
    out.append("Metrics: IFEval inst_level_loose_acc; ARC and HellaSwag acc_norm (0-shot); MMLU acc (5-shot). "
               "Averages are unweighted means rounded to 4 decimals; Overall is the mean of the two averages. "
               "— means the task is missing from the results.")
    return "\n".join(out) + "\n"


def chart(rows: list[ModelRow], path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("English", [c for c in COLUMNS["en"]] + [("__avg_en", "Avg EN")]),
              ("Italian", [c for c in COLUMNS["it"]] + [("__avg_it", "Avg IT")]),
              ("Overall", [("__avg_en", "Avg EN"), ("__avg_it", "Avg IT"), ("__overall", "Overall")])]

    def value(r: ModelRow, key: str) -> float:
        v: Any = {"__avg_en": r.average("en"), "__avg_it": r.average("it"), "__overall": r.overall()}.get(
            key, r.scores.get(key))
        return float(v) if v is not None else float("nan")

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), gridspec_kw={"width_ratios": [5, 5, 3]})
    width = 0.8 / max(len(rows), 1)
    for ax, (title, cols) in zip(axes, panels):
        for i, r in enumerate(rows):
            xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(cols))]
            ax.bar(xs, [value(r, k) for k, _ in cols], width, label=_label(r))
        labels = [c if title == "Overall" else c.removesuffix(" EN").removesuffix(" IT") for _, c in cols]
        ax.set_xticks(range(len(cols)), labels, fontsize=8)
        ax.set_title(title)
        top = max((value(r, k) for r in rows for k, _ in cols if value(r, k) == value(r, k)), default=0.0)
        ax.set_ylim(0, max(0.6, top * 1.1))
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("score")
    axes[-1].legend(fontsize=7, loc="upper right")
    fig.suptitle("lm-evaluation-harness: the card's tasks (higher is better)")
    fig.tight_layout()
    path = Path(path)
    try:
        fig.savefig(path, dpi=110)
    except OSError as e:
        raise NessoError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        plt.close(fig)
    return path
