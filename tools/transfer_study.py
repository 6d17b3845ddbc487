"""Does the course's small BERT gain from its pretraining? Two side studies.

    python tools/transfer_study.py --task punctuation --seeds 5 --seed-offset 0 --json out.json
                                                                       # the in-domain few-label task (notebook 09)
    python tools/transfer_study.py                                     # review text, 3,000 steps (17 min, 2 cores)
    python tools/transfer_study.py --steps 12000                       # 4x the pretraining (about 27 min)
    python tools/transfer_study.py --corpus shakespeare                # notebook 07's course BERT (cached)
    python tools/transfer_study.py --corpus shakespeare --steps 12000  # its recipe, 4x the steps

``--task punctuation`` runs notebook 09's learning curve: punctuation restoration on held-out plays, the
cached course BERT against the same architecture from scratch, each start's learning rate picked on validation
(``ptlm_course.transfer``), ``--seeds`` seeds from ``--seed-offset`` on, and writes ``{"task", "metric",
"results": [{"labels", "start", "seed", "score"}, ...]}`` to ``--json``.

Without ``--task``: notebooks 09 and 14 find that the course BERT (2 layers, 128 wide, pretrained for about 3 minutes on
Shakespeare) does not beat the same architecture trained from scratch on Rotten Tomatoes. This script asks
whether the corpus or the compute is to blame. With ``--corpus imdb`` it pretrains the same architecture, with
the same optimiser, on in-domain text instead: IMDb reviews with their labels dropped (Rotten Tomatoes is never
seen), cut into 64-token windows, masked LM only, with a WordPiece vocabulary learned from those reviews. With
``--corpus shakespeare`` it uses the course BERT's own recipe (masked LM + NSP on Shakespeare), with ``--steps``
steps. Then it fine-tunes exactly as notebook 09 does (400 steps, lr 1e-3, early stopping on validation
accuracy), pretrained against scratch with the same vocabulary, for both heads ([CLS] and mean pooling), with
all and with 10% of the training labels, over several seeds, and prints test accuracies. README quotes its results.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from ptlm_course import metrics
from ptlm_course.bert import BertConfig, BertForPreTraining, BertForSequenceClassification
from ptlm_course.course_models import bert_recipe, build_bert, course_bert
from ptlm_course.data import sentiment_splits
from ptlm_course.finetuning import classification_loss_fn, encode_examples, make_eval_fn, make_get_batch, predict
from ptlm_course.pretraining_data import IGNORE_INDEX, mask_tokens
from ptlm_course.training import TrainConfig, train
from ptlm_course.wordpiece import WordPieceTokenizer, train_wordpiece_vocab

MAX_LENGTH = 64


def review_bert(n_reviews: int, steps: int, seed: int = 0) -> tuple[BertForPreTraining, WordPieceTokenizer, dict]:
    """The course BERT's architecture and optimiser, pretrained with masked LM on IMDb review text."""
    recipe = replace(bert_recipe("full"), steps=steps, seed=seed)     # size, lr, batch, masking: the course's
    texts = [e.text for e in sentiment_splits("imdb")["train"][:n_reviews]]
    tok = WordPieceTokenizer(train_wordpiece_vocab(texts, 4000))
    ids: list[int] = []
    for text in texts:                                           # one stream, reviews separated by [SEP]
        ids += tok.convert_tokens_to_ids(tok.tokenize(text)) + [tok.sep_id]
    corpus = torch.tensor(ids)                                   # (N,)
    n_val = min(50_000, len(corpus) // 10)                     # held-out text for the MLM accuracy
    streams = {"train": corpus[:-n_val], "val": corpus[-n_val:]}

    def get_batch(split: str, generator: torch.Generator) -> dict:
        stream, B, T = streams[split], recipe.batch_size, recipe.max_length
        starts = torch.randint(len(stream) - T + 2, (B,), generator=generator)
        body = torch.stack([stream[s:s + T - 2] for s in starts])                             # (B, T-2)
        x = torch.cat([torch.full((B, 1), tok.cls_id), body, torch.full((B, 1), tok.sep_id)], 1)   # (B, T)
        masked, labels = mask_tokens(x, tok.special_ids, tok.vocab_size, tok.mask_id, recipe.mask_prob,
                                     generator=generator)
        return {"input_ids": masked, "token_type_ids": torch.zeros_like(x), "attention_mask": torch.ones_like(x),
                "mlm_labels": labels}

    def mlm_loss(model: BertForPreTraining, batch: dict):
        hidden = model.bert(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]).last_hidden_state
        chosen = batch["mlm_labels"] != IGNORE_INDEX                                         # (B, T)
        logits, labels = model.mlm_head(hidden[chosen]), batch["mlm_labels"][chosen]
        return F.cross_entropy(logits, labels), {"mlm_acc": metrics.masked_accuracy(logits, labels)}

    model = build_bert(recipe, tok.vocab_size)                  # seeded with `seed`
    started = time.perf_counter()
    config = TrainConfig(steps=steps, lr=recipe.lr, warmup_steps=min(recipe.warmup_steps, steps // 10),
                         weight_decay=recipe.weight_decay, eval_every=max(1, steps // 5), eval_batches=20, seed=seed,
                         progress=False)
    history = train(model, config, get_batch, mlm_loss)
    info = {"tokens": len(corpus), "seconds": time.perf_counter() - started, "final": history.eval[-1]}
    return model.eval(), tok, info


def fine_tune(config: BertConfig, body_state: dict | None, data: dict, seed: int, pooling: str,
              label_fraction: float, full_steps: int = 400) -> float:
    """Notebook 09's full fine-tune (half the steps on 10% of the labels); returns test accuracy."""
    n = round(len(data["train"]["labels"]) * label_fraction)
    train_data = {k: v[:n] for k, v in data["train"].items()}
    steps = full_steps if label_fraction == 1.0 else full_steps // 2
    eval_every = max(1, steps // 8)
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config, num_labels=2, pooling=pooling)
    if body_state is not None:
        model.bert.load_state_dict(body_state)
    train(model, TrainConfig(steps=steps, lr=1e-3, warmup_steps=steps // 10, weight_decay=0.01,
                             eval_every=eval_every, early_stopping_patience=4, early_stopping_metric="val_accuracy",
                             early_stopping_mode="max", seed=seed, progress=False),
          make_get_batch(train_data, data["val"], batch_size=32), classification_loss_fn,
          eval_fn=make_eval_fn(data["val"]))
    preds, _ = predict(model, data["test"])
    return (preds == data["test"]["labels"]).float().mean().item()


def punctuation_study(args) -> None:
    """Notebook 09's few-label learning curve on the punctuation task, for any seeds."""
    from ptlm_course.punctuation import punctuation_splits
    from ptlm_course.transfer import TaggerRecipe, label_budget_curve, summarise

    model, tok, info = course_bert(progress=False)                  # PTLM_BUDGET's course BERT (default: full)
    seeds = range(args.seed_offset, args.seed_offset + args.seeds)
    splits = punctuation_splits()
    if args.eval_passages:                                        # a quicker, noisier look (the smoke test)
        splits = {**splits, "validation": splits["validation"][:args.eval_passages],
                  "test": splits["test"][:args.eval_passages]}
    started = time.perf_counter()
    rows = label_budget_curve(model.config, model.bert.state_dict(), splits, tok,
                              args.budgets, seeds, TaggerRecipe(steps=args.finetune_steps or TaggerRecipe.steps))
    print(f"{time.perf_counter() - started:.0f} s")
    for (n, start), s in summarise(rows).items():
        print(f"{n:>6} labels {start:>10}: mean {s['mean']:.3f} (min {s['min']:.3f}, max {s['max']:.3f}), "
              f"lr {s['lr']:.0e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"task": "punctuation", "metric": "macro-F1 over the six marks, test plays",
                       "args": vars(args), "results": rows}, f, indent=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=("sentiment", "punctuation"), default="sentiment",
                        help="punctuation: notebook 09's in-domain few-label task; sentiment (default): "
                             "README's corpus-or-compute table")
    parser.add_argument("--seed-offset", type=int, default=0, help="first seed (punctuation task)")
    parser.add_argument("--eval-passages", type=int, default=None,
                        help="punctuation task: score on only this many validation and test passages")
    parser.add_argument("--budgets", type=lambda s: tuple(int(x) for x in s.split(",")), default=(50, 200, 1000),
                        help="label budgets of the punctuation task, comma-separated")
    parser.add_argument("--corpus", choices=("imdb", "shakespeare"), default="imdb")
    parser.add_argument("--reviews", type=int, default=8000, help="IMDb training reviews to pretrain on")
    parser.add_argument("--steps", type=int, default=3000, help="pretraining steps (the course BERT: 3,000)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--finetune-steps", type=int, default=None, help="fine-tuning steps: with all labels "
                        "for sentiment (default 400; half of them with 10%% of the labels), per run for punctuation")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's, which follows OMP_NUM_THREADS; 2 on the course's CPU)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.task == "punctuation":
        return punctuation_study(args)
    args.finetune_steps = args.finetune_steps or 400

    if args.corpus == "imdb":
        pretrained, tok, info = review_bert(args.reviews, args.steps)
        print(f"pretrained on {info['tokens']:,} review tokens for {args.steps} steps in {info['seconds']:.0f} s; "
              f"held-out MLM accuracy {info['final']['val_mlm_acc']:.1%}", flush=True)
    else:
        recipe = replace(bert_recipe("full"), steps=args.steps, eval_every=max(1, args.steps // 10))
        pretrained, tok, info = course_bert(progress=False, recipe=recipe)     # 3,000 steps: notebook 07's model
        print(f"the course BERT's recipe, {args.steps} steps (trained in {info['train_seconds']:.0f} s): "
              f"held-out MLM accuracy {info['final']['val_mlm_acc']:.1%}", flush=True)

    splits = sentiment_splits("rotten_tomatoes")
    data = {"train": encode_examples(splits["train"], tok, MAX_LENGTH),
            "val": encode_examples(splits["validation"], tok, MAX_LENGTH),
            "test": encode_examples(splits["test"], tok, MAX_LENGTH)}
    body = pretrained.bert.state_dict()
    results = []
    print(f"{'labels':>6s} {'head':>5s} {'start':>10s}  test accuracy per seed -> mean", flush=True)
    for fraction in (1.0, 0.1):
        for pooling in ("mean", "cls"):
            for start, state in (("scratch", None), ("pretrained", body)):
                accs = [fine_tune(pretrained.config, state, data, seed, pooling, fraction, args.finetune_steps)
                        for seed in range(args.seeds)]
                results.append({"labels": fraction, "pooling": pooling, "start": start, "test_accuracy": accs})
                print(f"{fraction:>6.0%} {pooling:>5s} {start:>10s}  {' '.join(f'{a:.3f}' for a in accs)} -> "
                      f"{sum(accs) / len(accs):.3f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "pretraining": {k: v for k, v in info.items() if k != "history"},
                       "results": results}, f, indent=1, default=str)


if __name__ == "__main__":
    main()
