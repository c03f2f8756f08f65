// Deadline countdowns: any element with data-due="<ISO time>" shows the time left (or how
// late it is) and gets the class "overdue" once the deadline has passed; one timer for all.

import { formatDuration } from "./dom.js";
import { t } from "./i18n.js";

export function updateCountdowns(root = document) {
  const now = Date.now();
  for (const el of root.querySelectorAll("[data-due]")) {
    const left = Date.parse(el.dataset.due) - now;
    el.textContent = left >= 0
      ? t("event.due_in", { t: formatDuration(left) })
      : t("event.overdue", { t: formatDuration(left) });
    el.classList.toggle("overdue", left < 0);
  }
}

export function startCountdowns() {
  updateCountdowns();
  return setInterval(() => updateCountdowns(), 1000);
}
