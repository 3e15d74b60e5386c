// A job's error as an operator wants to read it: preformatted, leaseq's own frames left
// out (the worker's machinery, the same in every traceback), long ones folded.
import { el } from "./util.js";

const FRAME = /^(\s*)File "([^"]*)", line \d+/;
const FOLD_LINES = 8;
const FOLD_CHARS = 800;

function indent(line) {
  return line.length - line.trimStart().length;
}

// Whether a frame's file is part of the leaseq package: one of its parts' folders or
// its top modules (not merely any folder called leaseq, such as a checkout of it).
const OWN = /[\\/]leaseq[\\/](?:runtime|protocol|testing|cli|web)[\\/]|[\\/]leaseq[\\/](?:__init__|models|exceptions|otel|_version)\.py$/;

function ours(path) {
  return OWN.test(path);
}

// The text without leaseq's frames, and how many were dropped. A frame is its
// 'File "...", line N, in f' line and the more indented lines below it (source, carets).
export function dropOwnFrames(text) {
  const lines = String(text).split("\n");
  const kept = [];
  let dropped = 0;
  for (let i = 0; i < lines.length;) {
    const match = FRAME.exec(lines[i]);
    if (!match) {
      kept.push(lines[i]);
      i += 1;
      continue;
    }
    const depth = match[1].length;
    let end = i + 1;
    while (end < lines.length && lines[end].trim() !== "" && indent(lines[end]) > depth &&
           !FRAME.test(lines[end])) end += 1;
    if (ours(match[2])) dropped += 1;
    else kept.push(...lines.slice(i, end));
    i = end;
  }
  return { text: kept.join("\n"), dropped };
}

// A <div class="trace"> for an error or reason: a <pre>, folded in a <details> whose
// summary is the first line when the text is long.
export function renderTrace(text, { id } = {}) {
  if (!text) return el("span", { class: "muted" }, "–");
  const { text: shown, dropped } = dropOwnFrames(text);
  const note = dropped
    ? el("small", { class: "muted" },
      ` (${dropped} leaseq frame${dropped === 1 ? "" : "s"} hidden)`)
    : "";
  const lines = shown.split("\n");
  if (lines.length === 1 && shown.length <= 200) {
    return el("div", { class: "trace", id }, el("span", { class: "trace-text" }, shown), note);
  }
  const pre = el("pre", { class: "trace-text" }, shown);
  if (lines.length <= FOLD_LINES && shown.length <= FOLD_CHARS) {
    return el("div", { class: "trace", id }, pre, note);
  }
  return el("div", { class: "trace", id },
    el("details", {},
      el("summary", {}, lines[0].slice(0, 200),
        el("span", { class: "muted" }, ` … ${lines.length - 1} more lines`)),
      pre),
    note);
}
