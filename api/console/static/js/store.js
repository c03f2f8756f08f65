// What the console knows: the grids in the token's scope, the open events (seeded from
// GET /api/v1/events?open=true, then kept current by the live stream), the selected area
// and the list filters. Views subscribe and redraw on change.

import { SEVERITY_ORDER, worst } from "./dom.js";

const TERMINAL = new Set(["closed", "false_alarm"]);

export const store = {
  grids: new Map(), // code → grid (with geometry for basic grids)
  roots: [], // the grids whose parent is outside the scope
  events: new Map(), // id → open grid event (CloudEvents data)
  area: "", // selected subtree ("" = the whole scope)
  severity: "",
  state: "",
  listeners: new Set(),
  changes: new Set(), // listeners told of each event change (id)
  pending: false,

  setGrids(items) {
    this.grids = new Map(items.map((g) => [g.code, g]));
    this.roots = items.filter((g) => !g.parent || !this.grids.has(g.parent));
    this.notify();
  },

  setFilters(changes) {
    Object.assign(this, changes);
    this.notify();
  },

  // Keep the newer of two versions, so seed and stream may arrive in any order.
  upsert(event) {
    const known = this.events.get(event.id);
    if (known && known.version > event.version) return;
    if (TERMINAL.has(event.state)) this.events.delete(event.id);
    else this.events.set(event.id, event);
    for (const listener of this.changes) listener(event);
    this.notify();
  },

  seed(events) {
    for (const event of events) {
      const known = this.events.get(event.id);
      if (!known || known.version < event.version) this.events.set(event.id, event);
    }
    this.notify();
  },

  inArea(event, area = this.area) {
    return !area || event.grid_code === area || (event.ancestors || []).includes(area);
  },

  visibleEvents() {
    const rank = (s) => SEVERITY_ORDER.indexOf(s);
    return [...this.events.values()]
      .filter((e) => this.inArea(e))
      .filter((e) => !this.severity || e.severity === this.severity)
      .filter((e) => !this.state || e.state === this.state)
      .sort((a, b) => rank(a.severity) - rank(b.severity) || b.first_seen.localeCompare(a.first_seen));
  },

  // The worst severity of the visible open events in each grid (and in each grid above it).
  worstByGrid() {
    const found = new Map();
    for (const event of this.visibleEvents()) {
      for (const code of [event.grid_code, ...(event.ancestors || [])]) {
        if (!code) continue;
        found.set(code, worst([found.get(code), event.severity].filter(Boolean)));
      }
    }
    return found;
  },

  gridName(code) {
    return this.grids.get(code)?.name || code || "—";
  },

  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  },

  notify() {
    if (this.pending) return;
    this.pending = true;
    queueMicrotask(() => {
      this.pending = false;
      for (const listener of this.listeners) listener();
    });
  },
};
