// The offline API page: renders /openapi.json and sends requests with fetch. No build, no CDN.
"use strict";

const METHODS = ["get", "post", "put", "delete", "patch"];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function refName(schema) {
  return schema && schema.$ref ? schema.$ref.split("/").pop() : null;
}

function describeSchema(schema) {
  if (!schema) return "";
  const name = refName(schema);
  if (name) return name;
  if (schema.anyOf || schema.oneOf) return (schema.anyOf || schema.oneOf).map(describeSchema).join(" | ");
  if (schema.type === "array") return describeSchema(schema.items) + "[]";
  if (schema.enum) return schema.enum.join(" | ");
  return schema.type || "any";
}

// Markdown of the descriptions, a small safe subset: paragraphs, "- " and "1. " lists, `code`,
// **bold** and [links](/path). Everything is built as DOM nodes from text, so nothing in a
// description can become markup; a link goes only to this site or to http(s).
const INLINE = /(`[^`]+`)|(\*\*[^*]+\*\*)|\[([^\]]+)\]\(([^)\s]+)\)/g;
const SAFE_HREF = /^(\/(?!\/)|#|https?:)/;

function inline(text) {
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(INLINE)) {
    if (match.index > last) nodes.push(text.slice(last, match.index));
    const [whole, code, bold, label, href] = match;
    if (code) nodes.push(el("code", {}, code.slice(1, -1)));
    else if (bold) nodes.push(el("strong", {}, bold.slice(2, -2)));
    else if (SAFE_HREF.test(href)) nodes.push(el("a", { href }, label));
    else nodes.push(whole);
    last = match.index + whole.length;
  }
  if (last < text.length) nodes.push(text.slice(last));
  return nodes;
}

function markdown(text) {
  const out = el("div", { class: "md" });
  for (const block of String(text || "").split(/\n\s*\n/)) {
    const lines = block.split("\n").map((line) => line.trim()).filter(Boolean);
    if (!lines.length) continue;
    const bullet = lines.every((line) => /^[-*] /.test(line));
    const numbered = lines.every((line) => /^\d+\. /.test(line));
    if (bullet || numbered) {
      out.append(el(bullet ? "ul" : "ol", {}, lines.map((line) => el("li", {}, inline(line.replace(/^([-*]|\d+\.) /, ""))))));
    } else {
      out.append(el("p", {}, inline(lines.join(" "))));
    }
  }
  return out;
}

// An example body: the schema's own example (components carry realistic ones), else one made
// from the fields' examples and defaults.
function example(schema, spec, depth = 0) {
  const name = refName(schema);
  if (name) return example(spec.components.schemas[name], spec, depth + 1);
  if (!schema || depth > 4) return null;
  if (schema.examples && schema.examples.length) return schema.examples[0];
  if (schema.default !== undefined) return schema.default;
  if (schema.enum) return schema.enum[0];
  if (schema.anyOf) return example(schema.anyOf[0], spec, depth + 1);
  switch (schema.type) {
    case "object": {
      const out = {};
      for (const key of schema.required || []) out[key] = example(schema.properties[key], spec, depth + 1);
      return out;
    }
    case "array": return [];
    case "integer": return schema.minimum > 0 ? schema.minimum : 0;
    case "number": return schema.exclusiveMinimum !== undefined ? 1 : 0;
    case "boolean": return false;
    case "string": return "string";
    default: return null;
  }
}

// The request the form describes, as a shell command: path parameters left empty stay as
// shell variables ($JOB_ID), the key comes from $JOBQUEUE_API_KEY.
function shellQuote(text) {
  return "'" + text.replace(/'/g, "'\\''") + "'";
}

function requestOf(method, path, form) {
  let url = path;
  const query = new URLSearchParams();
  const headers = {};
  for (const input of form.querySelectorAll("input[data-param]")) {
    const value = input.value.trim();
    const where = input.dataset.in;
    if (where === "path") {
      const name = input.dataset.param;
      url = url.replace(`{${name}}`, value ? encodeURIComponent(value) : "$" + name.toUpperCase());
    } else if (!value) continue;
    else if (where === "query") value.split(",").forEach((v) => query.append(input.dataset.param, v.trim()));
    else if (where === "header") headers[input.dataset.param] = value;
  }
  if ([...query].length) url += "?" + query;
  const textarea = form.querySelector("textarea");
  const body = textarea && textarea.value.trim() ? textarea.value : null;
  return { method: method.toUpperCase(), url, headers, body };
}

function isStream(op) {
  const ok = op.responses["200"];
  return Boolean(ok && ok.content && ok.content["text/event-stream"]);
}

function curlCommand(method, path, op, form) {
  const request = requestOf(method, path, form);
  const streaming = isStream(op);
  // Double quotes for the URL so $JOB_ID expands; every other character of it is %-encoded.
  const parts = ["curl", streaming ? "-sSN" : "-sS", "-X", request.method, `"${location.origin}${request.url}"`];
  if (op.security && op.security.length) parts.push("-H", '"Authorization: Bearer $JOBQUEUE_API_KEY"');
  for (const [name, value] of Object.entries(request.headers)) parts.push("-H", shellQuote(`${name}: ${value}`));
  if (request.body !== null) parts.push("-H", shellQuote("Content-Type: application/json"), "-d", shellQuote(request.body));
  return parts.join(" ");
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No clipboard permission (an insecure origin, a headless browser): select it for the user.
    return false;
  }
}

function paramsTable(params) {
  if (!params.length) return null;
  return el("table", {},
    el("tr", {}, el("th", {}, "Parameter"), el("th", {}, "In"), el("th", {}, "Type"), el("th", {}, "Value")),
    params.map((p) => el("tr", {},
      el("td", {}, p.name + (p.required ? " *" : "")),
      el("td", {}, p.in),
      el("td", {}, describeSchema(p.schema), p.description ? markdown(p.description) : null),
      el("td", {}, el("input", { "data-param": p.name, "data-in": p.in, placeholder: p.in === "path" ? "required" : "" })),
    )));
}

async function send(method, path, op, form, output) {
  const request = requestOf(method, path, form);
  const url = request.url;
  const headers = request.headers;
  const init = { method: request.method, headers };
  if (request.body !== null) {
    headers["Content-Type"] = "application/json";
    init.body = request.body;
  }
  const streaming = isStream(op);
  output.replaceChildren(el("p", {}, `${init.method} ${url} …`));
  const controller = new AbortController();
  init.signal = controller.signal;
  try {
    const response = await fetch(url, init);
    const status = el("p", { class: "status" + (response.ok ? "" : " error") }, `${response.status} ${response.statusText}`);
    const pre = el("pre");
    output.replaceChildren(status, pre);
    if (streaming && response.ok) {
      // Show the stream as it arrives; a Stop button ends it.
      output.insertBefore(el("button", { type: "button", onclick: () => controller.abort() }, "Stop"), pre);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        pre.textContent += decoder.decode(value, { stream: true });
      }
      return;
    }
    const text = await response.text();
    try { pre.textContent = JSON.stringify(JSON.parse(text), null, 2); } catch { pre.textContent = text; }
  } catch (error) {
    if (error.name !== "AbortError") output.replaceChildren(el("p", { class: "error" }, String(error)));
  }
}

function operationView(spec, method, path, op) {
  const form = el("form", {});
  const output = el("div", { class: "output" });
  const params = op.parameters || [];
  const table = paramsTable(params);
  if (table) form.append(table);
  const body = op.requestBody && op.requestBody.content["application/json"];
  if (body) {
    form.append(
      el("p", {}, "Body: ", describeSchema(body.schema), op.requestBody.required ? " (required)" : " (optional)"),
      el("textarea", { spellcheck: "false" }),
    );
    form.querySelector("textarea").value = JSON.stringify(example(body.schema, spec), null, 2);
  }
  const curl = el("pre", { class: "curl", hidden: "" });
  const copy = el("button", { type: "button", class: "copy-curl" }, "Copy as curl");
  copy.addEventListener("click", async () => {
    curl.textContent = curlCommand(method, path, op, form);
    curl.hidden = false;
    const copied = await copyText(curl.textContent);
    copy.textContent = copied ? "Copied" : "Copy as curl";
    if (!copied) window.getSelection().selectAllChildren(curl);
  });
  form.append(el("div", { class: "actions" }, el("button", { type: "submit" }, "Send"), copy), curl);
  form.addEventListener("submit", (event) => { event.preventDefault(); send(method, path, op, form, output); });
  const responses = Object.entries(op.responses).map(([code, r]) => {
    const media = r.content ? Object.entries(r.content)[0] : null;
    return el("tr", {}, el("td", {}, code), el("td", {}, r.description), el("td", {}, media ? describeSchema(media[1].schema) : ""));
  });
  const searchText = [method, path, op.summary, op.description, op.operationId, (op.tags || []).join(" ")].join(" ").toLowerCase();
  return el("details", { class: "op", id: op.operationId, "data-search": searchText },
    el("summary", {}, el("span", { class: "method " + method }, method.toUpperCase()), el("span", { class: "path" }, path), el("span", {}, op.summary || "")),
    el("div", { class: "body" },
      op.description ? markdown(op.description) : null,
      el("table", {}, el("tr", {}, el("th", {}, "Status"), el("th", {}, "Meaning"), el("th", {}, "Body")), responses),
      form,
      output,
    ));
}

function schemaView(name, schema) {
  const rows = Object.entries(schema.properties || {}).map(([field, s]) => el("tr", {},
    el("td", {}, field + ((schema.required || []).includes(field) ? " *" : "")),
    el("td", {}, describeSchema(s)),
    el("td", {}, s.description ? markdown(s.description) : ""),
  ));
  return el("details", { class: "op", id: "schema-" + name },
    el("summary", {}, el("span", { class: "path" }, name), el("span", {}, schema.description ? inline(schema.description.split("\n")[0]) : "")),
    el("div", { class: "body" }, rows.length ? el("table", {}, rows) : el("pre", {}, JSON.stringify(schema, null, 2))));
}

// Search: every word typed must appear in an operation's method, path, summary, description or tag.
function filterOperations(query) {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  const operations = [...document.querySelectorAll("#operations details.op")];
  let shown = 0;
  for (const op of operations) {
    const match = words.every((word) => op.dataset.search.includes(word));
    op.hidden = !match;
    if (match) shown += 1;
  }
  for (const heading of document.querySelectorAll("#operations h2")) {
    let next = heading.nextElementSibling;
    let any = false;
    while (next && next.tagName !== "H2") {
      if (!next.hidden) any = true;
      next = next.nextElementSibling;
    }
    heading.hidden = !any;
  }
  document.getElementById("search-count").textContent = words.length ? `${shown} of ${operations.length} operations` : `${operations.length} operations`;
}

function setUpSearch() {
  const input = document.getElementById("search");
  input.addEventListener("input", () => filterOperations(input.value));
  document.addEventListener("keydown", (event) => {
    if (event.key === "/" && document.activeElement !== input && !["INPUT", "TEXTAREA"].includes(document.activeElement.tagName)) {
      event.preventDefault();
      input.focus();
    }
  });
  filterOperations(input.value);
}

async function main() {
  const response = await fetch("/openapi.json");
  if (response.status === 401) {
    // The login session ended (or a key is now required): log in again, then come back here.
    location.assign(`/login?next=${encodeURIComponent(location.pathname)}`);
    return;
  }
  const spec = await response.json();
  document.getElementById("title").textContent = `${spec.info.title} ${spec.info.version}`;
  document.getElementById("subtitle").replaceChildren(markdown(spec.info.description));
  const groups = new Map((spec.tags || []).map((t) => [t.name, []]));
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const tag = (op.tags || ["other"])[0];
      if (!groups.has(tag)) groups.set(tag, []);
      groups.get(tag).push(operationView(spec, method, path, op));
    }
  }
  const main = document.getElementById("operations");
  for (const [tag, views] of groups) {
    if (views.length) main.append(el("h2", {}, tag), ...views);
  }
  const schemas = document.getElementById("schemas");
  for (const [name, schema] of Object.entries(spec.components.schemas)) schemas.append(schemaView(name, schema));
  document.getElementById("schemas-section").hidden = false;
  setUpSearch();
  document.body.dataset.ready = "true";
}

main().catch((error) => {
  document.getElementById("subtitle").replaceChildren(el("span", { class: "error" }, "Cannot load /openapi.json: " + error));
});
