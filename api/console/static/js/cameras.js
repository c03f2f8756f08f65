// The camera wall: the cameras of the selected area (GET /api/v1/devices?type=camera),
// with their state from GET /api/v1/cameras when the service answers it, and each one's
// latest frame (GET /api/v1/cameras/{id}/latest.jpg, fetched with the token into a blob:
// URL) refreshed every few seconds while the wall is shown.

import * as api from "./api.js";
import { clear, h } from "./dom.js";
import { label, t } from "./i18n.js";
import { store } from "./store.js";

export const REFRESH_S = 3;
const MOST = 64;

export class CameraWall {
  constructor(section) {
    this.section = section;
    this.timer = null;
    this.tiles = new Map(); // id → {img, placeholder, url}
    this.cameras = [];
    this.status = new Map();
    this.busy = false;
  }

  async show() {
    this.close();
    clear(this.section).append(h("p.muted", {}, t("common.loading")));
    try {
      this.cameras = await this.list();
    } catch (error) {
      clear(this.section).append(h("p.error", {}, t("common.error", { reason: error.message })));
      return;
    }
    this.status = await this.states();
    this.render();
    await this.refresh();
    this.timer = setInterval(() => this.refresh(), REFRESH_S * 1000);
  }

  close() {
    clearInterval(this.timer);
    this.timer = null;
    for (const tile of this.tiles.values()) if (tile.url) URL.revokeObjectURL(tile.url);
    this.tiles.clear();
  }

  async list() {
    const found = [];
    let offset = 0;
    while (offset !== null && found.length < MOST) {
      const page = await api.get("/api/v1/devices", { type: "camera", grid: store.area || undefined, limit: MOST, offset });
      found.push(...page.items);
      offset = page.next_offset;
    }
    return found.slice(0, MOST);
  }

  // How each camera's stream is doing (state, fps, faults) from GET /api/v1/cameras; the
  // wall still shows the cameras and their frames should that answer fail.
  async states() {
    const found = new Map();
    try {
      const answer = await api.get("/api/v1/cameras", { grid: store.area || undefined });
      for (const item of answer.items || []) {
        const id = item.device?.device_id;
        if (id) found.set(id, { ...(item.status || {}), pulled: item.pulled });
      }
    } catch (error) {
      console.warn("camera states not available", error);
    }
    return found;
  }

  render() {
    clear(this.section).append(
      h("h2", {}, t("cameras.title"), " ", h("small.muted", {}, t("cameras.refresh", { n: REFRESH_S }))),
    );
    if (!this.cameras.length) {
      this.section.append(h("p.muted", { id: "no-cameras" }, t("cameras.empty")));
      return;
    }
    const wall = h("div.camera-wall");
    for (const camera of this.cameras) {
      const info = this.status.get(camera.device_id) || {};
      const placeholder = h("div.placeholder", {}, t("cameras.no_frame"));
      const img = h("img", { alt: camera.name || camera.device_id, hidden: true });
      const facts = [];
      if (info.state) facts.push(`${t("cameras.state")}: ${label("camstate", info.pulled === false ? "unpulled" : info.state)}`);
      if (typeof info.fps_in === "number") facts.push(`${info.fps_in.toFixed(1)} ${t("cameras.fps")}`);
      const faults = info.faults || [];
      if (faults.length) facts.push(`${t("cameras.fault")}: ${faults.map((f) => label("fault", f)).join("、")}`);
      wall.append(
        h("figure.camera", { dataset: { camera: camera.device_id, state: info.state || "unknown" }, className: faults.length ? "camera faulty" : "camera" },
          h("div.frame", {}, img, placeholder),
          h("figcaption", {}, h("strong", {}, camera.name || camera.device_id), " ",
            h("span.muted", {}, `${store.gridName(camera.grid_code)} ${facts.join(" · ")}`))),
      );
      this.tiles.set(camera.device_id, { img, placeholder, url: null });
    }
    this.section.append(wall);
  }

  async refresh() {
    if (this.busy) return; // a slow round is not stacked on
    this.busy = true;
    try {
      await Promise.all([...this.tiles].map(([id, tile]) => this.frame(id, tile)));
    } finally {
      this.busy = false;
    }
  }

  async frame(id, tile) {
    let url = null;
    try {
      url = await api.blobUrl(`/api/v1/cameras/${encodeURIComponent(id)}/latest.jpg`);
    } catch {
      url = null;
    }
    if (this.tiles.get(id) !== tile) {
      if (url) URL.revokeObjectURL(url);
      return;
    }
    if (tile.url) URL.revokeObjectURL(tile.url);
    tile.url = url;
    tile.img.hidden = !url;
    tile.placeholder.hidden = Boolean(url);
    if (url) tile.img.src = url;
  }
}
