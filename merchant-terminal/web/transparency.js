// The public transparency page: GET /v1/transparency as tables a citizen can read, in the
// page's language. Cells the service suppressed (one to four households) say so instead of
// a figure. Amounts arrive as strings of minor units, which may pass 2^53: formatted as text.

import { api, currentLanguage, languagePicker, problemText, say, t } from "./common.js";

const $ = (id) => document.getElementById(id);
let report = null;

/** "1234.50" for "123450" at scale 2, exactly, from the digits. */
function amountText(minor, scale) {
  if (minor === null || minor === undefined) return t("transparency.suppressed");
  const negative = minor.startsWith("-");
  const digits = (negative ? minor.slice(1) : minor).padStart(scale + 1, "0");
  const whole = scale ? digits.slice(0, -scale) : digits;
  const fraction = scale ? `.${digits.slice(-scale)}` : "";
  return `${negative ? "-" : ""}${whole}${fraction}`;
}

function countText(count) {
  return count === null || count === undefined ? t("transparency.suppressed") : String(count);
}

/** A table with a header row and one row per item; numbers read left to right. */
function table(headings, rows) {
  const element = document.createElement("table");
  const head = element.createTHead().insertRow();
  for (const heading of headings) {
    const th = document.createElement("th");
    th.textContent = t(heading);
    head.append(th);
  }
  const body = element.createTBody();
  for (const row of rows) {
    const tr = body.insertRow();
    row.forEach((text, i) => {
      const cell = tr.insertCell();
      cell.textContent = text;
      if (i > 0) cell.dir = "ltr";
    });
  }
  return element;
}

function heading(level, text) {
  const element = document.createElement(level);
  element.textContent = text;
  return element;
}

function unitSection(unit) {
  const section = document.createElement("section");
  section.className = "report";
  section.dataset.unit = unit.unit;
  section.append(heading("h2", `${unit.name} (${unit.unit})`));
  const chain = document.createElement("p");
  chain.className = "caption";
  chain.textContent = t("transparency.chain", { seq: unit.seq, hash: unit.hash.slice(0, 16) });
  section.append(chain);
  if (unit.breakdowns_suppressed) section.append(heading("p", t("transparency.unit_suppressed")));
  const households = document.createElement("p");
  households.textContent = t("transparency.households", { n: countText(unit.households) });
  section.append(households);
  section.append(table(
    ["transparency.kind", "transparency.entries", "transparency.amount", "transparency.households_column"],
    unit.kinds.map((k) => [
      t(`transparency.kind.${k.kind}`), countText(k.entries), amountText(k.amount_minor, unit.scale), countText(k.households),
    ]),
  ));
  section.append(heading("h3", t("transparency.held")));
  section.append(table(
    ["transparency.by", "transparency.accounts", "transparency.amount"],
    unit.held.map((h) => [t(`holder.${h.by}`), countText(h.accounts), amountText(h.amount_minor, unit.scale)]),
  ));
  return section;
}

function programmeSection(programme, scale) {
  const section = document.createElement("section");
  section.className = "report";
  section.dataset.programme = programme.id;
  section.append(heading("h2", programme.name));
  if (programme.suppressed) {
    section.append(heading("p", t("transparency.programme_suppressed")));
    return section;
  }
  section.append(table(
    ["transparency.figure", "transparency.value"],
    [
      [t("transparency.enrolled"), countText(programme.households)],
      [t("transparency.budget_left"), amountText(programme.budget_left_minor, scale)],
      [t("transparency.awaiting_settlement"), amountText(programme.awaiting_settlement_minor, scale)],
      [t("transparency.fees"), amountText(programme.fees_minor, scale)],
    ],
  ));
  if (programme.runs.length) {
    section.append(heading("h3", t("transparency.runs")));
    section.append(table(
      ["transparency.period", "transparency.households_column", "transparency.amount"],
      programme.runs.map((r) => [r.period, countText(r.households), amountText(r.total_minor, scale)]),
    ));
  }
  return section;
}

function render() {
  if (!report) return;
  $("as-of").textContent = t("transparency.as_of", { time: new Date(report.at_ms).toLocaleString(currentLanguage()) });
  const scales = Object.fromEntries(report.units.map((u) => [u.unit, u.scale]));
  $("units").replaceChildren(...report.units.map(unitSection));
  $("programmes").replaceChildren(
    ...report.programmes.map((p) => programmeSection(p, scales[p.unit] ?? 0)),
  );
}

async function start() {
  languagePicker($("language"));
  document.addEventListener("languagechange", render);
  try {
    report = await api("GET", "/v1/transparency");
    render();
  } catch (error) {
    say(problemText(error));
  }
}

start();
