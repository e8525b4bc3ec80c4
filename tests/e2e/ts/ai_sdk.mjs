// Drives a running Sijo with the Vercel AI SDK (`ai` + `@ai-sdk/anthropic`); prints one JSON object
// for the pytest side. The provider's baseURL includes `/v1` (its default is
// https://api.anthropic.com/v1), so it is ANTHROPIC_BASE_URL + '/v1' here, as its docs tell a user.
import { createAnthropic } from '@ai-sdk/anthropic';
import { generateObject, generateText, streamText, tool } from 'ai';
import { z } from 'zod';

const anthropic = createAnthropic({
  baseURL: `${process.env.ANTHROPIC_BASE_URL}/v1`,
  apiKey: process.env.ANTHROPIC_API_KEY,
});
const model = anthropic('claude-sonnet-4-6');
const common = { model, maxRetries: 0 };

// Each check runs on its own, so one failure names itself and the others still report.
async function check(run) {
  try {
    return { ok: true, ...(await run()) };
  } catch (error) {
    return { ok: false, error: `${error?.name}: ${error?.message}`, cause: String(error?.cause ?? '') };
  }
}

const generated = await check(async () => {
  const result = await generateText({ ...common, prompt: 'Say hello.', maxOutputTokens: 8 });
  return { text: result.text, finishReason: result.finishReason, usage: result.usage };
});

const streamed = await check(async () => {
  const result = streamText({ ...common, prompt: 'Say hello.', maxOutputTokens: 8 });
  let deltas = '';
  for await (const delta of result.textStream) deltas += delta;
  return { deltas, text: await result.text, finishReason: await result.finishReason };
});

const called = await check(async () => {
  const weather = tool({
    description: 'Current weather in a city.',
    inputSchema: z.object({ city: z.string().max(20) }), // bounded: the call always fits its budget whole
  }); // no execute: the call is returned, not run
  const result = await generateText({
    ...common,
    prompt: 'What is the weather in Seoul?',
    tools: { weather },
    toolChoice: { type: 'tool', toolName: 'weather' },
    providerOptions: { anthropic: { disableParallelToolUse: true } },
    maxOutputTokens: 60,
  });
  return {
    finishReason: result.finishReason,
    toolCalls: result.toolCalls.map((c) => ({ toolName: c.toolName, toolCallId: c.toolCallId, input: c.input })),
  };
});

const object = await check(async () => {
  const result = await generateObject({
    ...common,
    // Only keywords the API's structured outputs keep bound the object (the SDK moves maxLength,
    // minimum and maximum into descriptions, so the model could write any string or number): an
    // enum and a boolean always fit the budget and always validate.
    schema: z.object({ name: z.enum(['Ada', 'Grace', 'Linus']), likesTea: z.boolean() }),
    prompt: 'Invent a person.',
    maxOutputTokens: 60,
  });
  return { object: result.object, finishReason: result.finishReason };
});

console.log(JSON.stringify({ generated, streamed, called, object }));
