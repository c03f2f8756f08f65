// The centre's figures as charts: KPI tiles and the safety index series from
// GET /api/v1/figures and /api/v1/figures/series; open events, devices online and camera
// health per area below from GET /api/v1/figures/nodes.

/* global Chart */
import * as api from "./api.js";
import { SEVERITY_COLOURS, SEVERITY_ORDER, clear, h, percent } from "./dom.js";
import { label, t } from "./i18n.js";
import { store } from "./store.js";

const GREEN = "#16a34a";
const GREY = "#94a3b8";

export class FiguresView {
  constructor(section) {
    this.section = section;
    this.charts = [];
    this.data = null;
  }

  async show() {
    clear(this.section).append(h("p.muted", {}, t("common.loading")));
    const node = store.area || undefined;
    try {
      const [report, nodes, series] = await Promise.all([
        api.get("/api/v1/figures", { node }),
        api.get("/api/v1/figures/nodes", { node }),
        api.get("/api/v1/figures/series", { node, days: 30 }),
      ]);
      this.data = { report, nodes, series };
    } catch (error) {
      clear(this.section).append(h("p.error", {}, t("common.error", { reason: error.message })));
      return;
    }
    this.render();
  }

  close() {
    for (const chart of this.charts) chart.destroy();
    this.charts = [];
  }

  render() {
    if (!this.data) return;
    this.close();
    const { report, nodes, series } = this.data;
    const f = report.figures;
    const tile = (key, value, id) => h("div.tile", { id }, h("div.value", {}, value), h("div.name", {}, t(key)));
    const chartCard = (key, id) =>
      h("div.card.chart-card", {}, h("h3", {}, t(key)), h("div.chart-box", {}, h("canvas", { id })));
    clear(this.section).append(
      h("h2", {}, `${t("figures.title")} · ${f.node.name} `, h("small.muted", {}, t("figures.period"))),
      h(
        "div.tiles",
        {},
        tile("figures.received", f.received, "kpi-received"),
        tile("figures.closed", f.closed, "kpi-closed"),
        tile("figures.close_rate", percent(f.close_rate), "kpi-close-rate"),
        tile("figures.on_time_rate", percent(f.on_time_close_rate), "kpi-on-time"),
        tile("figures.rework_rate", percent(f.rework_rate), "kpi-rework"),
        tile("figures.open_now", f.open_now, "kpi-open"),
        tile("figures.safety_index", report.safety_index.score.toFixed(1), "kpi-safety"),
      ),
      h(
        "div.chart-grid",
        {},
        chartCard("figures.series", "chart-series"),
        chartCard("figures.open_by_severity", "chart-open-severity"),
        chartCard("figures.open_by_grid", "chart-open-grid"),
        chartCard("figures.close_by_grid", "chart-close-grid"),
        chartCard("figures.device_health", "chart-devices"),
        chartCard("figures.camera_health", "chart-cameras"),
      ),
    );
    const areas = nodes.children.length ? nodes.children : [nodes.node];
    const names = areas.map((n) => n.name);
    const ind = (n, key) => n.indicators[key] || 0;
    const base = { animation: false, maintainAspectRatio: false };
    const stacked = { ...base, scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } };

    this.add("chart-series", {
      type: "line",
      data: {
        labels: series.items.map((p) => p.day.slice(5)),
        datasets: [{ label: t("figures.safety_index"), data: series.items.map((p) => p.score), borderColor: GREEN, backgroundColor: GREEN, tension: 0.2 }],
      },
      options: { ...base, scales: { y: { min: 0, max: 100 } }, plugins: { legend: { display: false }, title: { display: !series.items.length, text: t("figures.no_series") } } },
    });
    this.add("chart-open-severity", {
      type: "doughnut",
      data: {
        labels: SEVERITY_ORDER.map((s) => label("severity", s)),
        datasets: [{ data: SEVERITY_ORDER.map((s) => f.open_by_severity[s] || 0), backgroundColor: SEVERITY_ORDER.map((s) => SEVERITY_COLOURS[s]) }],
      },
      options: { ...base, plugins: { legend: { position: "right" } } },
    });
    this.add("chart-open-grid", {
      type: "bar",
      data: {
        labels: names,
        datasets: SEVERITY_ORDER.map((s) => ({ label: label("severity", s), data: areas.map((n) => ind(n, `open_${s}`)), backgroundColor: SEVERITY_COLOURS[s] })),
      },
      options: stacked,
    });
    const children = f.children.length ? f.children : [{ name: f.node.name, close_rate: f.close_rate, on_time_close_rate: f.on_time_close_rate }];
    this.add("chart-close-grid", {
      type: "bar",
      data: {
        labels: children.map((c) => c.name),
        datasets: [
          { label: t("figures.close_rate"), data: children.map((c) => (c.close_rate ?? 0) * 100), backgroundColor: "#2563eb" },
          { label: t("figures.on_time_rate"), data: children.map((c) => (c.on_time_close_rate ?? 0) * 100), backgroundColor: GREEN },
        ],
      },
      options: { ...base, scales: { y: { min: 0, max: 100 } } },
    });
    this.add("chart-devices", {
      type: "bar",
      data: {
        labels: names,
        datasets: [
          { label: t("figures.online"), data: areas.map((n) => ind(n, "devices_online")), backgroundColor: GREEN },
          { label: t("figures.offline"), data: areas.map((n) => ind(n, "devices") - ind(n, "devices_online")), backgroundColor: GREY },
        ],
      },
      options: stacked,
    });
    this.add("chart-cameras", {
      type: "bar",
      data: {
        labels: names,
        datasets: [
          { label: t("figures.healthy"), data: areas.map((n) => ind(n, "cameras_healthy")), backgroundColor: GREEN },
          { label: t("figures.faulty"), data: areas.map((n) => ind(n, "cameras") - ind(n, "cameras_healthy")), backgroundColor: SEVERITY_COLOURS.orange },
        ],
      },
      options: stacked,
    });
  }

  add(id, config) {
    this.charts.push(new Chart(this.section.querySelector(`#${id}`), config));
  }
}
