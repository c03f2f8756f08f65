// One event: what, where and when, its deadline, the actions this token may take (as the
// API lists them in allowed_actions), the devices with a chart of their readings, snapshots
// and video clips, and the history. Kept current by the live stream (a clip is added to a
// video event's evidence a few seconds after it opens: the media are shown again then).

/* global Chart */
import * as api from "./api.js";
import { updateCountdowns } from "./countdown.js";
import { clear, formatTime, h } from "./dom.js";
import { label, t } from "./i18n.js";
import { MJPEG_TYPE, MjpegPlayer, parseAvi } from "./mjpeg.js";
import { store } from "./store.js";

const MAX_CHART_DEVICES = 6;
const SNAPSHOT_KEYS = ["snapshot", "snapshot_id", "media_id", "media", "snapshot_url"];

export class EventDetail {
  constructor(section) {
    this.section = section;
    this.eventId = null;
    this.event = null;
    this.chart = null;
    this.blobs = [];
    this.players = []; // the MJPEG clips' players (their timers and frame URLs)
    this.mediaKey = ""; // the snapshots and clips shown, to show them again when they change
    this.loading = false; // the first read of the shown event is under way
    this.stale = false; // it changed meanwhile: read it again once that read is done
    this.onChange = (event) => {
      if (event.id !== this.eventId) return;
      if (this.loading) this.stale = true;
      else this.refresh();
    };
    store.changes.add(this.onChange);
  }

  async show(eventId) {
    this.close();
    this.eventId = eventId;
    clear(this.section).append(h("p.muted", {}, t("common.loading")));
    this.loading = true;
    this.stale = false;
    try {
      await this.refresh({ full: true });
    } finally {
      if (this.eventId === eventId) this.loading = false;
    }
    if (this.eventId === eventId && this.stale) await this.refresh();
  }

  // A part of the laid-out page, or null once the page has moved on (another event, a new
  // layout): async renderers stop there instead of writing into a detached tree.
  part(id) {
    return this.section.querySelector(`#${id}`);
  }

  close() {
    this.eventId = null;
    this.event = null;
    if (this.chart) this.chart.destroy();
    this.chart = null;
    this.freeMedia();
  }

  freeMedia() {
    for (const url of this.blobs) URL.revokeObjectURL(url);
    this.blobs = [];
    for (const player of this.players) player.destroy();
    this.players = [];
  }

  async refresh({ full = false } = {}) {
    const id = this.eventId;
    if (!id) return;
    let event;
    try {
      event = await api.get(`/api/v1/events/${encodeURIComponent(id)}`);
    } catch (error) {
      if (id !== this.eventId) return;
      const text = error.status === 404 ? t("event.not_found") : t("common.error", { reason: error.message });
      clear(this.section).append(this.backLink(), h("p.error", {}, text));
      return;
    }
    if (id !== this.eventId) return;
    // Refreshes overlap (a stream burst, an action): never go back to an older version.
    if (!full && this.event && event.version < this.event.version) return;
    const first = !this.event || full;
    this.event = event;
    if (first) this.layout();
    this.renderSummary();
    this.renderActions({ force: first });
    this.renderHistory();
    if (first) {
      this.renderReadings();
      this.renderDevices().then(() => this.renderSnapshots());
    } else if (this.mediaKeyOf() !== this.mediaKey) {
      this.renderSnapshots();
    }
  }

  // Re-render in the other language (charts and fetched parts are kept).
  relabel() {
    if (!this.event) return;
    this.renderSummary();
    this.renderActions({ force: true });
    this.renderHistory();
    this.renderDevices().then(() => this.renderSnapshots());
  }

  backLink() {
    return h("a.back", { href: "#/" }, `← ${t("event.back")}`);
  }

  layout() {
    const card = (name) => h(`div.card.${name}`, { id: `event-${name}` });
    clear(this.section).append(
      this.backLink(),
      h("div.event-head", { id: "event-head" }),
      h(
        "div.detail-grid",
        {},
        card("summary"),
        h("div.stack", {}, card("deadline"), card("actions")),
      ),
      h("div.card.readings", {}, h("h3", { dataset: { i18n: "event.readings" } }, t("event.readings")),
        h("div.chart-box", {}, h("canvas", { id: "readings-chart" })), h("p.muted", { id: "readings-note" })),
      h("div.detail-grid", {}, card("devices"), card("snapshots")),
      card("history"),
    );
  }

  renderSummary() {
    const e = this.event;
    const head = this.part("event-head");
    if (!head) return;
    clear(head).append(
      h(`span.chip.sev-${e.severity}`, {}, label("severity", e.severity)),
      h("h2", {}, label("type", e.type)),
      h("span.state-badge", { id: "event-state", dataset: { state: e.state } }, label("state", e.state)),
      h("code.muted", {}, e.id),
    );
    const assignee = e.assignee ? `${this.memberName(e.assignee.id)} (${label("role", e.assignee.role)})` : t("event.unassigned");
    const rows = [
      ["event.grid", store.gridName(e.grid_code)],
      ["event.site", e.site || "—"],
      ["event.address", e.location?.address || "—"],
      ["event.category", label("category", e.category)],
      ["event.first_seen", formatTime(e.first_seen)],
      ["event.last_seen", formatTime(e.last_seen)],
      ["event.alarm_count", e.alarm_count],
      ["event.assignee", assignee],
      ["event.level", e.deadlines.level],
    ];
    const summary = this.part("event-summary");
    const deadline = this.part("event-deadline");
    if (!summary || !deadline) return;
    clear(summary).append(
      h("dl", {}, ...rows.flatMap(([key, value]) => [h("dt", {}, t(key)), h("dd", {}, String(value))])),
    );
    const d = e.deadlines;
    clear(deadline).append(
      h("h3", {}, t("event.deadline")),
      d.due
        ? h("div", {},
          h("div.countdown", { id: "countdown", dataset: { due: d.due } }),
          h("div.muted", {}, `${t("event.step")}: ${label("action", d.step)} · ${t("event.owner")}: ${label("role", d.owner)}`),
          h("div.muted", {}, formatTime(d.due)))
        : h("div.muted", {}, t("event.no_deadline")),
    );
    updateCountdowns(this.section);
  }

  memberName(id) {
    for (const grid of store.grids.values()) {
      const found = (grid.members || []).find((m) => m.id === id);
      if (found) return found.name;
    }
    return id;
  }

  // Redrawn only when the offer changes, so a live update does not wipe a form being filled
  // in; when it does change (someone else acted), the stale form goes with it.
  renderActions({ force = false } = {}) {
    const key = JSON.stringify(this.event.allowed_actions || []);
    if (!force && key === this.actionsKey) return;
    const part = this.part("event-actions");
    if (!part) return;
    this.actionsKey = key;
    const box = clear(part);
    box.append(h("h3", {}, t("event.actions")));
    const allowed = this.event.allowed_actions || [];
    if (!allowed.length) {
      box.append(h("p.muted", { id: "no-actions" }, t("event.no_actions")));
      return;
    }
    const buttons = h("div.buttons");
    const form = h("div.action-form");
    for (const choice of allowed) {
      buttons.append(
        h("button.action", {
          type: "button",
          dataset: { action: choice.action },
          onclick: () => this.openForm(form, choice),
        }, label("action", choice.action)),
      );
    }
    box.append(buttons, form);
  }

  openForm(form, choice) {
    clear(form);
    const fields = [];
    let select = null;
    if (choice.assignee !== "none") {
      select = h("select", { name: "assignee" });
      if (choice.assignee === "optional") select.append(h("option", { value: "" }, t("form.assignee_keep")));
      for (const person of choice.assignees) {
        select.append(h("option", { value: `${person.id}\u0000${person.role}` },
          `${person.name} (${label("role", person.role)})`));
      }
      fields.push(h("label", {}, h("span", {}, t("form.assignee")), select));
    }
    const reason = h("input", { name: "reason", type: "text", maxLength: 2000, required: choice.reason === "required" });
    fields.push(h("label", {}, h("span", {}, t(choice.reason === "required" ? "form.reason_required" : "form.reason")), reason));
    const error = h("p.error", { hidden: true });
    const submit = h("button.primary", { type: "submit" }, t("form.submit"));
    const element = h(
      "form",
      {
        dataset: { action: choice.action },
        onsubmit: async (ev) => {
          ev.preventDefault();
          submit.disabled = true;
          const body = { action: choice.action, version: this.event.version };
          if (reason.value.trim()) body.reason = reason.value.trim();
          if (select && select.value) {
            const [id, role] = select.value.split("\u0000");
            body.assignee = { id, role };
          }
          try {
            await api.post(`/api/v1/events/${encodeURIComponent(this.eventId)}/actions`, body);
            clear(form);
            await this.refresh();
          } catch (failure) {
            error.hidden = false;
            error.textContent = t("form.failed", { reason: failure.message });
            submit.disabled = false;
            if (failure.code === "version_conflict" || failure.code === "conflict") this.refresh();
          }
        },
      },
      h("strong", {}, label("action", choice.action)),
      ...fields,
      error,
      h("div.buttons", {}, submit, h("button", { type: "button", onclick: () => clear(form) }, t("form.cancel"))),
    );
    form.append(element);
    (select || reason).focus();
  }

  renderHistory() {
    const rows = (this.event.history || []).map((entry) =>
      h("tr", {},
        h("td", {}, formatTime(entry.at)),
        h("td", {}, label("action", entry.action)),
        h("td", {}, entry.from_state ? `${label("state", entry.from_state)} → ${label("state", entry.to_state)}` : label("state", entry.to_state)),
        h("td", {}, `${entry.actor_id} (${label("role", entry.actor_role)})`),
        h("td", {}, entry.reason || "")),
    );
    const history = this.part("event-history");
    if (!history) return;
    clear(history).append(
      h("h3", {}, t("event.history")),
      h("table", {},
        h("thead", {}, h("tr", {}, ...["history.at", "history.action", "history.states", "history.actor", "history.reason"].map((k) => h("th", {}, t(k))))),
        h("tbody", { id: "history-rows" }, rows)),
    );
  }

  async renderDevices() {
    const part = this.part("event-devices");
    if (!part) return;
    const box = clear(part);
    box.append(h("h3", {}, t("event.devices")));
    const body = h("tbody");
    box.append(h("table", {},
      h("thead", {}, h("tr", {}, ...["device.id", "device.name", "device.type", "device.status", "device.last_seen"].map((k) => h("th", {}, t(k))))),
      body));
    this.devices = this.devices && this.devices.eventId === this.eventId ? this.devices : { eventId: this.eventId, found: new Map() };
    for (const id of this.event.device_ids) {
      let found = this.devices.found.get(id);
      if (found === undefined) {
        try {
          found = await api.get(`/api/v1/devices/${encodeURIComponent(id)}`);
        } catch {
          found = null;
        }
        this.devices.found.set(id, found);
      }
      const status = found?.state?.status;
      body.append(h("tr", {},
        h("td", {}, id),
        h("td", {}, found?.device.name || "—"),
        h("td", {}, found ? label("devtype", found.device.type) : t("device.not_visible")),
        h("td", {}, status ? label("device", status) : t("device.unknown")),
        h("td", {}, formatTime(found?.state?.last_seen))));
    }
  }

  async renderReadings() {
    const e = this.event;
    const note = this.part("readings-note");
    if (!note) return;
    const since = new Date(Date.parse(e.first_seen) - 2 * 3600 * 1000);
    const until = new Date(Math.max(Date.now(), Date.parse(e.last_seen) + 60000));
    const datasets = [];
    const palette = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];
    for (const id of e.device_ids.slice(0, MAX_CHART_DEVICES)) {
      let page;
      try {
        page = await api.get(`/api/v1/devices/${encodeURIComponent(id)}/readings`, {
          since: since.toISOString(), until: until.toISOString(), limit: 5000,
        });
      } catch {
        continue;
      }
      const byMetric = new Map();
      for (const r of page.items) {
        if (!byMetric.has(r.metric)) byMetric.set(r.metric, []);
        byMetric.get(r.metric).push({ x: Date.parse(r.ts), y: r.value });
      }
      for (const [metric, points] of byMetric) {
        const colour = palette[datasets.length % palette.length];
        datasets.push({ label: `${id} · ${metric}`, metric, data: points, borderColor: colour, backgroundColor: colour, pointRadius: 1.5, borderWidth: 1.5 });
      }
    }
    const canvas = this.part("readings-chart");
    if (this.eventId !== e.id || !canvas || !note.isConnected) return;
    note.textContent = datasets.length ? "" : t("chart.no_readings");
    // One y axis per metric (its unit is in its name), the first two drawn left and right.
    const metrics = [...new Set(datasets.map((d) => d.metric))];
    const scales = {
      x: { type: "linear", ticks: { callback: (v) => formatTime(new Date(v).toISOString()).slice(11, 16) } },
    };
    metrics.forEach((metric, i) => {
      scales[`y${i}`] = {
        type: "linear",
        position: i % 2 ? "right" : "left",
        display: i < 2,
        grid: { drawOnChartArea: i === 0 },
        title: { display: true, text: metric },
      };
    });
    for (const d of datasets) d.yAxisID = `y${metrics.indexOf(d.metric)}`;
    if (this.chart) this.chart.destroy();
    this.chart = new Chart(canvas, {
      type: "line",
      data: { datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        parsing: false,
        scales,
        plugins: { legend: { position: "bottom" } },
      },
    });
  }

  // Evidence cites media as {"snapshot": {"media_id", "url", "content_type"}} (or a bare id);
  // only paths of this API are fetched, with the token.
  snapshotPaths() {
    const paths = [];
    for (const item of this.event.evidence || []) {
      for (const key of SNAPSHOT_KEYS) {
        const value = item.detail?.[key];
        const ref = typeof value === "object" && value ? value.url || value.media_id || value.id : value;
        if (typeof ref !== "string" || !ref) continue;
        if (ref.startsWith("/api/v1/")) paths.push(ref);
        else if (!ref.includes("/")) paths.push(`/api/v1/snapshots/${encodeURIComponent(ref)}`);
      }
    }
    return [...new Set(paths)];
  }

  // Evidence cites a video clip as {"clip": {"media_id", "url", "content_type", "duration_s"}}:
  // video/webm plays in a <video>, Motion-JPEG AVI (video/x-msvideo) in the console's player.
  clips() {
    const found = new Map();
    for (const item of this.event.evidence || []) {
      const clip = item.detail?.clip;
      const url = clip?.url;
      if (typeof url === "string" && url.startsWith("/api/v1/") && !found.has(url)) {
        found.set(url, { path: url, contentType: String(clip.content_type || "") });
      }
    }
    return [...found.values()];
  }

  mediaKeyOf() {
    return [...this.clips().map((c) => c.path), ...this.snapshotPaths()].join(" ");
  }

  // A clip: an MJPEG player, or a <video>; null when the API has none.
  async clipElement(shot) {
    const blob = await fetchBlob(shot.path);
    if (!blob) return null;
    if (shot.contentType !== MJPEG_TYPE && blob.type !== MJPEG_TYPE) {
      const url = URL.createObjectURL(blob);
      this.blobs.push(url);
      return h("video", { src: url, controls: true, muted: true, playsInline: true, preload: "metadata", title: shot.caption });
    }
    const player = new MjpegPlayer(blob, parseAvi(await blob.arrayBuffer()), { title: shot.caption });
    this.players.push(player);
    return player.element;
  }

  async renderSnapshots() {
    this.mediaKey = this.mediaKeyOf();
    this.freeMedia();
    const part = this.part("event-snapshots");
    if (!part) return;
    const box = clear(part);
    box.append(h("h3", {}, t("event.snapshots")));
    const gallery = h("div.gallery");
    box.append(gallery);
    const cameras = [];
    for (const id of this.event.device_ids) {
      const found = this.devices?.found.get(id);
      if (found?.device.type === "camera") cameras.push(id);
    }
    const shots = [
      ...this.clips().map((c) => ({ ...c, caption: `${t("snap.clip")} · ${c.path.split("/").pop()}`, video: true })),
      ...this.snapshotPaths().map((path) => ({ path, caption: path.split("/").pop() })),
      ...cameras.map((id) => ({ path: `/api/v1/cameras/${encodeURIComponent(id)}/latest.jpg`, caption: `${id} · ${t("snap.latest")}` })),
    ];
    if (!shots.length) {
      gallery.append(h("p.muted", {}, t("snap.none")));
      return;
    }
    for (const shot of shots) {
      const figure = h("figure.snapshot", {}, h("div.placeholder", {}, t("common.loading")), h("figcaption", {}, shot.caption));
      gallery.append(figure);
      if (shot.video) {
        let media = null;
        try {
          media = await this.clipElement(shot);
        } catch {
          media = null; // not fetched, or not a clip this console can read
        }
        // a later render freed what this one made: its players stop once detached
        if (media && figure.isConnected) figure.firstChild.replaceWith(media);
        else if (!media) figure.firstChild.textContent = t("snap.unavailable");
        continue;
      }
      let url = null;
      try {
        url = await api.blobUrl(shot.path);
      } catch {
        url = null;
      }
      if (url && !figure.isConnected) {
        URL.revokeObjectURL(url);
      } else if (url) {
        this.blobs.push(url);
        figure.firstChild.replaceWith(h("img", { src: url, alt: shot.caption }));
      } else {
        figure.firstChild.textContent = t("snap.unavailable");
      }
    }
  }
}

// A clip's bytes fetched with the token (a blob: URL cannot be read back under the CSP's
// connect-src 'self'); null when the API has none.
async function fetchBlob(path) {
  const response = await fetch(path, { headers: api.authHeaders() });
  if (response.status === 404 || response.status === 503) return null;
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return response.blob();
}
