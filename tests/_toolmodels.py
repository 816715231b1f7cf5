"""Tiny models for the tool-call tests, built in seconds without training.

`scripted_tool_caller`: a 2-layer Llama whose layers add nothing (attention and MLP outputs zeroed), so the next
token depends on the current token alone (a bigram model written into the weights): after a newline it writes
`<tool_call>` and after `>` it ends the reply. Under tool_choice "auto" it therefore calls a tool at once,
as a capable model would, which lets client frameworks that always send "auto" (AutoGen) run a real tool
loop; what it writes inside the call is left to the server's grammar. `HERMES_TEMPLATE`: a chat template that
renders `tools` and tool turns the way Qwen 2.5's does, for testing the native-template path."""

from __future__ import annotations

from pathlib import Path

CHAIN = ["\n", "<", "tool", "_", "call", ">"]  # each token is followed by the next; ">" by end-of-turn

HERMES_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\n{% if messages[0].role == 'system' %}{{ messages[0].content }}\n\n"
    "{% endif %}# Tools\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>"
    "{% for tool in tools %}\n{{ tool | tojson }}{% endfor %}\n</tools>\n\nFor each function call, return a json "
    "object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
    "{%- elif messages[0].role == 'system' %}<|im_start|>system\n{{ messages[0].content }}<|im_end|>\n{% endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'user' or (message.role == 'assistant' and not message.tool_calls) %}"
    "<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n"
    "{%- elif message.role == 'assistant' %}<|im_start|>assistant\n{% if message.content %}{{ message.content }}\n"
    "{% endif %}{% for tc in message.tool_calls %}<tool_call>\n{\"name\": \"{{ tc.function.name }}\", "
    "\"arguments\": {{ tc.function.arguments | tojson }}}\n</tool_call>{% endfor %}<|im_end|>\n"
    "{%- elif message.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ message.content }}\n"
    "</tool_response><|im_end|>\n{% endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def scripted_tool_caller(path: Path, tokenizer) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config)
    ids = [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(t))[0] for t in CHAIN] + [tokenizer.eos_token_id]
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb, head = model.model.embed_tokens.weight, model.lm_head.weight
        emb[:, :len(CHAIN)] = 0  # dimensions 0..5 belong to the chain alone
        head[:, :len(CHAIN)] = 0
        for k, (token, following) in enumerate(zip(ids, ids[1:], strict=False)):
            emb[token] = 0
            emb[token, k] = 1.0
            head[following, k] = 10.0
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
