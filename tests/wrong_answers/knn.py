"""Answers to the checks of notebook 10 (k nearest neighbours on frozen embeddings; the experiment)."""
import torch
import torch.nn.functional as F

from ptlm_course.checks.pretrained import KS, knn_setup

from ._registry import correct, wrong


def _vote(neighbour_labels, tie="nearest"):
    out = []
    for row in neighbour_labels.tolist():
        counts = {label: row.count(label) for label in row}
        top = max(counts.values())
        out.append(next(label for label in row if counts[label] == top) if tie == "nearest"
                   else min(label for label in counts if counts[label] == top))
    return torch.tensor(out)


@correct("check_knn_predict")
def knn_argsort(train_emb, train_labels, query_emb, k):
    sim = F.cosine_similarity(query_emb[:, None, :], train_emb[None, :, :], dim=-1)   # (Q, N)
    order = sim.argsort(dim=-1, descending=True)[:, :k]
    return _vote(train_labels[order])


@correct("check_knn_predict")
def knn_per_query(train_emb, train_labels, query_emb, k):
    t = train_emb / train_emb.norm(dim=1, keepdim=True)
    preds = []
    for q in query_emb:
        sims = t @ (q / q.norm())
        idx = torch.topk(sims, k).indices
        preds.append(int(_vote(train_labels[idx][None])[0]))
    return torch.tensor(preds)


@wrong("check_knn_predict", "dot products")
def knn_dot(train_emb, train_labels, query_emb, k):
    return _vote(train_labels[(query_emb @ train_emb.T).topk(k, dim=-1).indices])


@wrong("check_knn_predict", "LEAST similar")
def knn_ascending(train_emb, train_labels, query_emb, k):
    sim = F.normalize(query_emb, dim=-1) @ F.normalize(train_emb, dim=-1).T
    return _vote(train_labels[sim.argsort(dim=-1)[:, :k]])


@wrong("check_knn_predict", "k + 1")
def knn_one_too_many(train_emb, train_labels, query_emb, k):
    sim = F.normalize(query_emb, dim=-1) @ F.normalize(train_emb, dim=-1).T
    return _vote(train_labels[sim.topk(k + 1, dim=-1).indices])


@wrong("check_knn_predict", "nearest neighbour only")
def knn_one_neighbour(train_emb, train_labels, query_emb, k):
    sim = F.normalize(query_emb, dim=-1) @ F.normalize(train_emb, dim=-1).T
    return train_labels[sim.argmax(dim=-1)]


@wrong("check_knn_predict", "tie went to the smaller label")
def knn_bincount_ties(train_emb, train_labels, query_emb, k):
    sim = F.normalize(query_emb, dim=-1) @ F.normalize(train_emb, dim=-1).T
    return _vote(train_labels[sim.topk(k, dim=-1).indices], tie="smallest")


def _experiment(predict=knn_argsort, best=None, conclusion=None):
    (tr, tl), (va, vl) = knn_setup()
    acc = {k: (predict(tr, tl, va, k) == vl).float().mean().item() for k in KS}
    best_k = max(KS, key=lambda k: (acc[k], -k)) if best is None else best
    majority = max((vl == c).float().mean().item() for c in (0, 1))
    return {**{f"accuracy_k{k}": a for k, a in acc.items()}, "best_k": best_k,
            "beats_majority": acc[best_k] > majority + 0.05 if conclusion is None else conclusion}


@correct("check_knn_experiment")
def experiment_ok():
    return _experiment()


@wrong("check_knn_experiment", "re-running the experiment")
def experiment_with_dot_products():
    return _experiment(predict=knn_dot)


@wrong("check_knn_experiment", "best validation accuracy")
def experiment_first_k():
    return _experiment(best=KS[0] if _experiment()["best_k"] != KS[0] else KS[-1])


@wrong("check_knn_experiment", "majority class")
def experiment_wrong_conclusion():
    out = _experiment()
    out["beats_majority"] = not out["beats_majority"]
    return out


@wrong("check_knn_experiment", "as percentages")
def experiment_percentages():
    out = _experiment()
    return {k: (100 * v if k.startswith("accuracy") else v) for k, v in out.items()}
