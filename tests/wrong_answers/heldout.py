"""Wrong answers written after the checks were tuned on the rest of the corpus (a held-out batch: its first
measured rates are reported in the commit that added it)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import wrong
from .attention import _MHA
from .transformer import _Block


@wrong("check_pair_counts", "last pair is missing")
def heldout_pairs_zip_short(ids):
    counts = {}
    for a, b in zip(ids[:-2], ids[1:-1]):
        counts[(a, b)] = counts.get((a, b), 0) + 1
    return counts


@wrong("check_merge", "second id")
def heldout_merge_append_pair_second(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if ids[i:i + 2] == list(pair):
            out.append(new_id)
        else:
            out.append(ids[i])
        i += 1
    return out


@wrong("check_wordpiece", "longest")
def heldout_wordpiece_shortest_first_only(word, vocab):
    pieces, start = [], 0
    while start < len(word):
        for end in range(start + 1, len(word) + 1):
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                pieces.append(piece)
                start = end
                break
        else:
            return ["[UNK]"]
    return pieces


@wrong("check_attention", "forgot to scale")
def heldout_attention_softmax_then_mask_no_scale(q, k, v, mask=None):
    scores = torch.matmul(q, k.transpose(-1, -2))
    if mask is not None:
        scores = scores.masked_fill(mask == False, -1e9)  # noqa: E712
    weights = scores.softmax(-1)
    return weights @ v, weights


@wrong("check_attention", "sqrt(d_v)")
def heldout_attention_scale_by_v(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / v.size(-1) ** 0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(-1)
    return weights @ v, weights


@wrong("check_causal_mask", "diagonal")
def heldout_causal_lt(T):
    i = torch.arange(T)
    return i[None, :] < i[:, None]


@wrong("check_padding_mask", "off by one")
def heldout_padding_loop_inclusive(lengths, T):
    mask = torch.zeros(len(lengths), 1, 1, T, dtype=torch.bool)
    for b, n in enumerate(lengths.tolist()):
        mask[b, 0, 0, :n + 1] = True
    return mask


@wrong("check_merge_heads", "reshaped straight")
def heldout_merge_view_contiguous(x):
    B, H, T, d = x.shape
    return x.contiguous().view(B, T, H * d)


@wrong("check_multi_head_attention", "sqrt(d_model)")
class HeldoutMHAScaleC(_MHA):
    def forward(self, x, mask=None):
        B, T, C = x.shape
        q, k, v = (self.heads(f(x)) for f in (self.q_proj, self.k_proj, self.v_proj))
        scores = q @ k.transpose(-2, -1) / C ** 0.5
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        w = scores.softmax(-1)
        return self.out_proj((w @ v).transpose(1, 2).reshape(B, T, C)), w


@wrong("check_layer_norm", "unbiased")
def heldout_layer_norm_var_default(x, weight, bias, eps=1e-5):
    mu = x.mean(-1, keepdim=True)
    return weight * (x - mu) / torch.sqrt(torch.var(x, -1, keepdim=True) + eps) + bias


@wrong("check_feed_forward", "relu")
class HeldoutFFNReLUModule(nn.Module):
    def __init__(self, d_model, d_ff):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(d_model, d_ff), nn.ReLU(), nn.Linear(d_ff, d_model)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


@wrong("check_transformer_block", "post-ln")
class HeldoutBlockPostLNWithMask(_Block):
    def forward(self, x, mask=None):
        x = self.ln1(x + self.attn(x, mask=mask)[0])
        x = self.ln2(x + self.ffn(x))
        return x


@wrong("check_next_token_targets", "swapped")
def heldout_targets_swapped_narrow(ids, block_size, start):
    return ids.narrow(0, start + 1, block_size), ids.narrow(0, start, block_size)


@wrong("check_causal_lm_loss", "summed")
def heldout_loss_manual_sum(logits, targets):
    logp = logits.log_softmax(-1)
    real = targets != -100
    return -logp[real].gather(1, targets[real].unsqueeze(1)).sum()


@wrong("check_top_k", "k + 1")
def heldout_top_k_sort_off_by_one(logits, k):
    threshold = logits.sort(dim=-1, descending=True).values[..., k:k + 1]
    return torch.where(logits >= threshold, logits, torch.full_like(logits, float("-inf")))


@wrong("check_top_p", "crosses p")
def heldout_top_p_loop_strict(logits, p):
    flat = logits.reshape(-1, logits.shape[-1])
    out = torch.full_like(flat, float("-inf"))
    for row in range(flat.shape[0]):
        probs = flat[row].softmax(-1)
        total = 0.0
        for n, index in enumerate(probs.argsort(descending=True).tolist()):
            total += probs[index].item()
            if total >= p and n > 0:
                break
            out[row, index] = flat[row, index]
    return out.reshape(logits.shape)


@wrong("check_sample_next", "generator")
def heldout_sample_manual_seed(logits, generator=None):
    torch.manual_seed(0)
    return torch.multinomial(logits.softmax(-1), 1)


@wrong("check_mlm_masking", "randint(len(special_ids), vocab_size)")
def heldout_mask_hf_randint(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    labels = input_ids.clone()
    prob = torch.full(input_ids.shape, mask_prob)
    prob[torch.isin(input_ids, torch.tensor(list(special_ids)))] = 0
    chosen = torch.bernoulli(prob, generator=generator).bool()
    labels[~chosen] = -100
    masked = input_ids.clone()
    rep = torch.bernoulli(torch.full(input_ids.shape, 0.8), generator=generator).bool() & chosen
    masked[rep] = mask_id
    rnd = torch.bernoulli(torch.full(input_ids.shape, 0.5), generator=generator).bool() & chosen & ~rep
    masked[rnd] = torch.randint(len(special_ids), vocab_size, input_ids.shape, generator=generator)[rnd]
    return masked, labels


@wrong("check_nsp_pairs", "generator")
def heldout_nsp_python_random_unseeded(plays, n, generator=None):
    import random
    firsts = [(t, s, k) for t, sc in plays.items() for s, scene in enumerate(sc) for k in range(len(scene) - 1)]
    pairs = []
    for _ in range(n):
        t, s, k = random.choice(firsts)
        if random.random() < 0.5:
            pairs.append((plays[t][s][k], plays[t][s][k + 1], True))
        else:
            other = random.choice([o for o in plays if o != t])
            pairs.append((plays[t][s][k], random.choice(random.choice(plays[other])), False))
    return pairs


@wrong("check_cls_head", "argument is ignored")
class HeldoutHeadDefaultDropout(nn.Module):
    def __init__(self, d_model, num_labels, dropout):
        super().__init__()
        self.drop = nn.Dropout()                       # p = 0.5 by default
        self.fc = nn.Linear(d_model, num_labels)

    def forward(self, hidden_states):
        return self.fc(self.drop(hidden_states[:, 0]))


@wrong("check_freeze", "bottom")
def heldout_freeze_bottom_by_name(model, train_top_layers):
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("classifier") or any(
            name.startswith(f"bert.blocks.{i}.") for i in range(train_top_layers))


@wrong("check_early_stopping", "tie")
class HeldoutStopperNotWorse:
    def __init__(self, patience, mode="min", min_delta=0.0):
        self.patience, self.mode, self.min_delta, self.best, self.count = patience, mode, min_delta, None, 0

    def update(self, value):
        sign = 1 if self.mode == "min" else -1
        if self.best is None or sign * (self.best - value) >= self.min_delta:
            self.best, self.count = value, 0
        else:
            self.count += 1
        return self.count >= self.patience


@wrong("check_lora_linear", "not scaled")
class HeldoutLoRAScaleInMerge(nn.Module):
    def __init__(self, base, rank=8, alpha=16.0):
        super().__init__()
        self.base, self.scale = base, alpha / rank
        base.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.randn(rank, base.in_features) * 0.01)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x):
        return self.base(x) + F.linear(F.linear(x, self.lora_A), self.lora_B)

    def merged(self):
        layer = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
        layer.weight.data = self.base.weight + self.scale * self.lora_B @ self.lora_A
        if self.base.bias is not None:
            layer.bias.data = self.base.bias.clone()
        return layer


@wrong("check_cached_attention_step", "before attending")
def heldout_step_cache_then_attend_old(q_t, k_t, v_t, k_cache, v_cache):
    if k_cache.shape[-2] == 0:
        out = v_t
    else:
        w = (q_t @ k_cache.transpose(-2, -1) / math.sqrt(q_t.shape[-1])).softmax(-1)
        out = w @ v_cache
    return out, torch.cat([k_cache, k_t], -2), torch.cat([v_cache, v_t], -2)


@wrong("check_gpt_forward", "position embeddings are missing")
def heldout_gpt_no_wpe(model, input_ids):
    x = model.drop(model.wte(input_ids))
    for block in model.blocks:
        x = block(x)
    return model.lm_head(model.ln_f(x))


@wrong("check_combine_gradients", "plain mean")
def heldout_combine_mean_loop(shard_grads, shard_sizes):
    total = torch.zeros_like(shard_grads[0])
    for g in shard_grads:
        total += g
    return total / len(shard_grads)
