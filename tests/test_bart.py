"""Our BART equals Hugging Face's BartForConditionalGeneration; greedy and beam search with the decoder's cache."""
import itertools

import pytest
import torch

from ptlm_course.bart import Bart, BartConfig, shift_right
from ptlm_course.seq2seq_generation import beam_search, greedy_decode

transformers = pytest.importorskip("transformers")


def hf_pair(scale_embedding=False, seed=0):
    """A random Hugging Face BART (LayerNorms and the logits bias made visible) and ours with its weights."""
    torch.manual_seed(seed)
    hc = transformers.BartConfig(vocab_size=50, d_model=16, encoder_layers=2, decoder_layers=3,
                                 encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=32,
                                 decoder_ffn_dim=32, max_position_embeddings=40, scale_embedding=scale_embedding)
    hf = transformers.BartForConditionalGeneration(hc).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "layer_norm" in name or "layernorm" in name:
                p.uniform_(0.5, 1.5) if name.endswith("weight") else p.uniform_(-0.3, 0.3)
        hf.final_logits_bias.uniform_(-1, 1)
    return hf, Bart.from_hf_state(BartConfig.from_hf_config(hc.to_dict()), hf.state_dict())


def batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 50, (2, 7), generator=g)
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0                                                  # the second source is padded
    ids[1, 5:] = 1
    return ids, mask, torch.randint(3, 50, (2, 5), generator=g)


@pytest.mark.parametrize("scale_embedding", [False, True])
def test_logits_equal_hugging_face(scale_embedding):
    hf, ours = hf_pair(scale_embedding)
    ids, mask, dec = batch()
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        mine = ours(ids, mask, dec).logits
    assert mine.shape == (2, 5, 50)
    assert torch.allclose(mine, theirs, atol=1e-5), (mine - theirs).abs().max()


def test_loss_and_teacher_forcing_equal_hugging_face():
    hf, ours = hf_pair()
    ids, mask, labels = batch()
    labels[0, -2:] = -100
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask, labels=labels).loss
        mine = ours(ids, mask, labels=labels).loss
    assert torch.allclose(mine, theirs, atol=1e-6)
    from transformers.models.bart.modeling_bart import shift_tokens_right
    assert torch.equal(shift_right(labels, 2, 1), shift_tokens_right(labels, 1, 2))


def test_a_saved_hugging_face_checkpoint_loads(tmp_path):
    hf, _ = hf_pair(seed=3)
    hf.save_pretrained(tmp_path)
    ours = Bart.from_pretrained(tmp_path)
    ids, mask, dec = batch()
    with torch.no_grad():
        assert torch.allclose(ours(ids, mask, dec).logits, hf(input_ids=ids, attention_mask=mask,
                                                              decoder_input_ids=dec).logits, atol=1e-5)


def test_the_decoder_cache_gives_the_same_logits_step_by_step():
    _, ours = hf_pair()
    ids, mask, dec = batch()
    with torch.no_grad():
        memory, memory_mask = ours.encode(ids, mask)
        full = ours.decode(dec, memory, memory_mask)                  # (B, T, V)
        cache = ours.new_kv_cache()
        steps = [ours.decode(dec[:, t:t + 1], memory, memory_mask, kv_cache=cache) for t in range(dec.shape[1])]
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)


def argmax_loop(model, ids, mask, n):
    targets = torch.full((ids.shape[0], 1), model.config.decoder_start_token_id)
    with torch.no_grad():
        for _ in range(n):
            targets = torch.cat([targets, model(ids, mask, targets).logits[:, -1].argmax(-1, keepdim=True)], 1)
    return targets


def test_greedy_decoding_is_the_argmax_loop_and_the_cache_changes_nothing():
    _, ours = hf_pair()
    ours.final_logits_bias[0, ours.config.eos_token_id] = -1e4       # no early end: compare full lengths
    ids, mask, _ = batch()
    expected = argmax_loop(ours, ids, mask, 6)
    assert torch.equal(greedy_decode(ours, ids, mask, max_new_tokens=6), expected)
    assert torch.equal(greedy_decode(ours, ids, mask, max_new_tokens=6, use_cache=False), expected)


def test_beam_search_with_one_beam_is_greedy_and_the_cache_changes_nothing():
    _, ours = hf_pair(seed=5)
    ids, mask, _ = batch(seed=6)
    assert torch.equal(beam_search(ours, ids, mask, num_beams=1, max_new_tokens=8),
                       greedy_decode(ours, ids, mask, max_new_tokens=8))
    assert torch.equal(beam_search(ours, ids, mask, num_beams=4, max_new_tokens=8),
                       beam_search(ours, ids, mask, num_beams=4, max_new_tokens=8, use_cache=False))


def sequence_log_prob(model, ids, mask, target):
    """Sum of log p(token) of a target (start token first), by teacher forcing."""
    with torch.no_grad():
        log_probs = model(ids, mask, target[:, :-1]).logits.log_softmax(-1)   # (1, T, V)
    return log_probs.gather(-1, target[:, 1:, None]).sum().item()


def test_beam_search_wide_enough_finds_the_best_target_of_an_exhaustive_search():
    config = BartConfig(vocab_size=5, d_model=8, n_heads=2, d_ff=16, n_encoder_layers=1, n_decoder_layers=1,
                        max_position_embeddings=16, dropout=0.0, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                        decoder_start_token_id=1)
    torch.manual_seed(0)
    model = Bart(config).eval()
    with torch.no_grad():
        model.shared.weight.normal_(0, 1.0)                          # peaked distributions: the search matters
        model.final_logits_bias[0, 2] = -1e4                         # no eos: every target has 3 tokens
    ids, mask = torch.tensor([[3, 4, 3]]), torch.ones(1, 3, dtype=torch.long)
    best = max(sequence_log_prob(model, ids, mask, torch.tensor([[1, *seq]]))
               for seq in itertools.product(range(5), repeat=3))
    found, score = beam_search(model, ids, mask, num_beams=25, max_new_tokens=3, length_penalty=0.0,
                               return_scores=True)
    assert abs(score.item() - best) < 1e-4
    assert abs(sequence_log_prob(model, ids, mask, found) - best) < 1e-4
    _, narrow = beam_search(model, ids, mask, num_beams=2, max_new_tokens=3, length_penalty=0.0, return_scores=True)
    assert narrow.item() <= score.item() + 1e-6


def test_finished_targets_are_padded_after_eos():
    _, ours = hf_pair(seed=7)
    ours.final_logits_bias[0, ours.config.eos_token_id] = 5.0        # eos early
    ids, mask, _ = batch()
    out = beam_search(ours, ids, mask, num_beams=3, max_new_tokens=6)
    for row in out.tolist():
        if 2 in row[1:]:
            end = row.index(2, 1)
            assert all(t == ours.config.pad_token_id for t in row[end + 1:]), row


def test_bad_input_gets_a_clear_error():
    _, ours = hf_pair()
    ids, mask, dec = batch()
    with pytest.raises(TypeError, match="integer token ids"):
        ours(ids.float(), mask, dec)
    with pytest.raises(ValueError, match="decoder_input_ids"):
        ours(ids, mask, torch.full((2, 3), 99))
    with pytest.raises(ValueError, match="attention_mask"):
        ours(ids, mask[:, :4], dec)
    with pytest.raises(ValueError, match="Pass `decoder_input_ids`"):
        ours(ids, mask)
    with pytest.raises(ValueError, match="num_beams"):
        beam_search(ours, ids, mask, num_beams=0)
    with pytest.raises(ValueError, match="post-LN"):
        BartConfig.from_hf_config({"normalize_before": True})


def test_cross_attention_weights_equal_hugging_face_and_ignore_padding():
    hf, ours = hf_pair()
    hf.config._attn_implementation = "eager"                         # the eager path returns the weights
    ids, mask, dec = batch()
    with pytest.raises(ValueError, match="run the model"):
        ours.cross_attention_weights()
    with torch.no_grad():
        ours(ids, mask, dec)
        theirs = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, output_attentions=True)
    weights = ours.cross_attention_weights()                         # (L, B, H, T, S)
    assert weights.shape == (3, 2, 4, 5, 7)
    torch.testing.assert_close(weights, torch.stack(theirs.cross_attentions), atol=1e-5, rtol=0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 2, 4, 5))
    assert (weights[:, 1, :, :, 5:] == 0).all()                      # padded source positions get nothing
