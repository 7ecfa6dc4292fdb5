// Load generator for `dsv4 serve` (loopback only): N streamed chat requests, C at a time, each with its own
// seed. Reports requests/s, aggregate generated tokens/s, p50/p99 time to first token and inter-token
// latency, and how many requests failed. Node 20's fetch, no dependencies.
// Usage: node bench/serve_load.mjs <baseURL> [--requests N] [--concurrency C] [--max-tokens T] [--json]
const args = process.argv.slice(2);
const base = args[0];
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const N = opt('--requests', 32), C = opt('--concurrency', 4), T = opt('--max-tokens', 16);
if (!/^http:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?/.test(base || '')) {
  console.error('usage: serve_load.mjs http://127.0.0.1:PORT/v1 [--requests N] [--concurrency C] [--max-tokens T] [--json]');
  process.exit(2);
}

async function one(i) {
  const t0 = performance.now();
  const res = await fetch(`${base}/chat/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({
      model: 'dsv4', stream: true, stream_options: { include_usage: true }, max_tokens: T, temperature: 0.8, seed: i,
      messages: [{ role: 'user', content: `Request ${i}: tell me about the number ${i}.` }],
    }),
  });
  if (!res.ok) return { ok: false, status: res.status };
  const times = [];
  let usage = null, buf = '';
  const dec = new TextDecoder();
  for await (const chunk of res.body) {
    buf += dec.decode(chunk, { stream: true });
    let at;
    while ((at = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, at);
      buf = buf.slice(at + 2);
      if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
      const j = JSON.parse(ev.slice(6));
      if (j.usage) usage = j.usage;
      // A token's text (the first chunk carries only the role and is sent on acceptance: not a token).
      const d = j.choices?.[0]?.delta;
      if (d && (d.content || d.reasoning_content)) times.push(performance.now());
    }
  }
  return { ok: true, t0, times, tokens: usage ? usage.completion_tokens : times.length, end: performance.now() };
}

const pct = (a, p) => (a.length ? a.slice().sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(p * a.length))] : NaN);
const start = performance.now();
const results = [];
let next = 0;
await Promise.all(Array.from({ length: C }, async () => {
  while (next < N) results.push(await one(next++));
}));
const wall = (performance.now() - start) / 1000;
const ok = results.filter((r) => r.ok);
const ttft = ok.filter((r) => r.times.length).map((r) => (r.times[0] - r.t0) / 1000);
const itl = ok.flatMap((r) => r.times.slice(1).map((t, k) => (t - r.times[k]) / 1000));
const tokens = ok.reduce((s, r) => s + r.tokens, 0);
const out = {
  requests: N, concurrency: C, max_tokens: T, failed: N - ok.length, wall_s: wall,
  requests_per_s: ok.length / wall, generated_tokens: tokens, tokens_per_s: tokens / wall,
  ttft_p50_s: pct(ttft, 0.5), ttft_p99_s: pct(ttft, 0.99), itl_p50_s: pct(itl, 0.5), itl_p99_s: pct(itl, 0.99),
};
if (args.includes('--json')) console.log(JSON.stringify(out));
else console.log(Object.entries(out).map(([k, v]) => `${k.padEnd(18)} ${typeof v === 'number' ? +v.toFixed(4) : v}`).join('\n'));
process.exit(out.failed ? 1 : 0);
