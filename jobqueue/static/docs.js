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

// An example body from a schema: required fields with plausible values.
function example(schema, spec, depth = 0) {
  const name = refName(schema);
  if (name) return example(spec.components.schemas[name], spec, depth + 1);
  if (!schema || depth > 4) return null;
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

function paramsTable(params) {
  if (!params.length) return null;
  return el("table", {},
    el("tr", {}, el("th", {}, "Parameter"), el("th", {}, "In"), el("th", {}, "Type"), el("th", {}, "Value")),
    params.map((p) => el("tr", {},
      el("td", {}, p.name + (p.required ? " *" : "")),
      el("td", {}, p.in),
      el("td", {}, describeSchema(p.schema), p.description ? el("div", {}, p.description) : null),
      el("td", {}, el("input", { "data-param": p.name, "data-in": p.in, placeholder: p.in === "path" ? "required" : "" })),
    )));
}

async function send(method, path, op, form, output) {
  let url = path;
  const query = new URLSearchParams();
  const headers = {};
  for (const input of form.querySelectorAll("input[data-param]")) {
    const value = input.value.trim();
    if (!value) continue;
    const where = input.dataset.in;
    if (where === "path") url = url.replace(`{${input.dataset.param}}`, encodeURIComponent(value));
    else if (where === "query") value.split(",").forEach((v) => query.append(input.dataset.param, v.trim()));
    else if (where === "header") headers[input.dataset.param] = value;
  }
  if ([...query].length) url += "?" + query;
  const init = { method: method.toUpperCase(), headers };
  const body = form.querySelector("textarea");
  if (body && body.value.trim()) {
    headers["Content-Type"] = "application/json";
    init.body = body.value;
  }
  const streaming = op.responses["200"] && op.responses["200"].content && op.responses["200"].content["text/event-stream"];
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
  form.append(el("button", { type: "submit" }, "Send"));
  form.addEventListener("submit", (event) => { event.preventDefault(); send(method, path, op, form, output); });
  const responses = Object.entries(op.responses).map(([code, r]) => {
    const media = r.content ? Object.entries(r.content)[0] : null;
    return el("tr", {}, el("td", {}, code), el("td", {}, r.description), el("td", {}, media ? describeSchema(media[1].schema) : ""));
  });
  return el("details", { class: "op", id: op.operationId },
    el("summary", {}, el("span", { class: "method " + method }, method.toUpperCase()), el("span", { class: "path" }, path), el("span", {}, op.summary || "")),
    el("div", { class: "body" },
      op.description ? el("p", {}, op.description) : null,
      el("table", {}, el("tr", {}, el("th", {}, "Status"), el("th", {}, "Meaning"), el("th", {}, "Body")), responses),
      form,
      output,
    ));
}

function schemaView(name, schema) {
  const rows = Object.entries(schema.properties || {}).map(([field, s]) => el("tr", {},
    el("td", {}, field + ((schema.required || []).includes(field) ? " *" : "")),
    el("td", {}, describeSchema(s)),
    el("td", {}, s.description || ""),
  ));
  return el("details", { class: "op", id: "schema-" + name },
    el("summary", {}, el("span", { class: "path" }, name), el("span", {}, schema.description || "")),
    el("div", { class: "body" }, rows.length ? el("table", {}, rows) : el("pre", {}, JSON.stringify(schema, null, 2))));
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
  document.getElementById("subtitle").replaceChildren(spec.info.description + " ", el("a", { href: "/openapi.json" }, "openapi.json"));
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
  document.body.dataset.ready = "true";
}

main().catch((error) => {
  document.getElementById("subtitle").replaceChildren(el("span", { class: "error" }, "Cannot load /openapi.json: " + error));
});
