// Drives a running Sijo with the official TypeScript SDK; prints one JSON object for the pytest side.
// ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY come from the environment, as a user would set them.
import Anthropic from '@anthropic-ai/sdk';

const client = new Anthropic({ maxRetries: 0 });
const messages = [{ role: 'user', content: '안녕하세요!' }];

const created = await client.messages.create({ model: 'claude-sonnet-4-6', max_tokens: 12, messages });

const stream = client.messages.stream({ model: 'claude-sonnet-4-6', max_tokens: 12, messages });
let streamedText = '';
stream.on('text', (text) => {
  streamedText += text;
});
const final = await stream.finalMessage();

let notFound = null;
try {
  await client.messages.create({ model: 'no-such-model', max_tokens: 5, messages });
} catch (error) {
  notFound = { status: error.status, type: error.error?.error?.type, requestId: error.requestID ?? null };
}

console.log(JSON.stringify({ created, final, streamedText, notFound }));
