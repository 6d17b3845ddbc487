"""Pre-training data for GPT (next-token prediction) and BERT (masked LM + next-sentence prediction).

Shapes: ``N`` tokens in a corpus, ``B`` batch, ``T`` positions.

    x, y = causal_lm_batch(ids, block_size=64, batch_size=32, generator=g)   # (B, T) each, y = x shifted by one
    x, y = causal_lm_blocks(ids, block_size=64)                              # every non-overlapping block, in order
    masked, labels = mask_tokens(input_ids, tok.special_ids, tok.vocab_size, tok.mask_id, generator=g)
    examples = make_nsp_examples(load_shakespeare(), n=1000, generator=g)   # (A, B, is_next) pairs of speeches
    batch = bert_pretraining_batch(examples, tok, max_length=128, generator=g)  # BertForPreTraining's inputs

Labels follow BERT and Hugging Face: ``-100`` means "no loss here"; ``nsp_labels`` are 0 when B really
follows A and 1 when B is a random segment.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, NamedTuple, Sequence

import torch

from .data import Play
from .validation import describe, expect_ids_in_vocab, expect_positive_int, expect_tensor, is_int, is_number

__all__ = [
    "IGNORE_INDEX", "causal_lm_batch", "causal_lm_blocks", "mask_tokens",
    "SegmentId", "NSPExample", "nsp_segments", "make_nsp_examples", "encode_nsp_batch", "bert_pretraining_batch",
]

IGNORE_INDEX = -100  # label value that cross_entropy skips (its default ignore_index)


# --------------------------------------------------------------------------------------------------
# GPT: next-token prediction
# --------------------------------------------------------------------------------------------------

def _expect_corpus(ids, block_size) -> None:
    expect_tensor(ids, "ids", 1, "(N,) of token ids")
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise TypeError(f"`ids` should hold integer token ids (torch.long), but its dtype is {ids.dtype}.")
    expect_positive_int(block_size, "block_size")
    if ids.numel() < block_size + 1:
        raise ValueError(f"`ids` should hold at least block_size + 1 = {block_size + 1} tokens (a block and the "
                         f"token after it), but it holds {ids.numel()}.")


def causal_lm_batch(ids: torch.Tensor, block_size: int, batch_size: int,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random contiguous blocks of ``ids`` (N,): inputs x and targets y = the next tokens.

    Returns ``(x, y)``, each (B, T) with T = block_size and ``y[b, t] == ids[start_b + t + 1]``.
    """
    _expect_corpus(ids, block_size)
    expect_positive_int(batch_size, "batch_size")
    starts = torch.randint(0, ids.numel() - block_size, (batch_size,), generator=generator)   # (B,)
    offsets = torch.arange(block_size)                                                         # (T,)
    positions = (starts[:, None] + offsets[None, :]).to(ids.device)                            # (B, T)
    return ids[positions], ids[positions + 1]


def causal_lm_blocks(ids: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every non-overlapping block of ``ids`` (N,) in order, for evaluation: ``(x, y)`` each (n_blocks, T).

    Block i covers tokens ``i*T .. i*T + T - 1`` and its targets the tokens one further; the leftover
    tail that cannot fill a whole block (with its next token) is dropped.
    """
    _expect_corpus(ids, block_size)
    n_blocks = (ids.numel() - 1) // block_size
    used = n_blocks * block_size
    x = ids[:used].view(n_blocks, block_size)          # (n_blocks, T)
    y = ids[1:used + 1].view(n_blocks, block_size)     # (n_blocks, T), shifted by one
    return x, y


# --------------------------------------------------------------------------------------------------
# BERT: masked language modelling
# --------------------------------------------------------------------------------------------------

def _as_special_tensor(special_ids, vocab_size: int) -> torch.Tensor:
    if isinstance(special_ids, torch.Tensor):
        special_ids = special_ids.flatten().tolist()
    if isinstance(special_ids, (str, bytes)) or not isinstance(special_ids, Iterable):
        raise TypeError(f"`special_ids` should be a collection of token ids such as {{0, 101, 102, 103}}, "
                        f"but got {describe(special_ids)}.")
    special_ids = sorted(set(special_ids))
    if any(not is_int(i) or not 0 <= i < vocab_size for i in special_ids):
        raise ValueError(f"`special_ids` should be integer ids in [0, {vocab_size - 1}], but got {special_ids}.")
    if len(special_ids) >= vocab_size:
        raise ValueError(f"every id in the vocabulary ({vocab_size}) is special, so no random replacement is left.")
    return torch.tensor(special_ids, dtype=torch.long)


def mask_tokens(input_ids: torch.Tensor, special_ids, vocab_size: int, mask_id: int, mask_prob: float = 0.15,
                generator: torch.Generator | None = None,
                special_tokens_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: returns ``(masked_ids, labels)``, both (B, T) like ``input_ids``.

    Each position whose id is not in ``special_ids`` (pass [PAD] there too) and not True in the optional
    ``special_tokens_mask`` (B, T) is chosen with probability ``mask_prob``. A chosen token becomes
    [MASK] 80% of the time, a random non-special token 10%, and stays as it is 10%.
    ``labels`` hold the original id at chosen positions and -100 elsewhere. ``input_ids`` is not changed.
    """
    expect_positive_int(vocab_size, "vocab_size")
    expect_ids_in_vocab(input_ids, vocab_size, "input_ids")
    expect_tensor(input_ids, "input_ids", 2, "(B, T)")
    if not is_int(mask_id) or not 0 <= mask_id < vocab_size:
        raise ValueError(f"`mask_id` should be the [MASK] token's id in [0, {vocab_size - 1}], "
                         f"but got {describe(mask_id)}.")
    if not is_number(mask_prob) or not 0.0 <= mask_prob <= 1.0:
        raise ValueError(f"`mask_prob` should be a probability in [0, 1], but got {describe(mask_prob)}.")
    special = _as_special_tensor(special_ids, vocab_size)
    protected = torch.isin(input_ids, special.to(input_ids.device))               # (B, T) never chosen
    if special_tokens_mask is not None:
        expect_tensor(special_tokens_mask, "special_tokens_mask", 2, "(B, T)")
        if special_tokens_mask.shape != input_ids.shape:
            raise ValueError(f"`special_tokens_mask` should have the shape of input_ids {tuple(input_ids.shape)}, "
                             f"but got {tuple(special_tokens_mask.shape)}.")
        protected = protected | special_tokens_mask.bool()

    # Draw every random number on the CPU generator, whatever happens, so a seed fixes the whole result.
    shape = input_ids.shape
    chosen_draw = torch.rand(shape, generator=generator)                           # (B, T)
    action_draw = torch.rand(shape, generator=generator)                           # (B, T) which of 80/10/10
    allowed = torch.ones(vocab_size, dtype=torch.bool)
    allowed[special] = False
    ordinary = allowed.nonzero().squeeze(1)                                        # (V - n_special,) non-special ids
    random_pick = ordinary[torch.randint(0, ordinary.numel(), shape, generator=generator)]   # (B, T)

    device = input_ids.device
    chosen = (chosen_draw.to(device) < mask_prob) & ~protected                     # (B, T)
    to_mask = chosen & (action_draw.to(device) < 0.8)
    to_random = chosen & (action_draw.to(device) >= 0.8) & (action_draw.to(device) < 0.9)

    masked_ids = input_ids.clone()
    masked_ids[to_mask] = mask_id
    masked_ids[to_random] = random_pick.to(device)[to_random]
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    return masked_ids, labels


# --------------------------------------------------------------------------------------------------
# BERT: next-sentence prediction on Shakespeare
# --------------------------------------------------------------------------------------------------

class SegmentId(NamedTuple):
    """Where a segment comes from: the play's slug, the scene's index in ``play.scenes``, the speech's index."""
    play: str
    scene: int
    speech: int


@dataclass(frozen=True)
class NSPExample:
    """A next-sentence-prediction pair. ``label`` is BERT's: 0 = B follows A, 1 = B is random."""
    text_a: str
    text_b: str
    is_next: bool
    source_a: SegmentId
    source_b: SegmentId

    @property
    def label(self) -> int:
        return 0 if self.is_next else 1


def nsp_segments(play: Play) -> list[list[str]]:
    """A play's segments, scene by scene: each speech (its lines joined by newlines) is one segment."""
    if not isinstance(play, Play):
        raise TypeError(f"expected a Play from load_shakespeare(), but got {describe(play)}.")
    return [[speech.text for speech in scene.speeches] for scene in play.scenes]


def make_nsp_examples(plays: Sequence[Play], n: int, generator: torch.Generator | int = 0) -> list[NSPExample]:
    """``n`` NSP pairs: A is a random speech that has a next one in its scene; with probability 1/2
    B is that next speech (is_next), otherwise a random speech from another play.

    ``generator``: a ``torch.Generator`` or an int seed; the same seed gives the same examples.
    """
    if isinstance(plays, Play) or not isinstance(plays, Sequence) or not all(isinstance(p, Play) for p in plays):
        raise TypeError(f"`plays` should be a list of Play objects (from load_shakespeare()), "
                        f"but got {describe(plays)}.")
    if len(plays) < 2:
        raise ValueError(f"`plays` should hold at least 2 plays (random segments come from another play), "
                         f"but it holds {len(plays)}.")
    expect_positive_int(n, "n")
    if is_int(generator):
        generator = torch.Generator().manual_seed(generator)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"`generator` should be a torch.Generator or an int seed, but got {describe(generator)}.")

    segments = [nsp_segments(play) for play in plays]                               # play -> scene -> speech
    all_of_play = [[SegmentId(play.slug, s, k) for s, scene in enumerate(scenes) for k in range(len(scene))]
                   for play, scenes in zip(plays, segments)]
    firsts = [(p, SegmentId(play.slug, s, k)) for p, (play, scenes) in enumerate(zip(plays, segments))
              for s, scene in enumerate(scenes) for k in range(len(scene) - 1)]    # speeches with a next one
    empty = [play.title for play, found in zip(plays, all_of_play) if not found]
    if empty:
        raise ValueError(f"every play should have at least one speech, but {', '.join(empty)} has none.")
    if not firsts:
        raise ValueError("no scene in `plays` has two speeches, so there is no real next segment to use.")

    def text(p: int, where: SegmentId) -> str:
        return segments[p][where.scene][where.speech]

    examples = []
    for _ in range(n):
        p, a = firsts[int(torch.randint(len(firsts), (1,), generator=generator))]
        if torch.rand(1, generator=generator).item() < 0.5:
            q, b = p, SegmentId(a.play, a.scene, a.speech + 1)
        else:
            q = int(torch.randint(len(plays) - 1, (1,), generator=generator))
            q += q >= p                                                                # skip A's own play
            b = all_of_play[q][int(torch.randint(len(all_of_play[q]), (1,), generator=generator))]
        examples.append(NSPExample(text(p, a), text(q, b), q == p, a, b))
    return examples


def encode_nsp_batch(examples: Sequence[NSPExample], tokenizer, max_length: int) -> dict[str, torch.Tensor]:
    """Tokenize pairs as ``[CLS] A [SEP] B [SEP]``, padded to ``max_length`` and truncated longest-first
    (the special tokens always stay). Returns ``input_ids``, ``token_type_ids`` (0 for [CLS] A [SEP],
    1 for B [SEP]), ``attention_mask`` (1 = real token), each (B, T), and ``nsp_labels`` (B,)
    (0 = B follows A, 1 = random)."""
    if isinstance(examples, NSPExample) or not all(isinstance(e, NSPExample) for e in examples) or not examples:
        raise TypeError(f"`examples` should be a non-empty list of NSPExample (from make_nsp_examples), "
                        f"but got {describe(examples)}.")
    batch = tokenizer.batch_encode([e.text_a for e in examples], [e.text_b for e in examples],
                                   max_length=max_length, padding="max_length", truncation=True)
    batch["nsp_labels"] = torch.tensor([e.label for e in examples], dtype=torch.long)   # (B,)
    return batch


def bert_pretraining_batch(examples: Sequence[NSPExample], tokenizer, max_length: int,
                           generator: torch.Generator | None = None,
                           mask_prob: float = 0.15) -> dict[str, torch.Tensor]:
    """NSP encoding plus MLM masking: the keyword arguments of ``BertForPreTraining``:
    ``input_ids`` (masked), ``token_type_ids``, ``attention_mask``, ``mlm_labels`` (B, T), ``nsp_labels`` (B,)."""
    batch = encode_nsp_batch(examples, tokenizer, max_length)
    masked, labels = mask_tokens(batch["input_ids"], tokenizer.special_ids, tokenizer.vocab_size, tokenizer.mask_id,
                                 mask_prob=mask_prob, generator=generator)
    return {**batch, "input_ids": masked, "mlm_labels": labels}
