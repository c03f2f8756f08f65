// The console's shell: sign-in, the area selector, the live stream, and hash routes
// (#/ map and list, #/event/<id>, #/figures, #/cameras). Everything comes from the public
// API with the operator's token.

import * as api from "./api.js";
import { startCountdowns } from "./countdown.js";
import { CameraWall } from "./cameras.js";
import { EventDetail } from "./detail.js";
import { OPEN_STATES, SEVERITY_ORDER, clear, h } from "./dom.js";
import { FiguresView } from "./figures.js";
import { applyI18n, currentLang, label, loadDictionaries, onLangChange, setLang, t } from "./i18n.js";
import { renderList } from "./listview.js";
import { GridMap } from "./mapview.js";
import { ProvisionalPanel } from "./provisional.js";
import { EventStream } from "./sse.js";
import { store } from "./store.js";

const $ = (id) => document.getElementById(id);
const views = ["login", "live", "event", "figures", "cameras"];

let stream = null;
let map = null;
let detail = null;
let figures = null;
let cameras = null;
let current = null;
let provisional = null;

function showView(name) {
  for (const view of views) $(`view-${view}`).hidden = view !== name;
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.view === (name === "event" ? "live" : name));
  }
  document.body.dataset.view = name;
}

function showLogin(message) {
  if (stream) stream.stop();
  stream = null;
  $("nav").hidden = true;
  $("area-box").hidden = true;
  $("logout").hidden = true;
  $("stream-status").hidden = true;
  const error = $("login-error");
  error.hidden = !message;
  error.dataset.key = message || "";
  error.textContent = message ? t(message) : "";
  showView("login");
}

function setStreamStatus(state) {
  const el = $("stream-status");
  el.dataset.state = state;
  el.textContent = t(`stream.${state}`);
}

function fillSelect(select, values, labelOf) {
  const keep = select.value;
  clear(select).append(h("option", { value: "" }, t("filter.all")), ...values.map((v) => h("option", { value: v }, labelOf(v))));
  select.value = keep;
}

function fillFilters() {
  fillSelect($("filter-severity"), SEVERITY_ORDER, (s) => label("severity", s));
  fillSelect($("filter-state"), OPEN_STATES, (s) => label("state", s));
  const area = $("area");
  const keep = area.value;
  const options = [];
  const walk = (grid, depth) => {
    options.push(h("option", { value: grid.code }, `${"\u3000".repeat(depth)}${grid.name}`));
    for (const child of [...store.grids.values()].filter((g) => g.parent === grid.code)) walk(child, depth + 1);
  };
  for (const root of store.roots) walk(root, 0);
  clear(area).append(...options);
  area.value = keep || options[0]?.value || "";
  store.area = areaOf(area.value);
}

// The selected area as a filter: "" for the one top grid of the scope (so that events placed
// in no grid, which only an admin sees, are listed too).
function areaOf(code) {
  return store.roots.length === 1 && code === store.roots[0].code ? "" : code;
}

async function start() {
  let grids;
  try {
    grids = (await api.get("/api/v1/grids", { geometry: "true" })).items;
  } catch (error) {
    api.forgetToken();
    showLogin(error.status === 401 ? "login.invalid" : null);
    if (error.status !== 401) {
      $("login-error").hidden = false;
      $("login-error").textContent = t("common.error", { reason: error.message });
    }
    return;
  }
  $("nav").hidden = false;
  $("area-box").hidden = false;
  $("logout").hidden = false;
  $("stream-status").hidden = false;
  store.events.clear();
  store.setGrids(grids);
  fillFilters();
  if (!map) {
    $("view-live").hidden = false;
    map = new GridMap($("map"), {
      onGridClick: (code) => {
        $("area").value = code;
        store.setFilters({ area: areaOf(code) });
      },
      onEventClick: (id) => (location.hash = `#/event/${encodeURIComponent(id)}`),
    });
    store.subscribe(() => {
      map.render();
      renderList($("event-list"), $("event-count"));
    });
  }
  map.setGrids(grids);
  // Stream first, then the open events: a change made in between comes by the stream, and
  // the store keeps the newer version of each event, whichever arrives first.
  if (!provisional) {
    provisional = new ProvisionalPanel($("provisional"), $("provisional-list"));
    $("provisional-dismiss").addEventListener("click", () => provisional.clearAll());
  }
  stream = new EventStream("/api/v1/stream", {
    onMessage: (message) => {
      if (!message.data) return;
      store.upsert(message.data);
      provisional.recorded(message.data);
    },
    onProvisional: (message) => provisional.add(message),
    onStatus: setStreamStatus,
    onUnauthorized: () => {
      api.forgetToken();
      showLogin("login.expired");
    },
  });
  await stream.start();
  store.seed(await api.allPages("/api/v1/events", { open: "true", limit: 500 }));
  route();
}

function route() {
  if (!api.token()) return showLogin();
  const hash = location.hash || "#/";
  const leaving = current;
  if (leaving === "event") detail.close();
  if (leaving === "figures") figures.close();
  if (leaving === "cameras") cameras.close();
  const match = hash.match(/^#\/event\/(.+)$/);
  if (match) {
    current = "event";
    showView("event");
    detail.show(decodeURIComponent(match[1]));
  } else if (hash === "#/figures") {
    current = "figures";
    showView("figures");
    figures.show();
  } else if (hash === "#/cameras") {
    current = "cameras";
    showView("cameras");
    cameras.show();
  } else {
    current = "live";
    showView("live");
    map?.resize();
    map?.fit();
  }
}

async function main() {
  await loadDictionaries();
  applyI18n();
  startCountdowns();
  detail = new EventDetail($("view-event"));
  figures = new FiguresView($("view-figures"));
  cameras = new CameraWall($("view-cameras"));

  $("lang").addEventListener("click", () => setLang(currentLang() === "zh" ? "en" : "zh"));
  onLangChange(() => {
    fillFilters();
    if (store.grids.size) store.notify();
    if (current === "event") detail.relabel();
    if (current === "figures") figures.render();
    if (current === "cameras") cameras.render();
    if (stream) setStreamStatus($("stream-status").dataset.state || "connecting");
    const error = $("login-error");
    if (error.dataset.key) error.textContent = t(error.dataset.key);
  });
  $("logout").addEventListener("click", () => {
    api.forgetToken();
    location.hash = "#/";
    showLogin();
  });
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("token-input").value.trim();
    if (!text) return;
    api.saveToken(text, $("remember").checked);
    $("token-input").value = "";
    start();
  });
  $("area").addEventListener("change", () => {
    store.setFilters({ area: areaOf($("area").value) });
    if (current === "figures") figures.show();
    if (current === "cameras") cameras.show();
  });
  $("filter-severity").addEventListener("change", () => store.setFilters({ severity: $("filter-severity").value }));
  $("filter-state").addEventListener("change", () => store.setFilters({ state: $("filter-state").value }));
  api.onUnauthorized(() => {
    api.forgetToken();
    showLogin("login.expired");
  });
  window.addEventListener("hashchange", route);

  if (api.token()) await start();
  else showLogin();
}

main();
