#!/usr/bin/env python3
"""Compares `optrun generate --format jsonl` output with the reference greedy
generations of Hugging Face transformers.

usage: compare_generations.py OUTPUT.jsonl REFERENCE.json RUN MIN_IDENTICAL
Prints one line per prompt and exits non-zero when fewer than MIN_IDENTICAL
prompts match the reference token for token.
"""
import json
import sys

out_path, ref_path, run, minimum = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
reference = {g["prompt_index"]: g for g in json.load(open(ref_path))["generations"]
             if g["run"] == run}
identical = 0
for line in open(out_path):
    got = json.loads(line)
    ref = reference[got["index"]]
    same = got["token_ids"] == ref["ids"] and got["text"] == ref["text"]
    identical += same
    print(f"prompt {got['index']}: {'identical' if same else 'differs'}")
print(f"identical: {identical} of {len(reference)}")
sys.exit(0 if identical >= minimum else 1)
