"""Grounding pre-training of the tiny text encoder (training/text_grounding.py)."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from instructx2x.instructions.grammar import render_instruction
from instructx2x.instructions.operation import Operation
from instructx2x.model.build import tiny_text_encoder
from instructx2x.model.tokenizer import build_tokenizer, instruction_words
from instructx2x.training.text_grounding import clause_examples, pretrain_text_encoder

FINDINGS = [("pleural effusion", "small"), ("pneumothorax", "small"), ("consolidation", "mild"),
            ("atelectasis", "mild")]


def _instructions():
    """Two-operation instructions naming both sides: binding a side to its own finding is the task."""
    out = []
    for (f1, s1), (f2, s2) in itertools.permutations(FINDINGS, 2):
        for side1, side2 in (("left", "right"), ("right", "left")):
            for op1, op2 in (("add", "add"), ("add", "remove"), ("remove", "add")):
                out.append(render_instruction([Operation(op1, f1, location=side1, severity=s1),
                                               Operation(op2, f2, location=side2, severity=s2)]))
    return out


CHECK = "Add a small left pleural effusion; remove the mild consolidation in the right upper lung"


@pytest.fixture(scope="module")
def encoder_and_tokenizer(tmp_path_factory):
    texts = _instructions()
    torch.manual_seed(0)
    tok = build_tokenizer(instruction_words(texts + [CHECK]), 32, tmp_path_factory.mktemp("tok"))
    enc = tiny_text_encoder({"text_hidden_size": 32, "text_layers": 2, "text_heads": 4, "max_length": 32}, len(tok))
    return texts, enc, tok


def test_clause_examples_point_at_each_clause_last_word(encoder_and_tokenizer):
    texts, _, tok = encoder_and_tokenizer
    text = CHECK
    ex = clause_examples(text, tok)
    ids = tok(text)["input_ids"]
    assert [lab["finding"] for _, lab in ex] == ["pleural effusion", "consolidation"]
    assert [lab["location"] for _, lab in ex] == ["left", "right upper lung"]
    assert [lab["op"] for _, lab in ex] == ["add", "remove"]
    assert ids[ex[0][0]] == tok.convert_tokens_to_ids("effusion</w>")
    assert ids[ex[1][0]] == tok.convert_tokens_to_ids("lung</w>")
    assert ex[1][0] == len(ids) - 2  # the last word before the end token


def test_grounding_binds_each_side_to_its_own_finding_on_unseen_combinations(encoder_and_tokenizer):
    texts, enc, tok = encoder_and_tokenizer
    # held out: every instruction pairing pleural effusion with pneumothorax
    held = [t for t in texts if "effusion" in t and "pneumothorax" in t]
    train = [t for t in texts if t not in held]
    before = [p.detach().clone() for p in enc.parameters()]
    info = pretrain_text_encoder(enc, tok, train, steps=250, lr=3e-3, seed=0, eval_texts=held)
    assert info["clause_accuracy"] >= 0.95, info
    # a random encoder reads nothing: the held-out combinations must be read, side bound to finding
    assert info["heldout_clause_accuracy"] >= 0.8, info
    assert info["last_loss"] < 0.2 * info["first_loss"]
    assert not any(p.requires_grad for p in enc.parameters()) and not enc.training
    assert any(not torch.equal(a, b) for a, b in zip(before, enc.parameters()))


def test_zero_steps_leaves_the_encoder_untouched(encoder_and_tokenizer):
    texts, _, tok = encoder_and_tokenizer
    torch.manual_seed(1)
    enc = tiny_text_encoder({"text_hidden_size": 32, "text_layers": 2, "text_heads": 4, "max_length": 32}, len(tok))
    before = [p.detach().clone() for p in enc.parameters()]
    assert pretrain_text_encoder(enc, tok, texts, steps=0, lr=1e-3, seed=0) == {"steps": 0}
    assert all(torch.equal(a, b) for a, b in zip(before, enc.parameters()))


def test_unreadable_instructions_are_an_error(encoder_and_tokenizer):
    _, enc, tok = encoder_and_tokenizer
    with pytest.raises(ValueError, match="no instruction clause"):
        pretrain_text_encoder(enc, tok, ["zzz qqq"], steps=5, lr=1e-3, seed=0)


def test_prepare_reports_the_grounding(tmp_path):
    from training_fixtures import make_pairs, tiny_config
    from instructx2x.training.prepare import prepare

    pq = make_pairs(tmp_path, n=8)
    cfg = tiny_config()
    cfg["model"]["tiny"].update(vae_steps=2, text_grounding_steps=30)
    info = prepare(pq, tmp_path / "init", cfg["model"], 0, 32)
    report = json.loads((tmp_path / "init" / "prepare_report.json").read_text())
    assert report["text_grounding"]["steps"] == 30 and info["text_grounding"]["clause_accuracy"] is not None
    assert report["text_grounding"]["heldout_clause_accuracy"] is not None  # the val split's instructions
