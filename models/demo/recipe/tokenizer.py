"""Builds the demo LLM's tokenizer: a SentencePiece-style byte-fallback BPE (Llama 2 layout: <unk> <s> </s>,
<0x00>..<0xFF>, "▁" for spaces) in Hugging Face tokenizer.json form, which `llm2clip convert-llm` turns
into llama.cpp's SPM tokenizer, plus tokenizer_config.json with a ChatML chat template.

Vocabulary: single characters, then every word of the demo world's text as one token, with and without
the "▁" space marker, lowercase and capitalised, plus every prefix of those (llama.cpp's SPM tokenizer
merges adjacent pieces whose concatenation is a token; with prefix-closed words it always reaches the
whole word, so world text tokenizes one token per word). No space is prepended to text
(add_space_prefix false), so the word after a newline is the bare form. Anything else falls back to
characters and bytes.
"""
import json
import os
import re
import sys

SPECIAL = ["<|im_start|>", "<|im_end|>", "<image>"]
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
EXTRA_WORDS = "user assistant system the a an image picture object objects color colour shape where what which how many is are there".split()


def corpus_words(dataset_files):
    words = set(EXTRA_WORDS)
    for fn in dataset_files:
        with open(fn, encoding="utf-8") as f:
            for e in json.load(f):
                for turn in e["conversations"]:
                    for w in re.findall(r"[A-Za-z]+", turn["value"].replace("<image>", " ")):
                        words.add(w)
    return sorted(words)


def build(dataset_files, out_dir):
    words = corpus_words(dataset_files)
    forms = set()
    for w in words:
        for v in {w, w.lower(), w.capitalize()}:
            forms.add(v)
            forms.add("\u2581" + v)
    chars = ["\u2581", "\n"] + [chr(c) for c in range(33, 127)]
    pieces = set()
    for f in forms:
        for n in range(2, len(f) + 1):
            pieces.add(f[:n])
    pieces -= set(chars)
    ordered = sorted(pieces, key=lambda p: (len(p), p))
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for c in chars:
        vocab[c] = len(vocab)
    merges = []
    for p in ordered:
        vocab[p] = len(vocab)
        merges.append(f"{p[:-1]} {p[-1]}")
    added = [{"id": 0, "content": "<unk>", "special": True, "normalized": False},
             {"id": 1, "content": "<s>", "special": True, "normalized": False},
             {"id": 2, "content": "</s>", "special": True, "normalized": False}]
    for s in SPECIAL:
        added.append({"id": len(vocab) + len(added) - 3, "content": s, "special": True, "normalized": False})
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": True, "byte_fallback": True, "ignore_merges": False, "vocab": vocab, "merges": merges},
    }
    cfg = {"bos_token": "<s>", "eos_token": "<|im_end|>", "unk_token": "<unk>", "pad_token": "</s>", "add_bos_token": True, "add_eos_token": False,
           "clean_up_tokenization_spaces": False, "model_max_length": 512, "tokenizer_class": "LlamaTokenizerFast", "chat_template": CHATML}
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2, ensure_ascii=False)
    n = len(vocab) + len(SPECIAL)
    return {"vocab_size": n, "bos": 1, "eos": vocab_size_id(n, "<|im_end|>"), "words": len(words)}


def vocab_size_id(n, s):
    return n - len(SPECIAL) + SPECIAL.index(s)


if __name__ == "__main__":
    out = sys.argv[1]
    print(json.dumps(build(sys.argv[2:], out)))
