// The official OpenAI Node SDK against dsv4's HTTP server (run by tests/serving/test_http_e2e.cpp over a
// fake backend). Usage: node openai_client_test.mjs <baseURL> <model> <expected answer text> <answer tokens>
// Exits 0 when every check holds; prints each failure otherwise.
import OpenAI from 'openai';

const [baseURL, model, expected, answerTokens] = process.argv.slice(2);
const completionTokens = Number(answerTokens) + 1; // the script's tokens plus EOS
const client = new OpenAI({ baseURL, apiKey: 'test-key', maxRetries: 0, timeout: 10000 });
const failures = [];
function check(cond, what) {
  if (!cond) failures.push(what);
}

const messages = [{ role: 'user', content: 'Say something.' }];

// Chat, not streamed.
const chat = await client.chat.completions.create({ model, messages, temperature: 0 });
check(chat.object === 'chat.completion', `chat.object ${chat.object}`);
check(chat.id.startsWith('chatcmpl-'), `chat.id ${chat.id}`);
check(chat.choices[0].message.content === expected, `chat content ${JSON.stringify(chat.choices[0].message.content)}`);
check(chat.choices[0].finish_reason === 'stop', `chat finish ${chat.choices[0].finish_reason}`);
check(chat.usage.prompt_tokens > 0, `chat prompt_tokens ${chat.usage.prompt_tokens}`);
check(chat.usage.completion_tokens === completionTokens, `chat completion_tokens ${chat.usage.completion_tokens}`);
check(chat.usage.total_tokens === chat.usage.prompt_tokens + chat.usage.completion_tokens, 'chat total_tokens');

// Chat, streamed, with usage.
const stream = await client.chat.completions.create({
  model, messages, stream: true, stream_options: { include_usage: true },
});
let streamed = '';
let finish = null;
let usage = null;
let chunks = 0;
for await (const chunk of stream) {
  chunks++;
  if (chunk.usage) usage = chunk.usage;
  for (const c of chunk.choices) {
    if (c.delta?.content) streamed += c.delta.content;
    if (c.finish_reason) finish = c.finish_reason;
  }
}
check(streamed === expected, `chat stream content ${JSON.stringify(streamed)}`);
check(finish === 'stop', `chat stream finish ${finish}`);
check(chunks > 3, `chat stream chunks ${chunks}`);
check(usage && usage.completion_tokens === completionTokens, `chat stream usage ${JSON.stringify(usage)}`);

// Completions, not streamed, cut by max_tokens.
const comp = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 3 });
check(comp.object === 'text_completion', `completion.object ${comp.object}`);
check(comp.choices[0].finish_reason === 'length', `completion finish ${comp.choices[0].finish_reason}`);
check(comp.usage.completion_tokens === 3, `completion usage ${JSON.stringify(comp.usage)}`);
check(expected.startsWith(comp.choices[0].text) && comp.choices[0].text.length > 0, `completion text ${comp.choices[0].text}`);

// Completions, streamed.
const cstream = await client.completions.create({ model, prompt: 'Once upon a time', stream: true, max_tokens: 1000 });
let ctext = '';
for await (const chunk of cstream) ctext += chunk.choices[0]?.text ?? '';
check(ctext === expected, `completion stream text ${JSON.stringify(ctext)}`);

// An error the SDK must surface as a 400.
try {
  await client.chat.completions.create({ model, messages, n: 2 });
  check(false, 'n=2 accepted');
} catch (e) {
  check(e instanceof OpenAI.BadRequestError && e.status === 400, `n=2 error ${e}`);
}

// The model list.
const models = await client.models.list();
check(models.data.some((m) => m.id === model), `models ${JSON.stringify(models.data)}`);

if (failures.length) {
  for (const f of failures) console.error('FAIL:', f);
  process.exit(1);
}
console.log('openai node client: all checks passed');
