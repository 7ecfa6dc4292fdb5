// The official OpenAI Node SDK against `dsv4 serve` on the real engine (tests/serving/serve_demo.sh).
// The demo's weights are random, so the text is gibberish: the checks are on shape and on determinism
// (streamed and non-streamed answers to the same seeded request are the same text).
// Usage: node real_server_test.mjs <baseURL>
import OpenAI from 'openai';

const client = new OpenAI({ baseURL: process.argv[2], apiKey: 'none', maxRetries: 0, timeout: 120000 });
const failures = [];
const check = (cond, what) => { if (!cond) failures.push(what); };
const model = 'dsv4';
const messages = [{ role: 'user', content: 'Hello from the OpenAI SDK' }];

const chat = await client.chat.completions.create({ model, messages, max_tokens: 5, temperature: 0.7, seed: 11 });
const answer = chat.choices[0].message.content ?? '';
check(chat.object === 'chat.completion', `chat.object ${chat.object}`);
check(['stop', 'length'].includes(chat.choices[0].finish_reason), `chat finish ${chat.choices[0].finish_reason}`);
check(chat.usage.completion_tokens >= 1 && chat.usage.completion_tokens <= 5, `chat completion_tokens ${chat.usage.completion_tokens}`);
check(chat.usage.total_tokens === chat.usage.prompt_tokens + chat.usage.completion_tokens, 'chat total_tokens');

let streamed = '', usage = null, finish = null;
const stream = await client.chat.completions.create({
  model, messages, max_tokens: 5, temperature: 0.7, seed: 11, stream: true, stream_options: { include_usage: true },
});
for await (const chunk of stream) {
  if (chunk.usage) usage = chunk.usage;
  for (const c of chunk.choices) {
    if (c.delta?.content) streamed += c.delta.content;
    if (c.finish_reason) finish = c.finish_reason;
  }
}
check(streamed === answer, `streamed ${JSON.stringify(streamed)} != non-streamed ${JSON.stringify(answer)}`);
check(finish === chat.choices[0].finish_reason, `stream finish ${finish}`);
check(usage && usage.completion_tokens === chat.usage.completion_tokens, `stream usage ${JSON.stringify(usage)}`);

const comp = await client.completions.create({ model, prompt: 'The capital of France is', max_tokens: 4, temperature: 0 });
check(comp.object === 'text_completion', `completion.object ${comp.object}`);
let ctext = '';
for await (const chunk of await client.completions.create({ model, prompt: 'The capital of France is', max_tokens: 4, temperature: 0, stream: true }))
  ctext += chunk.choices[0]?.text ?? '';
check(ctext === comp.choices[0].text, `completion stream ${JSON.stringify(ctext)} != ${JSON.stringify(comp.choices[0].text)}`);

try {
  await client.chat.completions.create({ model, messages: [{ role: 'wizard', content: 'x' }] });
  failures.push('a bad role was accepted');
} catch (e) {
  check(e.status === 400, `bad role gave ${e.status}`);
}
const models = await client.models.list();
check(models.data.length >= 1, 'models.list is empty');

if (failures.length) {
  console.error('FAIL:\n  ' + failures.join('\n  '));
  process.exit(1);
}
console.log(`ok: OpenAI Node SDK against dsv4 serve (answer ${JSON.stringify(answer)})`);
