"""Checks for exercises/18_encoder_decoder.ipynb: beam search for one source, against the package's."""
from __future__ import annotations

import math

import torch

from ..bart import Bart, BartConfig
from ..seq2seq_generation import beam_search
from ._core import CheckFailed, call_student, passed

__all__ = ["check_beam_search", "reference_beam_search", "check_model"]


@torch.no_grad()
def reference_beam_search(model, input_ids, num_beams, max_new_tokens, length_penalty, multiply_probs=False,
                          all_beams_at_start=False, drop_finished=False, expand_finished=False,
                          no_length_penalty=False, length_counts_start=False, top1_per_beam=False):
    """Beam search for one source (1, S), written plainly, with one classic mistake switched on (all off:
    the same target and score as :func:`ptlm_course.seq2seq_generation.beam_search`). Returns (ids, score)."""
    c = model.config
    memory, memory_mask = model.encode(input_ids)                               # (1, S, C), (1, 1, 1, S)
    start_score = 1.0 if multiply_probs else 0.0
    beams = [([c.decoder_start_token_id], start_score, False)] * (num_beams if all_beams_at_start else 1)
    for step in range(max_new_tokens):
        candidates = []
        for tokens, score, done in beams:
            if done and not expand_finished:
                candidates.append((tokens + [c.pad_token_id], score, True))     # a finished target only pads
                continue
            log_probs = model.decode(torch.tensor([tokens]), memory, memory_mask)[0, -1].float().log_softmax(-1)
            mine = [(tokens + [v], score * math.exp(lp) if multiply_probs else score + lp, v == c.eos_token_id)
                    for v, lp in enumerate(log_probs.tolist())]
            if top1_per_beam and step > 0:
                mine = [max(mine, key=lambda b: b[1])]                          # each beam its own best token
            candidates += [b for b in mine if not (drop_finished and b[2])]
        beams = sorted(candidates, key=lambda b: b[1], reverse=True)[:num_beams]
        if all(done for _, _, done in beams) and not expand_finished:
            break

    def ranked(beam):
        tokens, score, _ = beam
        generated = sum(t != c.pad_token_id for t in tokens[1:]) + int(length_counts_start)
        return score if no_length_penalty else score / max(generated, 1) ** length_penalty

    tokens, score, _ = max(beams, key=ranked)
    while tokens[-1] == c.pad_token_id:
        tokens = tokens[:-1]
    return tokens, score




def check_model(seed: int = 0) -> Bart:
    """A small random BART whose next-token distributions are peaked enough for beam search to matter."""
    torch.manual_seed(seed)
    model = Bart(BartConfig(vocab_size=10, d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1, n_decoder_layers=1,
                            max_position_embeddings=24, dropout=0.0, pad_token_id=0, bos_token_id=1,
                            eos_token_id=2, decoder_start_token_id=1))
    with torch.no_grad():
        model.decoder[-1].ln3.weight.mul_(10.0)               # logits far from uniform
        model.decoder_embeddings.positions.weight.mul_(50.0)  # the distribution changes from step to step
        model.final_logits_bias[0, :2] = -20.0               # padding and the start token are never generated
    return model.eval()


_MISTAKES = [
    ("the first step expands all num_beams beams, which are identical (only the start token), so every beam "
     "takes the same best token: start with ONE live beam (or give the copies a score of -inf).",
     {"all_beams_at_start": True}),
    ("the top-K is taken per beam (each beam keeps its own best token) instead of over all num_beams x V "
     "candidates together: put every beam's every next token in one list and keep the num_beams best.",
     {"top1_per_beam": True}),
    ("finished hypotheses are dropped: a beam that produces the end token is finished and must stay a "
     "candidate with its score (it is often the winner).", {"drop_finished": True}),
    ("finished hypotheses keep expanding: a beam that has produced the end token is finished; do not add tokens "
     "after it (it keeps its score), and stop when every beam is finished.", {"expand_finished": True}),
    ("the length penalty is missing: the winner maximises score / length ** length_penalty, not the raw sum of "
     "log-probabilities.", {"no_length_penalty": True}),
    ("the length normalisation counts the start token: length is the number of generated tokens (the end token "
     "included, the start token not).", {"length_counts_start": True}),
    ("probabilities are multiplied instead of log-probabilities added: keep the sum of log-probabilities "
     "(products of probabilities underflow, and dividing a product by the length ranks differently).",
     {"multiply_probs": True}),
]

# (model seed, num_beams, max_new_tokens, length_penalty): together they tell every mistake below apart
_CASES = [(7, 3, 8, 1.0), (0, 3, 8, 2.0), (7, 4, 6, 0.5), (5, 2, 10, 1.0), (1, 4, 8, 1.0), (7, 3, 8, 0.0)]


def _as_ids(out, check: str, call: str) -> tuple[list[int], float]:
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise CheckFailed(check, f"{call} should return a pair (target ids, score), but it returned "
                                 f"{type(out).__name__}.")
    ids, score = out
    if isinstance(ids, torch.Tensor):
        if ids.dim() == 2 and ids.shape[0] == 1:
            ids = ids[0]
        if ids.dim() != 1:
            raise CheckFailed(check, f"{call}: the target should be one 1-D sequence of ids, but it has shape "
                                     f"{tuple(ids.shape)}.")
        ids = ids.tolist()
    if isinstance(score, torch.Tensor):
        if score.numel() != 1:
            raise CheckFailed(check, f"{call}: the score should be one number, but it has shape "
                                     f"{tuple(score.shape)}.")
        score = score.item()
    try:
        ids, score = [int(i) for i in ids], float(score)
    except (TypeError, ValueError):
        raise CheckFailed(check, f"{call} should return (list of int ids, float score), but it returned "
                                 f"{type(ids).__name__} and {type(score).__name__}.") from None
    while ids and ids[-1] == 0:                           # padding after the end token does not count
        ids = ids[:-1]
    return ids, score


def check_beam_search(fn) -> None:
    """Check ``fn(model, input_ids (1, S), num_beams, max_new_tokens, length_penalty) -> (ids, score)``: the
    best target (start token first, up to and including the end token) and its sum of log-probabilities."""
    check = "check_beam_search"
    runs = []                                     # (call, model, src, args, student's answer, reference's)
    for seed, K, n, lp in _CASES:
        model = check_model(seed)
        src = torch.randint(3, 10, (1, 6), generator=torch.Generator().manual_seed(seed))
        call = f"fn(model, input_ids {tuple(src.shape)}, num_beams={K}, max_new_tokens={n}, length_penalty={lp})"
        expected = reference_beam_search(model, src, K, n, lp)
        package, package_score = beam_search(model, src, num_beams=K, max_new_tokens=n, length_penalty=lp,
                                             return_scores=True)
        package_ids = [t for t in package[0].tolist() if t != model.config.pad_token_id]
        assert package_ids == expected[0] and abs(package_score.item() - expected[1]) < 1e-4   # the reference
        answer = _as_ids(call_student(check, fn, model, src.clone(), K, n, lp), check, call)
        runs.append((call, model, src, (K, n, lp), answer, expected))
    for index, (_, _, _, _, answer, expected) in enumerate(runs):
        if not _same(answer, expected):
            _name_the_mistake(check, runs, index)
    passed(check, len(_CASES))


def _same(answer, other) -> bool:
    return answer[0] == other[0] and abs(answer[1] - other[1]) < 1e-4


def _name_the_mistake(check, runs, index) -> None:
    """Say what is wrong with the answer of ``runs[index]``, naming a classic mistake where one fits."""
    call, _, _, (_, _, length_penalty), (ids, score), (expected_ids, expected_score) = runs[index]
    if ids == expected_ids[1:]:
        raise CheckFailed(check, f"{call}: the target should start with the start token "
                                 f"(model.config.decoder_start_token_id = {expected_ids[0]}), then the generated "
                                 f"tokens: {expected_ids}.")
    if ids == expected_ids:
        if abs(score - math.exp(expected_score)) < 1e-4:
            raise CheckFailed(check, f"{call}: the target is right but the score is a probability: "
                                     f"{_MISTAKES[-1][0]}")
        length = max(len(ids) - 1, 1)
        if abs(score - expected_score / length ** length_penalty) < 1e-4:
            raise CheckFailed(check, f"{call}: return the plain sum of log-probabilities ({expected_score:.4f}) as "
                                     f"the score, not the length-normalised one ({score:.4f}).")
        raise CheckFailed(check, f"{call}: the target is right, but its score should be the sum of its tokens' "
                                 f"log-probabilities, {expected_score:.4f}, not {score:.4f}.")
    # the mistake that explains every case (target and score), else every target, else this case's target
    wrong = [(text, [reference_beam_search(m, src, *args, **flags) for _, m, src, args, _, _ in runs])
             for text, flags in _MISTAKES]
    answers = [run[4] for run in runs]
    tests = [lambda a, w: _same(a, w), lambda a, w: a[0] == w[0]]
    for same in tests:
        for text, outputs in wrong:
            if all(same(a, w) for a, w in zip(answers, outputs)):
                raise CheckFailed(check, f"{call}: {text}")
    for text, outputs in wrong:
        if outputs[index][0] == ids:
            raise CheckFailed(check, f"{call}: {text}")
    raise CheckFailed(check, f"{call} returned the target {ids} (score {score:.4f}), but the best target is "
                             f"{expected_ids} (score {expected_score:.4f}).")
