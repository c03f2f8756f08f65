// The grid map: basic-grid polygons from GET /api/v1/grids?geometry=true, each filled with
// the colour of its worst open event, and a dot per open event at its device. No tile
// server: the polygons lie on a plain background with a graticule, so it works offline.

/* global L */
import { NONE_COLOUR, SEVERITY_COLOURS, SEVERITY_ORDER, h } from "./dom.js";
import { label, t } from "./i18n.js";
import { store } from "./store.js";

export class GridMap {
  constructor(element, { onGridClick, onEventClick }) {
    this.element = element;
    this.onGridClick = onGridClick;
    this.onEventClick = onEventClick;
    this.map = L.map(element, { attributionControl: false, zoomSnap: 0.25, preferCanvas: false });
    this.map.setView([0, 0], 2); // a loaded map draws its layers at once; fit() zooms in later
    this.map.createPane("graticule").style.zIndex = 250;
    this.polygons = new Map(); // code → L.GeoJSON
    this.dots = L.layerGroup().addTo(this.map);
    this.graticule = L.layerGroup().addTo(this.map);
    this.legend = L.control({ position: "bottomright" });
    this.legend.onAdd = () => h("div.legend");
    this.legend.addTo(this.map);
    this.fittedArea = null;
  }

  setGrids(grids) {
    for (const layer of this.polygons.values()) layer.remove();
    this.polygons.clear();
    for (const grid of grids) {
      if (!grid.geometry) continue;
      const layer = L.geoJSON(grid.geometry, { style: () => this.style(null) });
      layer.bindTooltip(() => this.tooltip(grid.code), { sticky: true });
      layer.on("click", () => this.onGridClick(grid.code));
      layer.addTo(this.map);
      this.polygons.set(grid.code, layer);
    }
    this.drawGraticule();
    this.fittedArea = null;
    this.render();
  }

  tooltip(code) {
    const severity = store.worstByGrid().get(code);
    return `${store.gridName(code)} · ${severity ? label("severity", severity) : t("severity.none")}`;
  }

  style(severity) {
    const colour = severity ? SEVERITY_COLOURS[severity] : NONE_COLOUR;
    return {
      color: severity ? colour : "#64748b",
      weight: severity ? 2 : 1,
      fillColor: colour,
      fillOpacity: severity ? 0.55 : 0.12,
    };
  }

  render() {
    const worstBy = store.worstByGrid();
    for (const [code, layer] of this.polygons) {
      const severity = worstBy.get(code) || null;
      layer.setStyle(this.style(severity));
      layer.eachLayer((path) => {
        const el = path.getElement();
        if (!el) return;
        el.classList.add("grid-polygon");
        el.setAttribute("data-grid", code);
        el.setAttribute("data-severity", severity || "none");
      });
    }
    this.dots.clearLayers();
    for (const event of store.visibleEvents()) {
      const { lat, lon } = event.location || {};
      if (typeof lat !== "number" || typeof lon !== "number") continue;
      const dot = L.circleMarker([lat, lon], {
        radius: 6,
        color: "#ffffff",
        weight: 2,
        fillColor: SEVERITY_COLOURS[event.severity] || NONE_COLOUR,
        fillOpacity: 1,
      });
      dot.bindTooltip(`${label("type", event.type)} · ${event.site || store.gridName(event.grid_code)}`);
      dot.on("click", () => this.onEventClick(event.id));
      dot.addTo(this.dots);
      dot.getElement()?.setAttribute("data-event", event.id);
    }
    this.renderLegend();
    if (this.fittedArea !== store.area) this.fit();
  }

  renderLegend() {
    const box = this.legend.getContainer();
    if (!box) return;
    box.replaceChildren(
      ...SEVERITY_ORDER.map((s) =>
        h("div", {}, h("span.swatch", { style: { background: SEVERITY_COLOURS[s] } }), label("severity", s)),
      ),
      h("div", {}, h("span.swatch", { style: { background: NONE_COLOUR } }), t("severity.none")),
    );
  }

  // Zoom to the selected area's polygons (or all of them).
  fit() {
    const bounds = L.latLngBounds([]);
    for (const [code, layer] of this.polygons) {
      const grid = store.grids.get(code);
      if (!store.area || code === store.area || (grid?.ancestors || []).includes(store.area)) {
        bounds.extend(layer.getBounds());
      }
    }
    if (!bounds.isValid()) {
      if (!this.polygons.size) this.map.setView([0, 0], 2);
      return;
    }
    this.map.invalidateSize();
    this.map.fitBounds(bounds, { padding: [16, 16] });
    this.fittedArea = store.area;
  }

  drawGraticule() {
    this.graticule.clearLayers();
    const bounds = L.latLngBounds([]);
    for (const layer of this.polygons.values()) bounds.extend(layer.getBounds());
    if (!bounds.isValid()) return;
    const span = Math.max(bounds.getNorth() - bounds.getSouth(), bounds.getEast() - bounds.getWest());
    const step = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1].find((s) => span / s <= 12) || 1;
    const pad = span * 2 + step;
    const south = Math.floor((bounds.getSouth() - pad) / step) * step;
    const north = Math.ceil((bounds.getNorth() + pad) / step) * step;
    const west = Math.floor((bounds.getWest() - pad) / step) * step;
    const east = Math.ceil((bounds.getEast() + pad) / step) * step;
    const line = { color: "#e2e8f0", weight: 1, interactive: false, pane: "graticule" };
    for (let lat = south; lat <= north + 1e-9; lat += step) {
      L.polyline([[lat, west], [lat, east]], line).addTo(this.graticule);
    }
    for (let lon = west; lon <= east + 1e-9; lon += step) {
      L.polyline([[south, lon], [north, lon]], line).addTo(this.graticule);
    }
  }

  resize() {
    this.map.invalidateSize();
  }
}
