"""The learning-rate grid of notebook 20, checked beyond its edges (outside the notebook, full budget, one thread).

Notebook 20 gives every method the rates (3e-3, 1e-2, 3e-2) and keeps the best on validation per seed. Head only
and prompt tuning picked the top rate on every seed, full fine-tuning the bottom, LoRA the bottom on two seeds.
This script runs notebook 20's own set-up and `run` (its code cells 0, 2, 4, 9, 17 and 19, copied unchanged) at
single rates outside the grid, for the same 5 seeds, and prints validation and test accuracy for each. The
stored output (20_prompt_tuning_grid_check.txt) came from three runs of it, each with a part of RUNS.
Run from the repository root: PTLM_BUDGET=full OMP_NUM_THREADS=1 python docs/measurements/20_prompt_tuning_grid_check.py
"""
# Set-up (the same first cell in every notebook). On Colab or a fresh machine it installs the course
# package and its offline data packages from the repository; after `make lab` it installs nothing.
import importlib.util, subprocess, sys
COURSE_REPO = "https://github.com/ptlm-course/ptlm-course"
if importlib.util.find_spec("ptlm_course") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"ptlm-course @ git+{COURSE_REPO}"], check=True)
from ptlm_course import setup_notebook
device = setup_notebook(seed=0)

import time
from collections import Counter

import matplotlib.pyplot as plt
import torch

from ptlm_course import by_budget
from ptlm_course.attention import (merge_heads, padding_mask, scaled_dot_product_attention, split_heads,
                                   use_fused_attention)
from ptlm_course.bert import BertForSequenceClassification, mean_pool
from ptlm_course.course_models import course_bert
from ptlm_course.data import sentiment_splits
from ptlm_course.finetuning import (classification_loss_fn, count_parameters, encode_examples, freeze_encoder,
                                    make_get_batch, predict)
from ptlm_course.lora import apply_lora
from ptlm_course.prompt_tuning import PrefixAttention, PrefixTuning, PromptTuning
from ptlm_course.runtime import course_seed
from ptlm_course.training import TrainConfig, train

SEED = course_seed()            # PTLM_SEED (default 0): every seed below counts from here
notebook_started = time.perf_counter()

pretrained, tok, info = course_bert(progress=False)
cfg = pretrained.config
splits = sentiment_splits("rotten_tomatoes")
N_TRAIN = by_budget(small=256, full=2560)
N_EVAL = by_budget(small=128, full=None)                 # None: the whole validation and test splits
STEPS = by_budget(small=8, full=80)
BATCH = by_budget(small=16, full=32)
MAX_LENGTH = 48

train_enc = encode_examples(splits["train"][:N_TRAIN], tok, max_length=MAX_LENGTH)
val_enc = encode_examples(splits["validation"][:N_EVAL], tok, max_length=MAX_LENGTH)
test_enc = encode_examples(splits["test"][:N_EVAL], tok, max_length=MAX_LENGTH)
get_batch = make_get_batch(train_enc, batch_size=BATCH)
print(f"the course BERT: {cfg.n_layers} layers, width {cfg.d_model}, {cfg.n_heads} heads, "
      f"{count_parameters(pretrained.bert):,} parameters in the encoder")
print(f"{len(train_enc['labels'])} training sentences, {STEPS} steps of {BATCH}, "
      f"{len(val_enc['labels'])} validation and {len(test_enc['labels'])} test sentences")

def fresh_classifier(seed: int) -> BertForSequenceClassification:
    """The course BERT's encoder with a new, seeded 2-class classifier on the mean of its last hidden states."""
    torch.manual_seed(seed)
    model = BertForSequenceClassification(cfg, num_labels=2, pooling="mean")
    model.bert.load_state_dict(pretrained.bert.state_dict())
    return model


def soft_prompt_logits(model, prompt, input_ids, token_type_ids, attention_mask):
    """A frozen BERT classifier reading the learned prompt (n, C) before the text; logits (B, 2)."""
    B, n = input_ids.shape[0], prompt.shape[0]
    text = model.bert.embeddings(input_ids, token_type_ids)                    # (B, T, C), positions 0..T-1
    x = torch.cat([prompt.expand(B, -1, -1), text], dim=1)                     # (B, n + T, C)
    mask = torch.cat([attention_mask.new_ones(B, n), attention_mask], dim=1)   # (B, n + T)
    for block in model.bert.blocks:
        x = block(x, mask=padding_mask(mask))                                  # (B, n + T, C)
    pooled = mean_pool(x[:, n:], attention_mask)                               # (B, C): the text's outputs only
    return model.classifier(model.dropout(pooled))                             # (B, 2)


example = {k: v[:4] for k, v in encode_examples(splits["train"][:4], tok, max_length=MAX_LENGTH).items()}
inputs = {k: example[k] for k in ("input_ids", "token_type_ids", "attention_mask")}
tuned = PromptTuning(fresh_classifier(SEED).eval(), n_prompt=5, seed=SEED)
with torch.no_grad():
    ours = soft_prompt_logits(tuned.model, tuned.prompt, **inputs)
    theirs = tuned(**inputs).logits
print("ours == the package's PromptTuning:", torch.allclose(ours, theirs, atol=1e-6))
print("trainable:", [name for name, p in tuned.named_parameters() if p.requires_grad])
print(f"trainable numbers: {count_parameters(tuned, trainable_only=True):,} = 5 x {cfg.d_model} (prompt) "
      f"+ {count_parameters(tuned.model.classifier):,} (classifier)")

C = cfg.d_model
N_PROMPT, N_PREFIX, HIDDEN = 20, 10, 128
direct = PrefixTuning(fresh_classifier(SEED), n_prefix=N_PREFIX)
through_mlp = PrefixTuning(fresh_classifier(SEED), n_prefix=N_PREFIX, reparam_hidden=HIDDEN)
head = count_parameters(direct.model.classifier)
L = len(direct.names)
print(f"prompt tuning, n = {N_PROMPT}:        {N_PROMPT * C:>7,d} prompt numbers   (n x C)")
print(f"prefix tuning, n = {N_PREFIX}, direct:   {count_parameters(direct, True) - head:>7,d} prefix numbers   "
      f"(L x 2 x n x C = {L} x 2 x {N_PREFIX} x {C})")
print(f"prefix tuning, through the MLP: {count_parameters(through_mlp, True) - head:>7,d} trained while training, "
      f"{count_parameters(through_mlp.bake(), True) - head:,} kept after bake()")
print(f"(plus the classifier's {head} numbers in each)")

GRID = (3e-3, 1e-2, 3e-2)
SEEDS = [SEED + k for k in range(by_budget(small=2, full=5))]


def with_lora(seed):
    model = fresh_classifier(seed)
    apply_lora(model, targets=("q_proj", "v_proj"), rank=8, alpha=16.0)
    return model


METHODS = {
    "head only": lambda seed: freeze_encoder(fresh_classifier(seed), train_top_layers=0),
    "prompt tuning": lambda seed: PromptTuning(fresh_classifier(seed), n_prompt=N_PROMPT, seed=seed),
    "prefix tuning": lambda seed: PrefixTuning(fresh_classifier(seed), n_prefix=N_PREFIX, reparam_hidden=HIDDEN),
    "LoRA": with_lora,
    "full fine-tuning": fresh_classifier,
}


def accuracy(model, encoded) -> float:
    return (predict(model, encoded)[0] == encoded["labels"]).float().mean().item()


def run(build, seed) -> dict:
    """Train a fresh build(seed) at every rate of GRID; keep the best on validation, score it on test."""
    runs = []
    for lr in GRID:
        model = use_fused_attention(build(seed))            # PyTorch's kernel (notebook 15): faster, same function
        train(model, TrainConfig(steps=STEPS, lr=lr, warmup_steps=max(1, STEPS // 10), eval_batches=0, seed=seed,
                                 progress=False), get_batch, classification_loss_fn)
        runs.append({"lr": lr, "val": accuracy(model, val_enc), "model": model})
    best = max(runs, key=lambda r: r["val"])
    return {"seed": seed, "lr": best["lr"], "val": best["val"], "test": accuracy(best["model"], test_enc),
            "trainable": count_parameters(best["model"], trainable_only=True)}





RUNS = {"head only": (1e-2, 3e-2, 1e-1, 3e-1), "prompt tuning": (1e-2, 3e-2, 1e-1, 3e-1),
        "prefix tuning": (3e-3, 1e-1), "LoRA": (1e-3, 3e-3, 1e-2, 3e-2), "full fine-tuning": (1e-3, 3e-3, 1e-2)}
for seed in SEEDS:
    for name, lrs in RUNS.items():
        vals = []
        for lr in lrs:
            GRID = (lr,)
            r = run(METHODS[name], seed)
            vals.append(f"{lr:g}: val {100*r['val']:.1f} test {100*r['test']:.1f}")
        print(seed, name, " | ".join(vals), flush=True)
