"""nesso models inside lm-evaluation-harness: scoring equals a direct computation, local tasks run end to end
through ``simple_evaluate``, generation goes through the chat template and the engine, and missing hub datasets
are reported before anything runs."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance  # noqa: E402

from nesso.cli import main  # noqa: E402
from nesso.engine import Engine, SamplingParams  # noqa: E402
from nesso.errors import NessoError  # noqa: E402
from nesso.eval import lm as nlm  # noqa: E402
from nesso.eval import table  # noqa: E402

MC_EN = [
    {"question": "The capital of Italy is", "choices": ["Rome", "Paris", "Berlin", "Madrid"], "answer": 0},
    {"question": "Two plus two equals", "choices": ["three", "four", "five", "six"], "answer": 1},
    {"question": "Water freezes at zero degrees", "choices": ["Celsius", "Kelvin", "Fahrenheit"], "answer": 0},
]
MC_IT = [
    {"question": "La capitale della Francia è", "choices": ["Roma", "Parigi", "Berlino", "Madrid"], "answer": 1},
    {"question": "Il gatto dice", "choices": ["miao", "bau", "muu"], "answer": 0},
]
# google/IFEval layout (what mii-llm/ifeval-ita uses), with checkers that need no NLTK data files
IFEVAL_ROWS = [
    {"key": 1, "prompt": "Scrivi una frase sul mare senza usare virgole.",
     "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
    {"key": 2, "prompt": "Descrivi Roma e usa la parola 'sole'.",
     "instruction_id_list": ["keywords:existence", "punctuation:no_comma"], "kwargs": [{"keywords": ["sole"]}, {}]},
]


@pytest.fixture(scope="module")
def lm(llama_tokenizer):
    from nesso.config import ModelConfig
    from nesso.model import build_model

    cfg = ModelConfig(hidden_size=64, intermediate_size=160, num_layers=2, num_heads=4, num_kv_heads=2,
                      head_dim=16, max_position_embeddings=512)
    return nlm.NessoLM(model=build_model(cfg, seed=3), tokenizer=llama_tokenizer, batch_size=3, max_gen_toks=6)


def direct_logprob(lm, context: str, continuation: str) -> float:
    ctx, cont = lm._encode_pair(context, continuation)
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = lm.model(ids)[0].float().log_softmax(-1)
    return float(sum(logp[len(ctx) - 1 + j, t] for j, t in enumerate(cont)))


def test_loglikelihood_equals_a_direct_computation_in_any_batch(lm):
    pairs = [("The capital of Italy is", " Rome"), ("The capital of Italy is", " Paris"),
             ("Un testo italiano piuttosto lungo, con parecchie parole prima della risposta:", " sì davvero"),
             ("Short", " continuation of several tokens here")]
    reqs = [Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)]
    batched = lm.loglikelihood(reqs, disable_tqdm=True)
    for (ctx, cont), (score, greedy) in zip(pairs, batched):
        assert score == pytest.approx(direct_logprob(lm, ctx, cont), abs=1e-4)
        assert isinstance(greedy, bool)
    lm.batch_size = 1  # no padding at all: the same numbers
    try:
        single = lm.loglikelihood(reqs, disable_tqdm=True)
    finally:
        lm.batch_size = 3
    assert [s for s, _ in single] == pytest.approx([s for s, _ in batched], abs=1e-4)
    # is_greedy is True exactly when the model's argmax continues with the continuation
    ctx = lm.tok_encode("The capital of Italy is")
    with torch.no_grad():
        best = int(lm.model(torch.tensor([ctx]))[0, -1].argmax())
    (score, greedy), = lm.loglikelihood([Instance("loglikelihood", {}, ("The capital of Italy is",
                                                                         lm.tok.decode([best])), 0)], True)
    assert greedy is True


def test_loglikelihood_rolling_scores_the_whole_text(lm):
    text = "Nel mezzo del cammin di nostra vita mi ritrovai per una selva oscura."
    (total,) = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)], disable_tqdm=True)
    ids = [lm.prefix_token_id] + lm.tok_encode(text)
    with torch.no_grad():
        logp = lm.model(torch.tensor([ids]))[0].float().log_softmax(-1)
    expected = float(sum(logp[i, ids[i + 1]] for i in range(len(ids) - 1)))
    assert total == pytest.approx(expected, abs=1e-4)


def write_mc_task(tmp_path, name: str, rows: list[dict]) -> None:
    data = tmp_path / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / f"{name}.yaml").write_text(
        f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
        "output_type: multiple_choice\ntest_split: test\ndoc_to_text: \"{{question}}\"\n"
        "doc_to_choice: \"{{choices}}\"\ndoc_to_target: answer\nmetric_list:\n"
        "  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        "  - metric: acc_norm\n    aggregation: mean\n    higher_is_better: true\n")


def test_local_multiple_choice_tasks_run_end_to_end(lm, tmp_path, capsys):
    # Named like the card's ARC columns so the result file also feeds `nesso eval table`.
    write_mc_task(tmp_path, "arc_challenge", MC_EN)
    write_mc_task(tmp_path, "arc_it", MC_IT)
    results = nlm.evaluate(lm, ["arc_challenge", "arc_it"], include_path=[str(tmp_path)], include_defaults=False,
                           log_samples=True, check=False)
    for task, rows in (("arc_challenge", MC_EN), ("arc_it", MC_IT)):
        samples = results["samples"][task]
        assert len(samples) == len(rows)
        correct = 0
        for s in samples:
            doc = s["doc"]
            scores = [r[0][0] for r in s["resps"]]
            direct = [direct_logprob(lm, doc["question"], " " + c) for c in doc["choices"]]
            assert scores == pytest.approx(direct, abs=1e-4)
            correct += int(max(range(len(direct)), key=direct.__getitem__) == doc["answer"])
        assert results["results"][task]["acc,none"] == pytest.approx(correct / len(rows))
    path = nlm.write_results(results, tmp_path / "out")
    row = table.rows_from_results([str(path)], name="tiny")[0]
    assert set(row.scores) == {"arc_challenge", "arc_it"}
    assert row.scores["arc_it"] == results["results"]["arc_it"]["acc_norm,none"]


def test_ifeval_ita_task_generates_with_the_chat_template_and_scores_like_ifeval(lm, tmp_path):
    data = tmp_path / "ifeval_ita.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in IFEVAL_ROWS), encoding="utf-8")
    (tmp_path / "local.yaml").write_text(
        f"include: {nlm.TASKS_DIR / 'ifeval_ita' / 'ifeval_ita.yaml'}\ntask: ifeval-ita-local\n"
        f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    train: {data}\n"
        "generation_kwargs:\n  until: []\n  do_sample: false\n  max_gen_toks: 6\n")
    results = nlm.evaluate(lm, ["ifeval-ita-local"], include_path=[str(tmp_path)], include_defaults=False,
                           log_samples=True, check=False)
    assert results["nesso"]["runs"][0]["chat"] is True
    engine = Engine(lm.model, lm.tok)
    for s in results["samples"]["ifeval-ita-local"]:
        prompt = lm.tok.apply_chat_template([{"role": "user", "content": s["doc"]["prompt"]}],
                                            add_generation_prompt=True)
        assert s["arguments"][0][0] == prompt
        expected = engine.generate(prompt, SamplingParams(max_tokens=6)).text
        assert s["resps"][0][0] == expected
    metrics = results["results"]["ifeval-ita-local"]
    assert 0.0 <= metrics["inst_level_loose_acc,none"] <= 1.0
    # the scoring functions are upstream ifeval's own
    import importlib.util

    from lm_eval.tasks.ifeval import utils as upstream

    spec = importlib.util.spec_from_file_location("ifeval_ita_utils", nlm.TASKS_DIR / "ifeval_ita" / "utils.py")
    ours = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ours)
    assert ours.process_results is upstream.process_results
    row = IFEVAL_ROWS[1]
    assert ours.process_results(row, ["Roma ha sempre il sole"])["inst_level_loose_acc"] == [True, True]
    assert ours.process_results(row, ["Roma, la città eterna"])["inst_level_loose_acc"] == [False, False]


def test_card_runs_use_the_cards_shots_and_chat_template_only_for_ifeval():
    runs = nlm.plan_runs(nlm.parse_tasks("card"))
    by = {tuple(sorted(r.tasks)): (r.num_fewshot, r.chat) for r in runs}
    assert by == {("m_mmlu_it", "mmlu"): (5, False),
                  ("arc_challenge", "arc_it", "hellaswag", "hellaswag_it"): (0, False),
                  ("ifeval", "ifeval-ita"): (0, True)}
    assert all(not r.chat for r in nlm.plan_runs(nlm.parse_tasks("card"), "none"))
    assert nlm.parse_tasks("arc_easy,card,arc_easy")[0] == "arc_easy" and len(nlm.parse_tasks("card,arc_easy")) == 9
    with pytest.raises(NessoError, match="--tasks is empty"):
        nlm.parse_tasks(" , ")


def test_bad_model_args_are_clear_errors(lm):
    with pytest.raises(NessoError, match="unknown model_args for the nesso model: dtyp"):
        nlm.NessoLM(model=lm.model, tokenizer=lm.tok, dtyp="float32")
    with pytest.raises(NessoError, match="longer than the model's context"):
        nlm.NessoLM(model=lm.model, tokenizer=lm.tok, max_length=100_000)
    with pytest.raises(NessoError, match="batch_size must be"):
        nlm.NessoLM(model=lm.model, tokenizer=lm.tok, batch_size="many")


def test_offline_without_cached_datasets_says_which_are_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)
    assert not nlm.hub_reachable()
    (tmp_path / "hub" / "datasets--google--IFEval").mkdir(parents=True)  # one of them is cached
    with pytest.raises(NessoError) as err:
        nlm.check_datasets(nlm.parse_tasks("card"), None, online=False)
    message = str(err.value)
    assert "mii-llm/ifeval-ita" in message and "alexandrainst/m_mmlu" in message and "cais/mmlu" in message
    assert "google/IFEval" not in message
    nlm.check_datasets(["ifeval"], None, online=False)  # cached: fine
    nlm.check_datasets(nlm.parse_tasks("card"), None, online=True)  # online: nothing to check
    # the command stops before loading a model or running anything
    assert main(["eval", "lm", "default", "--tasks", "card", "--output", str(tmp_path / "o")]) == 2
    assert "not reachable" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
