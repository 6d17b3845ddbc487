"""The pre-training and sampling exercise checks accept every correct style and name each classic mistake."""
import pytest
import torch
import torch.nn.functional as F

from ptlm_course.checks import CheckFailed
from ptlm_course.checks.pretraining import (
    check_causal_lm_loss, check_mlm_masking, check_next_token_targets, check_nsp_pairs, check_whole_word_masking,
)
from ptlm_course.checks.sampling import check_sample_next, check_top_k, check_top_p
from ptlm_course.generation import top_k_filter, top_p_filter
from ptlm_course.pretraining_data import mask_tokens


def fails_with(check, fn, message):
    with pytest.raises(CheckFailed, match=message):
        check(fn)


def not_written(*args, **kwargs):
    raise NotImplementedError()


ALL_CHECKS = [check_next_token_targets, check_causal_lm_loss, check_mlm_masking, check_whole_word_masking,
              check_nsp_pairs, check_top_k, check_top_p, check_sample_next]


@pytest.mark.parametrize("check", ALL_CHECKS)
def test_unwritten_function_is_reported(check):
    fails_with(check, not_written, "is not written yet")


# --- next-token targets ------------------------------------------------------------------------------

def targets_slices(ids, block_size, start):
    return ids[start:start + block_size], ids[start + 1:start + block_size + 1]


def targets_window(ids, block_size, start):                      # one slice of T + 1, then split
    chunk = ids[start:start + block_size + 1]
    return [chunk[:-1], chunk[1:]]


def targets_with_mistake(kind):
    def fn(ids, block_size, start):
        x = ids[start:start + block_size]
        shift = {"same": 0, "backwards": -1, "two": 2}.get(kind, 1)
        y = ids[start + shift:start + shift + block_size]
        return (y, x) if kind == "swapped" else (x, y)
    return fn


@pytest.mark.parametrize("fn", [targets_slices, targets_window])
def test_next_token_targets_accepts_correct_styles(fn, capsys):
    check_next_token_targets(fn)
    assert "✅ check_next_token_targets: all 4 tests passed." in capsys.readouterr().out


@pytest.mark.parametrize("kind, message", [
    ("same", "y is the same as x"),
    ("backwards", "shifted the wrong way"),
    ("two", "shifted by two"),
    ("swapped", "x and y are swapped"),
])
def test_next_token_targets_names_mistakes(kind, message):
    fails_with(check_next_token_targets, targets_with_mistake(kind), message)


# --- causal LM loss ----------------------------------------------------------------------------------

def loss_flatten(logits, targets):
    B, T, V = logits.shape
    return F.cross_entropy(logits.view(B * T, V), targets.view(B * T))


def loss_transpose(logits, targets):                              # classes in dim 1, as cross_entropy wants
    return F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100)


def loss_by_hand(logits, targets):                                # gather the log-probabilities, python float
    real = targets != -100
    log_probs = logits.log_softmax(-1)[real]                     # (n, V)
    return -log_probs.gather(-1, targets[real][:, None]).mean().item()


def loss_with_mistake(kind):
    def fn(logits, targets):
        B, T, V = logits.shape
        flat_logits, flat_targets = logits.reshape(-1, V), targets.reshape(-1)
        if kind == "softmax":
            return F.cross_entropy(flat_logits.softmax(-1), flat_targets)
        if kind == "sum":
            return F.cross_entropy(flat_logits, flat_targets, reduction="sum")
        if kind == "none":
            return F.cross_entropy(flat_logits, flat_targets, reduction="none")
        if kind == "unflattened":
            return F.cross_entropy(logits, targets)
        if kind == "order":
            return F.cross_entropy(flat_logits, targets.T.reshape(-1))
        if kind == "counted":
            return F.cross_entropy(flat_logits, flat_targets, reduction="none").mean()
        if kind == "not_ignored":
            return F.cross_entropy(flat_logits, flat_targets.clamp(min=0))
        if kind == "per_row":
            rows = [F.cross_entropy(logits[b], targets[b]) for b in range(B)]
            return torch.stack(rows).mean()
        if kind == "axis":
            real = flat_targets != -100
            return -flat_logits.log_softmax(0)[real, flat_targets[real]].mean()
    return fn


@pytest.mark.parametrize("fn", [loss_flatten, loss_transpose, loss_by_hand])
def test_causal_lm_loss_accepts_correct_styles(fn, capsys):
    check_causal_lm_loss(fn)
    assert "✅ check_causal_lm_loss: all 4 tests passed." in capsys.readouterr().out


@pytest.mark.parametrize("kind, message", [
    ("softmax", "passed softmax probabilities"),
    ("sum", "summed, not averaged"),
    ("none", r"should be one number.*shape \(10,\)"),
    ("unflattened", "reads dimension 1 as the classes"),
    ("order", "flattened in a different order"),
    ("counted", "-100 targets were counted in the mean"),
    ("not_ignored", "-100 targets were not ignored"),
    ("per_row", "averaged each sequence first"),
    ("axis", "softmax runs over the wrong axis"),
])
def test_causal_lm_loss_names_mistakes(kind, message):
    fails_with(check_causal_lm_loss, loss_with_mistake(kind), message)


# --- MLM masking -------------------------------------------------------------------------------------

def masking_package(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    return mask_tokens(input_ids, special_ids, vocab_size, mask_id, mask_prob=mask_prob, generator=generator)


def masking_exact_count(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    """A different correct style: exactly 15% per row (randperm), one draw decides 80/10/10, resample specials."""
    masked, labels = input_ids.clone(), torch.full_like(input_ids, -100)
    special = torch.tensor(list(special_ids))
    for r in range(input_ids.shape[0]):
        eligible = (~torch.isin(input_ids[r], special)).nonzero().squeeze(1)
        pick = eligible[torch.randperm(len(eligible), generator=generator)[:round(mask_prob * len(eligible))]]
        labels[r, pick] = input_ids[r, pick]
        for position in pick.tolist():
            u = torch.rand((), generator=generator).item()
            if u < 0.8:
                masked[r, position] = mask_id
            elif u < 0.9:
                token = mask_id
                while token in special_ids:
                    token = int(torch.randint(vocab_size, (), generator=generator))
                masked[r, position] = token
    return masked, labels


def masking_bernoulli(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    """Hugging Face's style: Bernoulli draws, 0.8 then 0.5 of the rest; ids drawn from the ordinary ones."""
    special = torch.isin(input_ids, torch.tensor(sorted(special_ids)))
    chosen = torch.bernoulli(torch.full(input_ids.shape, mask_prob), generator=generator).bool() & ~special
    labels = input_ids.masked_fill(~chosen, -100)
    masked = input_ids.clone()
    to_mask = torch.bernoulli(torch.full(input_ids.shape, 0.8), generator=generator).bool() & chosen
    masked[to_mask] = mask_id
    to_random = torch.bernoulli(torch.full(input_ids.shape, 0.5), generator=generator).bool() & chosen & ~to_mask
    ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_ids])
    masked[to_random] = ordinary[torch.randint(len(ordinary), (int(to_random.sum()),), generator=generator)]
    return masked, labels


def masking_with_mistake(kind):
    def fn(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
        special = torch.tensor(list(special_ids))
        ids = input_ids if kind == "in_place" else input_ids.clone()
        original = input_ids.clone()
        protected = torch.isin(original, special)
        if kind == "specials":
            protected = original == 0                                     # forgets [CLS] and [SEP]
        if kind == "padding":
            protected = protected & (original != 0)
        rate = 0.3 if kind == "rate" else mask_prob
        chosen = (torch.rand(ids.shape, generator=generator) < rate) & ~protected
        u = torch.rand(ids.shape, generator=generator)
        to_mask = chosen & (u < (1.0 if kind == "all_mask" else 0.8))
        to_random = chosen & (u >= 0.8) & (u < 0.9)
        if kind == "no_unchanged":
            to_random = chosen & (u >= 0.8)
        ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_ids])
        random_ids = ordinary[torch.randint(len(ordinary), ids.shape, generator=generator)]
        if kind == "random_special":
            random_ids = torch.randint(vocab_size, ids.shape, generator=generator)
        if kind == "randint_from_n_special":                               # assumes the specials come first
            random_ids = torch.randint(len(special_ids), vocab_size, ids.shape, generator=generator)
        ids[to_random] = random_ids[to_random]
        ids[to_mask] = mask_id
        labels = torch.where(chosen, original, torch.full_like(original, -100))
        if kind == "label_all":
            labels = original.clone()
        if kind == "label_masked":
            labels = torch.where(chosen, ids, torch.full_like(original, -100))
        if kind == "unlabelled_change":
            labels[to_random] = -100
        return ids, labels
    return fn


@pytest.mark.parametrize("fn", [masking_package, masking_exact_count, masking_bernoulli])
def test_mlm_masking_accepts_correct_styles(fn, capsys):
    check_mlm_masking(fn)
    assert "✅ check_mlm_masking: all 10 tests passed." in capsys.readouterr().out


@pytest.mark.parametrize("kind, message", [
    ("in_place", "modified in place"),
    ("specials", r"special tokens were chosen for masking \(\[CLS\], \[SEP\]\)"),
    ("padding", r"special tokens were chosen for masking \(padding\)"),
    ("label_all", "every position has a label"),
    ("label_masked", "the labels hold the masked ids"),
    ("unlabelled_change", "changed but their label is -100"),
    ("random_special", "random replacements are special tokens"),
    ("randint_from_n_special", r"randint\(len\(special_ids\), vocab_size\) assumes the special ids come first"),
    ("rate", r"[23]\d\.\d% of the ordinary tokens were chosen, but it should be about 15%"),
    ("all_mask", "every chosen token became"),
    ("no_unchanged", r"80% \[MASK\] / 10% random / 10% unchanged, but got .*unchanged 0\.\d%"),
])
def test_mlm_masking_names_mistakes(kind, message):
    fails_with(check_mlm_masking, masking_with_mistake(kind), message)


# --- whole-word masking (exercise 07) -------------------------------------------------------------------

def whole_words(kind="ok"):
    """Whole-word masking by reusing the package's token masking for the 80/10/10 step."""
    def fn(input_ids, continues, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
        B, T = input_ids.shape
        special = torch.isin(input_ids, torch.tensor(sorted(special_ids)))
        first = ~continues & ~special
        r = torch.rand((B, T), generator=generator)
        rate = 0.15 if kind == "fixed_rate" else mask_prob
        start = torch.where(continues, 0, torch.arange(T).expand(B, T)).cummax(dim=1).values
        chosen = ((r < rate) & first).gather(1, start) & ~special
        if kind == "first_only":
            chosen = (r < rate) & first
        if kind == "tokens":
            chosen = (r < rate) & ~special
        u = torch.rand((B, T), generator=generator)
        ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_ids])
        random_ids = ordinary[torch.randint(len(ordinary), (B, T), generator=generator)]
        masked = input_ids.clone()
        masked[chosen & (u < 0.8)] = mask_id
        swap = chosen & (u >= 0.8) & (u < 0.9)
        masked[swap] = random_ids[swap]
        return masked, torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    return fn


def test_whole_word_masking_accepts_a_correct_answer(capsys):
    check_whole_word_masking(whole_words())
    assert "✅ check_whole_word_masking: all 9 tests passed." in capsys.readouterr().out


@pytest.mark.parametrize("kind, message", [
    ("first_only", "only the first piece of each chosen word"),
    ("tokens", "a word was chosen only in part: row"),
    ("fixed_rate", "mask_prob is ignored"),
])
def test_whole_word_masking_names_mistakes(kind, message):
    fails_with(check_whole_word_masking, whole_words(kind), message)


def test_whole_word_masking_rejects_token_masking_by_its_arguments():
    fails_with(check_whole_word_masking, masking_package, "raised")


# --- NSP pairs ---------------------------------------------------------------------------------------

def nsp_reference(plays, n, generator=None):
    titles = list(plays)
    firsts = [(t, s, k) for t in titles for s, scene in enumerate(plays[t]) for k in range(len(scene) - 1)]
    pairs = []
    for _ in range(n):
        title, s, k = firsts[int(torch.randint(len(firsts), (), generator=generator))]
        a = plays[title][s][k]
        if torch.rand((), generator=generator) < 0.5:
            pairs.append((a, plays[title][s][k + 1], True))
        else:
            others = [seg for t in titles if t != title for scene in plays[t] for seg in scene]
            pairs.append((a, others[int(torch.randint(len(others), (), generator=generator))], False))
    return pairs


def nsp_exact_half(plays, n, generator=None):
    """Another correct style: exactly n // 2 real pairs (shuffled), A uniform over plays first, int labels."""
    titles = list(plays)
    flags = torch.randperm(n, generator=generator) < n // 2
    pairs = []
    for flag in flags.tolist():
        title = titles[int(torch.randint(len(titles), (), generator=generator))]
        scene = plays[title][int(torch.randint(len(plays[title]), (), generator=generator))]
        k = int(torch.randint(len(scene) - 1, (), generator=generator))
        if flag:
            pairs.append([scene[k], scene[k + 1], 1])
        else:
            other = titles[(titles.index(title) + 1 + int(torch.randint(len(titles) - 1, (), generator=generator)))
                           % len(titles)]
            other_scene = plays[other][int(torch.randint(len(plays[other]), (), generator=generator))]
            pairs.append([scene[k], other_scene[int(torch.randint(len(other_scene), (), generator=generator))], 0])
    return pairs


def nsp_with_mistake(kind):
    def fn(plays, n, generator=None):
        pairs = nsp_reference(plays, n, generator)
        if kind == "inverted":
            return [(a, b, not flag) for a, b, flag in pairs]
        if kind == "always_next":
            return [(a, b, True) for a, b, _ in pairs]
        if kind == "same_play":                                   # random B from A's own play (its first scene)
            return [(a, b if flag else plays[a.split()[0]][0][-1], flag) for a, b, flag in pairs]
        if kind == "not_next":                                    # "next" pairs repeat A
            return [(a, b if not flag else a, flag) for a, b, flag in pairs]
    return fn


def nsp_always_next(plays, n, generator=None):                   # every pair a real next: labels all True
    first_scene = plays["Alpha"][0]
    return [(first_scene[k % 4], first_scene[k % 4 + 1], True) for k in range(n)]


def nsp_unbalanced(plays, n, generator=None):                    # only a quarter of the pairs are real
    pairs = nsp_reference(plays, 4 * n, generator)
    real = [p for p in pairs if p[2]][: n // 4]
    return real + [p for p in pairs if not p[2]][: n - len(real)]


@pytest.mark.parametrize("fn", [nsp_reference, nsp_exact_half])
def test_nsp_pairs_accepts_correct_styles(fn, capsys):
    check_nsp_pairs(fn)
    assert "✅ check_nsp_pairs: all 6 tests passed." in capsys.readouterr().out


@pytest.mark.parametrize("fn, message", [
    (nsp_with_mistake("inverted"), "the labels are inverted"),
    (nsp_with_mistake("always_next"), "every pair is labelled is_next"),
    (nsp_always_next, "every pair is labelled is_next"),
    (nsp_with_mistake("same_play"), "random B from the same play as A"),
    (nsp_with_mistake("not_next"), "says is_next, but B is not the segment right after A"),
    (nsp_unbalanced, r"2\d\.\d% of the pairs are is_next, but it should be about 50%"),
])
def test_nsp_pairs_names_mistakes(fn, message):
    fails_with(check_nsp_pairs, fn, message)


# --- top-k / top-p -----------------------------------------------------------------------------------

def top_k_threshold(logits, k):                                  # compare with the k-th largest, finfo.min
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return torch.where(logits < kth, torch.finfo(logits.dtype).min, logits)


def top_k_sort(logits, k):                                       # argsort, write back with scatter
    order = logits.argsort(dim=-1, descending=True)
    drop = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, order[..., k:], True)
    return logits.masked_fill(drop, float("-inf"))


def top_k_with_mistake(kind):
    def fn(logits, k):
        if kind == "k-1":
            return top_k_filter(logits, k - 1) if k > 1 else torch.full_like(logits, float("-inf"))
        if kind == "k+1":
            return top_k_filter(logits, k + 1)
        if kind == "probs":
            return top_k_filter(logits, k).softmax(-1)
        if kind == "zero":
            return top_k_filter(logits, k).nan_to_num(neginf=0.0)
        if kind == "smallest":
            return logits.masked_fill(top_k_filter(-logits, k).isinf(), float("-inf"))
    return fn


@pytest.mark.parametrize("fn", [top_k_filter, top_k_threshold, top_k_sort])
def test_top_k_accepts_correct_styles(fn, capsys):
    check_top_k(fn)
    assert "✅ check_top_k: all 5 tests passed." in capsys.readouterr().out


@pytest.mark.parametrize("kind, message", [
    ("k-1", "keeps k - 1 tokens"),
    ("k+1", "keeps k \\+ 1 tokens"),
    ("probs", "returned renormalised probabilities"),
    ("zero", r"set to 0, but exp\(0\) is not 0"),
    ("smallest", "keeps the k smallest logits"),
])
def test_top_k_names_mistakes(kind, message):
    fails_with(check_top_k, top_k_with_mistake(kind), message)


def top_p_ascending(logits, p):                                  # HF style: drop the low tail of mass <= 1 - p
    sorted_logits, order = logits.sort(dim=-1)                   # ascending
    cumulative = sorted_logits.softmax(-1).cumsum(-1)
    drop_sorted = cumulative <= 1 - p
    drop_sorted[..., -1] = False                                 # the top token stays
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def top_p_with_mistake(kind):
    def fn(logits, p):
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        cumulative = probs.cumsum(-1)
        keep_sorted = cumulative - probs < p
        if kind in ("crossing", "no_top"):
            keep_sorted = cumulative < p
            if kind == "crossing":
                keep_sorted[..., 0] = True
        if kind == "nothing":
            return torch.full_like(logits, float("-inf"))
        if kind == "sorted":
            return sorted_logits.masked_fill(~keep_sorted, float("-inf"))
        if kind == "unsorted_mask":
            return logits.masked_fill(~keep_sorted, float("-inf"))
        keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
        if kind == "probs":
            return logits.softmax(-1).masked_fill(~keep, 0.0)
        return logits.masked_fill(~keep, float("-inf"))
    return fn


@pytest.mark.parametrize("fn", [top_p_filter, top_p_ascending])
def test_top_p_accepts_correct_styles(fn, capsys):
    check_top_p(fn)
    assert "✅ check_top_p: all 6 tests passed." in capsys.readouterr().out


@pytest.mark.parametrize("kind, message", [
    ("crossing", "drops the token that crosses p"),
    ("no_top", "drops the token that crosses p, and with it every token in some row"),
    ("nothing", "drops every token in some row: the most likely token must always be kept"),
    ("sorted", "returns the logits in sorted order"),
    ("unsorted_mask", "applies the sorted mask to the unsorted logits"),
    ("probs", "you returned probabilities, not logits"),
])
def test_top_p_names_mistakes(kind, message):
    fails_with(check_top_p, top_p_with_mistake(kind), message)


# --- sample_next -------------------------------------------------------------------------------------

def sample_multinomial(logits, generator=None):
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)


def sample_gumbel(logits, generator=None):                       # the Gumbel-max trick, shape (B,)
    u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype).clamp(min=1e-12)
    return (logits - (-u.log()).log()).argmax(-1)


@pytest.mark.parametrize("fn", [sample_multinomial, sample_gumbel])
def test_sample_next_accepts_correct_styles(fn, capsys):
    check_sample_next(fn)
    assert "✅ check_sample_next: all 4 tests passed." in capsys.readouterr().out


@pytest.mark.parametrize("fn, message", [
    (lambda logits, generator=None: logits.argmax(-1, keepdim=True), "always returns the most likely token"),
    (lambda logits, generator=None: torch.multinomial(logits.isfinite().double(), 1, generator=generator),
     "draws every allowed token equally often"),
    (lambda logits, generator=None: torch.multinomial(logits.clamp(min=0).nan_to_num(), 1, generator=generator),
     "in proportion to the raw logits"),
    (lambda logits, generator=None: torch.randint(6, (logits.shape[0], 1), generator=generator),
     "drew a token whose logit is -inf"),
    (lambda logits, generator=None: torch.multinomial((logits / 2).softmax(-1), 1, generator=generator),
     r"draws tokens with frequencies \[0\.\d+"),
    (lambda logits, generator=None: logits.softmax(-1), r"should return token ids of shape \(B,\) or \(B, 1\)"),
])
def test_sample_next_names_mistakes(fn, message):
    fails_with(check_sample_next, fn, message)


def test_differences_next_to_infinities_are_reported_plainly():
    """-inf against -inf is no difference (it used to read as NaN); -inf against a number is reported by where
    -inf was expected and where it was found."""
    from ptlm_course.checks._core import expect_tensor_like
    inf = float("-inf")
    expected = torch.tensor([inf, 1.0, 2.0, inf], dtype=torch.float64)
    message = r"at index \(2,\) it is 2\.5, the reference gives 2 \(largest difference 0\.5\)"
    with pytest.raises(CheckFailed, match=message):
        expect_tensor_like("demo", torch.tensor([inf, 1.0, 2.5, inf]), expected, "the result")
    with pytest.raises(CheckFailed, match=r"it is -inf at 1 position where the reference is finite \(index \(1,\); "
                                          r"the reference gives 1 at \(1,\)\)\.$"):
        expect_tensor_like("demo", torch.tensor([inf, inf, 2.0, inf]), expected, "the result")
    with pytest.raises(CheckFailed, match=r"it is -inf at 2 positions where the reference is finite \(index \(1,\), "
                                          r"\(2,\); the reference gives 1 at \(1,\)\); it is not -inf at 1 position "
                                          r"where the reference has -inf \(index \(3,\); it gives 0\.5 at \(3,\)\)"):
        expect_tensor_like("demo", torch.tensor([inf, inf, inf, 0.5]), expected, "the result")
    with pytest.raises(CheckFailed) as failure:
        expect_tensor_like("demo", torch.tensor([inf, inf, 2.0, inf]), expected, "the result")
    assert "nan" not in failure.value.message.lower()
