#!/usr/bin/env python3
"""End-to-end tests of `optrun serve` over real HTTP, with the standard
library only (http.client, sockets, threads).

usage: serve_tests.py OPTRUN ARTIFACT CHECK [CHECK...] [--reference RUN]
                      [--expect-chat-prompt TEXT] [-- SERVER-ARGS...]

Starts `optrun serve ARTIFACT --port 0 SERVER-ARGS` (the port is read from
its first line on stdout), runs the checks in order against it, stops it
with SIGTERM and expects exit code 0. Each passed check prints one
"ok: <check>" line (with what it measured); a failure prints "FAIL: ..."
and exits 1.

Checks:
  endpoints   /health, /v1/models, /v1/models/{id}, /metrics
  greedy      completions at temperature 0 equal `optrun generate`, for
              prompts as text, as token ids, one by one, concurrently and
              as one batched request (and, with --reference RUN such as
              main/fp32, transformers' greedy texts)
  chat        a chat completion equals `optrun generate` on the prompt the
              chat template renders (--expect-chat-prompt TEXT)
  stream      server-sent events: deltas add up to the non-streamed text,
              role and finish chunks, usage, [DONE]
  sampling    seeds reproduce, n > 1, equality with `optrun generate
              --seed`, logprobs, stop strings
  errors      malformed, mistyped, oversized and out-of-range requests get
              4xx with an OpenAI error body; the server stays up
  auth        (server started with --api-key sekrit) 401s and a 200
  disconnect  a client that leaves mid-stream has its request cancelled
  load        1,000 requests with random cancellations; afterwards every KV
              block is free and the resident memory is within 5% of before
"""
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))


def fail(message):
    print("FAIL: " + message, flush=True)
    sys.exit(1)


def expect(condition, message):
    if not condition:
        fail(message)


class Server:
    def __init__(self, optrun, artifact, args):
        self.process = subprocess.Popen(
            [optrun, "serve", artifact, "--port", "0"] + args,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if "listening on http://" not in line:
            self.process.kill()
            fail("the server did not start: %r %r" % (line, self.process.stderr.read()))
        address = line.split("http://")[1].split()[0]
        self.host, port = address.split(":")
        self.port = int(port)

    def connect(self, timeout=120):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None):
        """(status, body bytes)"""
        connection = self.connect()
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def post(self, path, payload, headers=None):
        """(status, decoded JSON)"""
        status, body = self.request("POST", path, payload, headers)
        return status, json.loads(body)

    def stream(self, path, payload):
        """The events of a streamed response: decoded JSON, or "[DONE]";
        SSE comments are skipped."""
        connection = self.connect()
        try:
            connection.request("POST", path, body=json.dumps(payload))
            response = connection.getresponse()
            expect(response.status == 200, "stream status %d" % response.status)
            expect(response.getheader("Content-Type", "").startswith("text/event-stream"),
                   "stream content type %r" % response.getheader("Content-Type"))
            return parse_events(response.read().decode())
        finally:
            connection.close()

    def metrics(self):
        status, body = self.request("GET", "/metrics")
        expect(status == 200, "/metrics status %d" % status)
        values = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    def rss(self):
        with open("/proc/%d/status" % self.process.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        fail("no VmRSS")

    def settle(self, timeout=60):
        """Waits until no request is running or waiting; returns the
        metrics then."""
        deadline = time.time() + timeout
        while True:
            m = self.metrics()
            if m["optmlir_num_requests_running"] == 0 and m["optmlir_num_requests_waiting"] == 0:
                return m
            if time.time() > deadline:
                fail("requests still running after %ds: %r" % (timeout, m))
            time.sleep(0.05)

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            fail("the server did not stop within 30 s of SIGTERM")
        expect(code == 0, "the server exited with %d: %s" % (code, self.process.stderr.read()))


def parse_events(text):
    events = []
    expect(text.endswith("\n\n"), "the stream does not end with a blank line: %r" % text[-50:])
    for block in text.split("\n\n"):
        if not block:
            continue
        data = [line[len("data: "):] for line in block.split("\n") if line.startswith("data: ")]
        comments = [line for line in block.split("\n") if line.startswith(":")]
        if not data:
            expect(comments, "an event with neither data nor comment: %r" % block)
            continue
        payload = "\n".join(data)
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def check_error(status, body, want_status, what):
    expect(status == want_status, "%s: status %d, expected %d: %r" % (what, status, want_status, body))
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        fail("%s: not an OpenAI error body: %r" % (what, body))
    expect(isinstance(error.get("message"), str) and error["message"], "%s: no message: %r" % (what, error))
    expect(isinstance(error.get("type"), str), "%s: no type: %r" % (what, error))
    expect("param" in error and "code" in error, "%s: no param/code: %r" % (what, error))
    return error


def generate(optrun, artifact, prompts, *flags):
    """`optrun generate` on `prompts`; the texts, in order."""
    path = os.path.join(WORKDIR, "prompts-%d.jsonl" % threading.get_ident())
    with open(path, "w") as f:
        for p in prompts:
            f.write(json.dumps({"prompt": p}) + "\n")
    out = subprocess.run([optrun, "generate", artifact, "--prompt-file", path, "--format", "jsonl"]
                         + list(flags), capture_output=True, text=True, check=True).stdout
    return [json.loads(line)["text"] for line in out.splitlines()]


def reference_prompts():
    with open(os.path.join(HERE, "reference_prompts.jsonl")) as f:
        texts = [json.loads(line)["prompt"] for line in f if line.strip()]
    with open(os.path.join(REPO, "test/data/tokenizer/reference_generations.json")) as f:
        ids = [p["ids"] for p in json.load(f)["prompts"]]
    return texts, ids


def parallel(function, items, threads):
    """function(item) for every item on `threads` threads; the results in
    order."""
    results = [None] * len(items)
    errors = []
    lock = threading.Lock()
    next_index = [0]

    def worker():
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= len(items):
                return
            try:
                results[i] = function(items[i])
            except BaseException as e:  # noqa: B902 - reported below
                errors.append(e)
                return

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    return results


# --- checks -----------------------------------------------------------------

def check_endpoints(server, args):
    status, body = server.request("GET", "/health")
    expect(status == 200 and json.loads(body) == {"status": "ok"}, "/health: %d %r" % (status, body))
    status, body = server.request("GET", "/v1/models")
    models = json.loads(body)
    expect(status == 200 and models["object"] == "list" and len(models["data"]) == 1, "/v1/models: %r" % models)
    model = models["data"][0]
    expect(model["object"] == "model" and model["max_model_len"] > 0, "/v1/models: %r" % model)
    status, body = server.request("GET", "/v1/models/" + model["id"])
    expect(status == 200 and json.loads(body)["id"] == model["id"], "/v1/models/{id}: %r" % body)
    status, body = server.request("GET", "/v1/models/no-such-model")
    expect(check_error(status, body, 404, "unknown model")["code"] == "model_not_found", "model_not_found")
    text = server.request("GET", "/metrics")[1].decode()
    for name in ("optmlir_num_requests_running", "optmlir_num_requests_waiting",
                 "optmlir_kv_cache_usage_ratio", "optmlir_prefix_cache_hit_rate",
                 "optmlir_time_to_first_token_seconds_bucket",
                 "optmlir_time_per_output_token_seconds_bucket", "process_resident_memory_bytes"):
        expect(name in text, "/metrics lacks " + name)
    args.model = model["id"]
    print("ok: endpoints (model %s, context %d)" % (model["id"], model["max_model_len"]))


def check_greedy(server, args):
    texts, ids = reference_prompts()
    expected = generate(args.optrun, args.artifact, texts, "--max-tokens", "64")

    def complete(prompt):
        status, out = server.post("/v1/completions", {"model": args.model, "prompt": prompt,
                                                      "max_tokens": 64, "temperature": 0})
        expect(status == 200, "completion status %d: %r" % (status, out))
        return out

    one_by_one = [complete(p) for p in texts]
    concurrent = parallel(complete, texts, len(texts))
    as_ids = parallel(complete, ids, len(ids))
    for i, want in enumerate(expected):
        for name, got in (("one by one", one_by_one), ("concurrently", concurrent), ("as ids", as_ids)):
            choice = got[i]["choices"][0]
            expect(choice["text"] == want, "prompt %d %s: %r != generate's %r" % (i, name, choice["text"], want))
            expect(choice["finish_reason"] in ("stop", "length"), "finish_reason %r" % choice)
        usage = one_by_one[i]["usage"]
        expect(usage["prompt_tokens"] == len(ids[i]), "prompt %d: %d prompt tokens, expected %d"
               % (i, usage["prompt_tokens"], len(ids[i])))
        expect(usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"], "usage sum")
    batch = complete(texts)
    expect([c["text"] for c in sorted(batch["choices"], key=lambda c: c["index"])] == expected,
           "a batched request differs from generate")
    versus = ""
    if args.reference:
        with open(os.path.join(REPO, "test/data/tokenizer/reference_generations.json")) as f:
            reference = {g["prompt_index"]: g["text"] for g in json.load(f)["generations"]
                         if g["run"] == args.reference}
        same = sum(one_by_one[i]["choices"][0]["text"] == reference[i] for i in range(len(texts)))
        expect(same == len(texts), "%d of %d prompts equal the %s reference" % (same, len(texts), args.reference))
        versus = "; all equal transformers' %s greedy text" % args.reference
    print("ok: greedy (%d prompts equal `optrun generate`: one by one, concurrently, as token ids, batched%s)"
          % (len(expected), versus))


CHAT = [{"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": "How do I list the files in a Git repository?"}]


def check_chat(server, args):
    status, out = server.post("/v1/chat/completions", {"model": args.model, "messages": CHAT,
                                                       "max_tokens": 32, "temperature": 0})
    expect(status == 200, "chat status %d: %r" % (status, out))
    message = out["choices"][0]["message"]
    expect(message["role"] == "assistant" and out["object"] == "chat.completion", "chat: %r" % out)
    want = generate(args.optrun, args.artifact, [args.expect_chat_prompt], "--max-tokens", "32")[0]
    expect(message["content"] == want, "chat: %r != generate's %r on the rendered prompt" % (message["content"], want))
    # Text parts are joined as one string.
    parts = [CHAT[0], {"role": "user", "content": [{"type": "text", "text": CHAT[1]["content"]}]}]
    status, again = server.post("/v1/chat/completions", {"messages": parts, "max_tokens": 32, "temperature": 0})
    expect(status == 200 and again["choices"][0]["message"]["content"] == want, "chat with text parts")
    print("ok: chat (equals `optrun generate` on the rendered prompt, %d tokens)" % out["usage"]["completion_tokens"])


def check_stream(server, args):
    prompt = "The Python standard library provides"
    request = {"prompt": prompt, "max_tokens": 24, "temperature": 0}
    status, plain = server.post("/v1/completions", request)
    expect(status == 200, "completion %d" % status)
    events = server.stream("/v1/completions", dict(request, stream=True, stream_options={"include_usage": True}))
    expect(events[-1] == "[DONE]", "the stream does not end with [DONE]")
    usage = events[-2]
    expect(usage["choices"] == [] and usage["usage"] == plain["usage"], "usage chunk %r vs %r" % (usage, plain["usage"]))
    chunks = events[:-2]
    expect(len(chunks) >= 2 and len({c["id"] for c in chunks}) == 1, "chunks share one id")
    text = "".join(c["choices"][0]["text"] for c in chunks)
    expect(text == plain["choices"][0]["text"], "streamed %r != %r" % (text, plain["choices"][0]["text"]))
    expect(all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1]), "finish_reason before the end")
    expect(chunks[-1]["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"], "last finish_reason")

    chat = {"messages": CHAT, "max_tokens": 16, "temperature": 0}
    status, plain_chat = server.post("/v1/chat/completions", chat)
    events = server.stream("/v1/chat/completions", dict(chat, stream=True))
    expect(events[-1] == "[DONE]", "chat stream without [DONE]")
    chunks = events[:-1]
    expect(all(c["object"] == "chat.completion.chunk" for c in chunks), "chat chunk objects")
    expect(chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}, "first chat chunk %r" % chunks[0])
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    expect(content == plain_chat["choices"][0]["message"]["content"], "chat stream %r" % content)
    expect(chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length"), "chat finish %r" % chunks[-1])

    events = server.stream("/v1/completions", {"prompt": [prompt, "To create a branch"], "n": 2, "max_tokens": 8,
                                               "temperature": 0.7, "seed": 1, "stream": True})
    finished = sorted(c["choices"][0]["index"] for c in events[:-1] if c["choices"][0]["finish_reason"])
    expect(finished == [0, 1, 2, 3], "n=2 over 2 prompts: finished choices %r" % finished)
    print("ok: stream (deltas add up to the response; chat roles; usage; 4 choices)")


def check_sampling(server, args):
    prompt = "In Django, a model is"
    request = {"prompt": prompt, "max_tokens": 16, "temperature": 0.8, "top_p": 0.9, "seed": 7, "n": 2}
    first = server.post("/v1/completions", request)[1]
    second = server.post("/v1/completions", request)[1]
    texts = [c["text"] for c in sorted(first["choices"], key=lambda c: c["index"])]
    expect(texts == [c["text"] for c in sorted(second["choices"], key=lambda c: c["index"])], "a seed reproduces")
    expect(texts[0] != texts[1], "n=2 gave the same sample twice: %r" % texts)
    want = generate(args.optrun, args.artifact, [prompt], "--temperature", "0.8", "--top-p", "0.9",
                    "--seed", "7", "--max-tokens", "16")[0]
    expect(texts[0] == want, "choice 0 (seed 7) %r != generate --seed 7 %r" % (texts[0], want))

    out = server.post("/v1/completions", {"prompt": prompt, "max_tokens": 6, "temperature": 0, "logprobs": 3})[1]
    logprobs = out["choices"][0]["logprobs"]
    n = out["usage"]["completion_tokens"]
    expect(len(logprobs["tokens"]) == n and len(logprobs["token_logprobs"]) == n and
           len(logprobs["top_logprobs"]) == n, "completion logprobs lengths %r" % logprobs)
    expect(all(lp <= 0 for lp in logprobs["token_logprobs"]), "logprobs are <= 0")
    expect(all(len(t) == 3 for t in logprobs["top_logprobs"]), "3 alternatives per token")
    # Greedy picks the most likely token: its logprob is the largest.
    expect(all(abs(max(t.values()) - lp) < 1e-5 for t, lp in zip(logprobs["top_logprobs"], logprobs["token_logprobs"])),
           "greedy tokens are the most likely")
    chat = server.post("/v1/chat/completions", {"messages": CHAT, "max_tokens": 4, "temperature": 0,
                                                "logprobs": True, "top_logprobs": 2})[1]
    content = chat["choices"][0]["logprobs"]["content"]
    expect(len(content) == chat["usage"]["completion_tokens"] and all(len(c["top_logprobs"]) == 2 for c in content),
           "chat logprobs %r" % content)

    full = server.post("/v1/completions", {"prompt": prompt, "max_tokens": 32, "temperature": 0})[1]["choices"][0]["text"]
    stop = full[len(full) // 2:len(full) // 2 + 3]
    cut = server.post("/v1/completions", {"prompt": prompt, "max_tokens": 32, "temperature": 0, "stop": [stop]})[1]
    expect(cut["choices"][0]["text"] == full[:full.index(stop)] and cut["choices"][0]["finish_reason"] == "stop",
           "stop %r: %r" % (stop, cut["choices"][0]))
    print("ok: sampling (seeded n=2 reproduces and matches generate --seed; logprobs; stop strings)")


def check_errors(server, args):
    context = server.request("GET", "/v1/models")
    limit = json.loads(context[1])["data"][0]["max_model_len"]
    long_prompt = " ".join(["word"] * (limit + 100))
    cases = [
        ("malformed JSON", "/v1/completions", b'{"prompt": ', 400, None),
        ("not JSON", "/v1/completions", b"hello", 400, None),
        ("invalid UTF-8", "/v1/completions", b'{"prompt": "\xff\xfe"}', 400, None),
        ("not an object", "/v1/completions", b"[1, 2]", 400, None),
        ("prompt missing", "/v1/completions", {"max_tokens": 3}, 422, "prompt"),
        ("prompt of a wrong type", "/v1/completions", {"prompt": 5}, 422, "prompt"),
        ("max_tokens a string", "/v1/completions", {"prompt": "x", "max_tokens": "ten"}, 422, "max_tokens"),
        ("negative max_tokens", "/v1/completions", {"prompt": "x", "max_tokens": -1}, 422, "max_tokens"),
        ("absurd temperature", "/v1/completions", {"prompt": "x", "temperature": 1e9}, 422, "temperature"),
        ("negative temperature", "/v1/completions", {"prompt": "x", "temperature": -1}, 422, "temperature"),
        ("negative top_p", "/v1/completions", {"prompt": "x", "top_p": -1}, 422, "top_p"),
        ("n of 1000", "/v1/completions", {"prompt": "x", "n": 1000}, 422, "n"),
        ("seed a string", "/v1/completions", {"prompt": "x", "seed": "abc"}, 422, "seed"),
        ("stream a string", "/v1/completions", {"prompt": "x", "stream": "yes"}, 422, "stream"),
        ("token id outside the vocabulary", "/v1/completions", {"prompt": [5, 99999999]}, 422, "prompt"),
        ("prompt beyond the context", "/v1/completions", {"prompt": long_prompt}, 400, "prompt"),
        ("max_tokens beyond the context", "/v1/completions", {"prompt": "x", "max_tokens": limit}, 400, "max_tokens"),
        ("unknown model", "/v1/completions", {"model": "gpt-17", "prompt": "x"}, 404, "model"),
        ("no messages", "/v1/chat/completions", {"messages": []}, 422, "messages"),
        ("messages a string", "/v1/chat/completions", {"messages": "hi"}, 422, "messages"),
        ("message without content", "/v1/chat/completions", {"messages": [{"role": "user"}]}, 422,
         "messages[0].content"),
        ("image content", "/v1/chat/completions",
         {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, 422,
         "messages[0].content[0]"),
        ("tools", "/v1/chat/completions", {"messages": CHAT, "tools": [{"type": "function"}]}, 422, "tools"),
        ("chat beyond the context", "/v1/chat/completions",
         {"messages": [{"role": "user", "content": long_prompt}]}, 400, "messages"),
    ]
    for what, path, body, status, param in cases:
        code, reply = server.request("POST", path, body if isinstance(body, bytes) else json.dumps(body))
        error = check_error(code, reply, status, what)
        if param is not None:
            expect(error["param"] == param, "%s: param %r, expected %r" % (what, error["param"], param))
        if "beyond the context" in what:
            expect(error["code"] == "context_length_exceeded", "%s: code %r" % (what, error["code"]))
    code, reply = server.request("POST", "/v1/completions", b'{"prompt": "' + b"a" * 2_000_000 + b'"}')
    check_error(code, reply, 413, "oversized body")
    code, reply = server.request("GET", "/v1/nothing")
    check_error(code, reply, 404, "unknown path")
    code, reply = server.request("GET", "/v1/completions")
    check_error(code, reply, 404, "wrong method")
    status, body = server.request("GET", "/health")
    expect(status == 200, "the server is unwell after the errors")
    print("ok: errors (%d bad requests, each a 4xx with an OpenAI error body)" % (len(cases) + 3))


def check_auth(server, args):
    for headers, status in (({}, 401), ({"Authorization": "Bearer wrong"}, 401),
                            ({"Authorization": "Bearer sekrit"}, 200)):
        code, body = server.request("GET", "/v1/models", headers=headers)
        if status == 401:
            expect(check_error(code, body, 401, "api key")["code"] == "invalid_api_key", "invalid_api_key")
        else:
            expect(code == 200, "the right key gets %d" % code)
    code, body = server.request("POST", "/v1/completions", {"prompt": "x", "max_tokens": 1})
    check_error(code, body, 401, "completion without a key")
    expect(server.request("GET", "/health")[0] == 200, "/health needs no key")
    print("ok: auth")


def open_stream(server, payload):
    """A raw socket with a streaming request sent."""
    body = json.dumps(dict(payload, stream=True)).encode()
    sock = socket.create_connection((server.host, server.port), timeout=60)
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    return sock


def read_events(sock, count):
    """Reads until `count` data events arrived (or the stream ended)."""
    data = b""
    while data.count(b"data: ") < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def check_disconnect(server, args):
    before = server.settle()
    sock = open_stream(server, {"prompt": "The Python standard library provides", "max_tokens": 1900,
                                "ignore_eos": True, "temperature": 0})
    data = read_events(sock, 2)
    expect(b"HTTP/1.1 200" in data, "no stream: %r" % data[:200])
    sock.close()
    after = server.settle(timeout=20)
    generated = after["optmlir_generation_tokens_total"] - before["optmlir_generation_tokens_total"]
    cancelled = after["optmlir_request_cancelled_total"] - before["optmlir_request_cancelled_total"]
    expect(cancelled == 1, "the request was not cancelled (%d cancellations)" % cancelled)
    expect(generated < 1900, "the request ran to its end (%d tokens)" % generated)
    expect(after["optmlir_kv_cache_used_blocks"] == 0, "blocks still used: %r" % after["optmlir_kv_cache_used_blocks"])
    print("ok: disconnect (cancelled after %d of 1900 tokens)" % generated)


WORDS = ("the of and to in is for that with as on by this be are from or it an at can which not use "
         "function value table database branch commit file module class object method query index string "
         "python django postgresql git perl server request model token cache").split()


def load_request(server, rng, shared):
    """One request of the load mix; returns its kind."""
    words = [rng.choice(WORDS) for _ in range(rng.randint(1, 60))]
    prompt = (shared if rng.random() < 0.5 else "") + " ".join(words)
    payload = {"prompt": prompt, "max_tokens": rng.randint(1, 8), "temperature": rng.choice([0, 0.7]),
               "seed": rng.randint(0, 1000)}
    kind = rng.choices(["stream", "stream-cancel", "plain", "abandon", "bad", "chat"],
                       [30, 25, 20, 10, 5, 10])[0]
    if kind == "stream":
        events = server.stream("/v1/completions", dict(payload, stream=True))
        expect(events[-1] == "[DONE]" and events[-2]["choices"][0]["finish_reason"], "load stream %r" % events[-2:])
    elif kind == "stream-cancel":
        sock = open_stream(server, dict(payload, max_tokens=rng.randint(50, 400), ignore_eos=True))
        read_events(sock, rng.randint(1, 3))
        sock.close()
    elif kind == "plain":
        status, out = server.post("/v1/completions", payload)
        expect(status == 200 and out["choices"][0]["finish_reason"] in ("stop", "length"), "load plain %r" % out)
    elif kind == "abandon":
        # Sends a request and leaves before the answer.
        sock = open_stream(server, payload)
        sock.close()
    elif kind == "bad":
        status, body = server.request("POST", "/v1/completions",
                                      rng.choice([b"{", json.dumps(dict(payload, max_tokens=-3))]))
        expect(status in (400, 422), "load bad request got %d" % status)
    else:
        status, out = server.post("/v1/chat/completions",
                                  {"messages": [{"role": "user", "content": prompt}], "max_tokens": 4})
        expect(status == 200, "load chat %d %r" % (status, out))
    return kind


def run_load(server, count, seed, threads=16):
    rng_lock = threading.Lock()
    master = random.Random(seed)
    shared = " ".join(master.choice(WORDS) for _ in range(200)) + " "
    seeds = [master.randint(0, 1 << 30) for _ in range(count)]
    return parallel(lambda s: load_request(server, random.Random(s), shared), seeds, threads)


def warm_up(server):
    """What the load will touch once: handler threads, malloc arenas, and
    the BLAS threads' buffers, which a full step (a batched prefill that
    fills the token budget) allocates the first time."""
    long_prompts = [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(250)) for i in range(16)]
    status, out = server.post("/v1/completions", {"prompt": long_prompts, "max_tokens": 2, "temperature": 0})
    expect(status == 200, "warm-up batch %d %r" % (status, out))
    run_load(server, 150, seed=1)
    server.settle()


def check_load(server, args):
    warm_up(server)
    rss_before = server.rss()
    start = time.time()
    kinds = run_load(server, 1000, seed=2)
    seconds = time.time() - start
    after = server.settle()
    rss_after = server.rss()
    expect(after["optmlir_kv_cache_used_blocks"] == 0,
           "%d KV blocks still used after the load" % after["optmlir_kv_cache_used_blocks"])
    expect(abs(after["process_resident_memory_bytes"] - rss_after) < 0.05 * rss_after,
           "/metrics' resident memory %d vs /proc %d" % (after["process_resident_memory_bytes"], rss_after))
    growth = (rss_after - rss_before) / rss_before
    expect(growth <= 0.05, "resident memory grew %.1f%% (%d -> %d bytes)" % (100 * growth, rss_before, rss_after))
    expect(server.request("GET", "/health")[0] == 200, "unwell after the load")
    counts = {k: kinds.count(k) for k in sorted(set(kinds))}
    print("ok: load (1000 requests in %.1f s: %s; %d cancelled in the engine; every KV block free; "
          "resident memory %.1f -> %.1f MiB, %+.2f%%)"
          % (seconds, counts, after["optmlir_request_cancelled_total"], rss_before / 2**20, rss_after / 2**20,
             100 * growth))


CHECKS = {"endpoints": check_endpoints, "greedy": check_greedy, "chat": check_chat, "stream": check_stream,
          "sampling": check_sampling, "errors": check_errors, "auth": check_auth,
          "disconnect": check_disconnect, "load": check_load}


class Args:
    pass


def main():
    argv = sys.argv[1:]
    server_args = []
    if "--" in argv:
        server_args = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    args = Args()
    args.expect_chat_prompt = None
    if "--expect-chat-prompt" in argv:
        i = argv.index("--expect-chat-prompt")
        args.expect_chat_prompt = argv[i + 1].replace("\\n", "\n")
        del argv[i:i + 2]
    args.reference = None
    if "--reference" in argv:
        i = argv.index("--reference")
        args.reference = argv[i + 1]
        del argv[i:i + 2]
    args.optrun, args.artifact, checks = argv[0], argv[1], argv[2:]
    args.model = None
    global WORKDIR
    WORKDIR = os.path.dirname(os.path.abspath(args.artifact))
    for check in checks:
        expect(check in CHECKS, "unknown check " + check)
    server = Server(args.optrun, args.artifact, server_args)
    try:
        for check in checks:
            CHECKS[check](server, args)
    except SystemExit:
        server.process.kill()
        raise
    except Exception as e:
        server.process.kill()
        fail("%s: %s" % (type(e).__name__, e))
    server.stop()
    print("ok: stopped cleanly")


WORKDIR = "."

if __name__ == "__main__":
    main()
