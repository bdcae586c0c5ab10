#!/usr/bin/env python3
"""Writes the reference data the C++ tokenizer tests compare against.

Run once, offline, on a machine with the Python packages `tokenizers`,
`sentencepiece` and (preferably) `transformers`:

    python3 test/data/tokenizer/make_expected.py [CORPUS] [--out DIR]

It
  1. trains a small Llama-2-style SentencePiece BPE model (vocab ~1000,
     byte_fallback) on CORPUS (default: shared/models/eval/dev.jsonl, one JSON
     object with a "text" field per line, or any plain-text file) and converts
     it to a Hugging Face tokenizer.json the way transformers does for Llama 2
     (LlamaTokenizerFast from the .model file, legacy=True). If transformers
     is missing or cannot do it, an in-script replica of its LlamaConverter is
     used instead; the output names the path taken;
  2. encodes and decodes a fixed list of hard cases with `tokenizers` for both
     the Llama-3-style tokenizer (examples/draft/tokenizer.json) and
     the trained one, and writes expected_llama3.json, expected_llama2.json
     and llama2_style.json into the output directory (default: this script's
     directory).

`--dump-cases` prints the hard cases as JSON and exits, for
make_expected_node.js (the Node binding of `tokenizers`, for machines without
the Python one); `--convert-only` stops after writing llama2_style.json. Exit
status is 0 when every file was written.
"""

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
DEFAULT_CORPUS = os.path.normpath(
    os.path.join(REPO, "..", "shared", "models", "eval", "dev.jsonl"))

# (name, text). Kept valid Unicode: tokenizers only takes Python str. Invalid
# UTF-8 is covered by the C++ unit tests, which define that behaviour.
CASES = [
    ("empty", ""),
    ("ascii", "Hello, world! This is a test."),
    ("code", 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n'
             '    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)\n'),
    ("accents", "Café naïve façade — déjà vu, Ångström, São Paulo, Zürich, Łódź"),
    ("combining_marks", "Cafe\u0301 na\u0308ive n\u0303 a\u030a Z\u0336a\u0337l\u0338g\u0335o"),
    ("cjk", "日本語のテキストと中文文本，还有한국어 텍스트。"),
    ("emoji", "I love 🦀 and 🐍! 😀😃😄 🎉🎉"),
    ("emoji_zwj", "family: 👨\u200d👩\u200d👧\u200d👦, rainbow: 🏳\ufe0f\u200d🌈, flags: 🇺🇸🇯🇵"),
    ("emoji_skin_tones", "👍🏽 👋🏿 🤝🏻 🧑🏾\u200d💻"),
    ("spaces_runs", "a  b   c    d     e      f"),
    ("tabs_newlines", "line1\n\nline2\r\n\tindented\t\ttabs\n\n\n   \n \t \n"),
    ("leading_trailing_spaces", "   leading and trailing   "),
    ("only_spaces", "     "),
    ("single_space", " "),
    ("only_newline", "\n"),
    ("long_space_run", " " * 300 + "x" + "\n" * 40 + "\t" * 20 + "y  "),
    ("digits", "1 12 123 1234 12345 123456789 3.14159 2024-01-01 v1.2.3 0x1F"),
    ("unicode_digits", "١٢٣٤ ４５６７ ①②③ ½ ²³"),
    ("contractions", "I'm sure they'll say we've done it, didn't we? It's John's. "
                     "I'D SAY 'TIS WE'RE THEY'VE"),
    ("special_tokens_inside", "<s>Hello</s> world <s> and </s>"),
    ("special_tokens_adjacent", "text<s>text</s>text<s></s><s>"),
    ("special_token_spaces", " <s> </s> "),
    ("unk_literal", "<unk> token and <pad> and <|endoftext|>"),
    ("mixed_scripts", "Привет мир! Γειά σου κόσμε! مرحبا بالعالم! שלום עולם! नमस्ते दुनिया"),
    ("punctuation", "!!! ??? ... --- ((())) [[]] {{}} @#$%^&* ''' \"\"\" ``` ~~~"),
    ("unicode_spaces", "a\u00a0b\u2003c\u3000d\u200be\u2028f\u0085g\u000bh\u000ci"),
    ("long_s_contraction", "it'ſ IT'S it's"),
    ("url_and_identifiers", "https://example.com/path?q=1&x=2 snake_case camelCase CONSTANT_CASE"),
    ("bom_and_replacement", "\ufeffBOM and \ufffd replacement"),
    ("math", "∑ᵢ xᵢ² ≤ ∞ → ∀ε>0 ∃δ"),
    ("astral_letters", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛 𓀀𓀁"),
    ("sentencepiece_marker", "▁ ▁▁x a▁b"),
    ("byte_tokens_literal", "<0x41> <0xFF>"),
    ("very_long_word", "Supercalifragilisticexpialidocious" * 40),
    ("very_long_single_char", "a" * 3000),
    ("long_digit_run", "9" * 200),
    ("mixed_paragraph",
     "The SELECT statement retrieves rows from one or more tables.\n\n"
     "  * Use `git checkout -b feature` to create a branch;\n"
     "  * then `git push -u origin feature`.\n"
     "Prices: $19.99, €5, ¥1000 — 50% off!!! (limited time)\n"),
]


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------------------
# Corpus and SentencePiece training
# ---------------------------------------------------------------------------

def corpus_lines(path, limit_bytes=4_000_000):
    """Plain-text lines from a .jsonl ("text" fields) or a text file."""
    lines, total = [], 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            text = raw
            if path.endswith(".jsonl"):
                try:
                    obj = json.loads(raw)
                except ValueError:
                    continue
                text = obj.get("text", "") if isinstance(obj, dict) else ""
            for line in text.split("\n"):
                line = line.rstrip("\r")
                if line.strip():
                    lines.append(line)
                    total += len(line.encode("utf-8")) + 1
            if total >= limit_bytes:
                break
    return lines


def train_spm(corpus, workdir, vocab_size):
    import sentencepiece as spm
    lines = corpus_lines(corpus)
    if not lines:
        raise RuntimeError(f"no text found in {corpus}")
    text_path = os.path.join(workdir, "corpus.txt")
    with open(text_path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    log(f"corpus: {len(lines)} lines from {corpus}")
    prefix = os.path.join(workdir, "llama2_style")
    # Llama 2's trainer settings, scaled down.
    options = dict(
        input=text_path, model_prefix=prefix, model_type="bpe",
        vocab_size=vocab_size, byte_fallback=True, split_digits=True,
        allow_whitespace_only_pieces=True, remove_extra_whitespaces=False,
        normalization_rule_name="identity", add_dummy_prefix=True,
        character_coverage=0.9995, max_sentencepiece_length=16,
        max_sentence_length=16384, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=max(1, min(8, os.cpu_count() or 1)),
        input_sentence_size=200000, shuffle_input_sentence=True)
    last_error = None
    # A corpus with many distinct characters needs a larger vocabulary.
    for size in (vocab_size, vocab_size * 2, vocab_size * 4):
        options["vocab_size"] = size
        try:
            spm.SentencePieceTrainer.train(**options)
            log(f"trained SentencePiece BPE, vocab {size}")
            return prefix + ".model"
        except Exception as e:  # noqa: BLE001 - retried, then reported
            last_error = e
            log(f"training with vocab {size} failed: {e}")
    raise RuntimeError(f"SentencePiece training failed: {last_error}")


# ---------------------------------------------------------------------------
# Conversion to tokenizer.json
# ---------------------------------------------------------------------------

def convert_with_transformers(model_path):
    import transformers
    errors = []
    try:
        from transformers import LlamaTokenizerFast
        tok = LlamaTokenizerFast(vocab_file=model_path, legacy=True,
                                 from_slow=True, add_bos_token=True,
                                 add_eos_token=False)
        return (json.loads(tok.backend_tokenizer.to_str()),
                f"transformers {transformers.__version__} LlamaTokenizerFast"
                "(vocab_file, legacy=True, from_slow=True)")
    except Exception as e:  # noqa: BLE001 - next strategy
        errors.append(f"LlamaTokenizerFast: {e}")
    try:
        from transformers import LlamaTokenizer
        from transformers.convert_slow_tokenizer import LlamaConverter
        slow = LlamaTokenizer(vocab_file=model_path, legacy=True,
                              add_bos_token=True, add_eos_token=False)
        fast = LlamaConverter(slow).converted()
        data = json.loads(fast.to_str())
        if not data.get("post_processor"):
            data["post_processor"] = bos_template(data)
        return (data, f"transformers {transformers.__version__} "
                      "LlamaConverter(LlamaTokenizer(legacy=True))")
    except Exception as e:  # noqa: BLE001 - next strategy
        errors.append(f"LlamaConverter: {e}")
    raise RuntimeError("; ".join(errors))


def bos_template(data):
    bos = next((t["id"] for t in data.get("added_tokens", [])
                if t["content"] == "<s>"), 1)
    return {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                 {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "<s>", "type_id": 1}},
                 {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [bos],
                                   "tokens": ["<s>"]}},
    }


def convert_manually(model_path):
    """Replica of transformers' LlamaConverter (legacy) + LlamaTokenizerFast's
    BOS template, for machines without transformers."""
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor()
    sp.Load(model_path)
    n = sp.GetPieceSize()
    pieces = [sp.IdToPiece(i) for i in range(n)]
    scores = [0.0, 0.0, 0.0] + [sp.GetScore(i) for i in range(3, n)]
    vocab = {p: i for i, p in enumerate(pieces)}
    # transformers' generate_merges with vocab_scores: every split of every
    # piece into two vocab pieces, ordered by the merged piece's score.
    merges = []
    for piece, score in zip(pieces, scores):
        local = [(piece[:k], piece[k:], score) for k in range(1, len(piece))
                 if piece[:k] in vocab and piece[k:] in vocab]
        local.sort(key=lambda x: (vocab[x[0]], vocab[x[1]]))
        merges.extend(local)
    merges.sort(key=lambda v: (v[2], len(v[0]), len(v[1])), reverse=True)
    special = lambda i, p: {"id": i, "content": p, "single_word": False,
                            "lstrip": False, "rstrip": False,
                            "normalized": False, "special": True}
    data = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [special(i, pieces[i]) for i in range(n)
                         if sp.IsControl(i) or sp.IsUnknown(i)],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "},
             "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": None,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"},
             "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": pieces[0],
                  "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True,
                  "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": [[a, b] for a, b, _ in merges]},
    }
    data["post_processor"] = bos_template(data)
    return data, "in-script replica of transformers' LlamaConverter (legacy)"


def check_llama2_shape(data, piece_count):
    model = data.get("model") or {}
    problems = []
    if model.get("type") != "BPE":
        problems.append(f"model type {model.get('type')}")
    if not model.get("byte_fallback"):
        problems.append("byte_fallback is off")
    if len(model.get("vocab", {})) != piece_count:
        problems.append(f"vocab has {len(model.get('vocab', {}))} entries, "
                        f"the .model {piece_count}")
    if not data.get("post_processor"):
        problems.append("no post_processor (BOS would be missing)")
    return problems


# ---------------------------------------------------------------------------
# Expected outputs
# ---------------------------------------------------------------------------

def expected_for(tokenizer_json_path, label, extra=None, sp=None, ref=None):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tokenizer_json_path)
    cases = []
    for name, text in CASES:
        ids = tok.encode(text, add_special_tokens=False).ids
        ids_special = tok.encode(text, add_special_tokens=True).ids
        case = {
            "name": name, "text": text, "ids": ids, "ids_special": ids_special,
            "decoded": tok.decode(ids_special, skip_special_tokens=False),
            "decoded_skip": tok.decode(ids_special, skip_special_tokens=True),
        }
        if sp is not None:
            case["sentencepiece_ids"] = sp.EncodeAsIds(text)
        cases.append(case)
    rng = random.Random(20240611)
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    decode_cases = []
    for _ in range(120):
        ids = [rng.randrange(vocab_size) for _ in range(rng.randint(1, 6))]
        decode_cases.append({
            "ids": ids,
            "decoded": tok.decode(ids, skip_special_tokens=False),
            "decoded_skip": tok.decode(ids, skip_special_tokens=True)})
    import tokenizers
    out = {"tokenizer": ref or os.path.basename(tokenizer_json_path),
           "generator": f"tokenizers {tokenizers.__version__} (Python)",
           "label": label, "cases": cases, "decode_cases": decode_cases}
    if extra:
        out.update(extra)
    return out


def write_json_lines(path, data):
    """JSON with one case per line: small and diffable."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\n")
        keys = list(data.keys())
        for k, key in enumerate(keys):
            value = data[key]
            f.write(f"  {json.dumps(key)}: ")
            if isinstance(value, list):
                f.write("[\n")
                for i, item in enumerate(value):
                    f.write("    " + json.dumps(item, ensure_ascii=False,
                                                separators=(",", ":")))
                    f.write(",\n" if i + 1 < len(value) else "\n")
                f.write("  ]")
            else:
                f.write(json.dumps(value, ensure_ascii=False))
            f.write(",\n" if k + 1 < len(keys) else "\n")
        f.write("}\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", nargs="?", default=DEFAULT_CORPUS)
    parser.add_argument("--out", default=HERE)
    parser.add_argument("--vocab-size", type=int, default=1000)
    parser.add_argument("--dump-cases", action="store_true")
    parser.add_argument("--convert-only", action="store_true",
                        help="train and write llama2_style.json only")
    args = parser.parse_args()
    if args.dump_cases:
        print(json.dumps([{"name": n, "text": t} for n, t in CASES],
                         ensure_ascii=False, indent=1))
        return 0

    start = time.time()
    final_out = args.out
    os.makedirs(final_out, exist_ok=True)
    # Files are staged and moved into place only when all of them were
    # produced, so that a failed run never leaves a tokenizer and its
    # expected file out of step.
    staging = tempfile.mkdtemp(prefix="make_expected_")
    args.out = staging
    ok = True

    # Llama 2 style: train, convert, save.
    llama2_path = os.path.join(args.out, "llama2_style.json")
    sp = None
    converter = None
    with tempfile.TemporaryDirectory() as work:
        try:
            import sentencepiece as spm
            model_path = train_spm(args.corpus, work, args.vocab_size)
            sp = spm.SentencePieceProcessor()
            sp.Load(model_path)
            data = None
            try:
                data, converter = convert_with_transformers(model_path)
                problems = check_llama2_shape(data, sp.GetPieceSize())
                if problems:
                    log(f"transformers conversion rejected: {problems}")
                    data = None
            except Exception as e:  # noqa: BLE001 - fall back
                log(f"transformers conversion unavailable: {e}")
            if data is None:
                data, converter = convert_manually(model_path)
            with open(llama2_path, "w", encoding="utf-8") as f:
                json.dump(data, f, ensure_ascii=False, indent=1)
                f.write("\n")
            log(f"llama2_style.json converted via {converter}")
        except Exception as e:  # noqa: BLE001 - report and go on with Llama 3
            log(f"ERROR: Llama-2-style tokenizer not produced: {e}")
            ok = False
    if args.convert_only:
        return finish(ok, staging, final_out, start)

    # Expected outputs.
    summary = []
    llama3_path = os.path.join(HERE, "..", "..", "..", "examples", "draft", "tokenizer.json")
    # "tokenizer" names the tokenizer relative to where the expected file ends.
    jobs = [("expected_llama3.json", llama3_path, "llama3", None, None,
             os.path.relpath(llama3_path, final_out))]
    if ok:
        jobs.append(("expected_llama2.json", llama2_path, "llama2",
                     {"converter": converter}, sp, "llama2_style.json"))
    for out_name, tok_path, label, extra, proc, ref in jobs:
        try:
            data = expected_for(tok_path, label, extra, proc, ref)
            write_json_lines(os.path.join(args.out, out_name), data)
            n_ids = sum(len(c["ids"]) for c in data["cases"])
            line = (f"{out_name}: {len(data['cases'])} cases, {n_ids} ids, "
                    f"{len(data['decode_cases'])} decode cases")
            if proc is not None:
                agree = sum(c["ids"] == c["sentencepiece_ids"]
                            for c in data["cases"])
                line += (f"; HF ids == sentencepiece ids for {agree}/"
                         f"{len(data['cases'])} cases")
            summary.append(line)
        except Exception as e:  # noqa: BLE001 - report
            summary.append(f"ERROR: {out_name} not written: {e}")
            ok = False
    log("")
    for line in summary:
        log(line)
    return finish(ok, staging, final_out, start)


def finish(ok, staging, final_out, start):
    names = sorted(os.listdir(staging))
    if ok:
        for name in names:
            shutil.move(os.path.join(staging, name),
                        os.path.join(final_out, name))
        log(f"done in {time.time() - start:.1f} s; wrote {', '.join(names)} "
            f"to {final_out}")
    else:
        log(f"FAILED after {time.time() - start:.1f} s; nothing written to "
            f"{final_out}")
    shutil.rmtree(staging, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
