"""Answers to the checks of notebooks 11 (GPT heads and losses) and 13 (coverage, experiments)."""
import functools

import torch
import torch.nn.functional as F

from ptlm_course.checks.adaptation import continued_mlm, coverage_setup, held_out_losses, lr_sweep_setup

from ._registry import correct, wrong

# ------------------------------------------------------------------------------------ mean-pooled GPT head


@correct("check_mean_pooled_logits")
def pooled_per_row(gpt_body, classifier, input_ids, attention_mask):
    out = []
    for ids, mask in zip(input_ids, attention_mask):
        n = int(mask.sum().item())
        out.append(gpt_body.hidden_states(ids[:n].unsqueeze(0))[0].mean(dim=0))
    return classifier(torch.stack(out))


@correct("check_mean_pooled_logits")
def pooled_einsum(gpt_body, classifier, input_ids, attention_mask):
    h = gpt_body.hidden_states(input_ids)
    w = attention_mask.float() / attention_mask.sum(-1, keepdim=True)
    return classifier(torch.einsum("bt,btc->bc", w, h))


@correct("check_mean_pooled_logits")
def pooled_mean_of_logits(gpt_body, classifier, input_ids, attention_mask):
    logits = classifier(gpt_body.hidden_states(input_ids))                   # (B, T, K): linear, so the mean commutes
    m = attention_mask[..., None].float()
    return (logits * m).sum(1) / m.sum(1)


@wrong("check_mean_pooled_logits", "padding included")
def pooled_plain_mean(gpt_body, classifier, input_ids, attention_mask):
    return classifier(gpt_body.hidden_states(input_ids).mean(dim=1))


@wrong("check_mean_pooled_logits", "padding included")
def pooled_by_pad_id(gpt_body, classifier, input_ids, attention_mask):
    m = (input_ids != 0).float().unsqueeze(-1)                               # assumes [PAD] is id 0
    h = gpt_body.hidden_states(input_ids)
    return classifier((h * m).sum(1) / m.sum(1))


@wrong("check_mean_pooled_logits", "not the mean")
def pooled_sum(gpt_body, classifier, input_ids, attention_mask):
    h = gpt_body.hidden_states(input_ids) * attention_mask.unsqueeze(-1)
    return classifier(h.sum(1))


@wrong("check_mean_pooled_logits", "padded length")
def pooled_divide_T(gpt_body, classifier, input_ids, attention_mask):
    h = gpt_body.hidden_states(input_ids) * attention_mask.unsqueeze(-1)
    return classifier(h.mean(1))


@wrong("check_mean_pooled_logits", "last real token")
def pooled_lesson_head(gpt_body, classifier, input_ids, attention_mask):
    h = gpt_body.hidden_states(input_ids)
    return classifier(h[torch.arange(len(h)), attention_mask.sum(1) - 1])


@wrong("check_mean_pooled_logits", "last position")
def pooled_last_column(gpt_body, classifier, input_ids, attention_mask):
    return classifier(gpt_body.hidden_states(input_ids)[:, -1, :])


@wrong("check_mean_pooled_logits", "first position")
def pooled_first(gpt_body, classifier, input_ids, attention_mask):
    return classifier(gpt_body.hidden_states(input_ids)[:, 0])


@wrong("check_mean_pooled_logits", "padding positions")
def pooled_inverted_mask(gpt_body, classifier, input_ids, attention_mask):
    m = (attention_mask == 0).float().unsqueeze(-1)
    h = gpt_body.hidden_states(input_ids)
    return classifier((h * m).sum(1) / m.sum(1).clamp(min=1))


@wrong("check_mean_pooled_logits", "off-by-one")
def pooled_slice_one_more(gpt_body, classifier, input_ids, attention_mask):
    h = gpt_body.hidden_states(input_ids)
    return classifier(torch.stack([h[b, : int(n) + 1].mean(0) for b, n in enumerate(attention_mask.sum(1))]))


@wrong("check_mean_pooled_logits", "batch dimension")
def pooled_over_batch(gpt_body, classifier, input_ids, attention_mask):
    h = gpt_body.hidden_states(input_ids)
    m = attention_mask.unsqueeze(-1).float()
    return classifier((h * m).sum((0, 1)) / m.sum())


@wrong("check_mean_pooled_logits", "unsqueeze(-1)")
def pooled_no_unsqueeze(gpt_body, classifier, input_ids, attention_mask):
    h = gpt_body.hidden_states(input_ids)
    return classifier((h * attention_mask).sum(1) / attention_mask.sum(1))


@wrong("check_mean_pooled_logits", "hidden_states")
def pooled_on_logits(gpt_body, classifier, input_ids, attention_mask):
    logits, _ = gpt_body(input_ids)
    m = attention_mask.unsqueeze(-1).float()
    return classifier((logits * m).sum(1) / m.sum(1))


# ------------------------------------------------------------------------------------ review-only LM loss

def _targets(input_ids, prompt_lengths, attention_mask, start=0, with_prompt=False, with_padding=False):
    T = input_ids.shape[1]
    y = input_ids[:, 1:].clone()
    pos = torch.arange(1, T)[None]
    drop = torch.zeros_like(y, dtype=torch.bool)
    if not with_prompt:
        drop |= pos < prompt_lengths[:, None] + start
    if not with_padding:
        drop |= attention_mask[:, 1:] == 0
    y[drop] = -100
    return y


@correct("check_review_lm_loss")
def review_loss_flat(logits, input_ids, prompt_lengths, attention_mask):
    y = _targets(input_ids, prompt_lengths, attention_mask)
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), y)


@correct("check_review_lm_loss")
def review_loss_gather(logits, input_ids, prompt_lengths, attention_mask):
    logp = logits[:, :-1].log_softmax(-1)
    nll = -logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)               # (B, T-1)
    pos = torch.arange(1, input_ids.shape[1]).expand_as(nll)
    keep = (pos >= prompt_lengths[:, None]) & attention_mask[:, 1:].bool()
    return nll[keep].mean()


@wrong("check_review_lm_loss", "not shifted")
def review_loss_no_shift(logits, input_ids, prompt_lengths, attention_mask):
    y = input_ids.clone()
    y[(torch.arange(y.shape[1])[None] < prompt_lengths[:, None]) | (attention_mask == 0)] = -100
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


@wrong("check_review_lm_loss", "wrong way")
def review_loss_reverse(logits, input_ids, prompt_lengths, attention_mask):
    y = input_ids[:, :-1].clone()
    y[(torch.arange(y.shape[1])[None] < prompt_lengths[:, None]) | (attention_mask[:, :-1] == 0)] = -100
    return F.cross_entropy(logits[:, 1:].reshape(-1, logits.shape[-1]), y.reshape(-1))


@wrong("check_review_lm_loss", "prompt's tokens are scored")
def review_loss_with_prompt(logits, input_ids, prompt_lengths, attention_mask):
    y = _targets(input_ids, prompt_lengths, attention_mask, with_prompt=True)
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), y)


@wrong("check_review_lm_loss", "padding positions")
def review_loss_with_padding(logits, input_ids, prompt_lengths, attention_mask):
    y = _targets(input_ids, prompt_lengths, attention_mask, with_padding=True)
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), y)


@wrong("check_review_lm_loss", "every target")
def review_loss_plain(logits, input_ids, prompt_lengths, attention_mask):
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), input_ids[:, 1:].reshape(-1))


@wrong("check_review_lm_loss", "first review token")
def review_loss_late(logits, input_ids, prompt_lengths, attention_mask):
    y = _targets(input_ids, prompt_lengths, attention_mask, start=1)
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), y)


@wrong("check_review_lm_loss", "prompt's last token")
def review_loss_early(logits, input_ids, prompt_lengths, attention_mask):
    y = _targets(input_ids, prompt_lengths, attention_mask, start=-1)
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), y)


@wrong("check_review_lm_loss", "instead of the review")
def review_loss_prompt_only(logits, input_ids, prompt_lengths, attention_mask):
    y = input_ids[:, 1:].clone()
    pos = torch.arange(1, y.shape[1] + 1)[None]
    y[(pos >= prompt_lengths[:, None]) | (attention_mask[:, 1:] == 0)] = -100
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), y)


@wrong("check_review_lm_loss", "summed")
def review_loss_sum(logits, input_ids, prompt_lengths, attention_mask):
    y = _targets(input_ids, prompt_lengths, attention_mask)
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), y, reduction="sum")


@wrong("check_review_lm_loss", "each row's mean")
def review_loss_row_means(logits, input_ids, prompt_lengths, attention_mask):
    y = _targets(input_ids, prompt_lengths, attention_mask)
    return torch.stack([F.cross_entropy(lg, t) for lg, t in zip(logits[:, :-1], y)]).mean()


@wrong("check_review_lm_loss", "python number")
def review_loss_item(logits, input_ids, prompt_lengths, attention_mask):
    y = _targets(input_ids, prompt_lengths, attention_mask)
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), y).item()


@wrong("check_review_lm_loss", "autograd")
def review_loss_rebuilt(logits, input_ids, prompt_lengths, attention_mask):
    y = _targets(input_ids, prompt_lengths, attention_mask)
    return torch.tensor(F.cross_entropy(logits[:, :-1].transpose(1, 2), y).item())


# ------------------------------------------------------------------------------------ fragmented share


@correct("check_fragmented_share")
def share_counter(texts, tokenize, min_pieces=3):
    from collections import Counter
    counts = Counter(w for t in texts for w in t.split())
    total = sum(counts.values())
    return sum(n for w, n in counts.items() if len(tokenize(w)) >= min_pieces) / total


@correct("check_fragmented_share")
def share_tensor(texts, tokenize, min_pieces=3):
    lengths = torch.tensor([len(tokenize(w)) for t in texts for w in t.split()])
    return (lengths >= min_pieces).float().mean()


@wrong("check_fragmented_share", "MORE than")
def share_strict(texts, tokenize, min_pieces=3):
    words = [w for t in texts for w in t.split()]
    return sum(len(tokenize(w)) > min_pieces for w in words) / len(words)


@wrong("check_fragmented_share", "MORE than")
def share_continuation_pieces(texts, tokenize, min_pieces=3):
    words = [w for t in texts for w in t.split()]
    return sum(sum(p.startswith("##") for p in tokenize(w)) >= min_pieces for w in words) / len(words)


@wrong("check_fragmented_share", "number of fragmented")
def share_count(texts, tokenize, min_pieces=3):
    return sum(len(tokenize(w)) >= min_pieces for t in texts for w in t.split())


@wrong("check_fragmented_share", "fewer than min_pieces")
def share_whole(texts, tokenize, min_pieces=3):
    words = [w for t in texts for w in t.split()]
    return sum(len(tokenize(w)) < min_pieces for w in words) / len(words)


@wrong("check_fragmented_share", "distinct word")
def share_types(texts, tokenize, min_pieces=3):
    vocab = {w for t in texts for w in t.split()}
    return sum(len(tokenize(w)) >= min_pieces for w in vocab) / len(vocab)


@wrong("check_fragmented_share", "share of pieces")
def share_of_pieces(texts, tokenize, min_pieces=3):
    pieces = [len(tokenize(w)) for t in texts for w in t.split()]
    return sum(p for p in pieces if p >= min_pieces) / sum(pieces)


@wrong("check_fragmented_share", "min_pieces argument")
def share_hard_coded(texts, tokenize, min_pieces=3):
    words = [w for t in texts for w in t.split()]
    return sum(len(tokenize(w)) >= 3 for w in words) / len(words)


@wrong("check_fragmented_share", "percentage")
def share_percent(texts, tokenize, min_pieces=3):
    words = [w for t in texts for w in t.split()]
    return 100 * sum(len(tokenize(w)) >= min_pieces for w in words) / len(words)


@wrong("check_fragmented_share", "each text's share")
def share_per_text(texts, tokenize, min_pieces=3):
    shares = []
    for t in texts:
        ws = t.split()
        shares.append(sum(len(tokenize(w)) >= min_pieces for w in ws) / len(ws))
    return sum(shares) / len(shares)


@wrong("check_fragmented_share", "min_pieces argument")
def share_split_at_all(texts, tokenize, min_pieces=3):
    words = [w for t in texts for w in t.split()]
    return sum(len(tokenize(w)) > 1 for w in words) / len(words)


# ------------------------------------------------------------------------------------ coverage experiment

def _coverage(min_pieces=3, swap=False, **conclusions):
    tokenize, corpora = coverage_setup()

    def share(texts):
        words = [w for t in texts for w in t.split()]
        return sum(len(tokenize(w)) >= min_pieces for w in words) / len(words)
    plays, reviews = share(corpora["shakespeare"]), share(corpora["reviews"])
    if swap:
        plays, reviews = reviews, plays
    out = {"share_shakespeare": plays, "share_reviews": reviews, "reviews_fragment_more": reviews > plays,
           "more_than_twice_as_often": reviews > 2 * plays}
    out.update(conclusions)
    return out


@correct("check_coverage_experiment")
def coverage_as_dict_literal():
    return _coverage()


@wrong("check_coverage_experiment", "swapped")
def coverage_swapped():
    return _coverage(swap=True)


@wrong("check_coverage_experiment", "2 pieces or more")
def coverage_two_pieces():
    return _coverage(min_pieces=2)


@wrong("check_coverage_experiment", "more_than_twice_as_often", "1.84")
def coverage_guess_twice():
    return _coverage(more_than_twice_as_often=True)


@wrong("check_coverage_experiment", "reviews_fragment_more")
def coverage_guess_less():
    return _coverage(reviews_fragment_more=False)


@wrong("check_coverage_experiment", "percentage")
def coverage_percent():
    out = _coverage()
    return {**out, "share_shakespeare": 100 * out["share_shakespeare"], "share_reviews": 100 * out["share_reviews"]}


@wrong("check_coverage_experiment", "True or False")
def coverage_string_conclusion():
    return _coverage(reviews_fragment_more="yes")


# ------------------------------------------------------------------------------------ learning-rate sweep

@functools.lru_cache(maxsize=1)
def _sweep():
    setup = lr_sweep_setup()
    before = held_out_losses(setup, setup.bert)
    after = {lr: held_out_losses(setup, continued_mlm(setup, lr)) for lr in setup.lr_grid}
    return setup.lr_grid, before, after


def _sweep_results(pick="reviews", swap=False, **changes):
    grid, before, after = _sweep()
    rv, sh = ("shakespeare", "reviews") if swap else ("reviews", "shakespeare")
    review = {lr: a[rv] for lr, a in after.items()}
    plays = {lr: a[sh] for lr, a in after.items()}
    chooser = {"reviews": lambda: min(review, key=review.get), "max": lambda: max(review, key=review.get),
               "shakespeare": lambda: min(plays, key=plays.get), "largest": lambda: max(grid)}[pick]
    best = chooser()
    out = {"review_loss_before": before[rv], "shakespeare_loss_before": before[sh], "review_loss": review,
           "shakespeare_loss": plays, "best_lr": best,
           "adaptation_lowers_review_loss": review[best] < before[rv],
           "best_lr_forgets_shakespeare": plays[best] > before[sh], "largest_lr_is_best": best == max(grid)}
    out.update(changes)
    return out


@correct("check_lr_sweep_experiment")
def sweep_string_free():
    return _sweep_results()


@correct("check_lr_sweep_experiment")
def sweep_tensor_values():
    out = _sweep_results()
    return {**out, "review_loss": {lr: torch.tensor(v) for lr, v in out["review_loss"].items()}}


@wrong("check_lr_sweep_experiment", "HIGHEST")
def sweep_argmax():
    return _sweep_results(pick="max")


@wrong("check_lr_sweep_experiment", "old domain")
def sweep_on_shakespeare():
    return _sweep_results(pick="shakespeare")


@wrong("check_lr_sweep_experiment", "lowest")
def sweep_largest_rate():
    out = _sweep_results()
    return {**out, "best_lr": 1e-2}


@wrong("check_lr_sweep_experiment", "swapped")
def sweep_domains_swapped():
    return _sweep_results(swap=True)


@wrong("check_lr_sweep_experiment", "largest_lr_is_best")
def sweep_bigger_is_better():
    return _sweep_results(largest_lr_is_best=True)


@wrong("check_lr_sweep_experiment", "best_lr_forgets_shakespeare")
def sweep_no_forgetting():
    return _sweep_results(best_lr_forgets_shakespeare=False)


@wrong("check_lr_sweep_experiment", "no entry for the learning rate")
def sweep_missing_rate():
    out = _sweep_results()
    return {**out, "review_loss": {lr: v for lr, v in out["review_loss"].items() if lr != 1e-4}}


@wrong("check_lr_sweep_experiment", "one of the grid")
def sweep_best_as_string():
    return _sweep_results(best_lr="2e-3")


@wrong("check_lr_sweep_experiment", "re-running")
def sweep_made_up_numbers():
    out = _sweep_results()
    return {**out, "review_loss": {lr: round(v, 1) + 0.3 for lr, v in out["review_loss"].items()}}


@wrong("check_lr_sweep_experiment", "dict")
def sweep_list_of_losses():
    out = _sweep_results()
    return {**out, "review_loss": list(out["review_loss"].values())}
