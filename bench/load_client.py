#!/usr/bin/env python3
"""Load benchmark for an OpenAI-compatible server (`optrun serve`, vLLM, ...):
replays requests arriving as a Poisson process at each of a sweep of rates,
with prompt and output lengths drawn from stated distributions, and reports
throughput (requests/s, output tokens/s), time to first token and time per
output token at p50 and p99. Standard library only (threads + http.client),
so it runs anywhere, a GPU machine without internet included.

usage: load_client.py [--url http://127.0.0.1:8000] [--rates 1,4,16,inf]
                      [--num-requests 200] [--prompt-len uniform:64:512]
                      [--output-len uniform:32:256] [--shared-prefix-tokens 0]
                      [--endpoint completions|chat] [--seed 0] [--json OUT]
                      [--dump-workload OUT] [--api-key KEY] [--model NAME]

Distributions (--prompt-len, --output-len): fixed:N, uniform:LO:HI,
normal:MEAN:STD, lognormal:MEDIAN:SIGMA (all rounded, at least 1 token).
Rates are requests per second; "inf" sends every request at once.

Every request streams (stream_options.include_usage) with ignore_eos and
max_tokens = its output length, so that it generates exactly that many
tokens. Prompts are words; the words-per-token ratio of the server's
tokenizer is measured first (usage.prompt_tokens of a calibration request),
so prompt lengths are in the server's tokens on average; the tokens actually
sent are reported. --shared-prefix-tokens N starts every prompt with the same
N-token "system prompt" (the prefix cache's workload); the server's
/metrics, read before and after each rate, give its prefix-cache hit rate.

Per request: TTFT = first streamed token - send; TPOT = (last token - first
token) / (output tokens - 1). Throughput counts from the first send to the
last completion of the rate.
"""
import argparse
import http.client
import json
import math
import random
import sys
import threading
import time
import urllib.parse

WORDS = ("the of and to in is for that with as on by this be are from or it an at can which not use "
         "function value table database branch commit file module class object method query index string "
         "number list return default name type data system user server request model example command "
         "option field key line error test change version path code time first new other each one").split()


def parse_distribution(text):
    kind, *params = text.split(":")
    params = [float(p) for p in params]
    want = {"fixed": 1, "uniform": 2, "normal": 2, "lognormal": 2}
    if kind not in want or len(params) != want[kind]:
        raise argparse.ArgumentTypeError("expected fixed:N, uniform:LO:HI, normal:MEAN:STD or "
                                         "lognormal:MEDIAN:SIGMA, got %r" % text)

    def draw(rng):
        if kind == "fixed":
            value = params[0]
        elif kind == "uniform":
            value = rng.uniform(params[0], params[1])
        elif kind == "normal":
            value = rng.gauss(params[0], params[1])
        else:
            value = params[0] * math.exp(rng.gauss(0, params[1]))
        return max(1, int(round(value)))
    draw.text = text
    return draw


def percentile(values, p):
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(math.floor(k)), int(math.ceil(k))
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class Client:
    def __init__(self, url, api_key, model, timeout):
        parts = urllib.parse.urlparse(url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = "Bearer " + api_key
        self.model = model
        self.timeout = timeout

    def connect(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def get(self, path):
        connection = self.connect()
        try:
            connection.request("GET", path, headers=self.headers)
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    def post(self, path, payload):
        connection = self.connect()
        try:
            connection.request("POST", path, body=json.dumps(payload), headers=self.headers)
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    def metrics(self):
        status, text = self.get("/metrics")
        values = {}
        if status == 200:
            for line in text.splitlines():
                if line and not line.startswith("#"):
                    name, value = line.rsplit(" ", 1)
                    values[name] = float(value)
        return values

    def stream(self, path, payload):
        """Sends a streaming request; returns (send time, token arrival
        times, usage, error)."""
        sent = time.perf_counter()
        times = []
        usage = None
        connection = self.connect()
        try:
            connection.request("POST", path, body=json.dumps(payload), headers=self.headers)
            response = connection.getresponse()
            if response.status != 200:
                return sent, times, None, "HTTP %d: %s" % (response.status, response.read()[:200])
            buffer = b""
            while True:
                chunk = response.read1(65536) if hasattr(response, "read1") else response.read(65536)
                if not chunk:
                    break
                buffer += chunk
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    now = time.perf_counter()
                    for line in event.split(b"\n"):
                        if not line.startswith(b"data: "):
                            continue
                        data = line[6:]
                        if data == b"[DONE]":
                            return sent, times, usage, None
                        message = json.loads(data)
                        if "error" in message:
                            return sent, times, usage, message["error"].get("message")
                        if message.get("usage"):
                            usage = message["usage"]
                        for choice in message.get("choices", []):
                            delta = choice.get("text")
                            if delta is None:
                                delta = choice.get("delta", {}).get("content")
                            if delta:
                                times.append(now)
            return sent, times, usage, "the stream ended without [DONE]"
        except (OSError, http.client.HTTPException, ValueError) as e:
            return sent, times, usage, "%s: %s" % (type(e).__name__, e)
        finally:
            connection.close()


def words_per_token(client, endpoint):
    """Measures how many of WORDS make one prompt token on this server."""
    text = " ".join(WORDS[i % len(WORDS)] for i in range(1000))
    status, out = send_plain(client, endpoint, text, 1)
    if status != 200:
        sys.exit("load_client.py: error: calibration request failed: %s" % out)
    # The completions endpoint adds a BOS token; chat adds its template.
    overhead_status, overhead = send_plain(client, endpoint, WORDS[0], 1)
    base = overhead["usage"]["prompt_tokens"] - 1 if overhead_status == 200 else 0
    return 1000 / max(1, out["usage"]["prompt_tokens"] - base), base


def send_plain(client, endpoint, text, max_tokens):
    payload = {"max_tokens": max_tokens, "temperature": 0}
    if client.model:
        payload["model"] = client.model
    if endpoint == "chat":
        payload["messages"] = [{"role": "user", "content": text}]
        return client.post("/v1/chat/completions", payload)
    payload["prompt"] = text
    return client.post("/v1/completions", payload)


def make_workload(args, ratio, rng):
    """The requests of one rate: (prompt text, target prompt tokens,
    output tokens)."""
    shared = ""
    if args.shared_prefix_tokens:
        prefix_rng = random.Random(args.seed ^ 0x5EED)
        shared = " ".join(prefix_rng.choice(WORDS) for _ in range(int(args.shared_prefix_tokens * ratio))) + " "
    requests = []
    for _ in range(args.num_requests):
        prompt_tokens = args.prompt_len(rng)
        output_tokens = args.output_len(rng)
        words = " ".join(rng.choice(WORDS) for _ in range(max(1, int(round(prompt_tokens * ratio)))))
        requests.append((shared + words, args.shared_prefix_tokens + prompt_tokens, output_tokens))
    return requests


def run_rate(client, args, rate, requests, rng):
    results = [None] * len(requests)
    arrivals = []
    t = 0.0
    for _ in requests:
        arrivals.append(t)
        if rate != math.inf:
            t += rng.expovariate(rate)

    def one(i):
        text, _, output_tokens = requests[i]
        payload = {"max_tokens": output_tokens, "temperature": 0, "ignore_eos": True, "stream": True,
                   "stream_options": {"include_usage": True}}
        if client.model:
            payload["model"] = client.model
        if args.endpoint == "chat":
            payload["messages"] = [{"role": "user", "content": text}]
            path = "/v1/chat/completions"
        else:
            payload["prompt"] = text
            path = "/v1/completions"
        results[i] = client.stream(path, payload)

    before = client.metrics()
    start = time.perf_counter()
    threads = []
    for i, arrival in enumerate(arrivals):
        delay = start + arrival - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        thread = threading.Thread(target=one, args=(i,), daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    after = client.metrics()

    ttft, tpot, failures = [], [], []
    output_tokens = prompt_tokens = 0
    end = start
    for sent, times, usage, error in results:
        if error or not times or not usage:
            failures.append(error or "no tokens")
            continue
        ttft.append(times[0] - sent)
        n = usage["completion_tokens"]
        if n > 1:
            tpot.append((times[-1] - times[0]) / (n - 1))
        output_tokens += n
        prompt_tokens += usage["prompt_tokens"]
        end = max(end, times[-1])
    elapsed = max(end - start, 1e-9)
    done = len(results) - len(failures)

    def delta(name):
        return after.get(name, 0) - before.get(name, 0)
    queries = delta("optmlir_prefix_cache_queries_total")
    return {
        "rate": "inf" if rate == math.inf else rate,
        "requests": len(results),
        "completed": done,
        "failures": len(failures),
        "first_failure": failures[0] if failures else None,
        "seconds": elapsed,
        "requests_per_second": done / elapsed,
        "output_tokens_per_second": output_tokens / elapsed,
        "mean_prompt_tokens": prompt_tokens / done if done else 0,
        "mean_output_tokens": output_tokens / done if done else 0,
        "ttft_p50_ms": 1000 * percentile(ttft, 50),
        "ttft_p99_ms": 1000 * percentile(ttft, 99),
        "tpot_p50_ms": 1000 * percentile(tpot, 50),
        "tpot_p99_ms": 1000 * percentile(tpot, 99),
        "prefix_cache_hit_rate": delta("optmlir_prefix_cache_hits_total") / queries if queries else None,
        "preemptions": delta("optmlir_num_preemptions_total") if after else None,
    }


def table(rows):
    lines = ["| rate (req/s) | done | req/s | output tok/s | TTFT p50 / p99 (ms) | TPOT p50 / p99 (ms) "
             "| prompt / output tokens (mean) | prefix-cache hits |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        hits = "-" if r["prefix_cache_hit_rate"] is None else "%.1f%%" % (100 * r["prefix_cache_hit_rate"])
        lines.append("| %s | %d/%d | %.2f | %.1f | %.1f / %.1f | %.2f / %.2f | %.0f / %.0f | %s |" % (
            r["rate"], r["completed"], r["requests"], r["requests_per_second"], r["output_tokens_per_second"],
            r["ttft_p50_ms"], r["ttft_p99_ms"], r["tpot_p50_ms"], r["tpot_p99_ms"],
            r["mean_prompt_tokens"], r["mean_output_tokens"], hits))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--endpoint", choices=["completions", "chat"], default="completions")
    ap.add_argument("--rates", default="1,4,16,inf",
                    help="requests per second, comma-separated; inf: all at once")
    ap.add_argument("--num-requests", type=int, default=200, help="requests per rate")
    ap.add_argument("--prompt-len", type=parse_distribution, default=parse_distribution("uniform:64:512"))
    ap.add_argument("--output-len", type=parse_distribution, default=parse_distribution("uniform:32:256"))
    ap.add_argument("--shared-prefix-tokens", type=int, default=0,
                    help="every prompt starts with the same prefix of about this many tokens")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="", help="the model name to send (default: none)")
    ap.add_argument("--api-key", default="")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per request")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--dump-workload", help="write each request's prompt and output token counts here "
                                            "(for a baseline on the same workload)")
    args = ap.parse_args()
    rates = [math.inf if r.strip() == "inf" else float(r) for r in args.rates.split(",") if r.strip()]

    client = Client(args.url, args.api_key, args.model, args.timeout)
    status, health = client.get("/health")
    if status != 200:
        sys.exit("load_client.py: error: %s/health answers %d: %s" % (args.url, status, health))
    ratio, overhead = words_per_token(client, args.endpoint)
    print("server %s, %s endpoint, %.3f words per token; prompts %s%s tokens, outputs %s tokens, %d requests "
          "per rate" % (args.url, args.endpoint, ratio, args.prompt_len.text,
                        " + %d shared" % args.shared_prefix_tokens if args.shared_prefix_tokens else "",
                        args.output_len.text, args.num_requests), flush=True)
    rows = []
    workloads = []
    for index, rate in enumerate(rates):
        # Each rate its own prompts: the prefix cache must not carry one
        # rate's prompts into the next (the shared prefix aside).
        rng = random.Random(args.seed * 1000 + index)
        requests = make_workload(args, ratio, rng)
        row = run_rate(client, args, rate, requests, random.Random(args.seed * 1000 + index + 500))
        rows.append(row)
        workloads.append({"rate": row["rate"], "requests": [{"prompt_tokens": p + overhead, "output_tokens": o}
                                                            for _, p, o in requests]})
        print(table([row]).splitlines()[-1] + ("  (%d failed: %s)" % (row["failures"], row["first_failure"])
                                               if row["failures"] else ""), flush=True)
    print()
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"url": args.url, "endpoint": args.endpoint, "prompt_len": args.prompt_len.text,
                       "output_len": args.output_len.text, "shared_prefix_tokens": args.shared_prefix_tokens,
                       "num_requests": args.num_requests, "seed": args.seed, "words_per_token": ratio,
                       "results": rows}, f, indent=1)
    if args.dump_workload:
        with open(args.dump_workload, "w") as f:
            json.dump(workloads[0], f)
    if any(r["failures"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
