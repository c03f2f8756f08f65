// Motion-JPEG AVI clips (video/x-msvideo), which browsers do not play in <video>: the RIFF
// file is read here and its frames, each a whole JPEG, are shown one after another in an
// <img> from blob: URLs (slices of the fetched clip, no copy; the console's CSP allows blob:
// images), looping at the clip's rate, with a play/pause button and the frame counter.
//
// RIFF AVI: 'RIFF' size 'AVI ', then chunks (4-byte tag, 32-bit little-endian size, the data,
// a pad byte when the size is odd). LIST 'hdrl' holds 'avih' (µs per frame, width, height)
// and one LIST 'strl' per stream with 'strh' (type 'vids', rate / scale = frames a second);
// LIST 'movi' holds the frames as 'NNdc' chunks, NN the video stream's number (possibly
// grouped in LIST 'rec '). Empty chunks (a writer's dropped frame) are skipped.

import { h } from "./dom.js";
import { t } from "./i18n.js";

export const MJPEG_TYPE = "video/x-msvideo";
const MIN_FPS = 0.5;
const MAX_FPS = 60;
const MAX_FRAMES = 20000; // a bound for a damaged file, far beyond any clip
const LISTS = new Set(["hdrl", "strl", "movi", "rec "]);

function tag(view, at) {
  let text = "";
  for (let i = 0; i < 4; i++) text += String.fromCharCode(view.getUint8(at + i));
  return text;
}

// {fps, width, height, frames: [{offset, size}]} of an MJPEG AVI's bytes; throws when it is
// not one (not RIFF AVI, or no JPEG frame). A truncated file gives the whole frames it holds.
export function parseAvi(buffer) {
  const view = new DataView(buffer);
  if (view.byteLength < 12 || tag(view, 0) !== "RIFF" || tag(view, 8) !== "AVI ") {
    throw new Error("not an AVI file");
  }
  const clip = { fps: 0, width: 0, height: 0, frames: [], streams: 0, video: -1, chunks: [] };
  walk(view, 12, Math.min(view.byteLength, 8 + view.getUint32(4, true)), clip, false);
  const wanted = `${String(Math.max(clip.video, 0)).padStart(2, "0")}dc`;
  const frames = [];
  for (const chunk of clip.chunks) {
    if (chunk.tag !== wanted || chunk.size < 4) continue;
    // each frame is a JPEG: it starts with the SOI marker FF D8
    if (view.getUint8(chunk.offset) !== 0xff || view.getUint8(chunk.offset + 1) !== 0xd8) continue;
    frames.push({ offset: chunk.offset, size: chunk.size });
  }
  if (!frames.length) throw new Error("no JPEG frames in this AVI");
  const fps = Number.isFinite(clip.fps) && clip.fps > 0 ? clip.fps : 5;
  return {
    fps: Math.min(MAX_FPS, Math.max(MIN_FPS, fps)),
    width: clip.width,
    height: clip.height,
    frames,
  };
}

function walk(view, start, end, clip, inMovi) {
  let at = start;
  while (at + 8 <= end && clip.chunks.length < MAX_FRAMES) {
    const name = tag(view, at);
    const size = view.getUint32(at + 4, true);
    const body = at + 8;
    const stop = Math.min(end, body + size); // a truncated file: what is there
    if (name === "LIST" && stop - body >= 4) {
      const form = tag(view, body);
      if (form === "strl") clip.streams += 1;
      if (LISTS.has(form)) walk(view, body + 4, stop, clip, inMovi || form === "movi");
    } else if (name === "avih" && stop - body >= 40) {
      const usec = view.getUint32(body, true);
      if (!clip.fps && usec) clip.fps = 1e6 / usec; // strh's rate, more exact, wins
      clip.width = view.getUint32(body + 32, true);
      clip.height = view.getUint32(body + 36, true);
    } else if (name === "strh" && stop - body >= 28 && tag(view, body) === "vids" && clip.video < 0) {
      clip.video = clip.streams - 1;
      const scale = view.getUint32(body + 20, true);
      const rate = view.getUint32(body + 24, true);
      if (scale && rate) clip.fps = rate / scale;
    } else if (inMovi && /^\d\d(dc|db)$/.test(name) && body + size <= end) {
      clip.chunks.push({ tag: name, offset: body, size });
    }
    at = body + size + (size & 1);
  }
}

// The player of one clip: `element` goes into the page; it stops and frees its frames when
// destroyed, or by itself once the element has left the page.
export class MjpegPlayer {
  constructor(blob, clip, { title = "", autoplay = true } = {}) {
    this.urls = clip.frames.map((f) =>
      URL.createObjectURL(blob.slice(f.offset, f.offset + f.size, "image/jpeg")));
    this.delay = 1000 / clip.fps;
    this.index = 0;
    this.timer = null;
    this.img = h("img", { alt: title, title });
    this.counter = h("span.clip-counter");
    this.button = h("button.clip-play", { type: "button", onclick: () => this.toggle() });
    this.element = h(
      "div.mjpeg",
      { dataset: { frames: String(this.urls.length), fps: clip.fps.toFixed(2) } },
      this.img,
      h("div.clip-bar", {}, this.button, this.counter),
    );
    this.show(0);
    this.label();
    const still = window.matchMedia?.("(prefers-reduced-motion: reduce)").matches;
    if (autoplay && !still) this.play();
  }

  get playing() {
    return this.timer !== null;
  }

  play() {
    if (this.timer !== null || this.urls.length < 2) return;
    this.timer = setInterval(() => this.tick(), this.delay);
    this.label();
  }

  pause() {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.label();
  }

  toggle() {
    if (this.playing) this.pause();
    else this.play();
  }

  tick() {
    if (!this.element.isConnected) {
      this.destroy();
      return;
    }
    this.show((this.index + 1) % this.urls.length);
  }

  show(index) {
    this.index = index;
    this.img.src = this.urls[index];
    this.counter.textContent = `${index + 1} / ${this.urls.length}`;
  }

  label() {
    const key = this.playing ? "clip.pause" : "clip.play";
    this.button.textContent = this.playing ? "❚❚" : "▶";
    this.button.title = t(key);
    this.button.setAttribute("aria-label", t(key));
    this.button.disabled = this.urls.length < 2;
    this.element.dataset.state = this.playing ? "playing" : "paused";
  }

  destroy() {
    this.pause();
    for (const url of this.urls) URL.revokeObjectURL(url);
    this.urls = [];
  }
}
