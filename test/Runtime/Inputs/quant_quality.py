#!/usr/bin/env python3
"""Reads the perplexity of quantized artifacts (the output of `optrun
perplexity`, one file a scheme) and checks the relations a test asks for.

usage: quant_quality.py --baseline PPL NAME=FILE... [--check RULE]...

RULE is `A<B` (scheme A's perplexity is lower than B's), `A<=B`, or
`A~P` (A within P percent of the baseline). Prints one table row a scheme
(perplexity and change against the baseline), then `ok RULE` or `FAILED
RULE` for each rule; exits 1 if any failed.
"""
import argparse
import re
import sys


def read(path):
    with open(path) as f:
        for line in f:
            m = re.match(r"perplexity: ([0-9.]+)", line)
            if m:
                return float(m.group(1))
    sys.exit(f"{path}: no perplexity line")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", type=float, required=True)
    parser.add_argument("--check", action="append", default=[])
    parser.add_argument("runs", nargs="+")
    args = parser.parse_args()
    ppl = {}
    for run in args.runs:
        name, path = run.split("=", 1)
        ppl[name] = read(path)
    print(f"| unquantized | {args.baseline:.4f} | - |")
    for name, value in ppl.items():
        change = 100 * (value / args.baseline - 1)
        print(f"| {name} | {value:.4f} | {change:+.2f}% |")
    failed = False
    for rule in args.check:
        if "~" in rule:
            name, percent = rule.split("~")
            good = abs(ppl[name] / args.baseline - 1) * 100 <= float(percent)
        elif "<=" in rule:
            a, b = rule.split("<=")
            good = ppl[a] <= ppl[b]
        else:
            a, b = rule.split("<")
            good = ppl[a] < ppl[b]
        print(("ok " if good else "FAILED ") + rule)
        failed |= not good
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
