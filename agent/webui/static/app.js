"use strict";
// The agent's web page: plain JS against /api (agent/webui).
let csrf = "";
const $ = (id) => document.getElementById(id);

function say(text, ok) {
  $("msg").textContent = text;
  $("msg").className = ok ? "ok" : "err";
}

async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (method !== "GET") {
    opts.headers["X-Lanmesh-CSRF"] = csrf;
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body || {});
  }
  const r = await fetch(path, opts);
  const j = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(j.error || r.statusText);
  return j;
}

function cell(tr, text) {
  const td = document.createElement("td");
  td.textContent = text;
  tr.appendChild(td);
}

function show(st) {
  const self = $("self");
  self.textContent = "";
  const rows = [
    ["State", st.backend_state],
    ["Coord", st.coord.url + (st.coord.connected ? " (connected)" : " (not connected)")],
    ["Name", st.self ? st.self.name : ""],
    ["Addresses", st.self ? (st.self.addresses || []).join(", ") : ""],
    ["Advertised routes", st.self ? (st.self.advertised_routes || []).join(", ") : ""],
    ["Approved routes", st.self ? (st.self.routes || []).join(", ") : ""],
    ["WireGuard", st.wireguard.backend],
  ];
  for (const [k, v] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v || "-";
    self.append(dt, dd);
  }
  const body = $("peers");
  body.textContent = "";
  for (const p of st.peers || []) {
    const tr = document.createElement("tr");
    tr.className = "peer";
    cell(tr, p.name);
    cell(tr, (p.addresses || []).join(", "));
    cell(tr, (p.routes || []).join(", "));
    cell(tr, p.path || p.endpoint || "-");
    cell(tr, p.online ? "yes" : "no");
    body.appendChild(tr);
  }
  if (!dirty.routes && document.activeElement !== $("routes") && st.self) {
    $("routes").value = (st.self.advertised_routes || []).join(", ");
  }
}

async function refresh() {
  try {
    show(await api("GET", "/api/status"));
  } catch (e) {
    say(e.message);
  }
}

let timer = null;
async function start() {
  const s = await api("GET", "/api/session");
  csrf = s.csrf;
  $("login").hidden = s.logged_in;
  $("status").hidden = !s.logged_in;
  $("logout").hidden = !s.logged_in;
  if (s.logged_in) {
    await refresh();
    if (!timer) timer = setInterval(refresh, 5000);
  } else if (timer) {
    clearInterval(timer);
    timer = null;
  }
}

$("loginform").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    await api("POST", "/api/login", { token: $("token").value });
    $("token").value = "";
    say("Logged in.", true);
    await start();
  } catch (e) {
    say(e.message);
  }
});

$("logout").addEventListener("click", async () => {
  await api("POST", "/api/logout").catch(() => {});
  say("Logged out.", true);
  await start();
});

$("settings").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  // Only what the user touched is sent: the status does not show the
  // current accept/exit-node preferences, and unsent ones stay as they are.
  const body = {};
  if (dirty.routes) {
    body.advertise_routes = $("routes").value.split(",").map((s) => s.trim()).filter((s) => s);
  }
  if (dirty.accept) body.accept_routes = $("accept").checked;
  if (dirty.exitnode) body.advertise_exit_node = $("exitnode").checked;
  try {
    await api("POST", "/api/up", body);
    for (const k in dirty) delete dirty[k];
    say("Saved.", true);
    await refresh();
  } catch (e) {
    say(e.message);
  }
});

const dirty = {};
for (const id of ["routes", "accept", "exitnode"]) {
  $(id).addEventListener("change", () => { dirty[id] = true; });
  $(id).addEventListener("input", () => { dirty[id] = true; });
}

$("down").addEventListener("click", async () => {
  if (!confirm("Log this router out of the mesh?")) return;
  try {
    await api("POST", "/api/down");
    say("Logged out of the mesh.", true);
    await refresh();
  } catch (e) {
    say(e.message);
  }
});

start().catch((e) => say(e.message));
