// SPDX-License-Identifier: MIT (Sijo's own code, like the rest of the package; no third-party script is vendored)
// The Workbench (console/workbench.py): builds a Messages request from the form, shows it as
// Python, TypeScript and cURL, posts it to /console/workbench/messages and draws the reply's SSE
// events as they arrive, one element per content block. Text goes in with textContent only.
"use strict";

const $ = (selector) => document.querySelector(selector);
const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;

// --- the request -------------------------------------------------------------------------------

function addMessage(role, text) {
  const row = $("#message-row").content.firstElementChild.cloneNode(true);
  row.querySelector(".role").value = role;
  row.querySelector(".content").value = text || "";
  row.querySelector(".remove").addEventListener("click", () => {
    row.remove();
    showCode();
  });
  $("#messages").appendChild(row);
}

function parsed(id, what) {
  const text = $(id).value.trim();
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${what}: not valid JSON (${error.message})`);
  }
}

function requestBody() {
  const body = { model: $("#model").value, max_tokens: Number($("#max_tokens").value) };
  const system = $("#system").value;
  if (system.trim()) body.system = system;
  body.messages = [...document.querySelectorAll("#messages .message")].map((row) => ({
    role: row.querySelector(".role").value,
    content: row.querySelector(".content").value,
  }));
  if ($("#temperature").value !== "") body.temperature = Number($("#temperature").value);
  const tools = parsed("#tools", "tools");
  if (tools !== undefined) body.tools = tools;
  const choice = parsed("#tool_choice", "tool_choice");
  if (choice !== undefined) body.tool_choice = choice;
  const thinking = $("#thinking").value;
  if (thinking === "adaptive") body.thinking = { type: "adaptive" };
  if (thinking === "enabled") body.thinking = { type: "enabled", budget_tokens: Number($("#budget_tokens").value) };
  const config = {};
  if ($("#effort").value) config.effort = $("#effort").value;
  if ($("#structured").checked) {
    const schema = parsed("#schema", "schema");
    if (schema === undefined) throw new Error("schema: give the structured output a JSON schema");
    config.format = { type: "json_schema", schema };
  }
  if (Object.keys(config).length) body.output_config = config;
  return body;
}

// --- view as code ------------------------------------------------------------------------------

function python(value, indent = "") {
  const inner = indent + "    ";
  if (value === null) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number") return String(value);
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    return `[\n${value.map((item) => inner + python(item, inner)).join(",\n")},\n${indent}]`;
  }
  const entries = Object.entries(value);
  if (!entries.length) return "{}";
  return `{\n${entries.map(([k, v]) => `${inner}${JSON.stringify(k)}: ${python(v, inner)}`).join(",\n")},\n${indent}}`;
}

function pythonCode(body) {
  const args = Object.entries(body).map(([k, v]) => `    ${k}=${python(v, "    ")},`).join("\n");
  return [
    "import anthropic",
    "",
    `client = anthropic.Anthropic(base_url=${JSON.stringify(meta("base-url"))})  # the key: ANTHROPIC_API_KEY`,
    "",
    "message = client.messages.create(",
    args,
    ")",
    "print(message.content)",
  ].join("\n");
}

function typescriptCode(body) {
  return [
    'import Anthropic from "@anthropic-ai/sdk";',
    "",
    `const client = new Anthropic({ baseURL: ${JSON.stringify(meta("base-url"))} }); // the key: ANTHROPIC_API_KEY`,
    "",
    `const message = await client.messages.create(${JSON.stringify(body, null, 2)});`,
    "console.log(message.content);",
  ].join("\n");
}

function curlCode(body) {
  const data = JSON.stringify(body, null, 2).replaceAll("'", "'\\''");
  return [
    `curl '${meta("base-url")}/v1/messages' \\`,
    '  -H "x-api-key: $ANTHROPIC_API_KEY" \\',
    '  -H "anthropic-version: 2023-06-01" \\',
    '  -H "content-type: application/json" \\',
    `  -d '${data}'`,
  ].join("\n");
}

// The request as code, in each language; the request itself, or null (and why, shown) if the form
// does not make one.
function showCode() {
  let body;
  try {
    body = requestBody();
  } catch (error) {
    $("#state").textContent = error.message;
    return null;
  }
  $("#state").textContent = "";
  $("#code-python").textContent = pythonCode(body);
  $("#code-typescript").textContent = typescriptCode(body);
  $("#code-curl").textContent = curlCode(body);
  return body;
}

// --- the reply ---------------------------------------------------------------------------------

const blocks = new Map(); // index -> {element, body, json}

function startBlock(index, block) {
  const element = document.createElement("div");
  element.className = `block block-${block.type}`;
  element.dataset.type = block.type;
  const kind = document.createElement("div");
  kind.className = "kind";
  kind.textContent = block.name ? `${block.type} · ${block.name}` : block.type;
  const body = document.createElement("pre");
  body.className = "body";
  if (block.type === "text") body.textContent = block.text || "";
  else if (block.type === "thinking") body.textContent = block.thinking || "";
  else if (block.type === "redacted_thinking") body.textContent = "(redacted)";
  else if (!["tool_use", "server_tool_use"].includes(block.type)) body.textContent = JSON.stringify(block.content ?? block, null, 2);
  element.append(kind, body);
  $("#reply").appendChild(element);
  blocks.set(index, { element, body, json: "" });
}

function delta(index, change) {
  const block = blocks.get(index);
  if (!block) return;
  if (change.type === "text_delta") block.body.textContent += change.text;
  else if (change.type === "thinking_delta") block.body.textContent += change.thinking;
  else if (change.type === "input_json_delta") {
    block.json += change.partial_json;
    block.body.textContent = block.json;
  }
}

function stopBlock(index) {
  const block = blocks.get(index);
  if (!block) return;
  block.element.dataset.done = "true";
  if (block.json) {
    try {
      block.body.textContent = JSON.stringify(JSON.parse(block.json), null, 2);
    } catch {
      // left as it came
    }
  }
}

function showError(error) {
  const element = document.createElement("div");
  element.className = "block error";
  element.dataset.type = "error";
  element.textContent = `${error.type}: ${error.message}`;
  $("#reply").appendChild(element);
}

function handle(name, data) {
  if (name === "message_start") $("#stop").textContent = `model ${data.message.model}`;
  else if (name === "content_block_start") startBlock(data.index, data.content_block);
  else if (name === "content_block_delta") delta(data.index, data.delta);
  else if (name === "content_block_stop") stopBlock(data.index);
  else if (name === "message_delta") {
    const usage = data.usage || {};
    $("#stop").textContent = `stop_reason ${data.delta.stop_reason} · output_tokens ${usage.output_tokens}`;
    $("#stop").dataset.stopReason = data.delta.stop_reason;
  } else if (name === "error") showError(data.error);
}

function parseEvent(raw) {
  let name = "message";
  const data = [];
  for (const line of raw.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  return data.length ? [name, JSON.parse(data.join("\n"))] : null;
}

async function readEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    // Line ends are CRLF, LF or CR (the SSE spec); a CR at the end may be half of a CRLF to come.
    buffer = (buffer + (value || "")).replace(/\r\n|\r(?=.)/gs, "\n");
    if (done) buffer = buffer.replace(/\r$/, "\n") + "\n\n";
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const parsedEvent = parseEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (parsedEvent) handle(...parsedEvent);
    }
    if (done) return;
  }
}

async function run(event) {
  event.preventDefault();
  const body = showCode();
  if (!body) return;
  $("#reply").replaceChildren();
  blocks.clear();
  $("#stop").textContent = "";
  delete $("#stop").dataset.stopReason;
  $("#run").disabled = true;
  $("#state").textContent = "running…";
  try {
    const response = await fetch("/console/workbench/messages", {
      method: "POST",
      headers: { "content-type": "application/json", "x-csrf-token": meta("csrf-token") },
      body: JSON.stringify({ ...body, stream: true }),
    });
    const type = response.headers.get("content-type") || "";
    if (!response.ok || !type.startsWith("text/event-stream")) {
      const text = await response.text();
      try {
        showError(JSON.parse(text).error);
      } catch {
        showError({ type: `HTTP ${response.status}`, message: text.slice(0, 500) });
      }
      return;
    }
    await readEvents(response.body);
  } catch (error) {
    showError({ type: error instanceof SyntaxError ? "bad event" : "network", message: error.message });
  } finally {
    $("#run").disabled = false;
    $("#state").textContent = "";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  addMessage("user", "");
  $("#add-message").addEventListener("click", () => {
    const rows = document.querySelectorAll("#messages .message");
    const last = rows.length ? rows[rows.length - 1].querySelector(".role").value : "assistant";
    addMessage(last === "user" ? "assistant" : "user", "");
    showCode();
  });
  $("#request").addEventListener("input", showCode);
  $("#request").addEventListener("change", showCode);
  $("#request").addEventListener("submit", run);
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => {
      for (const other of document.querySelectorAll(".tab")) other.classList.toggle("on", other === tab);
      for (const name of ["python", "typescript", "curl"]) $(`#code-${name}`).hidden = name !== tab.dataset.tab;
    });
  }
  showCode();
});
