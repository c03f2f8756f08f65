// Small DOM and formatting helpers shared by the views.

// h("div.card", {onclick, dataset: {...}}, child, "text", …): an element; "tag.a.b" sets classes.
export function h(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "style" && typeof value === "object") Object.assign(el.style, value);
    else if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name in el && name !== "list") el[name] = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

// The four warning colours (四色预警) and the colour of a grid with nothing open.
export const SEVERITY_COLOURS = {
  red: "#dc2626",
  orange: "#f97316",
  yellow: "#eab308",
  blue: "#2563eb",
};
export const NONE_COLOUR = "#94a3b8";
export const SEVERITY_ORDER = ["red", "orange", "yellow", "blue"];
export const OPEN_STATES = ["reported", "dispatched", "accepted", "resolved", "verified"];

export function worst(severities) {
  for (const s of SEVERITY_ORDER) if (severities.includes(s)) return s;
  return null;
}

export function formatTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function formatDuration(ms) {
  const total = Math.max(0, Math.round(Math.abs(ms) / 1000));
  const d = Math.floor(total / 86400);
  const hh = Math.floor((total % 86400) / 3600);
  const mm = Math.floor((total % 3600) / 60);
  const ss = total % 60;
  const pad = (n) => String(n).padStart(2, "0");
  return (d ? `${d}d ` : "") + `${pad(hh)}:${pad(mm)}:${pad(ss)}`;
}

export function percent(rate) {
  return rate === null || rate === undefined ? "—" : `${(rate * 100).toFixed(1)}%`;
}
