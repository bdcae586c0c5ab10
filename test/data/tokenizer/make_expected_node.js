#!/usr/bin/env node
// Produces expected_*.json like make_expected.py, but with the Node binding of
// Hugging Face `tokenizers` (npm package "tokenizers", the same Rust core).
// For machines without Python `tokenizers`:
//
//   python3 make_expected.py --convert-only --out DIR   # trains llama2_style.json
//   python3 make_expected.py --dump-cases > cases.json
//   NODE_PATH=/path/to/node_modules node make_expected_node.js \
//       cases.json TOKENIZER.json LABEL OUT.json [EXTRA_JSON]
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');

async function main() {
  const [casesPath, tokPath, label, outPath, extraJson] = process.argv.slice(2);
  if (!outPath) {
    console.error('usage: make_expected_node.js cases.json tokenizer.json LABEL out.json [extra-json]');
    process.exit(2);
  }
  const cases = JSON.parse(fs.readFileSync(casesPath, 'utf8'));
  const tok = Tokenizer.fromFile(tokPath);
  const out = [];
  for (const { name, text } of cases) {
    const ids = (await tok.encode(text, null, { addSpecialTokens: false })).getIds();
    const idsSpecial = (await tok.encode(text, null, { addSpecialTokens: true })).getIds();
    out.push({
      name, text, ids, ids_special: idsSpecial,
      decoded: await tok.decode(idsSpecial, false),
      decoded_skip: await tok.decode(idsSpecial, true),
    });
  }
  // Deterministic pseudo-random id lists (LCG), as make_expected.py does
  // with Python's random.
  let state = 20240611;
  const next = (n) => { state = (state * 1103515245 + 12345) % 2147483648; return state % n; };
  const vocabSize = tok.getVocabSize(true);
  const decodeCases = [];
  for (let i = 0; i < 120; ++i) {
    const len = 1 + next(6);
    const ids = [];
    for (let k = 0; k < len; ++k) ids.push(next(vocabSize));
    decodeCases.push({ ids, decoded: await tok.decode(ids, false), decoded_skip: await tok.decode(ids, true) });
  }
  const version = require('tokenizers/package.json').version;
  const data = Object.assign({
    tokenizer: path.relative(__dirname, tokPath),
    generator: `tokenizers ${version} (Node binding)`,
    label, cases: out, decode_cases: decodeCases,
  }, extraJson ? JSON.parse(extraJson) : {});
  // One case per line, like make_expected.py.
  let s = '{\n';
  const keys = Object.keys(data);
  keys.forEach((key, k) => {
    const v = data[key];
    s += `  ${JSON.stringify(key)}: `;
    if (Array.isArray(v)) {
      s += '[\n' + v.map((item) => '    ' + JSON.stringify(item)).join(',\n') + '\n  ]';
    } else {
      s += JSON.stringify(v);
    }
    s += k + 1 < keys.length ? ',\n' : '\n';
  });
  s += '}\n';
  fs.writeFileSync(outPath, s);
  console.log(`${path.basename(outPath)}: ${out.length} cases, ${decodeCases.length} decode cases`);
}
main().catch((e) => { console.error(e); process.exit(1); });
