"""Write a transformers causal LM as a GGUF file that llama.cpp (and ollama, LM Studio, llama-cpp-python) runs.

Why by hand: the maintained converter, llama.cpp's `convert_hf_to_gguf.py`, is a script of the llama.cpp
repository, not an installable library; the file format itself is written here with the maintained `gguf`
package (GGUFWriter, the HF-to-GGUF tensor name map `TensorNameMap`, and its numpy quantisers), following
what `convert_hf_to_gguf.py` does for the architectures below:

- `llama` (Llama, SmolLM, TinyLlama) and `mistral` (llama.cpp's `llama` architecture): the query and key
  projections are permuted from Hugging Face's rotate-half layout to llama.cpp's interleaved one
  (`LlamaModel.permute` in the converter; transformers' GGUF loader undoes it on read);
- `qwen2` (Qwen2, Qwen2.5): no permutation; the query/key/value biases are written as they are.

The tokenizer is not converted: its GGUF keys (`tokenizer.ggml.*`, the chat template) are copied from a GGUF
of the same tokenizer (`tokenizer_gguf`: the embedded SmolLM2's own file, or the base model's GGUF a user
downloads), after checking that it holds the same vocabulary. That keeps llama.cpp's pre-tokenizer choice,
which its converter derives from a table of tokenizer hashes, exactly as the base model's publishers made it.

Tensor types (`file_type`): `f32` (exact), `f16`, or `q8_0` (8-bit blocks of 32 with one scale; llama.cpp's
near-lossless default). One-dimensional tensors (norms, biases) stay f32, as in llama.cpp's converter; a
matrix whose rows are not a multiple of the 32-value block is written f16 instead of q8_0. Tensors are
converted and written one at a time, so memory beyond the model itself stays one tensor's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunewise.errors import UserError

FILE_TYPES = ("f32", "f16", "q8_0")


@dataclass(frozen=True)
class _Arch:
    gguf: str  # llama.cpp's architecture name
    permute_qk: bool  # rotate-half -> interleaved rotary layout for q_proj / k_proj


ARCHES = {"llama": _Arch("llama", True), "mistral": _Arch("llama", True), "qwen2": _Arch("qwen2", False)}


def _permute(weights, n_head: int):
    """llama.cpp's rotary layout: (n_head, 2, d/2, in) -> (n_head, d/2, 2, in), as convert_hf_to_gguf.py does."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _ggml_type(name: str, shape: tuple[int, ...], file_type: str):
    """The GGML type one tensor is written in under `file_type`."""
    from gguf import GGMLQuantizationType as Q

    if len(shape) == 1 or file_type == "f32" or name.endswith("_norm.weight"):
        return Q.F32
    return Q.Q8_0 if file_type == "q8_0" and shape[-1] % 32 == 0 else Q.F16


def _encode(array, qtype):
    """`array` (float32, numpy) as the bytes or floats of GGML type `qtype`."""
    import numpy as np
    from gguf import GGMLQuantizationType as Q
    from gguf import quants

    if qtype == Q.Q8_0:
        return quants.quantize(array, Q.Q8_0)
    return array.astype(np.float16 if qtype == Q.F16 else np.float32)


def _described(shape: tuple[int, ...], qtype):
    """(shape, numpy dtype, bytes) that GGUFWriter.add_tensor_info takes for a tensor of `shape` in `qtype`."""
    import math

    import numpy as np
    from gguf import GGMLQuantizationType as Q
    from gguf import quants

    if qtype == Q.Q8_0:
        raw = quants.quant_shape_to_byte_shape(shape, qtype)
        return raw, np.dtype(np.uint8), math.prod(raw)
    dtype = np.dtype(np.float16 if qtype == Q.F16 else np.float32)
    return shape, dtype, math.prod(shape) * dtype.itemsize


def check_tokenizer(reader, tokenizer, source: Path) -> None:
    """Raise UserError unless the GGUF at `source` holds `tokenizer`'s vocabulary (same size, same tokens)."""
    field = reader.fields.get("tokenizer.ggml.tokens")
    if field is None:
        raise UserError(f"{source}: this GGUF has no tokenizer (tokenizer.ggml.tokens); give the GGUF of the base "
                        "model, with --tokenizer-gguf")
    tokens = field.contents()
    size = len(tokenizer)
    if len(tokens) != size:
        raise UserError(f"{source}: its tokenizer has {len(tokens)} tokens, the model's {size}; give the GGUF of "
                        "this model's own base, with --tokenizer-gguf")
    ids = list(range(0, size, max(1, size // 512)))
    ours = tokenizer.convert_ids_to_tokens(ids)
    for i, mine in zip(ids, ours, strict=True):
        if tokens[i] != mine:
            raise UserError(f"{source}: token {i} is {tokens[i]!r} there and {mine!r} in the model's tokenizer; give "
                            "the GGUF of this model's own base, with --tokenizer-gguf")


def _copy_tokenizer_keys(reader, writer) -> None:
    from gguf import GGUFValueType

    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        sub = field.types[-1] if field.types[0] == GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), field.types[0], sub_type=sub)


def _add_hyperparameters(writer, config, tokenizer, file_type: str, name: str) -> None:
    """The architecture keys llama.cpp reads (`{arch}.block_count`, ...), from the transformers config."""
    import gguf

    n_head = config.num_attention_heads
    writer.add_name(name)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or n_head)
    writer.add_rope_dimension_count(getattr(config, "head_dim", None) or config.hidden_size // n_head)
    theta = getattr(config, "rope_theta", None) or (getattr(config, "rope_parameters", None) or {}).get("rope_theta")
    if theta:
        writer.add_rope_freq_base(float(theta))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(len(tokenizer))
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                          "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[file_type])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _plan(state: dict, config, arch: _Arch) -> list[tuple[str, str]]:
    """(transformers name, llama.cpp name) of every tensor to write, in writing order."""
    import gguf

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.gguf.upper()], config.num_hidden_layers)
    plan = []
    for key in state:
        if key == "lm_head.weight" and getattr(config, "tie_word_embeddings", False):
            continue  # llama.cpp reuses token_embd for the output when output.weight is absent
        target = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise UserError(f"GGUF export: no llama.cpp name for tensor {key} of {config.model_type}")
        plan.append((key, target))
    return plan


def _converted(state: dict, key: str, config, arch: _Arch):
    """One tensor as float32 numpy, q/k projections permuted to llama.cpp's rotary layout where it needs them."""
    import torch

    tensor = state[key].detach().to(torch.float32).cpu()
    n_head = config.num_attention_heads
    if arch.permute_qk and key.endswith("q_proj.weight"):
        tensor = _permute(tensor, n_head)
    elif arch.permute_qk and key.endswith("k_proj.weight"):
        tensor = _permute(tensor, getattr(config, "num_key_value_heads", None) or n_head)
    return tensor.numpy()


def write_gguf(model: Any, tokenizer: Any, path: str | Path, tokenizer_gguf: str | Path, file_type: str = "q8_0",
               name: str | None = None) -> Path:
    """Write `model` (a transformers causal LM of an architecture in ARCHES, weights as they are: merge any
    adapter first) to `path` as one GGUF file and return the path.

    `tokenizer_gguf`: a GGUF holding the model's tokenizer, whose tokenizer keys are copied. `file_type`: one of
    FILE_TYPES. Raises UserError for another architecture, an unknown file type, or a tokenizer GGUF whose
    vocabulary differs from `tokenizer`'s."""
    import gguf

    config = model.config
    arch = ARCHES.get(config.model_type)
    if arch is None:
        raise UserError(f"GGUF export supports the {', '.join(ARCHES)} architectures, not {config.model_type}; "
                        "export the merged model as a folder (--merged DIR) and convert it with llama.cpp's "
                        "convert_hf_to_gguf.py")
    if file_type not in FILE_TYPES:
        raise UserError(f"--type {file_type}: use one of {', '.join(FILE_TYPES)}")
    source = Path(tokenizer_gguf)
    reader = gguf.GGUFReader(source)
    check_tokenizer(reader, tokenizer, source)
    state = model.state_dict()
    plan = _plan(state, config, arch)

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    writer = gguf.GGUFWriter(partial, arch.gguf)
    _add_hyperparameters(writer, config, tokenizer, file_type,
                         name or getattr(config, "name_or_path", None) or "tunewise")
    _copy_tokenizer_keys(reader, writer)
    try:
        types = {}
        for key, target in plan:  # pass 1: names, shapes and types only
            shape = tuple(state[key].shape)
            types[key] = _ggml_type(target, shape, file_type)
            writer.add_tensor_info(target, *_described(shape, types[key]), raw_dtype=types[key])
        writer.write_header_to_file(partial)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for key, _ in plan:  # pass 2: the data, one tensor in memory at a time
            writer.write_tensor_data(_encode(_converted(state, key, config, arch), types[key]))
        writer.close()
        partial.replace(out)  # atomic: no half-written model file under the final name
    finally:
        if partial.exists():
            partial.unlink()
    return out
