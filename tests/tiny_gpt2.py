"""The small random GPT-2 configuration shared by the GPT and generation tests."""
TINY_GPT2 = dict(vocab_size=61, n_positions=24, n_embd=32, n_layer=2, n_head=4,
                 bos_token_id=None, eos_token_id=None, pad_token_id=None, initializer_range=0.3)  # varied tokens
