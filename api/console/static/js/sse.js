// GET /api/v1/stream read with fetch and a ReadableStream (EventSource cannot send an
// Authorization header). Parses Server-Sent Events, remembers the last id and reconnects
// with Last-Event-ID after a drop, so no change is missed or repeated.

import { authHeaders } from "./api.js";

export class EventStream {
  constructor(path, { onMessage, onProvisional, onStatus, onUnauthorized }) {
    this.path = path;
    this.onMessage = onMessage;
    this.onProvisional = onProvisional || (() => {});
    this.onStatus = onStatus || (() => {});
    this.onUnauthorized = onUnauthorized || (() => {});
    this.lastId = null;
    this.controller = null;
    this.stopped = false;
    this.delay = 500;
    this.openedOnce = null;
    this.opened = new Promise((resolve) => (this.openedOnce = resolve));
  }

  start() {
    this.stopped = false;
    this.loop();
    return this.opened; // resolves once the first connection is established
  }

  stop() {
    this.stopped = true;
    if (this.controller) this.controller.abort();
  }

  async loop() {
    while (!this.stopped) {
      this.onStatus("connecting");
      this.controller = new AbortController();
      try {
        const headers = authHeaders({ Accept: "text/event-stream" });
        if (this.lastId !== null) headers["Last-Event-ID"] = this.lastId;
        const response = await fetch(this.path, { headers, signal: this.controller.signal });
        if (response.status === 401) {
          this.stopped = true;
          this.onUnauthorized();
          return;
        }
        if (!response.ok) throw new Error(`stream: HTTP ${response.status}`);
        this.delay = 500;
        this.onStatus("live");
        this.openedOnce();
        await this.read(response.body);
      } catch (error) {
        if (this.stopped) return;
        console.warn("event stream dropped", error);
      }
      if (this.stopped) return;
      this.onStatus("offline");
      await new Promise((resolve) => setTimeout(resolve, this.delay));
      this.delay = Math.min(this.delay * 2, 10000);
    }
  }

  async read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        this.dispatch(block);
      }
    }
  }

  dispatch(block) {
    let id = null;
    let type = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line === "" || line.startsWith(":")) continue; // comment: heartbeat
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "id") id = value;
      else if (field === "event") type = value;
      else if (field === "data") data.push(value);
    }
    if (id !== null) this.lastId = id;
    if (!data.length) return;
    try {
      const message = JSON.parse(data.join("\n"));
      // Provisional alerts (database away) carry no id and are not changes of the log.
      if (type === "provisional") this.onProvisional(message);
      else this.onMessage(message);
    } catch (error) {
      console.error("bad stream message", error);
    }
  }
}
