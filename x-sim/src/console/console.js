// x-sim console. Everything shown or done here goes through x-sim's documented HTTP API
// (docs/x-sim.md) and its live stream (GET /api/stream, Server-Sent Events); the page keeps
// no platform logic of its own. Built with the DOM only: no framework, no build step.
"use strict";

// ---------------------------------------------------------------------------------------
// Small helpers

/** Builds an element: h("td", {class: "x"}, "text", child, ...). Text is never parsed as HTML. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = !!v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** The API's answer as {status, ok, body}; a network failure is status 0. */
async function api(method, path, body, raw) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    if (raw) {
      init.body = body;
    } else {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    return { status: 0, ok: false, body: { error: "the console cannot reach x-sim: " + e.message } };
  }
  const text = await response.text();
  let parsed;
  try { parsed = text ? JSON.parse(text) : null; } catch (_) { parsed = { error: text }; }
  return { status: response.status, ok: response.ok, body: parsed };
}

async function getJson(path) {
  const r = await api("GET", path);
  if (!r.ok) throw new Error((r.body && r.body.error) || ("HTTP " + r.status));
  return r.body;
}

const enc = encodeURIComponent;
const devicePath = (p, n) => "/api/devices/" + enc(p) + "/" + enc(n);

function fmtTime(ms) {
  if (ms === null || ms === undefined) return "—";
  const d = new Date(Number(ms));
  if (isNaN(d.getTime())) return String(ms);
  const pad = (x, n = 2) => String(x).padStart(n, "0");
  return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + "." + pad(d.getMilliseconds(), 3);
}

function fmtAgo(ms) {
  if (ms === null || ms === undefined) return "never";
  const s = Math.max(0, Math.round((Date.now() - Number(ms)) / 1000));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.floor(s / 60) + " min ago";
  if (s < 86400) return Math.floor(s / 3600) + " h ago";
  return new Date(Number(ms)).toLocaleString();
}

function compact(v) {
  return typeof v === "string" ? v : JSON.stringify(v);
}

function debounce(fn, ms) {
  let t = null;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

// ---------------------------------------------------------------------------------------
// Thing models (the platform's export format, from GET /api/products/{id}/model)

const models = new Map(); // product id -> Promise<model or null>

function modelOf(product) {
  if (!models.has(product)) {
    models.set(product, api("GET", "/api/products/" + enc(product) + "/model")
      .then((r) => (r.ok ? r.body : null)));
  }
  return models.get(product);
}

const NUMERIC = ["int", "float", "double"];

/** A value as the model names it: "1 (on)" for bools and enums, with the unit for numbers. */
function label(dataType, value) {
  if (!dataType) return compact(value);
  const specs = dataType.specs || {};
  if ((dataType.type === "bool" || dataType.type === "enum") && specs[String(value)] !== undefined) {
    return value + " (" + specs[String(value)] + ")";
  }
  if (NUMERIC.includes(dataType.type) && specs.unit) return value + " " + specs.unit;
  return compact(value);
}

/** "0 … 3500, step 0.1" or the choices of a bool/enum. */
function rangeOf(dataType) {
  if (!dataType) return "";
  const s = dataType.specs || {};
  switch (dataType.type) {
    case "int": case "float": case "double": {
      const parts = [];
      if (s.min !== undefined || s.max !== undefined) parts.push((s.min ?? "…") + " … " + (s.max ?? "…"));
      if (s.step !== undefined) parts.push("step " + s.step);
      return parts.join(", ");
    }
    case "bool": case "enum":
      return Object.entries(s).map(([k, v]) => k + "=" + v).join(", ");
    case "text": return s.length ? "≤ " + s.length + " bytes" : "";
    case "array": return "array" + (s.size ? " of ≤ " + s.size : "") + (s.item ? " " + s.item.type : "");
    case "struct": return "struct {" + (Array.isArray(s) ? s.map((f) => f.identifier).join(", ") : "") + "}";
    case "date": return "UTC ms";
    default: return "";
  }
}

/** An input for one value of `dataType`; `read()` gives the JSON value to send. */
function inputFor(dataType, id) {
  const s = (dataType && dataType.specs) || {};
  const type = dataType ? dataType.type : "text";
  let el;
  if (type === "bool" || type === "enum") {
    el = h("select", { "data-field": id },
      Object.entries(s).map(([k, v]) => h("option", { value: k }, k + " — " + v)));
    return { el, read: () => Number(el.value) };
  }
  if (NUMERIC.includes(type)) {
    el = h("input", { type: "number", "data-field": id, min: s.min, max: s.max, step: s.step || (type === "int" ? 1 : "any"),
      placeholder: rangeOf(dataType) });
    return { el, read: () => (el.value === "" ? null : Number(el.value)) };
  }
  if (type === "struct" || type === "array") {
    el = h("textarea", { "data-field": id, placeholder: type === "array" ? "[ ... ]" : "{ ... }" });
    return { el, read: () => JSON.parse(el.value) };
  }
  el = h("input", { type: "text", "data-field": id, maxlength: s.length, placeholder: type === "date" ? "UTC ms, e.g. " + Date.now() : "" });
  return { el, read: () => el.value };
}

// ---------------------------------------------------------------------------------------
// The live stream

const live = {
  source: null,
  listeners: new Set(),
  open(device) {
    this.close();
    const url = "/api/stream" + (device ? "?device=" + enc(device) : "");
    const source = new EventSource(url);
    const badge = document.getElementById("live");
    source.onopen = () => { badge.textContent = "live"; badge.className = "live on"; };
    source.onerror = () => { badge.textContent = "live: reconnecting"; badge.className = "live off"; };
    for (const kind of ["message", "violation", "lagged"]) {
      source.addEventListener(kind, (e) => {
        let data;
        try { data = JSON.parse(e.data); } catch (_) { return; }
        for (const l of this.listeners) l(kind, data);
      });
    }
    this.source = source;
  },
  close() {
    if (this.source) this.source.close();
    this.source = null;
    this.listeners.clear();
  },
  on(listener) { this.listeners.add(listener); },
};

// ---------------------------------------------------------------------------------------
// Views

const view = () => document.getElementById("view");
let timers = [];

function setTimer(fn, ms) { timers.push(setInterval(fn, ms)); }

function clearView() {
  for (const t of timers) clearInterval(t);
  timers = [];
  live.close();
  view().replaceChildren();
}

function route() {
  clearView();
  const hash = location.hash.replace(/^#/, "") || "/";
  const parts = hash.split("/").filter(Boolean).map(decodeURIComponent);
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.classList.toggle("active", (parts[0] || "devices") === a.dataset.nav || (parts[0] === "device" && a.dataset.nav === "devices"));
  }
  if (parts[0] === "device" && parts.length === 3) return deviceView(parts[1], parts[2]);
  if (parts[0] === "firmware") return firmwareView();
  return devicesView();
}

// --- Devices --------------------------------------------------------------------------

function firmwareText(firmware) {
  const entries = Object.entries(firmware || {});
  if (!entries.length) return "—";
  return entries.map(([m, f]) => (m === "default" ? "" : m + ": ") + (f && f.SoftVer !== undefined ? f.SoftVer : compact(f))).join(", ");
}

function otaBadges(ota) {
  return Object.entries(ota || {}).map(([m, p]) => {
    const cls = p.status === "succeeded" ? "ok" : p.status === "failed" ? "bad" : "warn";
    const text = (m === "default" ? "" : m + ": ") + p.status + " " + (p.SoftVer || "");
    return h("span", { class: "badge " + cls, title: p.reason || (p.failures || []).join("; ") }, text);
  });
}

function onlineBadge(online) {
  if (online === null || online === undefined) return h("span", { class: "badge", title: "over an external broker x-sim cannot see connections" }, "unknown");
  return online
    ? h("span", { class: "badge online" }, h("span", { class: "dot" }), "online")
    : h("span", { class: "badge offline" }, h("span", { class: "dot" }), "offline");
}

function violationsBadge(n) {
  return n > 0 ? h("span", { class: "badge bad", "data-violations": n }, n + " violation" + (n === 1 ? "" : "s"))
    : h("span", { class: "badge ok", "data-violations": 0 }, "0");
}

async function devicesView() {
  const root = view();
  const products = h("div", { class: "card" }, h("h2", {}, "Products"), h("div", { class: "empty" }, "loading…"));
  const devices = h("div", { class: "card" }, h("h2", {}, "Devices"), h("div", { class: "empty" }, "loading…"));
  root.append(h("h1", {}, "Devices"), devices, products);

  const names = new Map();
  async function drawProducts() {
    let list;
    try { list = await getJson("/api/products"); } catch (e) { products.replaceChildren(h("h2", {}, "Products"), h("p", { class: "err" }, e.message)); return; }
    const rows = [];
    for (const p of list) {
      const model = await modelOf(p.product_id);
      const name = model && model.profile && model.profile.productName;
      names.set(p.product_id, name || p.model || "");
      rows.push(h("tr", {},
        h("td", { class: "mono" }, p.product_id), h("td", {}, name || p.model || "—"), h("td", {}, p.format),
        h("td", {}, p.encrypted ? "encrypted" : "plain"), h("td", {}, "type " + p.registration), h("td", { class: "mono" }, p.open_id)));
    }
    products.replaceChildren(h("h2", {}, "Products"), h("table", {},
      h("thead", {}, h("tr", {}, ["product", "name", "format", "payloads", "registration", "OpenID"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows)));
  }

  async function drawDevices() {
    let list;
    try { list = await getJson("/api/devices"); } catch (e) { devices.replaceChildren(h("h2", {}, "Devices"), h("p", { class: "err" }, e.message)); return; }
    const rows = list.map((d) => h("tr", {
      class: "link", "data-device": d.product_id + "/" + d.node_eui,
      onclick: () => { location.hash = "#/device/" + enc(d.product_id) + "/" + enc(d.node_eui); },
    },
    h("td", {}, h("a", { href: "#/device/" + enc(d.product_id) + "/" + enc(d.node_eui) }, d.node_eui)),
    h("td", {}, names.get(d.product_id) || "", h("div", { class: "muted small mono" }, d.product_id)),
    h("td", { "data-online": String(d.online) }, onlineBadge(d.online), d.enabled ? "" : h("span", { class: "badge warn" }, "disabled")),
    h("td", {}, fmtAgo(d.last_seen_ms)),
    h("td", { class: "mono small" }, d.session_id || "—"),
    h("td", {}, firmwareText(d.firmware)),
    h("td", {}, otaBadges(d.ota)),
    h("td", {}, violationsBadge(d.violations))));
    devices.replaceChildren(h("h2", {}, "Devices (" + list.length + ")"), list.length ? h("table", {},
      h("thead", {}, h("tr", {}, ["device", "product", "state", "last seen", "session", "firmware", "OTA", "violations"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows)) : h("p", { class: "empty" }, "No devices are registered."));
  }

  await drawProducts();
  await drawDevices();
  setTimer(drawDevices, 3000);
  live.open(null);
  live.on(debounce(drawDevices, 250));
}

// --- One device ----------------------------------------------------------------------

async function deviceView(product, node) {
  const root = view();
  const path = devicePath(product, node);
  const model = await modelOf(product);
  const props = (model && model.properties) || [];
  const byId = new Map(props.map((p) => [p.identifier, p]));

  root.append(h("p", { class: "small" }, h("a", { href: "#/" }, "← all devices")));
  const title = h("h1", {}, node);
  const summary = h("div", { class: "card" }, h("div", { class: "empty" }, "loading…"));
  const properties = h("div", { class: "card", id: "properties" });
  const chart = h("div", { class: "card chart", id: "chart" });
  const commands = h("div", { class: "card", id: "commands" });
  const log = h("div", { class: "card", id: "log" });
  const violations = h("div", { class: "card violations", id: "violations" });
  root.append(title, summary, h("div", { class: "grid" }, h("div", { class: "stack" }, properties, chart), h("div", { class: "stack" }, commands, violations)), log);

  // Summary and actions.
  async function drawSummary() {
    const r = await api("GET", path);
    if (!r.ok) { summary.replaceChildren(h("p", { class: "err" }, r.body.error)); return; }
    const d = r.body;
    title.replaceChildren(node, " ", h("span", { class: "muted small" }, (model && model.profile && model.profile.productName) || product));
    summary.replaceChildren(
      h("div", { class: "summary" },
        h("div", {}, h("b", {}, "state"), onlineBadge(d.online), d.enabled ? "" : h("span", { class: "badge warn" }, "disabled")),
        h("div", {}, h("b", {}, "last seen"), fmtAgo(d.last_seen_ms)),
        h("div", {}, h("b", {}, "last offline"), d.last_offline ? new Date(d.last_offline * 1000).toLocaleString() : "—"),
        h("div", {}, h("b", {}, "session"), h("span", { class: "mono" }, d.session_id || "—")),
        h("div", {}, h("b", {}, "firmware"), firmwareText(d.firmware)),
        h("div", {}, h("b", {}, "OTA"), otaBadges(d.ota).length ? otaBadges(d.ota) : "—"),
        h("div", {}, h("b", {}, "violations"), violationsBadge(d.violations)),
        h("div", {}, h("b", {}, "ids"), h("span", { class: "mono small" }, d.open_id + " / " + d.product_id + " / " + d.node_eui))),
      h("div", { class: "actions" },
        actionButton("Ask firmware", () => api("GET", path + "/firmware")),
        actionButton("Ask config", () => api("GET", path + "/config")),
        actionButton("Rotate SessionKey", () => api("POST", path + "/session/rotate")),
        actionButton("Drop connection", () => api("POST", path + "/drop")),
        h("span", { class: "muted small", id: "action-result" })));
  }

  function actionButton(text, run) {
    return h("button", { onclick: async (e) => {
      e.target.disabled = true;
      const r = await run();
      e.target.disabled = false;
      const out = document.getElementById("action-result");
      if (out) out.textContent = text + ": " + (r.ok ? "HTTP " + r.status + " " + compact(r.body).slice(0, 200) : "HTTP " + r.status + " " + ((r.body && r.body.error) || ""));
      drawSummary();
    } }, text);
  }

  // Latest properties, typed by the model.
  async function drawProperties() {
    const r = await api("GET", path + "/properties");
    const latest = r.ok ? r.body : {};
    const ids = props.length ? props.map((p) => p.identifier) : Object.keys(latest);
    for (const id of Object.keys(latest)) if (!ids.includes(id)) ids.push(id);
    properties.replaceChildren(h("h2", {}, "Properties"), ids.length ? h("table", {},
      h("thead", {}, h("tr", {}, ["property", "value", "range", "access", "updated"].map((t) => h("th", {}, t)))),
      h("tbody", {}, ids.map((id) => {
        const p = byId.get(id);
        const v = latest[id];
        return h("tr", { "data-property": id },
          h("td", {}, p && p.name ? p.name : id, h("div", { class: "muted small mono" }, id)),
          h("td", { class: "value" }, v ? label(p && p.dataType, v.value) : h("span", { class: "muted" }, "—")),
          h("td", { class: "small muted" }, rangeOf(p && p.dataType)),
          h("td", { class: "small" }, p ? p.accessMode : ""),
          h("td", { class: "small muted" }, v ? fmtTime(v.time) : ""));
      }))) : h("p", { class: "empty" }, model ? "The model has no properties." : "No thing model (a passthrough product)."));
  }

  // Chart of one numeric property over time.
  const numeric = props.filter((p) => p.dataType && NUMERIC.includes(p.dataType.type));
  let charted = numeric.length ? numeric[0].identifier : null;
  async function drawChart() {
    if (!numeric.length) { chart.replaceChildren(h("h2", {}, "History"), h("p", { class: "empty" }, "No numeric property to chart.")); return; }
    const select = h("select", { id: "chart-property", onchange: (e) => { charted = e.target.value; drawChart(); } },
      numeric.map((p) => h("option", { value: p.identifier, selected: p.identifier === charted }, (p.name || p.identifier) + " (" + p.identifier + ")")));
    const r = await api("GET", path + "/history?property=" + enc(charted));
    const points = (r.ok ? r.body : []).filter((x) => typeof x.value === "number");
    chart.replaceChildren(h("h2", {}, "History ", select), points.length
      ? svgChart(points, byId.get(charted))
      : h("p", { class: "empty" }, "No values of " + charted + " yet (reports and history uploads appear here)."));
  }

  // Commands, with forms from the model and the answer beside each.
  let activeTab = "set";
  function drawCommands() {
    const writable = props.filter((p) => p.accessMode === "rw" || p.accessMode === "w");
    const services = (model && model.services) || [];
    const tabs = [
      ["set", "Property set"], ["service", "Service call"], ["ask", "Property ask"],
      ["config", "Config"], ["passthrough", "Passthrough"], ["ota", "OTA notify"],
    ];
    const answer = h("div", { class: "answer", id: "answer" }, h("div", { class: "muted" }, "The device's answer appears here."));
    const body = h("div", { class: "form" });
    const send = async (method, url, payload, describe) => {
      answer.className = "answer";
      answer.replaceChildren(h("div", { class: "muted" }, "waiting for the device…"));
      const started = performance.now();
      const r = await api(method, url, payload);
      const took = Math.round(performance.now() - started);
      const violation = r.status === 502;
      answer.className = "answer " + (r.ok ? "ok" : violation ? "violation" : "error");
      answer.setAttribute("data-status", String(r.status));
      answer.replaceChildren(
        h("div", { class: "head" }, describe + ": HTTP " + r.status + " in " + took + " ms",
          violation ? h("span", { class: "badge bad" }, " violation ") : ""),
        r.body && r.body.error ? h("p", { class: "err" }, r.body.error) : "",
        r.body && r.body.answer ? h("pre", { class: "answer-json" }, JSON.stringify(r.body.answer, null, 2)) : "",
        h("div", { class: "muted small" }, "sent: " + method + " " + url + (payload !== undefined ? " " + JSON.stringify(payload) : "")));
      drawProperties();
      drawSummary();
    };

    const forms = {
      set() {
        if (!writable.length) return [h("p", { class: "empty" }, "The model has no writable property.")];
        const fields = writable.map((p) => {
          const input = inputFor(p.dataType, p.identifier);
          const include = h("input", { type: "checkbox", "data-include": p.identifier });
          input.el.addEventListener("input", () => { include.checked = true; });
          input.el.addEventListener("change", () => { include.checked = true; });
          return { p, input, include };
        });
        return [
          ...fields.map(({ p, input, include }) => h("div", { class: "row" }, include,
            h("label", { class: "name" }, p.name || p.identifier, h("div", { class: "hint mono" }, p.identifier)),
            input.el, h("span", { class: "hint" }, rangeOf(p.dataType)))),
          h("div", { class: "row" }, h("button", { class: "primary", id: "send-set", onclick: () => {
            const payload = {};
            try {
              for (const f of fields) if (f.include.checked) payload[f.p.identifier] = f.input.read();
            } catch (e) { answer.className = "answer error"; answer.replaceChildren(h("p", { class: "err" }, "not JSON: " + e.message)); return; }
            if (!Object.keys(payload).length) { answer.className = "answer error"; answer.replaceChildren(h("p", { class: "err" }, "Tick at least one property to set.")); return; }
            send("POST", path + "/properties", payload, "property set");
          } }, "Send property set")),
        ];
      },
      service() {
        if (!services.length) return [h("p", { class: "empty" }, "The model has no services.")];
        const holder = h("div", {});
        const select = h("select", { id: "service", onchange: () => draw() },
          services.map((s) => h("option", { value: s.identifier }, (s.name || s.identifier) + " (" + s.identifier + ", " + (s.callType || "async") + ")")));
        function draw() {
          const s = services.find((x) => x.identifier === select.value);
          const inputs = (s.inputData || []).map((f) => ({ f, input: inputFor(f.dataType, f.identifier) }));
          holder.replaceChildren(
            ...inputs.map(({ f, input }) => h("div", { class: "row" },
              h("label", { class: "name" }, f.name || f.identifier, h("div", { class: "hint mono" }, f.identifier)),
              input.el, h("span", { class: "hint" }, rangeOf(f.dataType)))),
            inputs.length ? "" : h("p", { class: "muted small" }, "No input parameters."),
            h("div", { class: "row" }, h("button", { class: "primary", id: "send-service", onclick: () => {
              const payload = {};
              try {
                for (const { f, input } of inputs) payload[f.identifier] = input.read();
              } catch (e) { answer.className = "answer error"; answer.replaceChildren(h("p", { class: "err" }, "not JSON: " + e.message)); return; }
              send("POST", path + "/services/" + enc(s.identifier), payload, "service " + s.identifier);
            } }, "Call " + s.identifier)));
        }
        draw();
        return [h("div", { class: "row" }, h("label", { class: "name" }, "service"), select), holder];
      },
      ask() {
        if (!props.length) return [h("p", { class: "empty" }, "The model has no properties.")];
        const boxes = props.map((p) => h("input", { type: "checkbox", value: p.identifier, checked: true }));
        return [
          h("div", { class: "row" }, props.map((p, i) => h("label", {}, boxes[i], " " + p.identifier))),
          h("div", { class: "row" }, h("button", { class: "primary", id: "send-ask", onclick: () => {
            send("POST", path + "/properties/ask", boxes.filter((b) => b.checked).map((b) => b.value), "property ask");
          } }, "Ask")),
        ];
      },
      config() {
        const text = h("textarea", { id: "config-settings", placeholder: '{"reportInterval": 60}' });
        return [
          h("p", { class: "hint" }, "Settings (a JSON object; the device's config is free-form)."), text,
          h("div", { class: "row" },
            h("button", { class: "primary", onclick: () => {
              let settings;
              try { settings = JSON.parse(text.value || "{}"); } catch (e) { answer.className = "answer error"; answer.replaceChildren(h("p", { class: "err" }, "Settings is not JSON: " + e.message)); return; }
              send("POST", path + "/config", settings, "config set");
            } }, "Set config"),
            h("button", { onclick: () => send("GET", path + "/config", undefined, "config ask") }, "Ask config")),
        ];
      },
      passthrough() {
        const text = h("input", { type: "text", id: "passthrough-data", placeholder: "01030000000AC5CD", style: "width: 100%" });
        return [
          h("p", { class: "hint" }, "Data for the device (HeaderCtrl 7), as text, or JSON."), text,
          h("div", { class: "row" }, h("button", { class: "primary", onclick: () => {
            let data = text.value;
            try { data = JSON.parse(text.value); } catch (_) { /* plain text */ }
            send("POST", path + "/passthrough", data, "passthrough");
          } }, "Send")),
        ];
      },
      ota() {
        const module = h("input", { type: "text", placeholder: "default", id: "ota-module" });
        return [
          h("p", { class: "hint" }, "Notify the device of its product's OTA task now (tasks: Firmware & OTA page)."),
          h("div", { class: "row" }, h("label", { class: "name" }, "module"), module),
          h("div", { class: "row" }, h("button", { class: "primary", onclick: () => {
            send("POST", path + "/ota", module.value ? { module: module.value } : undefined, "OTA notify");
          } }, "Notify")),
        ];
      },
    };
    const tabBar = h("div", { class: "tabs" }, tabs.map(([key, text]) => h("button", {
      class: key === activeTab ? "active" : "", "data-tab": key,
      onclick: () => { activeTab = key; drawCommands(); },
    }, text)));
    body.replaceChildren(...forms[activeTab]());
    commands.replaceChildren(h("h2", {}, "Commands"), tabBar, h("div", { class: "command" }, body, answer));
  }

  // Violations, newest first.
  async function drawViolations() {
    const r = await api("GET", path + "/violations");
    const list = r.ok ? r.body.violations.slice(-20).reverse() : [];
    violations.replaceChildren(h("h2", {}, "Violations ", violationsBadge(r.ok ? r.body.total : 0)), list.length
      ? h("ul", {}, list.map((v) => h("li", {}, h("span", { class: "rule" }, v.rule), " ", h("span", { class: "muted small" }, fmtTime(v.time)),
        h("div", {}, v.reason), v.topic ? h("div", { class: "mono small muted" }, v.topic + (v.HeaderCtrl !== null ? " · HeaderCtrl " + v.HeaderCtrl : "")) : "")))
      : h("p", { class: "empty" }, "No rule broken."));
  }

  // The live message log, both ways, filtered by HeaderCtrl.
  const rows = h("tbody", {});
  const seen = new Set();
  const filterBox = h("span", { class: "filters", id: "filters" });
  let paused = false;
  const wanted = () => new Set([...filterBox.querySelectorAll("input:checked")].map((i) => i.value));
  function noteHeaderCtrl(code, name) {
    const key = String(code);
    if (seen.has(key)) return;
    seen.add(key);
    filterBox.append(h("label", {}, h("input", { type: "checkbox", value: key, checked: true, onchange: applyFilter }), key + (name ? " " + name : "")));
  }
  function applyFilter() {
    const keep = wanted();
    for (const tr of rows.children) tr.hidden = !keep.has(tr.dataset.hc);
  }
  function addRow(kind, data) {
    if (paused) return;
    const hc = data.HeaderCtrl === null || data.HeaderCtrl === undefined ? "raw" : String(data.HeaderCtrl);
    noteHeaderCtrl(hc, kind === "violation" ? "" : data.command || "");
    const topic = String(data.topic || "");
    const shortTopic = topic.includes(node + "/") ? topic.slice(topic.indexOf(node + "/") + node.length + 1) : topic;
    const tr = kind === "violation"
      ? h("tr", { class: "violation fresh", "data-hc": hc, "data-kind": "violation" },
        h("td", {}, fmtTime(data.time)), h("td", {}, "⚠"), h("td", {}, hc), h("td", {}, data.MessageId ?? ""),
        h("td", { class: "mono" }, shortTopic), h("td", { class: "payload" }, data.rule + ": " + data.reason))
      : h("tr", { class: "fresh", "data-hc": hc, "data-kind": "message", "data-direction": data.direction },
        h("td", {}, fmtTime(data.time)),
        h("td", { class: data.direction === "up" ? "dir-up" : "dir-down", title: data.direction === "up" ? "device → platform" : "platform → device" }, data.direction === "up" ? "↑" : "↓"),
        h("td", { title: data.command || "" }, hc, data.command ? h("div", { class: "muted small" }, data.command) : ""),
        h("td", { class: "mono" }, data.MessageId ?? ""),
        h("td", { class: "mono small" }, shortTopic),
        h("td", { class: "payload" }, data.encrypted ? h("span", { class: "badge", title: "travelled encrypted; shown decrypted" }, "🔒 encrypted") : "", " ",
          data.raw !== undefined ? data.raw : compact(data.Payload)));
    tr.hidden = !wanted().has(hc);
    rows.prepend(tr);
    while (rows.children.length > 500) rows.lastChild.remove();
  }
  log.append(h("h2", {}, "Live messages"),
    h("div", { class: "filters" }, h("b", { class: "small" }, "HeaderCtrl:"), filterBox,
      h("button", { onclick: (e) => { paused = !paused; e.target.textContent = paused ? "Resume" : "Pause"; } }, "Pause"),
      h("button", { onclick: () => rows.replaceChildren() }, "Clear")),
    h("div", { class: "log" }, h("table", {},
      h("thead", {}, h("tr", {}, ["time", "", "HeaderCtrl", "MessageId", "topic", "payload (plain)"].map((t) => h("th", {}, t)))), rows)));

  const refresh = debounce(() => { drawProperties(); drawChart(); drawSummary(); }, 300);
  live.open(product + "/" + node);
  live.on((kind, data) => {
    if (kind === "lagged") { addRow("violation", { time: Date.now(), rule: "lagged", reason: data.missed + " events were missed (the page fell behind)" }); return; }
    addRow(kind, data);
    if (kind === "violation") drawViolations();
    else if (data.direction === "up") refresh();
  });
  drawCommands();
  await Promise.all([drawSummary(), drawProperties(), drawChart(), drawViolations()]);
  setTimer(drawSummary, 5000);
}

/** A line chart of {time, value} points as SVG: one circle per point. */
function svgChart(points, property) {
  const NS = "http://www.w3.org/2000/svg";
  const s = (tag, attrs, text) => {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    return el;
  };
  const W = 600, H = 240, L = 56, R = 12, T = 12, B = 28;
  const times = points.map((p) => p.time), values = points.map((p) => p.value);
  let t0 = Math.min(...times), t1 = Math.max(...times), v0 = Math.min(...values), v1 = Math.max(...values);
  if (t0 === t1) { t0 -= 1000; t1 += 1000; }
  if (v0 === v1) { v0 -= 1; v1 += 1; }
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - (v - v0) / (v1 - v0)) * (H - T - B);
  const svg = s("svg", { viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none", role: "img", "aria-label": "history of " + (property ? property.identifier : "") });
  svg.append(s("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }), s("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  const unit = property && property.dataType && property.dataType.specs && property.dataType.specs.unit ? " " + property.dataType.specs.unit : "";
  svg.append(s("text", { x: L - 4, y: T + 4, "text-anchor": "end" }, +v1.toFixed(3) + unit), s("text", { x: L - 4, y: H - B, "text-anchor": "end" }, +v0.toFixed(3) + unit));
  svg.append(s("text", { x: L, y: H - 8 }, fmtTime(t0)), s("text", { x: W - R, y: H - 8, "text-anchor": "end" }, fmtTime(t1)));
  svg.append(s("polyline", { class: "line", points: points.map((p) => x(p.time) + "," + y(p.value)).join(" ") }));
  for (const p of points) {
    const c = s("circle", { class: "pt", cx: x(p.time), cy: y(p.value), r: 3 });
    c.append(s("title", {}, fmtTime(p.time) + ": " + p.value + unit));
    svg.append(c);
  }
  return h("div", {}, svg, h("div", { class: "muted small" }, points.length + " values"));
}

// --- Firmware and OTA tasks ------------------------------------------------------------

async function firmwareView() {
  const root = view();
  const images = h("div", { class: "card", id: "images" });
  const tasks = h("div", { class: "card", id: "tasks" });
  root.append(h("h1", {}, "Firmware & OTA"), h("div", { class: "grid" }, images, tasks));
  let products = [];
  try { products = await getJson("/api/products"); } catch (_) { /* shown below */ }
  const productSelect = (id) => h("select", { id }, products.map((p) => h("option", { value: p.product_id }, p.product_id + (p.model ? " (" + p.model + ")" : ""))));

  // Outcomes of the last upload and task set, kept across redraws.
  const result = h("div", { class: "small", id: "upload-result" });
  const taskResult = h("div", { class: "small", id: "task-result" });

  async function draw() {
    const list = await api("GET", "/api/firmware");
    if (!list.ok) {
      images.replaceChildren(h("h2", {}, "Images"), h("p", { class: "err" }, list.body.error));
      tasks.replaceChildren(h("h2", {}, "OTA tasks"), h("p", { class: "muted" }, "OTA needs the firmware server."));
      return;
    }
    const product = productSelect("upload-product");
    const module = h("input", { type: "text", value: "default", id: "upload-module" });
    const version = h("input", { type: "text", placeholder: "1.0.2", id: "upload-version" });
    const file = h("input", { type: "file", id: "upload-file" });
    images.replaceChildren(h("h2", {}, "Images"),
      list.body.length ? h("table", {}, h("thead", {}, h("tr", {}, ["product", "module", "version", "file", "size", "MD5"].map((t) => h("th", {}, t)))),
        h("tbody", {}, list.body.map((i) => h("tr", {}, h("td", { class: "mono" }, i.product_id), h("td", {}, i.module), h("td", {}, i.version),
          h("td", {}, h("a", { href: i.path }, i.file_name)), h("td", {}, i.size + " B"), h("td", { class: "mono small" }, i.md5)))))
        : h("p", { class: "empty" }, "No images uploaded."),
      h("h2", { style: "margin-top: 14px" }, "Upload"),
      h("div", { class: "form" },
        h("div", { class: "row" }, h("label", { class: "name" }, "product"), product),
        h("div", { class: "row" }, h("label", { class: "name" }, "module"), module),
        h("div", { class: "row" }, h("label", { class: "name" }, "version"), version),
        h("div", { class: "row" }, h("label", { class: "name" }, "image"), file),
        h("div", { class: "row" }, h("button", { class: "primary", id: "upload-send", onclick: async () => {
          const f = file.files[0];
          if (!f || !version.value) { result.replaceChildren(h("span", { class: "err" }, "Choose a file and a version.")); return; }
          const url = "/api/firmware/" + enc(product.value) + "/" + enc(module.value || "default") + "/" + enc(version.value) + "/" + enc(f.name);
          const r = await api("PUT", url, f, true);
          result.replaceChildren(r.ok ? "uploaded: MD5 " + r.body.md5 : h("span", { class: "err" }, r.body.error));
          if (r.ok) draw();
        } }, "Upload")), result));

    const t = await api("GET", "/api/ota");
    const taskProduct = productSelect("task-product");
    const taskModule = h("input", { type: "text", value: "default", id: "task-module" });
    const taskVersion = h("input", { type: "text", placeholder: "1.0.2", id: "task-version" });
    tasks.replaceChildren(h("h2", {}, "OTA tasks"),
      t.ok && t.body.length ? h("table", {}, h("thead", {}, h("tr", {}, ["product", "module", "target version", "serial"].map((x) => h("th", {}, x)))),
        h("tbody", {}, t.body.map((k) => h("tr", {}, h("td", { class: "mono" }, k.product_id), h("td", {}, k.module), h("td", {}, k.version), h("td", {}, k.serial)))))
        : h("p", { class: "empty" }, "No OTA task: devices are not asked to update."),
      h("h2", { style: "margin-top: 14px" }, "Set a task"),
      h("p", { class: "hint" }, "Devices of the product reporting another version of the module are notified (progress on each device's page)."),
      h("div", { class: "form" },
        h("div", { class: "row" }, h("label", { class: "name" }, "product"), taskProduct),
        h("div", { class: "row" }, h("label", { class: "name" }, "module"), taskModule),
        h("div", { class: "row" }, h("label", { class: "name" }, "version"), taskVersion),
        h("div", { class: "row" }, h("button", { class: "primary", id: "task-send", onclick: async () => {
          const r = await api("PUT", "/api/ota/" + enc(taskProduct.value) + "/" + enc(taskModule.value || "default"), { version: taskVersion.value });
          taskResult.replaceChildren(r.ok ? "task set (serial " + r.body.serial + ")" : h("span", { class: "err" }, r.body.error));
          if (r.ok) draw();
        } }, "Set task")), taskResult));
  }
  await draw();
}

window.addEventListener("hashchange", route);
route();
