"""Grounding pre-training of a tiny (random-init) CLIP text encoder on the instruction grammar.

InstructPix2Pix conditions on a frozen, pretrained CLIP text encoder. The tiny CPU preset has no
pretrained weights: a random frozen CLIP's causal attention mixes the words of all earlier
operations into each token, so in "Add a large right pleural effusion; add a left apical
pneumothorax" nothing binds "right" to the effusion more than to the pneumothorax, and the UNet
must learn that binding from a few hundred pairs. Here the encoder is first trained, for
``steps`` steps, to say from the LAST token of each operation's clause (the first token that has
read the whole clause) that operation's attributes: op, finding, location, severity / target
level and source level, as the instruction grammar parses them (``parse_instruction``), then it is
frozen as InstructPix2Pix's is. Training texts are the train split's instructions, each with its
operations in a random order and, with probability 1/2, left and right swapped (the same texts
the UNet's augmentation produces). Nothing here reads images or targets.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

log = logging.getLogger(__name__)

ATTRIBUTES = ("op", "finding", "location", "level", "from_level")


def _labels(op) -> dict:
    level = op.severity if op.op != "change" else (op.to_level or op.direction)
    return {"op": op.op, "finding": op.finding, "location": op.location or "-", "level": level or "-",
            "from_level": op.from_level or "-"}


def clause_examples(text: str, tokenizer) -> list[tuple[int, dict]]:
    """(index of the clause's last token in ``tokenizer(text)``, the clause's operation labels) per
    ``;``-separated clause of ``text`` that the grammar reads as exactly one operation."""
    from instructx2x.instructions.grammar import UnparseableInstruction, parse_instruction

    clauses = text.split("; ")
    out = []
    for k in range(len(clauses)):
        try:
            ops = parse_instruction(clauses[k])
        except UnparseableInstruction:
            continue
        if len(ops) != 1:
            continue
        prefix = "; ".join(clauses[: k + 1])
        last = len(tokenizer(prefix, truncation=False)["input_ids"]) - 2  # [BOS, ..., last, EOS]
        out.append((last, _labels(ops[0])))
    return out


def variants(text: str, rng: np.random.Generator) -> str:
    """``text`` with its clauses shuffled and, with probability 1/2, left and right swapped."""
    from instructx2x.instructions.grammar import flip_instruction

    clauses = text.split("; ")
    clauses = [c[0].lower() + c[1:] for c in clauses]
    joined = "; ".join(clauses[i] for i in rng.permutation(len(clauses)))
    if rng.random() < 0.5:
        joined = flip_instruction(joined)
    return joined[0].upper() + joined[1:]


def pretrain_text_encoder(text_encoder, tokenizer, instructions, steps: int, lr: float, seed: int,
                          batch_size: int = 32, eval_texts=()) -> dict:
    """Train ``text_encoder`` in place (then frozen, eval); returns first/last loss and accuracies.

    ``clause_accuracy``: on the unaugmented ``instructions`` after training, the share of clauses
    whose attributes are all read correctly from their last token; ``heldout_clause_accuracy`` the
    same on ``eval_texts`` (e.g. the val split's instructions), counting a value never seen in
    training as wrong."""
    texts = sorted({str(t) for t in instructions})
    if steps <= 0:
        return {"steps": 0}
    if not any(clause_examples(t, tokenizer) for t in texts):
        raise ValueError("text grounding: no instruction clause the grammar reads as one operation")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    # classes: every value seen in the training texts and their side-swapped variants
    values: dict[str, set] = {a: {"-"} for a in ATTRIBUTES}
    from instructx2x.instructions.grammar import flip_instruction

    for t in texts:
        for tt in (t, flip_instruction(t)):
            for _, lab in clause_examples(tt, tokenizer):
                for a in ATTRIBUTES:
                    values[a].add(lab[a])
    classes = {a: sorted(v) for a, v in values.items()}
    hidden = text_encoder.config.hidden_size
    heads = torch.nn.ModuleDict({a: torch.nn.Linear(hidden, len(c)) for a, c in classes.items()})
    params = list(text_encoder.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    text_encoder.requires_grad_(True).train()
    max_len = tokenizer.model_max_length
    history = []
    memo: dict[str, list] = {}  # clause parsing is the slow part of a step; variants repeat

    def examples(t):
        if t not in memo:
            memo[t] = clause_examples(t, tokenizer)
        return memo[t]

    def batch_loss(batch_texts, train=True):
        ids = tokenizer(batch_texts, padding="max_length", max_length=max_len, truncation=True,
                        return_tensors="pt").input_ids
        hs = text_encoder(ids)[0]
        rows, pos, labs = [], [], {a: [] for a in ATTRIBUTES}
        for i, t in enumerate(batch_texts):
            for p, lab in examples(t):
                if p < max_len:
                    rows.append(i)
                    pos.append(p)
                    for a in ATTRIBUTES:  # -1: a value no training text has (never predicted right)
                        labs[a].append(classes[a].index(lab[a]) if lab[a] in classes[a] else -1)
        if not rows:
            return None, torch.zeros(0, dtype=torch.bool)
        feats = hs[torch.tensor(rows), torch.tensor(pos)]
        losses, correct = [], torch.ones(len(rows), dtype=torch.bool)
        for a in ATTRIBUTES:
            y = torch.tensor(labs[a])
            logits = heads[a](feats)
            losses.append(torch.nn.functional.cross_entropy(logits, y, ignore_index=-1))
            correct &= logits.argmax(1) == y
        return torch.stack(losses).sum(), correct

    for step in range(steps):
        pick = rng.integers(len(texts), size=batch_size)
        loss, _ = batch_loss([variants(texts[i], rng) for i in pick])
        if loss is None:  # no clause in this batch the grammar reads as one operation
            continue
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
        if step % 50 == 0 or step == steps - 1:
            log.info("text grounding step %d loss %.4f", step, history[-1])
    text_encoder.requires_grad_(False).eval()

    def accuracy(which):
        which = sorted({str(t) for t in which})
        with torch.no_grad():
            ok = [batch_loss(which[i:i + 64])[1] for i in range(0, len(which), 64)]
        ok = torch.cat(ok) if ok else torch.zeros(0, dtype=torch.bool)
        return round(float(ok.float().mean()), 4) if len(ok) else None

    info = {"steps": steps, "first_loss": round(history[0], 4), "last_loss": round(history[-1], 4),
            "clause_accuracy": accuracy(texts), "heldout_clause_accuracy": accuracy(eval_texts)}
    log.info("text grounding: %s", info)
    return info
