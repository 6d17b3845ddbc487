"""Checks for the pre-training exercises: next-token targets, the causal LM loss, MLM masking (token by
token, and whole words), NSP pairs.

The randomised tasks (masking, NSP pairs) are checked by their invariants, exactly, and by their rates,
within five binomial standard deviations, so every correct implementation passes whatever its style.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._core import CheckFailed, call_student, expect_tensor_like, passed
from ..validation import describe

__all__ = ["check_next_token_targets", "check_causal_lm_loss", "check_mlm_masking", "check_whole_word_masking",
           "check_nsp_pairs"]

SIGMAS = 5.0  # how far a measured rate may stray from the expected one, in binomial standard deviations


def _same(a, b) -> bool:
    return isinstance(a, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)


def _pair(check: str, result, what: str) -> tuple:
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise CheckFailed(check, f"`{what}` should return a pair, but it returned {describe(result)}.")
    return tuple(result)


def _rate_ok(count: int, n: int, p: float) -> bool:
    return abs(count - n * p) <= SIGMAS * math.sqrt(n * p * (1 - p))


# --------------------------------------------------------------------------------------------------
# next-token targets
# --------------------------------------------------------------------------------------------------

def check_next_token_targets(fn) -> None:
    """Check ``fn(ids, block_size, start) -> (x, y)``: x = ids[start : start+T], y = the token after each."""
    check = "check_next_token_targets"
    ids = torch.randperm(40, generator=torch.Generator().manual_seed(0)) + 100     # (N,) distinct ids
    cases = [(5, 12), (8, 0), (6, 33), (1, 38)]                                      # the last uses token N-1
    for block_size, start in cases:
        x, y = _pair(check, call_student(check, fn, ids.clone(), block_size, start), "fn(ids, block_size, start)")
        x_ref, y_ref = ids[start:start + block_size], ids[start + 1:start + block_size + 1]
        call = f" (ids of length {len(ids)}, block_size={block_size}, start={start})"
        earlier = ids[start - 1:start - 1 + block_size] if start else ids[:0]
        late_x, late_y = ids[start + 1:start + block_size + 1], ids[start + 2:start + block_size + 2]
        if _same(x, late_x) and _same(y, late_y):
            raise CheckFailed(check, "the window starts one position late: x begins at ids[start] (x = "
                                     "ids[start : start + block_size]) and y is the same window one token later."
                              + call)
        if start and _same(x, earlier) and _same(y, x_ref):
            raise CheckFailed(check, "the window starts one position early: x begins at ids[start], not "
                                     "ids[start - 1]." + call)
        if _same(x, x_ref[:-1]) or _same(x, ids[start:start + block_size + 1]):
            raise CheckFailed(check, f"x should hold block_size = {block_size} tokens, but it has {len(x)}: "
                                     f"ids[start : start + block_size] (the end index is excluded)." + call)
        expect_tensor_like(check, x, x_ref, "x" + call, [
            ("x and y are swapped: x holds the inputs ids[start : start + block_size], y the tokens one "
             "position later." + call, y_ref),
        ])
        expect_tensor_like(check, y, y_ref, "y" + call, [
            ("y is the same as x: the target at each position is the *next* token, so y = "
             "ids[start + 1 : start + block_size + 1]." + call, x_ref),
            ("y is shifted the wrong way: it holds the token *before* each input; the target is the token "
             "after it, ids[start + 1 : start + block_size + 1]." + call, earlier),
            ("y is shifted by two: the target is the very next token, ids[start + 1 : start + block_size + 1]."
             + call, ids[start + 2:start + block_size + 2]),
        ])
    passed(check, len(cases))


# --------------------------------------------------------------------------------------------------
# causal LM loss
# --------------------------------------------------------------------------------------------------

def _loss_cases():
    """(description, logits (B, T, V), targets (B, T)); V == T in the first so a wrong axis still computes."""
    g = torch.Generator().manual_seed(1)
    cases = []
    for B, T, V, n_ignored in ((2, 5, 5, 0), (3, 4, 7, 0), (3, 6, 11, 5), (1, 3, 4, 1)):
        logits = torch.randn(B, T, V, generator=g, dtype=torch.float64) * 2
        targets = torch.randint(0, V, (B, T), generator=g)
        targets.view(-1)[torch.randperm(B * T, generator=g)[:n_ignored]] = -100
        cases.append((f"logits (B={B}, T={T}, V={V}), {n_ignored} targets are -100", logits, targets))
    return cases


def _loss_mistakes(logits, targets):
    B, T, V = logits.shape
    flat_logits, flat_targets = logits.reshape(B * T, V), targets.reshape(B * T)
    real = flat_targets != -100
    per_token = F.cross_entropy(flat_logits, flat_targets, reduction="none")       # (B*T,), 0 where -100
    wrong_axis = -flat_logits.log_softmax(0)[real, flat_targets[real]].mean()      # normalised over tokens
    mistakes = [
        ("you passed softmax probabilities to cross_entropy; it expects the raw logits (it applies "
         "log_softmax itself).", F.cross_entropy(flat_logits.softmax(-1), flat_targets)),
        ("the loss was summed, not averaged: take the mean over the (non -100) target tokens.", per_token.sum()),
        ("you gave nll_loss probabilities: it expects log-probabilities, so use log_softmax (or cross_entropy on "
         "the raw logits).", -flat_logits.softmax(-1)[real, flat_targets[real]].mean()),
        ("the targets were flattened in a different order from the logits: flatten both the same way, "
         "logits.view(B*T, V) with targets.view(B*T).", F.cross_entropy(flat_logits, targets.T.reshape(B * T))),
        ("the softmax runs over the wrong axis: normalise over the vocabulary, the last dimension "
         "(log_softmax(dim=-1)), then pick each target's log-probability.", wrong_axis),
    ]
    if T > 1:
        again = ("the targets were shifted again: they already hold the next token of each position, so "
                 "logits[:, t] goes with targets[:, t]; do not drop a position ([:, :-1] / [:, 1:]).")
        mistakes += [(again, F.cross_entropy(logits[:, :-1].reshape(-1, V), targets[:, 1:].reshape(-1))),
                     (again, F.cross_entropy(logits[:, 1:].reshape(-1, V), targets[:, :-1].reshape(-1)))]
    if T == V:
        mistakes.append(("cross_entropy got logits of shape (B, T, V): it reads dimension 1 as the classes, "
                         "so flatten first: F.cross_entropy(logits.view(B*T, V), targets.view(B*T)).",
                         F.cross_entropy(logits, targets)))
    if not real.all():
        mistakes += [
            ("the -100 targets were counted in the mean: average only over the real targets "
             "(F.cross_entropy skips -100 by default, as ignore_index=-100).", per_token.sum() / (B * T)),
            ("the -100 targets were not ignored: they mean 'no target here' and must not enter the loss.",
             F.cross_entropy(flat_logits, flat_targets.clamp(min=0))),
        ]
    if B > 1:
        per_row = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # (B, T)
        counts = (targets != -100).sum(1).clamp(min=1)
        mistakes.append(("you averaged each sequence first and then the sequences: take one mean over all the "
                         "real target tokens of the batch.", (per_row.sum(1) / counts).mean()))
    return mistakes


def check_causal_lm_loss(fn) -> None:
    """Check ``fn(logits (B, T, V), targets (B, T)) -> scalar``: mean cross-entropy over targets != -100."""
    check = "check_causal_lm_loss"
    cases = _loss_cases()
    for description, logits, targets in cases:
        loss = call_student(check, fn, logits.clone(), targets.clone())
        where = f" (test: {description})"
        if isinstance(loss, (int, float)) and not isinstance(loss, bool):
            loss = torch.tensor(float(loss), dtype=torch.float64)
        if isinstance(loss, torch.Tensor) and loss.dim() > 0:
            if loss.numel() == 1:
                loss = loss.reshape(())
            else:
                raise CheckFailed(check, f"the loss should be one number (a 0-dimensional tensor), but it has shape "
                                         f"{tuple(loss.shape)}: average the per-token losses (reduction='mean')."
                                  + where)
        B, T, V = logits.shape
        expected = F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T), ignore_index=-100)
        expect_tensor_like(check, loss, expected, "the loss" + where,
                           [(m + where, w) for m, w in _loss_mistakes(logits, targets)])
    passed(check, len(cases))


# --------------------------------------------------------------------------------------------------
# MLM masking
# --------------------------------------------------------------------------------------------------

# BERT's own special ids: [PAD] = 0, [UNK] = 100, [CLS] = 101, [SEP] = 102, [MASK] = 103. They are not the
# first ids of the vocabulary, so drawing random ids from randint(len(special_ids), vocab_size) shows up.
PAD, UNK, CLS, SEP, MASK = 0, 100, 101, 102, 103
MLM_SPECIAL_IDS = [PAD, UNK, CLS, SEP, MASK]
MLM_VOCAB_SIZE = 130


def _mlm_batch(B: int = 300, T: int = 64, seed: int = 0) -> torch.Tensor:
    """Rows ``[CLS] a [SEP] b [SEP] [PAD] ...`` of random lengths, ordinary ids from the rest of the vocabulary."""
    g = torch.Generator().manual_seed(seed)
    ordinary = torch.tensor([i for i in range(MLM_VOCAB_SIZE) if i not in MLM_SPECIAL_IDS])
    ids = ordinary[torch.randint(len(ordinary), (B, T), generator=g)]
    lengths = torch.randint(8, T + 1, (B,), generator=g)
    for row, n in enumerate(lengths.tolist()):
        ids[row, 0], ids[row, n // 2], ids[row, n - 1], ids[row, n:] = CLS, SEP, SEP, PAD
    return ids


def _mlm_call(check: str, fn, ids: torch.Tensor, seed: int, continues: torch.Tensor | None = None,
              **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """One call of the student's masking, with the exact invariants checked (``continues``: whole-word masking)."""
    original = ids.clone()
    words = () if continues is None else (continues.clone(),)
    result = call_student(check, fn, ids, *words, list(MLM_SPECIAL_IDS), MLM_VOCAB_SIZE, MASK,
                          generator=torch.Generator().manual_seed(seed), **kwargs)
    masked, labels = _pair(check, result, "fn(input_ids, special_ids, vocab_size, mask_id)" if continues is None
                           else "fn(input_ids, continues, special_ids, vocab_size, mask_id)")
    setup = f" (input_ids {tuple(ids.shape)} with [PAD]={PAD}, [CLS]={CLS}, [SEP]={SEP}, [MASK]={MASK})"
    for name, value in (("masked_ids", masked), ("labels", labels)):
        if not isinstance(value, torch.Tensor) or value.shape != ids.shape:
            raise CheckFailed(check, f"{name} should be a tensor of shape {tuple(ids.shape)} like input_ids, "
                                     f"but it is {describe(value)}.")
        if value.is_floating_point() or value.dtype == torch.bool:
            raise CheckFailed(check, f"{name} should hold integer ids (torch.long), but its dtype is {value.dtype}.")
    if not torch.equal(ids, original):
        raise CheckFailed(check, "input_ids was modified in place: work on a copy (input_ids.clone()), the caller "
                                 "still needs the original tokens (they become the labels).")

    special = torch.isin(ids, torch.tensor(MLM_SPECIAL_IDS))                  # (B, T) specials and padding
    labelled = labels != -100
    changed = masked != ids
    if labelled.all() or labelled[~special].all():
        raise CheckFailed(check, "every position has a label: labels must be -100 wherever the token was not "
                                 "chosen, so the loss only counts the chosen ~15%." + setup)
    if (changed & special).any() or (labelled & special).any():
        kinds = {PAD: "padding", CLS: "[CLS]", SEP: "[SEP]"}
        hit = sorted({kinds.get(int(i), str(int(i))) for i in ids[(changed | labelled) & special]})
        raise CheckFailed(check, f"special tokens were chosen for masking ({', '.join(hit)}): only ordinary "
                                 f"tokens may be chosen, never [CLS], [SEP] or [PAD]." + setup)
    if (changed & ~labelled).any():
        raise CheckFailed(check, "some tokens were changed but their label is -100: every changed position was "
                                 "chosen, so its label must be the original id." + setup)
    if not torch.equal(labels[labelled], ids[labelled]):
        if torch.equal(labels[labelled], masked[labelled]):
            raise CheckFailed(check, "the labels hold the masked ids: they should hold the ORIGINAL ids (what the "
                                     "model must recover)." + setup)
        raise CheckFailed(check, "at chosen positions (labels != -100) the label should be the original id from "
                                 "input_ids, but some are not." + setup)
    masked_to = masked[labelled & changed & (masked != MASK)]                 # the random replacements
    if ((masked < 0) | (masked >= MLM_VOCAB_SIZE)).any():
        raise CheckFailed(check, f"some random replacements are outside the vocabulary 0 .. {MLM_VOCAB_SIZE - 1}."
                          + setup)
    if torch.isin(masked_to, torch.tensor(MLM_SPECIAL_IDS)).any():
        if len(masked_to) and int(masked_to.min()) >= len(MLM_SPECIAL_IDS):
            raise CheckFailed(check, "some random replacements are special tokens: randint(len(special_ids), "
                                     "vocab_size) assumes the special ids come first, but in BERT they are 0 and "
                                     "100-103. Draw from the ids that are not in special_ids." + setup)
        raise CheckFailed(check, "some random replacements are special tokens: draw them from the ordinary tokens "
                                 "only, never [PAD], [UNK], [CLS], [SEP] or [MASK]." + setup)
    return masked, labels


def _dispersion(eligible, chosen, dim: int) -> float:
    """How much the chosen counts along ``dim`` (per row: 1, per column: 0) vary, relative to independent
    draws at the measured rate: about 1 when each token is drawn on its own, far more when they come in groups."""
    n, k = eligible.sum(dim).double(), chosen.sum(dim).double()
    rate = float(k.sum() / n.sum())                                   # the measured rate, whatever it is
    expected_var = (n * rate * (1 - rate)).clamp(min=1e-9)
    return float(((k - n * rate) ** 2 / expected_var)[n > 0].mean())


def _chosen_rate(check: str, ids, labels, mask_prob: float, setup: str, what: str = "") -> None:
    special = torch.isin(ids, torch.tensor(MLM_SPECIAL_IDS))
    labelled = labels != -100
    if _dispersion(~special, labelled, dim=1) > 3.0:                  # about 1 when each token is drawn alone
        raise CheckFailed(check, "the chosen tokens come in whole rows (or blocks): some rows have far more and "
                                 "some far fewer than mask_prob of their tokens. Draw a separate random number "
                                 "for every position, torch.rand(input_ids.shape) < mask_prob." + setup)
    if _dispersion(~special, labelled, dim=0) > 3.0:
        raise CheckFailed(check, "the same positions are chosen in every row (whole columns): one random draw per "
                                 "position was shared by the batch, e.g. torch.rand(input_ids.shape[1]). Draw a "
                                 "separate random number for every token, torch.rand(input_ids.shape) < mask_prob."
                          + setup)
    eligible, n_chosen = int((~special).sum()), int(labelled.sum())
    if not _rate_ok(n_chosen, eligible, mask_prob):
        raise CheckFailed(check, f"{n_chosen / eligible:.1%} of the ordinary tokens were chosen{what}, but it should "
                                 f"be about {mask_prob:.0%} (mask_prob = {mask_prob} of the non-special, non-padding "
                                 f"tokens)." + setup)


def check_mlm_masking(fn) -> None:
    """Check ``fn(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=g) -> (masked_ids, labels)``.

    Invariants, exactly: the input is left alone; special tokens and padding are never chosen; labels are
    the original id at chosen positions and -100 elsewhere; unchosen positions keep their id; random
    replacements are never special. Rates: 15% of the eligible tokens chosen (each independently), then
    80/10/10; ``mask_prob`` is used; the same generator seed gives the same result.
    """
    check = "check_mlm_masking"
    ids = _mlm_batch()
    setup = f" (input_ids {tuple(ids.shape)} with [PAD]={PAD}, [CLS]={CLS}, [SEP]={SEP}, [MASK]={MASK})"
    masked, labels = _mlm_call(check, fn, ids, seed=0)
    _chosen_rate(check, ids, labels, 0.15, setup)
    _split_80_10_10(check, ids, masked, labels, setup)
    _same_seed_same_masking(check, fn, ids, masked, labels, setup)
    _, labels_30 = _mlm_call(check, fn, ids, seed=2, mask_prob=0.3)
    special = torch.isin(ids, torch.tensor(MLM_SPECIAL_IDS))
    rate_30 = int((labels_30 != -100).sum()) / int((~special).sum())
    if _rate_ok(int((labels_30 != -100).sum()), int((~special).sum()), 0.15):
        raise CheckFailed(check, f"mask_prob is ignored: with mask_prob=0.3, {rate_30:.1%} of the ordinary tokens "
                                 f"were chosen (the 15% default?). Use the `mask_prob` argument." + setup)
    _chosen_rate(check, ids, labels_30, 0.3, setup, " with mask_prob=0.3")
    passed(check, 10)  # input untouched, specials skipped, -100 labels, changes labelled, original ids,
    #                    replacements ordinary, 15% chosen independently, 80/10/10, generator, mask_prob


def _split_80_10_10(check: str, ids, masked, labels, setup: str) -> None:
    """Of the chosen positions, 80% [MASK], 10% a random ordinary id, 10% unchanged."""
    labelled = labels != -100
    n_chosen = int(labelled.sum())
    n_mask = int((masked[labelled] == MASK).sum())
    n_same = int((masked[labelled] == ids[labelled]).sum())
    n_random = n_chosen - n_mask - n_same
    p_random = 0.1 * (1 - 1 / (MLM_VOCAB_SIZE - len(MLM_SPECIAL_IDS)))      # a random pick may equal the original
    shares = f"[MASK] {n_mask / n_chosen:.1%}, random {n_random / n_chosen:.1%}, unchanged {n_same / n_chosen:.1%}"
    if n_mask == n_chosen:
        raise CheckFailed(check, "every chosen token became [MASK]: BERT replaces 80% with [MASK], 10% with a "
                                 "random token and leaves 10% unchanged." + setup)
    if not (_rate_ok(n_mask, n_chosen, 0.8) and _rate_ok(n_random, n_chosen, p_random)
            and _rate_ok(n_same, n_chosen, 1 - 0.8 - p_random)):
        raise CheckFailed(check, f"the chosen tokens should be split 80% [MASK] / 10% random / 10% unchanged, "
                                 f"but got {shares}." + setup)


def _same_seed_same_masking(check: str, fn, ids, masked, labels, setup: str, continues=None) -> None:
    again = _mlm_call(check, fn, ids, seed=0, continues=continues)
    if not (torch.equal(again[0], masked) and torch.equal(again[1], labels)):
        raise CheckFailed(check, "two calls with the same seed gave different results: the `generator` is ignored "
                                 "somewhere. Pass generator=generator to every random draw (torch.rand, "
                                 "torch.randint, ...), so a seed fixes the masking." + setup)
    other = _mlm_call(check, fn, ids, seed=1, continues=continues)
    if torch.equal(other[0], masked) and torch.equal(other[1], labels):
        raise CheckFailed(check, "two calls with different seeds gave the same masking: draw the random numbers "
                                 "with the `generator` you are given." + setup)


# --------------------------------------------------------------------------------------------------
# Whole-word masking
# --------------------------------------------------------------------------------------------------

def _wwm_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """The MLM batch cut into words of 1-4 pieces: ``continues`` is True on a word's later pieces (##...)."""
    ids = _mlm_batch(seed=3)
    g = torch.Generator().manual_seed(4)
    special = torch.isin(ids, torch.tensor(MLM_SPECIAL_IDS))
    continues = torch.zeros_like(ids, dtype=torch.bool)
    for row in range(ids.shape[0]):
        left = 0                                                       # pieces left in the current word
        for t in range(ids.shape[1]):
            if special[row, t]:
                left = 0
            elif left > 0:
                continues[row, t], left = True, left - 1
            else:
                left = int(torch.randint(4, (1,), generator=g)) # this word has 1 + left pieces
    return ids, continues


def _word_index(continues: torch.Tensor) -> torch.Tensor:
    """(B, T) -> the position of each piece's first piece (its own position for a first piece)."""
    B, T = continues.shape
    positions = torch.arange(T).expand(B, T)
    return torch.where(continues, 0, positions).cummax(dim=1).values


def check_whole_word_masking(fn) -> None:
    """Check ``fn(input_ids, continues, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=g)``:
    MLM masking that chooses whole words (each with probability mask_prob) and masks every piece of them.

    Exactly: the invariants of token masking, and every word chosen with all its pieces or not at all.
    Rates: mask_prob of the words (not of the pieces), 80/10/10 over the chosen pieces, generator, mask_prob.
    """
    check = "check_whole_word_masking"
    ids, continues = _wwm_batch()
    setup = (f" (input_ids {tuple(ids.shape)} with [PAD]={PAD}, [CLS]={CLS}, [SEP]={SEP}, [MASK]={MASK}; "
             f"words of 1-4 pieces)")
    special = torch.isin(ids, torch.tensor(MLM_SPECIAL_IDS))
    starts = ~continues & ~special                                     # (B, T) the first piece of each word
    start_of = _word_index(continues)                                  # (B, T)
    pieces = torch.zeros(ids.shape, dtype=torch.long).scatter_add_(1, start_of, (~special).long())  # at starts
    masked, labels = _mlm_call(check, fn, ids, seed=0, continues=continues)
    _whole_words(check, labels != -100, starts, continues, start_of, setup)
    _words_rate(check, labels, starts, pieces, 0.15, setup)
    _split_80_10_10(check, ids, masked, labels, setup)
    _same_seed_same_masking(check, fn, ids, masked, labels, setup, continues=continues)
    _, labels_30 = _mlm_call(check, fn, ids, seed=2, continues=continues, mask_prob=0.3)
    _whole_words(check, labels_30 != -100, starts, continues, start_of, setup)
    if _rate_ok(int((labels_30 != -100)[starts].sum()), int(starts.sum()), 0.15):
        raise CheckFailed(check, "mask_prob is ignored: with mask_prob=0.3 about 15% of the words were chosen "
                                 "(the default?). Use the `mask_prob` argument." + setup)
    _words_rate(check, labels_30, starts, pieces, 0.3, setup, " with mask_prob=0.3")
    passed(check, 9)  # token-masking invariants, whole words, word rate, 80/10/10, generator, mask_prob


def _whole_words(check: str, labelled, starts, continues, start_of, setup: str) -> None:
    """Every piece of a word shares its first piece's choice."""
    word_chosen = labelled.gather(1, start_of)                         # (B, T) the choice of each piece's word
    split = continues & (labelled != word_chosen)
    if not split.any():
        return
    if not (labelled & continues).any():
        raise CheckFailed(check, "only the first piece of each chosen word was chosen: the later pieces (where "
                                 "continues is True) belong to the same word and must be chosen with it." + setup)
    if not (labelled & starts).any():
        raise CheckFailed(check, "only later pieces (continues True) were chosen, never a word's first piece: is "
                                 "`continues` read the wrong way round? It is True on the pieces that continue "
                                 "a word." + setup)
    row, t = (int(i) for i in split.nonzero()[0])
    first = int(start_of[row, t])
    end = t
    while end + 1 < continues.shape[1] and continues[row, end + 1]:
        end += 1
    got = ["chosen" if x else "not chosen" for x in labelled[row, first:end + 1].tolist()]
    raise CheckFailed(check, f"a word was chosen only in part: row {row}, pieces {first}..{end} are {got}. Choose "
                             f"whole words: all the pieces of a word, or none of them." + setup)


def _words_rate(check: str, labels, starts, pieces, mask_prob: float, setup: str, what: str = "") -> None:
    chosen = (labels != -100) & starts
    n_words, n_chosen = int(starts.sum()), int(chosen.sum())
    if _rate_ok(n_chosen, n_words, mask_prob):
        if _dispersion(starts, chosen, dim=1) > 3.0:
            raise CheckFailed(check, "the chosen words come in whole rows (or blocks): draw a separate random "
                                     "number for every word." + setup)
        return
    by_piece = float((1 - (1 - mask_prob) ** pieces[starts].double()).mean())   # each piece drawn, word expanded
    if _rate_ok(n_chosen, n_words, by_piece):
        raise CheckFailed(check, f"{n_chosen / n_words:.1%} of the words were chosen{what}, more than "
                                 f"mask_prob = {mask_prob}: a word with more pieces was more likely to be chosen, as "
                                 f"if each piece were drawn and then its word masked. Draw ONE random number per "
                                 f"word (at its first piece) and let its later pieces follow." + setup)
    raise CheckFailed(check, f"{n_chosen / n_words:.1%} of the words were chosen{what}, but it should be about "
                             f"{mask_prob:.0%} (mask_prob of the words, each word drawn once)." + setup)


# --------------------------------------------------------------------------------------------------
# NSP pairs
# --------------------------------------------------------------------------------------------------

def _nsp_corpus() -> dict[str, list[list[str]]]:
    """Four small 'plays': title -> scenes -> segments; every segment text is unique."""
    sizes = {"Alpha": (5, 3, 6), "Beta": (4, 4), "Gamma": (7, 2, 3), "Delta": (3, 5)}
    return {title: [[f"{title} scene {s + 1} segment {k + 1}." for k in range(n)] for s, n in enumerate(scenes)]
            for title, scenes in sizes.items()}


def check_nsp_pairs(fn) -> None:
    """Check ``fn(plays, n, generator=g) -> list of (a, b, is_next)``: ``plays`` maps a title to its scenes,
    each a list of segments; is_next pairs are consecutive segments of one scene, the others take B from
    another play; about half are is_next."""
    check = "check_nsp_pairs"
    plays = _nsp_corpus()
    where = {text: (title, s, k) for title, scenes in plays.items()
             for s, scene in enumerate(scenes) for k, text in enumerate(scene)}
    n = 2000
    pairs = call_student(check, fn, plays, n, generator=torch.Generator().manual_seed(0))
    setup = " (4 plays with 2-3 scenes of 2-7 segments, n = 2000)"
    if not isinstance(pairs, (list, tuple)) or len(pairs) != n:
        raise CheckFailed(check, f"fn(plays, n) should return a list of n = {n} (a, b, is_next) triples, but it "
                                 f"returned {describe(pairs)}.")
    consecutive, cross_play, flags = [], [], []
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 3):
            raise CheckFailed(check, f"each example should be a triple (a, b, is_next), but example {i} is "
                                     f"{describe(pair)}.")
        a, b, is_next = pair
        if a not in where or b not in where:
            raise CheckFailed(check, f"example {i} is ({a!r}, {b!r}): a and b should be segments taken from `plays`.")
        if isinstance(is_next, torch.Tensor) and is_next.numel() == 1:
            is_next = is_next.item()
        if is_next not in (0, 1) or isinstance(is_next, float):
            raise CheckFailed(check, f"is_next should be True/False (or 1/0), but example {i} has {describe(is_next)}.")
        (play_a, scene_a, k_a), (play_b, scene_b, k_b) = where[a], where[b]
        consecutive.append(play_a == play_b and scene_a == scene_b and k_b == k_a + 1)
        cross_play.append(play_a != play_b)
        flags.append(bool(is_next))
    n_next = sum(flags)
    if n_next == n:
        raise CheckFailed(check, "every pair is labelled is_next: half of the pairs should take B from another play "
                                 "(is_next = False)." + setup)
    if all(c != f for c, f in zip(consecutive, flags)) and all(x == f for x, f in zip(cross_play, flags)):
        raise CheckFailed(check, "the labels are inverted: is_next should be True when B is the segment right after "
                                 "A, and False when B is random." + setup)
    for i, (flag, follows, other_play) in enumerate(zip(flags, consecutive, cross_play)):
        a, b = pairs[i][0], pairs[i][1]
        if flag and not follows:
            raise CheckFailed(check, f"example {i} says is_next, but B is not the segment right after A in the same "
                                     f"scene: A = {a!r}, B = {b!r}.")
        if not flag and not other_play:
            raise CheckFailed(check, f"example {i} has a random B from the same play as A (A = {a!r}, B = {b!r}): take "
                                     "random segments from another play, so the two kinds of pair clearly "
                                     "differ." + setup)
    if not _rate_ok(n_next, n, 0.5):
        raise CheckFailed(check, f"{n_next / n:.1%} of the pairs are is_next, but it should be about 50%." + setup)
    used = {where[pair[0]] for pair in pairs}
    candidates = {(title, s, k) for title, scenes in plays.items() for s, scene in enumerate(scenes)
                  for k in range(len(scene) - 1)}
    missing = sorted(candidates - used)
    if missing:
        if all(k == 0 for _, _, k in used):
            raise CheckFailed(check, "A is always the first segment of a scene: pick A at random among *all* the "
                                     "segments that have a next one in their scene." + setup)
        title, s, k = missing[0]
        raise CheckFailed(check, f"A never takes some segments that have a next one (e.g. {plays[title][s][k]!r}, "
                                 f"{len(missing)} of {len(candidates)} never used in {n} pairs): pick A at random "
                                 f"among all of them." + setup)
    again = call_student(check, fn, plays, n, generator=torch.Generator().manual_seed(0))
    if [tuple(x) for x in again] != [tuple(x) for x in pairs]:
        raise CheckFailed(check, "two calls with the same seed gave different pairs: the `generator` is ignored "
                                 "somewhere. Draw every random number with it (torch.randint(..., "
                                 "generator=generator)), so a seed fixes the pairs." + setup)
    other = call_student(check, fn, plays, n, generator=torch.Generator().manual_seed(1))
    if [tuple(x) for x in other] == [tuple(x) for x in pairs]:
        raise CheckFailed(check, "two calls with different seeds gave the same pairs: draw the random numbers "
                                 "with the `generator` you are given." + setup)
    passed(check, 6)  # well-formed triples, real pairs consecutive, random pairs from another play, ~50/50,
    #                   every A possible, generator
