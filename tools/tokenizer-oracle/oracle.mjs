// Expected ids for tests/text, from Hugging Face `tokenizers` (the Rust crate through its napi binding,
// whose Split patterns run on Oniguruma, as in Python's `tokenizers`). Run once, commit the output:
//   cd tools/tokenizer-oracle && npm ci --ignore-scripts && node oracle.mjs
// Writes tests/text/data/corpus.jsonl (strings with their ids, and the ids with special-token strings
// taken literally where a string holds one) and tests/text/data/probe.bin (a hash of the ids of every
// code point of planes 0-3 and 14 in a fixed context; layout at writeProbe()).
// `node oracle.mjs --show U+1FA77` prints the probe string of one code point and its ids.
// `node oracle.mjs --seed N FILE` writes a corpus of other random mixes to FILE (not to the repo):
// DSV4_TOKENIZER_CORPUS=FILE text_tests --gtest_filter='*Corpus*' then compares on it.
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync, renameSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { corpus } from './corpus.mjs';

const require = createRequire(import.meta.url);
const { Tokenizer } = require('tokenizers');
const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const outDir = join(root, 'tests', 'text', 'data');

// The engine's token set: the V3 tokenizer.json plus the V4 added tokens (../shared/tokenizer/README.md;
// the same list as kV4Added in runtime/text/tokenizer.cpp). HF gives an added token the next free id
// when its id would leave a gap, so the unused ids 128847..129278 get placeholders no text contains.
const kV4Added = [
  [128815, '<｜begin▁of▁repo▁name｜>'], [128816, '<｜end▁of▁repo▁name｜>'], [128817, '<｜begin▁of▁file▁name｜>'],
  [128818, '<｜end▁of▁file▁name｜>'], [128819, '<｜begin▁of▁file｜>'], [128820, '<｜end▁of▁file｜>'],
  [128821, '<think>'], [128822, '</think>'], [128823, '<｜place▁holder▁for▁copy｜>'],
  [128824, '<｜place▁holder▁for▁pointer▁replace｜>'], [128825, '｜DSML｜'], [128826, '<｜begin▁sys｜>'],
  [128827, '<｜end▁sys｜>'], [128828, '<｜latest_reminder｜>'], [128829, '<｜action｜>'], [128830, '<｜query｜>'],
  [128831, '<｜authority｜>'], [128832, '<｜domain｜>'], [128833, '<｜task｜>'], [128834, '<｜political｜>'],
  [128835, '<｜entity｜>'], [128836, '<｜title｜>'], [128837, '<｜safety｜>'], [128838, '<｜answer｜>'],
  [128839, '<｜search｜>'], [128840, '<dsml:'], [128841, '</dsml:'], [128842, '<｜search▁begin｜>'],
  [128843, '<｜search▁end｜>'], [128844, '<｜extracted_url｜>'], [128845, '<｜read_url｜>'],
  [128846, '<｜end_of_query｜>'], [129279, '<｜image｜>', true],
];

function tokenizers() {
  const j = JSON.parse(readFileSync(join(root, 'data', 'tokenizer', 'tokenizer.json'), 'utf8'));
  const have = new Set(j.added_tokens.map((a) => a.id));
  const add = (id, content, special) =>
    j.added_tokens.push({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special });
  for (const [id, content, special] of kV4Added) if (!have.has(id)) add(id, content, !!special);
  for (let id = 128847; id < 129279; ++id) add(id, `<｜dsv4▁unused▁${id}｜>`, true);
  j.added_tokens.sort((a, b) => a.id - b.id);
  const full = Tokenizer.fromString(JSON.stringify(j));
  for (const [id, content] of kV4Added)
    if (full.tokenToId(content) !== id) throw new Error(`oracle: ${content} got id ${full.tokenToId(content)}, want ${id}`);
  const contents = j.added_tokens.map((a) => a.content);
  j.added_tokens = [];
  return { full, literal: Tokenizer.fromString(JSON.stringify(j)), contents };
}

async function encodeAll(tok, texts) {
  const out = [];
  for (let i = 0; i < texts.length; i += 4096) {
    const encs = await tok.encodeBatch(texts.slice(i, i + 4096), { addSpecialTokens: false });
    for (const e of encs) out.push(Array.from(e.getIds()));
  }
  return out;
}

// The probe's context: the code point after a letter and before one (joins a letter run or not),
// after a space and before punctuation (joins " ?[P S]+" or not), between digits and four in a row
// (\p{N}{1,3}), before "x\r\n" and at the very end (\s lookahead, [\r\n] runs).
// tests/text/test_tokenizer_conformance.cpp builds the same string.
export const probeText = (c) => `a${c}b ${c}! 1${c}1 ${c}${c}${c}${c}x\r\n${c}`;
const kPlanes = [0, 1, 2, 3, 14];

const fnv1a = (ids) => {
  let h = 0x811c9dc5;
  for (const id of ids)
    for (let k = 0; k < 4; ++k) h = Math.imul(h ^ ((id >>> (8 * k)) & 255), 0x01000193) >>> 0;
  return h;
};

// probe.bin: "DSV4PRB1", uint32 plane count, then per plane its number and 65,536 FNV-1a hashes
// (32-bit, over each id as 4 little-endian bytes) of the ids of probeText(code point); surrogates 0.
async function writeProbe(tok) {
  const parts = [Buffer.from('DSV4PRB1'), u32([kPlanes.length])];
  for (const plane of kPlanes) {
    const cps = [], texts = [];
    for (let cp = plane << 16; cp < (plane + 1) << 16; ++cp)
      if (cp < 0xd800 || cp > 0xdfff) cps.push(cp), texts.push(probeText(String.fromCodePoint(cp)));
    const ids = await encodeAll(tok, texts);
    const hashes = new Uint32Array(65536);
    cps.forEach((cp, i) => (hashes[cp & 0xffff] = fnv1a(ids[i])));
    parts.push(u32([plane]), Buffer.from(hashes.buffer));
    console.log(`probe: plane ${plane}, ${cps.length} code points`);
  }
  atomicWrite(join(outDir, 'probe.bin'), Buffer.concat(parts));
}

const u32 = (values) => Buffer.from(new Uint32Array(values).buffer);  // little-endian on x86/arm
function atomicWrite(path, data) {
  writeFileSync(path + '.tmp', data);
  renameSync(path + '.tmp', path);
}

async function main() {
  const { full, literal, contents } = tokenizers();
  // Unicode 15/16 must be known (U+1FA77 pink heart is a symbol: joins the space before it) and U+180E
  // is no longer white space (Unicode 6.3): an older Oniguruma would give other ids here.
  const check = async (text, want) => {
    const got = (await encodeAll(full, [text]))[0];
    if (JSON.stringify(got) !== JSON.stringify(want))
      throw new Error(`oracle: ${JSON.stringify(text)} -> ${got}, want ${want}: not Unicode 16 behaviour`);
  };
  await check('pink heart: \u{1FA77}', [82, 1143, 4082, 28, 7351, 105, 118]);
  await check('a \u180e b', [67, 223, 115522, 239, 291]);
  await check('x \u{1FAE9}', [90, 7351, 107, 105]);  // U+1FAE9 (Unicode 16.0) is a symbol

  const show = process.argv.indexOf('--show');
  if (show > 0) {
    const cp = parseInt(process.argv[show + 1].replace(/^U\+/i, ''), 16);
    const text = probeText(String.fromCodePoint(cp));
    const ids = (await encodeAll(full, [text]))[0];
    console.log(JSON.stringify(text), JSON.stringify(ids), 'hash', fnv1a(ids).toString(16));
    return;
  }

  const seedArg = process.argv.indexOf('--seed');
  const corpusPath = seedArg > 0 ? process.argv[seedArg + 2] : join(outDir, 'corpus.jsonl');
  if (seedArg > 0 && !corpusPath) throw new Error('usage: node oracle.mjs --seed N FILE');
  mkdirSync(outDir, { recursive: true });
  const texts = seedArg > 0 ? corpus(Number(process.argv[seedArg + 1])) : corpus();
  const ids = await encodeAll(full, texts);
  const hasAdded = texts.map((t) => contents.some((c) => t.includes(c)));
  const lit = await encodeAll(literal, texts.filter((_, i) => hasAdded[i]));
  let k = 0, bytes = 0;
  const lines = texts.map((t, i) => {
    bytes += Buffer.byteLength(t);
    const o = { text: t, ids: ids[i] };
    if (hasAdded[i]) o.literal = lit[k++];
    return JSON.stringify(o);
  });
  atomicWrite(corpusPath, lines.join('\n') + '\n');
  console.log(`corpus: ${texts.length} strings, ${bytes} bytes, ${k} with special-token strings -> ${corpusPath}`);
  if (seedArg < 0) await writeProbe(full);
}

await main();
