"""FLOP counting for MFU: the formula's parts for GPT and BERT, and the arithmetic."""
import pytest
import torch

from ptlm_course.bert import BertConfig, BertForPreTraining, BertForSequenceClassification
from ptlm_course.flops import (matmul_flops_per_second, model_flops_utilisation, token_matmul_weights,
                               training_flops_per_token)
from ptlm_course.gpt import GPT, GPTConfig


def test_gpt_counts_the_blocks_and_the_tied_output_layer():
    L, C, V, T = 3, 32, 50, 16
    model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layers=L, n_heads=4, d_model=C))
    assert token_matmul_weights(model) == 12 * L * C * C + V * C       # q, k, v, out, fc1, fc2 + output layer
    assert training_flops_per_token(model, T) == 6 * (12 * L * C * C + V * C) + 12 * L * T * C


def test_gpt2_small_is_124m_parameters_and_about_6_n_flops_per_token():
    model = torch.device("meta")
    with model:
        gpt2 = GPT(GPTConfig())                            # 124M, on the meta device: no memory used
    n = gpt2.num_parameters()
    assert 124e6 < n < 125e6
    flops = training_flops_per_token(gpt2, 1024)
    assert 6 * token_matmul_weights(gpt2) == 6 * (12 * 12 * 768**2 + 50257 * 768)
    assert 1.0 < flops / (6 * n) < 1.2                    # attention adds ~ 12 L T C on top of 6 N


def test_bert_leaves_out_the_per_sequence_heads():
    L, C, V = 2, 32, 60
    config = BertConfig(vocab_size=V, d_model=C, n_layers=L, n_heads=4, d_ff=4 * C,
                        max_position_embeddings=16)
    assert token_matmul_weights(BertForPreTraining(config)) == 12 * L * C * C + C * C + V * C   # + MLM transform
    assert token_matmul_weights(BertForSequenceClassification(config, num_labels=3)) == 12 * L * C * C


def test_mfu_arithmetic_and_errors():
    assert model_flops_utilisation(1000, 6e6, 12e9) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="positive"):
        model_flops_utilisation(1000, 6e6, 0)
    with pytest.raises(ValueError, match="TransformerBlock"):
        training_flops_per_token(torch.nn.Linear(4, 4), 8)
    assert matmul_flops_per_second(64, repeats=3, warmup=1) > 1e6
