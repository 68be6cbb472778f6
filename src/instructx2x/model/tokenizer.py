"""A CLIPTokenizer built offline from the instruction vocabulary; instruction length checks.

CLIP's tokenizer is byte-pair encoding: ``vocab.json`` (token -> id) and ``merges.txt`` (merge
rules). We write both ourselves: every lower-case letter/digit/punctuation character (so any
text tokenizes), plus, for each word of the vocabulary, the merges that assemble it left to right
into one whole-word token. The result is a real ``transformers.CLIPTokenizer`` that
``StableDiffusionInstructPix2PixPipeline`` loads from ``tokenizer/``.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

from instructx2x.core.errors import InputError

SPECIAL = ["<|startoftext|>", "<|endoftext|>"]
CHARS = list(string.ascii_lowercase + string.digits + ".,'-/")


def instruction_words(texts) -> list[str]:
    """Sorted distinct lower-case words of ``texts`` (as CLIP's pre-tokenizer splits them)."""
    words = set()
    for t in texts:
        words.update(w for w in re.findall(r"[a-z0-9]+", str(t).lower()) if len(w) > 1)
    return sorted(words)


def write_tokenizer_files(directory, words) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {}
    for tok in SPECIAL + CHARS + [c + "</w>" for c in CHARS]:
        vocab.setdefault(tok, len(vocab))
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for w in sorted(set(words)):
        # add merges (each ranked after all earlier ones, so earlier words keep their single token)
        # until CLIP's BPE turns the word into one token
        while len(toks := _bpe(w, ranks)) > 1:
            pair = (toks[0], toks[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            vocab.setdefault(pair[0] + pair[1], len(vocab))
    (directory / "vocab.json").write_text(json.dumps(vocab, sort_keys=False))
    (directory / "merges.txt").write_text("\n".join(["#version: 0.2"] + [f"{a} {b}" for a, b in merges]) + "\n")
    return directory


def _bpe(word: str, ranks: dict) -> list[str]:
    """CLIP's byte-pair merge loop (lowest-ranked adjacent pair first) on one word."""
    toks = list(word[:-1]) + [word[-1] + "</w>"]
    while len(toks) > 1:
        cands = [(ranks[p], p) for p in zip(toks, toks[1:]) if p in ranks]
        if not cands:
            break
        a, b = min(cands)[1]
        out, i = [], 0
        while i < len(toks):
            if i < len(toks) - 1 and toks[i] == a and toks[i + 1] == b:
                out.append(a + b)
                i += 2
            else:
                out.append(toks[i])
                i += 1
        toks = out
    return toks


class InstructionTooLong(InputError):
    """An instruction with more tokens than the text encoder reads: refused, never silently cut."""


def token_counts(tokenizer, texts) -> list[int]:
    """Tokens of each text as the model reads it (start and end tokens included), without truncation."""
    return [len(ids) for ids in tokenizer(list(texts), truncation=False)["input_ids"]]


def too_long(tokenizer, texts) -> list[tuple[str, int]]:
    """(text, tokens) of every text longer than ``tokenizer.model_max_length``."""
    texts = list(texts)
    limit = int(tokenizer.model_max_length)
    return [(t, n) for t, n in zip(texts, token_counts(tokenizer, texts)) if n > limit]


def check_length(tokenizer, texts, where: str = "instruction") -> None:
    """Raise ``InstructionTooLong`` naming each over-long text, its token count and the limit."""
    bad = too_long(tokenizer, texts)
    if bad:
        limit = int(tokenizer.model_max_length)
        shown = "; ".join(f"{n} tokens: {t[:80]!r}{'...' if len(t) > 80 else ''}" for t, n in bad[:3])
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise InstructionTooLong(f"{len(bad)} {where}(s) longer than the text encoder's {limit} tokens "
                                 f"(it would cut them): {shown}{more}; shorten them or use a model with a longer limit")


def build_tokenizer(words, max_length: int, workdir):
    """A ``CLIPTokenizer`` for ``words`` (files written under ``workdir``)."""
    from transformers import CLIPTokenizer

    d = write_tokenizer_files(Path(workdir), words)
    return CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"), model_max_length=max_length,
                         pad_token="<|endoftext|>")
