// The console's words in Chinese (default) and English, from ../i18n.json.
// Static text carries data-i18n="key" (textContent) or data-i18n-title / data-i18n-placeholder;
// code calls t(key, {vars}). Unknown keys fall back to the key's last part, never to blank.

const STORAGE_KEY = "gridwatch.lang";
let dictionaries = { zh: {}, en: {} };
let lang = localStorage.getItem(STORAGE_KEY) === "en" ? "en" : "zh";
const listeners = new Set();

export async function loadDictionaries() {
  const response = await fetch("/console/i18n.json", { cache: "no-cache" });
  dictionaries = await response.json();
}

export function currentLang() {
  return lang;
}

export function t(key, vars = {}) {
  const text = dictionaries[lang][key] ?? dictionaries.zh[key] ?? key.split(".").pop();
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

// A label for an enumerated value (state, action, type…), or the value itself when unknown.
export function label(group, value) {
  if (value === null || value === undefined || value === "") return t("common.na");
  const key = `${group}.${value}`;
  return dictionaries[lang][key] ?? dictionaries.zh[key] ?? String(value);
}

export function applyI18n(root = document) {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
}

export function setLang(next) {
  lang = next === "en" ? "en" : "zh";
  localStorage.setItem(STORAGE_KEY, lang);
  applyI18n();
  for (const listener of listeners) listener(lang);
}

export function onLangChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
