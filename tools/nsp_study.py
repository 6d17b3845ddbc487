"""Why does next-sentence prediction stay at chance in the course BERT (notebook 07)? A side study.

    python tools/nsp_study.py                  # about 5 minutes on a 2-core CPU
    python tools/nsp_study.py --steps 3000     # NSP alone for as long as the course BERT trains

Three measurements on exactly the pairs the course recipe trains and evaluates on (``bert_get_batch``:
speeches of the training plays, held-out pairs from the held-out plays):

1. a **surface baseline**: logistic regression on seven hand-made features of a pair (how many of B's words
   occur in A and the other way round, whether they share any word, the two lengths, question marks). If this
   beats chance, the pairs carry a learnable signal that needs no understanding of the text;
2. the cached **course BERT** (masked LM + NSP, notebook 07's recipe): its held-out NSP accuracy;
3. the same architecture trained on **NSP alone** (no masked LM), same data, optimiser and learning rate, for
   ``--steps`` steps: does the joint loss starve NSP, or can the model not learn it at all?

Held-out accuracies are over ``--eval-batches`` × 32 pairs; the study prints a binomial standard error next to
each, since a few points around 50% are within noise for 960 pairs.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import time

import torch
import torch.nn.functional as F

from ptlm_course import metrics
from ptlm_course.course_models import bert_get_batch, bert_recipe, build_bert, course_bert, split_plays
from ptlm_course.pretraining_data import make_nsp_examples
from ptlm_course.training import TrainConfig, evaluate, train

FEATURES = ("B's words found in A", "A's words found in B", "any shared word", "log length A", "log length B",
            "B ends with ?", "A ends with ?")


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


def pair_features(text_a: str, text_b: str) -> list[float]:
    """Seven surface features of one NSP pair (see FEATURES)."""
    a, b = _words(text_a), _words(text_b)
    shared = len(a & b)
    return [shared / max(1, len(b)), shared / max(1, len(a)), float(shared > 0), math.log1p(len(a)),
            math.log1p(len(b)), float(text_b.rstrip().endswith("?")), float(text_a.rstrip().endswith("?"))]


def surface_baseline(train_pairs, val_pairs) -> tuple[float, float]:
    """(train accuracy, held-out accuracy) of a logistic regression on :func:`pair_features`."""
    def tensors(pairs):
        x = torch.tensor([pair_features(p.text_a, p.text_b) for p in pairs])             # (N, 7)
        y = torch.tensor([float(not p.is_next) for p in pairs])                           # 1 = random B
        return x, y
    (x_tr, y_tr), (x_va, y_va) = tensors(train_pairs), tensors(val_pairs)
    mean, std = x_tr.mean(0), x_tr.std(0) + 1e-6
    x_tr, x_va = (x_tr - mean) / std, (x_va - mean) / std
    w = torch.zeros(x_tr.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], max_iter=200)

    def closure():
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x_tr @ w + b, y_tr)
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        def accuracy(x, y):
            return ((x @ w + b > 0).float() == y).float().mean().item()
        return accuracy(x_tr, y_tr), accuracy(x_va, y_va)


def nsp_only_loss(model, batch):
    """The NSP cross-entropy alone (the masked-LM head is never used)."""
    out = model.bert(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    logits = model.nsp_head(out.pooled)                                                   # (B, 2)
    loss = F.cross_entropy(logits, batch["nsp_labels"])
    return loss, {"nsp_acc": metrics.accuracy(logits, batch["nsp_labels"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000, help="steps of the NSP-only run")
    parser.add_argument("--eval-batches", type=int, default=30, help="held-out batches of 32 pairs")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    recipe = bert_recipe()                                     # PTLM_BUDGET's recipe (default: full)
    train_plays, val_plays = split_plays()
    train_pairs = make_nsp_examples(train_plays, recipe.n_pairs, generator=recipe.seed)      # the recipe's pairs
    val_pairs = make_nsp_examples(val_plays, recipe.n_val_pairs, generator=recipe.seed + 1)
    n_eval = args.eval_batches * recipe.batch_size
    se = 100 * math.sqrt(0.25 / n_eval)
    results = {"eval_pairs": n_eval, "chance_standard_error": se / 100}

    fit, held_out = surface_baseline(train_pairs, val_pairs)
    results["surface_baseline"] = {"train": fit, "held_out": held_out, "held_out_pairs": len(val_pairs)}
    print(f"surface baseline (logistic regression on {len(FEATURES)} overlap/length features): "
          f"train {fit:.1%}, held-out {held_out:.1%} on {len(val_pairs)} pairs", flush=True)

    bert, tok, info = course_bert(progress=False)
    get_batch = bert_get_batch(recipe, tok)
    course = evaluate(bert, get_batch, nsp_only_loss, args.eval_batches)["val_nsp_acc"]
    results["course_bert"] = course
    print(f"course BERT (masked LM + NSP, {info['recipe']['steps']} steps): held-out NSP accuracy {course:.1%} "
          f"(chance 50%, one standard error {se:.1f} points)", flush=True)

    model = build_bert(recipe, tok.vocab_size)
    started = time.perf_counter()
    history = train(model, TrainConfig(steps=args.steps, lr=recipe.lr,
                                       warmup_steps=min(recipe.warmup_steps, args.steps // 2),
                                       weight_decay=recipe.weight_decay, eval_every=max(1, args.steps // 4),
                                       eval_batches=args.eval_batches, seed=recipe.seed, progress=False),
                    get_batch, nsp_only_loss)
    curve = [(r["step"], r["val_nsp_acc"]) for r in history.eval]
    results["nsp_only"] = {"steps": args.steps, "seconds": time.perf_counter() - started, "held_out": curve}
    print(f"NSP alone, {args.steps} steps ({results['nsp_only']['seconds']:.0f} s): held-out NSP accuracy "
          + ", ".join(f"{a:.1%} at step {s}" for s, a in curve), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
