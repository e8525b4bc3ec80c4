// The TypeScript SDK's helpers against a running Sijo: the beta tool runner (which first tries a
// message thread and falls back when the server refuses threads the API's way), the stream helper's
// events, and `messages.parse` with a JSON schema. Prints one JSON object for the pytest side.
import Anthropic from '@anthropic-ai/sdk';
import { betaTool, betaJSONSchemaOutputFormat } from '@anthropic-ai/sdk/helpers/beta/json-schema';

// Every request the SDK sends, with whether it asked for a thread and the status it got.
const sent = [];
const recording = async (url, init) => {
  const response = await fetch(url, init);
  const body = typeof init?.body === 'string' ? JSON.parse(init.body) : {};
  sent.push({ path: new URL(url).pathname, thread: 'thread' in body, status: response.status });
  return response;
};
const client = new Anthropic({ maxRetries: 0, fetch: recording });
const model = 'claude-sonnet-4-6';

// The tool runner: one forced call, its result sent back, then a final turn (tool_choice none).
const ran = [];
const unit = betaTool({
  name: 'set_unit',
  description: 'Set the temperature unit.',
  inputSchema: {
    type: 'object',
    properties: { unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
    required: ['unit'],
  },
  run: async (args) => {
    ran.push(args);
    return `unit set to ${args.unit}`;
  },
});
const runner = client.beta.messages.toolRunner({
  model,
  max_tokens: 40,
  tools: [unit],
  tool_choice: { type: 'tool', name: 'set_unit' },
  messages: [{ role: 'user', content: 'Use celsius.' }],
  max_iterations: 2,
});
const turns = [];
for await (const message of runner) {
  turns.push({ stop_reason: message.stop_reason, types: message.content.map((b) => b.type) });
}

// The stream helper: its events and the final message agree.
const stream = client.messages.stream({ model, max_tokens: 16, messages: [{ role: 'user', content: 'Hi!' }] });
const seen = [];
let streamed = '';
stream.on('streamEvent', (event) => seen.push(event.type));
stream.on('text', (text) => {
  streamed += text;
});
const final = await stream.finalMessage();

// messages.parse with a JSON schema (beta helper): parsed_output is the validated object.
const parsed = await client.beta.messages.parse({
  model,
  max_tokens: 60,
  messages: [{ role: 'user', content: 'Name a city and say whether it is a capital.' }],
  output_format: betaJSONSchemaOutputFormat({
    type: 'object',
    // An enum and a boolean always fit the budget whole. A maxLength string and a bounded integer did
    // not always (max_tokens once on an AMD EPYC): the SDKs' schema transforms move such keywords,
    // which the API's structured outputs do not take, into descriptions.
    properties: { city: { type: 'string', enum: ['Seoul', 'Busan', 'Paris'] }, capital: { type: 'boolean' } },
    required: ['city', 'capital'],
    additionalProperties: false,
  }),
});

console.log(
  JSON.stringify({
    ran,
    turns,
    sent,
    stream: { seen, streamed, final },
    parsed: { stop_reason: parsed.stop_reason, output: parsed.parsed_output ?? null },
  }),
);
