// The live list of open events (filtered by area, severity and state), newest worst first.

import { updateCountdowns } from "./countdown.js";
import { clear, formatTime, h } from "./dom.js";
import { label, t } from "./i18n.js";
import { store } from "./store.js";

export function renderList(container, countLabel) {
  const events = store.visibleEvents();
  countLabel.textContent = t("list.count", { n: events.length });
  clear(container);
  if (!events.length) {
    container.append(h("p.empty", {}, t("list.empty")));
    return;
  }
  for (const event of events) {
    container.append(
      h(
        `a.event-card.sev-${event.severity}`,
        { href: `#/event/${encodeURIComponent(event.id)}`, dataset: { eventId: event.id, severity: event.severity, grid: event.grid_code || "" } },
        h(
          "div.row",
          {},
          h(`span.chip.sev-${event.severity}`, {}, label("severity", event.severity)),
          h("strong.type", {}, label("type", event.type)),
          h("span.state", { dataset: { state: event.state } }, label("state", event.state)),
        ),
        h("div.row.muted", {}, store.gridName(event.grid_code), event.site ? ` · ${event.site}` : ""),
        h(
          "div.row.muted",
          {},
          h("span", {}, formatTime(event.first_seen)),
          event.alarm_count > 1 ? h("span", {}, ` ×${event.alarm_count}`) : null,
          event.deadlines?.due ? h("span.due", { dataset: { due: event.deadlines.due } }) : null,
        ),
      ),
    );
  }
  updateCountdowns(container);
}
