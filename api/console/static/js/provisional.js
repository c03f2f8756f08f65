// Provisional alerts: found on device data while the database is away, not yet grid events
// (the stream's `event: provisional`). Shown above the list until the grid event for the
// same device arrives, or the operator dismisses them.

import { clear, formatTime, h } from "./dom.js";
import { label, t } from "./i18n.js";

export class ProvisionalPanel {
  constructor(box, list) {
    this.box = box;
    this.list = list;
    this.alerts = new Map(); // CloudEvent id → data
  }

  add(message) {
    const data = message.data;
    if (!data || data.phase !== "raised") return;
    this.alerts.set(message.id, data);
    this.render();
  }

  // A recorded event covers the provisional alerts of its devices.
  recorded(event) {
    const devices = new Set(event.device_ids || []);
    let changed = false;
    for (const [id, data] of this.alerts) {
      if (devices.has(data.device_id)) {
        this.alerts.delete(id);
        changed = true;
      }
    }
    if (changed) this.render();
  }

  clearAll() {
    this.alerts.clear();
    this.render();
  }

  render() {
    this.box.hidden = this.alerts.size === 0;
    clear(this.list);
    for (const [id, a] of [...this.alerts].reverse()) {
      this.list.append(
        h(
          `li.provisional-item.sev-${a.severity}`,
          { dataset: { id, device: a.device_id, severity: a.severity } },
          h(`span.chip.sev-${a.severity}`, {}, label("severity", a.severity)),
          h("strong", {}, ` ${label("type", a.type)} `),
          h("span.muted", {}, `${a.device_id} · ${a.grid_code || t("common.na")}${a.site ? ` · ${a.site}` : ""} · ${formatTime(a.ts)}`),
        ),
      );
    }
  }
}
