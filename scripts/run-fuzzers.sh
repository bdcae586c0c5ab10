#!/usr/bin/env bash
# Builds the libFuzzer targets with clang++ (ASan + UBSan) and runs each for
# a while over a small seed corpus. Exits non-zero if any input crashes.
#
#   scripts/run-fuzzers.sh [SECONDS] [BUILD_DIR]
#
# SECONDS defaults to 30 (per fuzzer); BUILD_DIR to <repo>/build-fuzz. CLANGXX
# overrides the compiler (default clang++-22). Crashing inputs are written to
# BUILD_DIR/artifacts/; replay one with BUILD_DIR/safetensors_fuzzer FILE
# (or BUILD_DIR/<name>_fuzzer FILE for <name>-* inputs: artifact, request,
# chat_template).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-30}"
build="${2:-$repo/build-fuzz}"
cxx="${CLANGXX:-clang++-22}"

if ! [[ "$seconds" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 [SECONDS] [BUILD_DIR]" >&2
  exit 2
fi
mkdir -p "$build"
build="$(cd "$build" && pwd)"

flags=(-std=c++17 -g -O1 -fno-omit-frame-pointer
       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -I "$repo/include")

echo "== building safetensors_fuzzer with $cxx"
"$cxx" "${flags[@]}" -o "$build/safetensors_fuzzer" \
  "$repo/test/fuzz/safetensors_fuzzer.cpp" \
  "$repo/lib/Support/SafeTensors.cpp" \
  "$repo/lib/Support/MappedFile.cpp"

# Seeds: a few small valid files in the shapes real checkpoints use, plus the
# header of a shared model if one is present (its data section is dropped and
# the offsets rewritten so that the seed stays small and valid).
seeds="$build/seeds/safetensors"
rm -rf "$seeds"
mkdir -p "$seeds"
python3 - "$seeds" "$repo/../shared/models/draft/model.safetensors" <<'PY'
import json, os, struct, sys

out, real = sys.argv[1], sys.argv[2]
sizes = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8, "I8": 1, "U8": 1,
         "I16": 2, "I32": 4, "I64": 8, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}

def write(name, tensors, metadata=None, pad=0):
    # Each seed twice: as a file, and as "header NUL data" (the fuzzer's
    # second input form, see safetensors_fuzzer.cpp).
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for tname, dtype, shape in tensors:
        count = 1
        for d in shape:
            count *= d
        begin = len(data)
        data += bytes((begin + i) & 0xff for i in range(count * sizes[dtype]))
        header[tname] = {"dtype": dtype, "shape": shape,
                         "data_offsets": [begin, len(data)]}
    text = json.dumps(header, separators=(",", ":")).encode() + b" " * pad
    with open(os.path.join(out, name), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)
    with open(os.path.join(out, name + ".split"), "wb") as f:
        f.write(text + b"\0" + data)

write("empty", [])
write("one", [("w", "F32", [2, 2])], {"format": "pt"})
write("all_dtypes", [(d.lower(), d, [3]) for d in sizes], pad=5)
write("scalar_and_empty", [("s", "I64", []), ("e", "BF16", [0, 7])])
write("llama_layer", [
    ("model.embed_tokens.weight", "BF16", [16, 4]),
    ("model.layers.0.input_layernorm.weight", "BF16", [4]),
    ("model.layers.0.self_attn.q_proj.weight", "BF16", [4, 4]),
    ("model.layers.0.self_attn.q_proj.bias", "BF16", [4]),
    ("model.layers.0.mlp.down_proj.weight", "BF16", [4, 6]),
    ("lm_head.weight", "BF16", [16, 4]),
], {"format": "pt", "note": "seed"})

# A real header, shrunk: shapes scaled down to single elements.
if os.path.exists(real):
    with open(real, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    tensors = [(k, v["dtype"], [1] * len(v["shape"]))
               for k, v in header.items() if k != "__metadata__"]
    write("real_header", tensors, header.get("__metadata__"))
PY

dict="$build/seeds/safetensors.dict"
cat > "$dict" <<'DICT'
"__metadata__"
"dtype"
"shape"
"data_offsets"
"format"
"BF16"
"F16"
"F32"
"F64"
"I8"
"U8"
"I16"
"I32"
"I64"
"BOOL"
"F8_E4M3"
"F8_E5M2"
"U16"
"18446744073709551615"
"9223372036854775807"
"4294967296"
"-1"
"\xc3\xa9"
"\xed\xa0\x80"
DICT

corpus="$build/corpus/safetensors"
mkdir -p "$corpus" "$build/artifacts"

echo "== running safetensors_fuzzer for ${seconds}s"
status=0
"$build/safetensors_fuzzer" "$corpus" "$seeds" \
  -dict="$dict" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
  -max_len=8192 -print_final_stats=1 \
  -artifact_prefix="$build/artifacts/safetensors-" || status=$?
if [ "$status" -ne 0 ]; then
  echo "safetensors_fuzzer FAILED (exit $status); see $build/artifacts/" >&2
  exit "$status"
fi
# --- artifact_fuzzer: the .optpkg reader/verifier -------------------------
# The schema header is generated here as CMake would (flatc at build time).
gen="$build/gen"
mkdir -p "$gen/runtime/artifact"
flatc --cpp --scoped-enums -o "$gen/runtime/artifact" \
  "$repo/runtime/artifact/Artifact.fbs"
art_srcs=("$repo/runtime/artifact/Artifact.cpp"
          "$repo/runtime/artifact/ArtifactFormat.cpp"
          "$repo/runtime/artifact/ArtifactTypes.cpp")

echo "== building artifact_fuzzer with $cxx"
"$cxx" "${flags[@]}" -I "$repo" -I "$gen" -o "$build/artifact_fuzzer" \
  "$repo/test/fuzz/artifact_fuzzer.cpp" "${art_srcs[@]}"

# Seeds: the sample artifact and its broken variants (optpkg-testgen, built
# without instrumentation), each also in the fuzzer's "mode byte, metadata,
# blob" form that gets valid checksums for free.
"$cxx" -std=c++17 -O1 -I "$repo" -I "$gen" \
  -I "$repo/test/unit/runtime/artifact" -o "$build/optpkg-testgen" \
  "$repo/test/unit/runtime/artifact/optpkg-testgen.cpp" \
  "$repo/test/unit/runtime/artifact/SampleArtifact.cpp" \
  "$repo/runtime/artifact/ArtifactWriter.cpp" "${art_srcs[@]}"
aseeds="$build/seeds/artifact"
rm -rf "$aseeds"
mkdir -p "$aseeds"
"$build/optpkg-testgen" "$aseeds"
python3 - "$aseeds" <<'PY'
import os, struct, sys
d = sys.argv[1]
for name in ("good.optpkg", "virtual.optpkg", "missing-buffer.optpkg"):
    data = open(os.path.join(d, name), "rb").read()
    fb_off, fb_size, blob_off, blob_size = struct.unpack_from("<4Q", data, 40)
    flags = struct.unpack_from("<Q", data, 24)[0]
    blob = data[blob_off:blob_off + blob_size]
    blob += b"\0" * (-len(blob) % 16)  # the mode byte counts 16-byte units
    mode = ((len(blob) // 16) << 1) | (flags & 1)
    if mode < 256 and mode != ord("O"):
        with open(os.path.join(d, name + ".wrapped"), "wb") as f:
            f.write(bytes([mode]) + data[fb_off:fb_off + fb_size] + blob)
PY

acorpus="$build/corpus/artifact"
mkdir -p "$acorpus"
echo "== running artifact_fuzzer for ${seconds}s"
"$build/artifact_fuzzer" "$acorpus" "$aseeds" \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
  -max_len=16384 -print_final_stats=1 \
  -artifact_prefix="$build/artifacts/artifact-" || status=$?
if [ "$status" -ne 0 ]; then
  echo "artifact_fuzzer FAILED (exit $status); see $build/artifacts/" >&2
  exit "$status"
fi
# --- request_fuzzer: OpenAI request bodies (optrun serve) ----------------
# --- chat_template_fuzzer: the Jinja subset of chat templates ------------
chat_srcs=("$repo/runtime/chat/ChatTemplate.cpp" "$repo/runtime/chat/Jinja.cpp")
echo "== building request_fuzzer and chat_template_fuzzer with $cxx"
"$cxx" "${flags[@]}" -I "$repo" -o "$build/request_fuzzer" \
  "$repo/test/fuzz/request_fuzzer.cpp" "$repo/runtime/serve/OpenAiApi.cpp" \
  "$repo/runtime/core/Sampler.cpp" "${chat_srcs[@]}"
"$cxx" "${flags[@]}" -I "$repo" -o "$build/chat_template_fuzzer" \
  "$repo/test/fuzz/chat_template_fuzzer.cpp" "${chat_srcs[@]}"

# Seeds: request bodies (first byte: 0 completions, 1 chat) and the real
# chat templates of test/data.
rseeds="$build/seeds/request"
rm -rf "$rseeds"
mkdir -p "$rseeds"
python3 - "$rseeds" <<'PY'
import json, os, sys
out = sys.argv[1]
bodies = [
    (0, {"model": "m", "prompt": "Hello", "max_tokens": 8, "temperature": 0.7,
         "top_p": 0.9, "n": 2, "stop": ["\n"], "seed": 3, "logprobs": 2,
         "stream": True, "stream_options": {"include_usage": True}}),
    (0, {"prompt": [[0, 5, 9], "text"], "top_k": 5, "min_p": 0.1,
         "repetition_penalty": 1.1, "ignore_eos": True, "priority": -1}),
    (1, {"messages": [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                      {"role": "assistant", "content": None,
                       "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}]}],
         "max_completion_tokens": 4, "logprobs": True, "top_logprobs": 3,
         "presence_penalty": 0.5, "frequency_penalty": -0.5}),
]
for i, (endpoint, body) in enumerate(bodies):
    with open(os.path.join(out, "body%d" % i), "wb") as f:
        f.write(bytes([endpoint]) + json.dumps(body).encode())
PY
rdict="$build/seeds/request.dict"
cat > "$rdict" <<'DICT'
"\"prompt\""
"\"messages\""
"\"role\""
"\"content\""
"\"user\""
"\"assistant\""
"\"system\""
"\"type\""
"\"text\""
"\"max_tokens\""
"\"temperature\""
"\"top_p\""
"\"top_k\""
"\"n\""
"\"stop\""
"\"seed\""
"\"stream\""
"\"stream_options\""
"\"include_usage\""
"\"logprobs\""
"\"top_logprobs\""
"\"stop_token_ids\""
"\"priority\""
"true"
"false"
"null"
"1e300"
"-0"
"2147483648"
"18446744073709551616"
DICT
tseeds="$build/seeds/chat_template"
rm -rf "$tseeds"
mkdir -p "$tseeds"
cp "$repo"/test/data/chat_templates/*.jinja "$tseeds/"
tdict="$build/seeds/chat_template.dict"
cat > "$tdict" <<'DICT'
"{{"
"}}"
"{%"
"%}"
"{#"
"#}"
"{%-"
"-%}"
"for "
" in "
"endfor"
"if "
"elif "
"else"
"endif"
"set "
"namespace("
"macro "
"endmacro"
"loop.index0"
"loop.last"
"messages"
"message['content']"
"|tojson"
"|trim"
"|length"
"raise_exception("
" is defined"
" is not none"
"[1:]"
"range("
DICT

for target in request chat_template; do
  corpus="$build/corpus/$target"
  mkdir -p "$corpus"
  extra=(-dict="$rdict")
  if [ "$target" = chat_template ]; then extra=(-dict="$tdict"); fi
  echo "== running ${target}_fuzzer for ${seconds}s"
  "$build/${target}_fuzzer" "$corpus" "$build/seeds/$target" "${extra[@]}" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
    -max_len=8192 -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/$target-" || status=$?
  if [ "$status" -ne 0 ]; then
    echo "${target}_fuzzer FAILED (exit $status); see $build/artifacts/" >&2
    exit "$status"
  fi
done
echo "== all fuzzers passed"
