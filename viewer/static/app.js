/* mmat view: the trajectory browser.
 *
 * Rows are untrusted text. Every piece of row data reaches the page through `textContent` or an
 * attribute set with setAttribute (never innerHTML), so a `<script>` or `</THOUGHT>` in a question is
 * shown as the characters it is.
 *
 * Two data sources with one interface: the `mmat view` server (JSON API, filters applied server-side
 * over lazily read parquet) and a static export (`window.MMAT_EXPORT`, loaded from data/index.js;
 * dialogues from data/d/<format>-<key>.js), whose filters `matches` applies in the browser with the
 * same rules as viewer/filters.py.
 *
 * The URL holds the whole view, so a link shares it: `#<dialogue id>?<filters>` (the id is
 * percent-encoded except `/`, so it never holds a literal `?`; the list is `#?<filters>`). The filters
 * are the form's fields, plus `format` (when not the default) and `offset` (past the first page).
 */
(function () {
  "use strict";

  const EXPORT = window.MMAT_EXPORT || null;
  const FILTER_NAMES = ["text", "source", "subset", "split", "operator", "reflection", "verified",
    "grounded", "evidence", "origin", "score_min", "score_max", "quarantined"];

  // ---------------------------------------------------------------- DOM helpers (text only)
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [key, value] of Object.entries(props)) {
        if (value === undefined || value === null || value === false) continue;
        if (key === "class") node.className = value;
        else if (key === "text") node.textContent = String(value);
        else if (key === "dataset") Object.assign(node.dataset, value);
        else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
        else node.setAttribute(key, String(value));
      }
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const $ = (sel) => document.querySelector(sel);
  const fmtNum = (v, digits) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));

  // ---------------------------------------------------------------- data sources
  const server = {
    async get(path, params) {
      const query = new URLSearchParams(params || {});
      const res = await fetch(path + (query.toString() ? "?" + query : ""));
      const body = await res.json();
      if (!res.ok) { const err = new Error(body.error || res.statusText); err.status = res.status; throw err; }
      return body;
    },
    info() { return this.get("/api/info"); },
    facets() { return this.get("/api/facets"); },
    rows(format, filters, offset, limit) {
      return this.get("/api/rows", Object.assign({ format, offset, limit }, filters));
    },
    count(format, filters) { return this.get("/api/count", Object.assign({ format }, filters)); },
    dialogue(format, id) { return this.get("/api/dialogue", { format, id }); },
  };

  function matches(r, f) {  // the rules of viewer/filters.py
    if (f.source && r.source !== f.source) return false;
    if (f.split && r.split !== f.split) return false;
    if (f.subset && r.subset !== f.subset) return false;
    if (f.reflection && r.reflection !== f.reflection) return false;
    if (f.operator && !(r.operators || []).includes(f.operator)) return false;
    if (f.verified === "yes" && r.verified !== true) return false;
    if (f.verified === "no" && r.verified !== false) return false;
    if (f.verified === "unknown" && r.verified !== null && r.verified !== undefined) return false;
    if (f.grounded === "yes" && r.grounded !== true) return false;
    if (f.grounded === "no" && r.grounded !== false) return false;
    if (f.grounded === "unknown" && r.grounded !== null && r.grounded !== undefined) return false;
    if (f.evidence && r.evidence !== f.evidence) return false;
    if (f.origin && r.origin !== f.origin) return false;
    const score = r.judge_score;
    if (f.score_min !== undefined && (score === null || score === undefined || score < Number(f.score_min))) return false;
    if (f.score_max !== undefined && (score === null || score === undefined || score > Number(f.score_max))) return false;
    if (f.text && !(r.id + "\n" + r.question + "\n" + r.answer).toLowerCase().includes(f.text.toLowerCase())) return false;
    return true;
  }

  function matchesQuarantine(r, f) {
    if (f.source && r.source !== f.source) return false;
    if (f.text) {
      const hay = [r.id, r.stage, r.error_type, r.message].join(" ").toLowerCase();
      return hay.includes(f.text.toLowerCase());
    }
    return true;
  }

  const waiting = {};
  window.MMAT_DIALOGUE = function (format, key, view) {
    const done = waiting[format + "-" + key];
    if (done) done(view);
  };

  const exported = {
    info() { return Promise.resolve(EXPORT.info); },
    facets() { return Promise.resolve(EXPORT.facets); },
    rows(format, filters, offset, limit) {
      if (filters.quarantined) {
        const all = EXPORT.quarantine.filter((r) => matchesQuarantine(r, filters));
        return Promise.resolve({ total: all.length, offset, quarantined: true, rows: all.slice(offset, offset + limit) });
      }
      const all = (EXPORT.rows[format] || []).filter((r) => matches(r, filters));
      return Promise.resolve({ total: all.length, offset, quarantined: false, rows: all.slice(offset, offset + limit) });
    },
    dialogue(format, id) {
      const key = (EXPORT.keys[format] || {})[id];
      if (key === undefined) {
        const err = new Error("no " + format + " row with id " + JSON.stringify(id) + " in this export");
        err.status = 404;
        return Promise.reject(err);
      }
      return new Promise((resolve, reject) => {
        waiting[format + "-" + key] = resolve;
        const script = el("script", { src: "data/d/" + format + "-" + key + ".js" });
        script.addEventListener("error", () => reject(new Error("cannot load the dialogue file of " + id)));
        document.body.append(script);
        script.addEventListener("load", () => script.remove());
      });
    },
  };

  const data = EXPORT ? exported : server;

  // ---------------------------------------------------------------- state
  const state = {
    info: null, format: "rr", filters: {}, offset: 0, pageSize: 50,
    view: "list", detailFormats: null, detailId: null,
  };

  const renders = { list: 0, detail: 0 };

  function setStatus(text) { $("#status").textContent = text || ""; }

  function readFilters() {
    const form = $("#filter-form");
    const out = {};
    for (const name of FILTER_NAMES) {
      const field = form.elements[name];
      if (!field) continue;
      if (field.type === "checkbox") { if (field.checked) out[name] = "1"; }
      else if (field.value.trim() !== "") out[name] = field.value.trim();
    }
    return out;
  }

  // ---------------------------------------------------------------- list
  function chip(text, cls) { return el("span", { class: "chip " + (cls || "") }, text); }

  function verifiedChip(v) {
    if (v === true) return chip("verified", "ok");
    if (v === false) return chip("not verified", "bad");
    return chip("not checked");
  }

  function groundedChip(r) {
    const kind = r.evidence ? " · " + r.evidence : "";
    if (r.grounded === true) return chip("grounded" + kind, "ok grounded");
    if (r.grounded === false) return chip("not grounded" + kind, "bad grounded");
    return chip("grounding not recorded", "grounded");
  }

  const ORIGIN_TEXT = { staged: "staged", check: "found by the check", unknown: "origin not recorded" };

  function reflectionChip(r) {
    if (!r.reflection || r.reflection === "none") return null;
    return chip("reflection: " + r.reflection + " · " + (ORIGIN_TEXT[r.origin] || r.origin),
      "reflection-" + r.reflection + " origin-" + (r.origin || "unknown"));
  }

  function listItem(r) {
    const thumb = r.thumb ? el("img", { src: r.thumb, alt: "", loading: "lazy" }) : el("span", { class: "chip" }, "no image");
    return el("li", { class: "item", dataset: { id: r.id }, tabindex: 0,
      onclick: () => openDialogue(r.id), onkeydown: (e) => { if (e.key === "Enter") openDialogue(r.id); } },
      el("div", { class: "thumb-box" }, thumb),
      el("div", { class: "body" },
        el("div", { class: "item-id" }, r.id),
        el("div", { class: "item-question" }, r.question),
        el("div", { class: "chips" },
          chip(r.source), chip(r.subset), chip(r.split),
          reflectionChip(r),
          verifiedChip(r.verified), groundedChip(r),
          r.judge_score !== null && r.judge_score !== undefined ? chip("judge " + fmtNum(r.judge_score, 2)) : null,
          (r.operators || []).map((op) => chip(op, "op")),
          r.n_images > 1 ? chip(r.n_images + " images") : null)));
  }

  function quarantineItem(r) {
    return el("li", { class: "item quarantined", dataset: { id: r.id } },
      el("div", { class: "body" },
        el("div", { class: "item-id" }, r.id),
        el("div", { class: "chips" }, chip(r.source || "?"), chip("stage: " + r.stage, "bad"), chip(r.error_type)),
        el("div", { class: "reason" }, r.message)));
  }

  async function loadList() {
    state.view = "list";
    document.body.dataset.view = "list";
    $("#detail-view").hidden = true;
    $("#list-view").hidden = false;
    setStatus("loading…");
    let page;
    try {
      page = await data.rows(state.format, state.filters, state.offset, state.pageSize);
    } catch (err) {
      setStatus(err.message);
      return;
    }
    setStatus("");
    const list = $("#list");
    list.replaceChildren(...page.rows.map(page.quarantined ? quarantineItem : listItem));
    if (!page.rows.length) list.append(el("li", { class: "empty" }, "No dialogues match these filters."));
    drawCount(page.total, page.quarantined, page.rows.length);
    document.body.dataset.listVersion = String(++renders.list);  // tests and benchmarks wait on these
    if (page.total === null) {
      // The total needs every shard's footer: asked for after the page is drawn.
      const asked = renders.list;
      data.count(state.format, state.filters).then((res) => {
        if (renders.list === asked) drawCount(res.total, page.quarantined, page.rows.length);
      }).catch((err) => setStatus(err.message));
    }
    if (!window.MMAT_READY_MS) {
      window.MMAT_READY_MS = performance.now();
      document.body.dataset.ready = "1";
    }
  }

  function drawCount(total, quarantined, shown) {
    const known = total !== null && total !== undefined;
    const what = quarantined ? "quarantined samples" : "dialogues";
    $("#count").textContent = (known ? total : "counting") + " " + what;
    if (known) $("#count").dataset.total = total; else delete $("#count").dataset.total;
    if (known && !window.MMAT_COUNTED_MS) window.MMAT_COUNTED_MS = performance.now();
    const first = shown ? state.offset + 1 : 0;
    const last = state.offset + shown;
    $("#pager").replaceChildren(
      el("button", { type: "button", id: "prev", disabled: state.offset <= 0 ? "" : null,
        onclick: () => { state.offset = Math.max(0, state.offset - state.pageSize); navigate(null); } }, "‹ prev"),
      el("span", { id: "range" }, first + "–" + last + (known ? " of " + total : "")),
      el("button", { type: "button", id: "next", disabled: (known ? last >= total : shown < state.pageSize) ? "" : null,
        onclick: () => { state.offset += state.pageSize; navigate(null); } }, "next ›"));
  }

  // ---------------------------------------------------------------- dialogue
  function blockNode(b) {
    const body = b.items
      ? el("span", { class: "body" }, b.items.map((item) => el("span", { class: "chip op", dataset: { operator: item } }, item)))
      : el("span", { class: "body" }, b.text);
    return el("div", { class: "block block-" + b.label, dataset: { label: b.label } },
      el("span", { class: "label" }, b.label), body);
  }

  function cardNode(c) {
    return el("div", { class: "op-card", dataset: { operator: c.operator } },
      el("div", { class: "op-head" },
        el("span", { class: "op-name" }, c.operator),
        el("span", { class: "op-backend" }, c.backend ? "backend: " + c.backend : "backend not recorded")),
      el("pre", { class: "op-text" }, c.text));
  }

  function verdict(v) {
    if (v === true) return el("span", { class: "verdict ok" }, "✓ verified");
    if (v === false) return el("span", { class: "verdict bad" }, "✗ does not match the reference");
    return el("span", { class: "verdict unknown" }, "not checked");
  }

  const NOTE_TITLES = { reflection_request: "Reflection requested", summary_request: "Summary request",
    no_results: "No operator results" };

  function turnNode(t) {
    const role = el("div", { class: "role" }, t.role + (t.kind === "question" ? " · question" : ""));
    const classes = ["turn", t.role];
    const parts = [role];
    if (t.kind === "question") {
      parts.push(el("div", { class: "text" }, t.text));
      if (t.images) parts.push(chip(t.images + (t.images > 1 ? " images" : " image") + " above"));
      if (t.cards && t.cards.length) {
        parts.push(el("div", { class: "role" }, "API outputs"), t.cards.map(cardNode));
      }
    } else if (t.kind === "step") {
      if (t.mark) {
        classes.push("mark-" + t.mark);
        const origin = t.origin === "staged" ? " (staged: this defect was written on purpose, then found)"
          : t.origin === "check" ? " (found by the check in what the teacher wrote)" : "";
        if (t.origin) classes.push("origin-" + t.origin);
        parts.push(el("div", { class: "banner" },
          (t.mark === "reflection" ? "⚠ Reflection: the step asks to be checked" : "✎ Repaired step") + origin));
      }
      parts.push(t.blocks.map(blockNode));
    } else if (t.kind === "results") {
      role.textContent = "user · operator results";
      parts.push(t.cards.map(cardNode));
    } else if (t.kind === "note") {
      classes.push("note-" + t.note);
      role.textContent = "user · " + (NOTE_TITLES[t.note] || t.note);
      parts.push(el("div", { class: "text" }, t.text));
    } else if (t.kind === "answer") {
      role.textContent = "assistant · final answer";
      parts.push(t.blocks.map(blockNode));
      parts.push(el("div", { class: "answer-grid" },
        el("div", { class: "cell final" }, el("div", { class: "k" }, "final answer"),
          el("div", { class: "text final-answer" }, t.answer === null ? "(not readable from the row)" : t.answer)),
        el("div", { class: "cell reference" }, el("div", { class: "k" }, "reference answer"),
          el("div", { class: "text reference-answer" }, t.reference === null ? "(not in the row)" : t.reference)),
        el("div", { class: "cell" }, el("div", { class: "k" }, "verification"), verdict(t.verified))));
    } else {
      parts.push(el("div", { class: "text" }, t.text));
    }
    return el("div", { class: classes.join(" "), dataset: { kind: t.kind, role: t.role } }, parts);
  }

  function column(format, view) {
    const col = el("div", { class: "column", dataset: { format } }, el("h3", null, format.toUpperCase()));
    if (!view) {
      col.append(el("div", { class: "warn" }, "No " + format.toUpperCase() + " row for this id."));
      return col;
    }
    if (view.layout_error) {
      col.append(el("div", { class: "warn" }, "Shown message by message: " + view.layout_error));
    }
    if (view.system) {
      col.append(el("details", { class: "system" }, el("summary", null, "system prompt"), el("pre", null, view.system)));
    }
    col.append(el("div", { class: "turns" }, view.turns.map(turnNode)));
    return col;
  }

  function answerPanel(view) {
    // The first question's exchange: the only one whose reference answer the row keeps.
    const answer = (view.turns || []).find((t) => t.kind === "answer");
    if (!answer) return null;
    return el("div", { class: "answer-grid summary", id: "answer-summary" },
      el("div", { class: "cell final" }, el("div", { class: "k" }, "final answer"),
        el("div", { class: "text" }, answer.answer === null ? "(not readable from the row)" : answer.answer)),
      el("div", { class: "cell reference" }, el("div", { class: "k" }, "reference answer"),
        el("div", { class: "text" }, answer.reference === null ? "(not in the row)" : answer.reference)),
      el("div", { class: "cell" }, el("div", { class: "k" }, "verification"), verdict(answer.verified)));
  }

  function fact(k, v) {
    return el("div", { class: "fact" }, el("div", { class: "k" }, k), el("div", { class: "v" }, v));
  }

  function openLightbox(src) {
    $("#lightbox-img").setAttribute("src", src);
    $("#lightbox").hidden = false;
  }

  // ---------------------------------------------------------------- the URL: dialogue and filters
  function query() {
    const params = new URLSearchParams();
    for (const name of FILTER_NAMES) if (state.filters[name]) params.set(name, state.filters[name]);
    if (state.info && state.format !== state.info.format) params.set("format", state.format);
    if (state.offset > 0) params.set("offset", String(state.offset));
    const text = params.toString();
    return text ? "?" + text : "";
  }

  function permalink(id) {
    return "#" + (id ? encodeURIComponent(id).replace(/%2F/g, "/") : "") + query();
  }

  function navigate(id) {  // the view of `id` (null: the list) with the current filters, through the URL
    const target = permalink(id);
    if (location.hash === target || (target === "#" && !location.hash)) route();
    else location.hash = target;
  }

  function readUrl() {  // (dialogue id or "", filters) from location.hash, into the state and the form
    const hash = location.hash.slice(1);
    const at = hash.indexOf("?");
    const id = decodeURIComponent(at < 0 ? hash : hash.slice(0, at));
    const params = new URLSearchParams(at < 0 ? "" : hash.slice(at + 1));
    const filters = {};
    for (const name of FILTER_NAMES) if (params.get(name)) filters[name] = params.get(name);
    state.filters = filters;
    const format = params.get("format");
    state.format = format && state.info.formats.includes(format) ? format : state.info.format;
    state.offset = Math.max(0, parseInt(params.get("offset") || "0", 10) || 0);
    writeForm();
    formatSwitch();
    const active = Object.keys(filters).length;
    $("#filters-toggle").textContent = "Filters" + (active ? " (" + active + ")" : "");
    return id;
  }

  function writeForm() {
    const form = $("#filter-form");
    for (const name of FILTER_NAMES) {
      const field = form.elements[name];
      if (!field) continue;
      const value = state.filters[name] || "";
      if (field.type === "checkbox") field.checked = Boolean(value);
      else {
        if (field.tagName === "SELECT" && value && ![...field.options].some((o) => o.value === value)) {
          field.append(el("option", { value }, value));  // a value the facets have not brought yet
        }
        field.value = value;
      }
    }
  }

  function openDialogue(id) { navigate(id); }

  async function showDialogue(id) {
    state.view = "detail";
    document.body.dataset.view = "detail";
    state.detailId = id;
    const formats = state.detailFormats || [state.format];
    setStatus("loading…");
    const views = {};
    let error = null;
    for (const f of state.info.formats) {
      try { views[f] = await data.dialogue(f, id); } catch (err) { views[f] = null; if (err.status !== 404) error = err; }
    }
    if (state.detailId !== id) return;
    setStatus(error ? error.message : "");
    const main = views[formats[0]] || views[state.info.formats.find((f) => views[f])];
    const box = $("#detail-view");
    $("#list-view").hidden = true;
    box.hidden = false;
    if (!main) {
      box.replaceChildren(el("a", { class: "back", href: permalink(null) }, "← list"),
        el("div", { class: "warn", id: "not-found" }, "No dialogue with id " + id + "."));
      document.body.dataset.detailVersion = String(++renders.detail);
      return;
    }
    const switchBox = el("span", { class: "switch", id: "detail-switch" });
    const choices = state.info.formats.map((f) => [f.toUpperCase(), [f]]);
    if (state.info.formats.length > 1) choices.push(["side by side", state.info.formats.slice()]);
    for (const [label, fs] of choices) {
      switchBox.append(el("button", { type: "button", class: fs.join() === formats.join() ? "on" : "",
        dataset: { formats: fs.join() }, onclick: () => { state.detailFormats = fs; showDialogue(id); } }, label));
    }
    const teacher = main.teacher || {};
    box.replaceChildren(
      el("div", { class: "detail-head" },
        el("a", { class: "back", href: permalink(null), onclick: () => { state.detailFormats = null; } }, "← list"),
        el("h2", { id: "detail-id" }, main.id),
        el("a", { class: "permalink", href: permalink(main.id), title: "permalink" }, "#"),
        switchBox),
      el("div", { class: "chips", id: "detail-chips" }, chip(main.source), chip(main.subset), chip(main.split),
        groundedChip(main), reflectionChip(main)),
      el("div", { id: "detail-images" }, main.images.map((img, i) =>
        el("img", { src: img.thumb || img.full, alt: "image " + (i + 1), dataset: { full: img.full },
          onclick: () => openLightbox(img.full) }))),
      el("div", { class: "facts" },
        fact("teacher model", teacher.model || "–"),
        fact("tokens (prompt / completion)", (teacher.prompt_tokens ?? "–") + " / " + (teacher.completion_tokens ?? "–")),
        fact("cost", teacher.cost_usd === null || teacher.cost_usd === undefined ? "–" : "$" + Number(teacher.cost_usd).toFixed(4)),
        fact("latency", teacher.latency_s === null || teacher.latency_s === undefined ? "–" : fmtNum(teacher.latency_s, 2) + " s"),
        fact("reflection", main.reflection),
        fact("verified", main.verified === true ? "yes" : main.verified === false ? "no" : "not checked"),
        el("div", { class: "fact", id: "fact-grounded" }, el("div", { class: "k" }, "grounded"),
          el("div", { class: "v" }, (main.grounded === true ? "yes" : main.grounded === false ? "no" : "not recorded")
            + (main.evidence ? " (evidence: " + main.evidence + ")" : ""))),
        main.origin ? el("div", { class: "fact", id: "fact-origin" }, el("div", { class: "k" }, "reflection origin"),
          el("div", { class: "v" }, main.origin === "staged" ? "staged: the defect was written on purpose, then found"
            : main.origin === "check" ? "check: found in what the teacher wrote" : "not recorded")) : null,
        fact("judge score", fmtNum(main.judge_score, 2)),
        fact("operators available", (main.operators_available || []).join(", ") || "–"),
        fact("engine version", main.engine_version || "–"),
        main.reflection_reason ? el("div", { class: "fact wide" }, el("div", { class: "k" }, "reflection reason"),
          el("div", { class: "v", id: "reflection-reason" }, main.reflection_reason)) : null),
      answerPanel(main),
      el("div", { class: "columns" + (formats.length > 1 ? " both" : "") }, formats.map((f) => column(f, views[f]))));
    window.scrollTo(0, 0);
    document.body.dataset.detailVersion = String(++renders.detail);
  }

  // ---------------------------------------------------------------- routing and setup
  function route() {
    const id = readUrl();
    if (id) showDialogue(id);
    else loadList();
  }

  function fillSelect(select, values, keep) {
    const current = keep ? select.value : "";
    const first = select.options[0];
    select.replaceChildren(first, ...values.map((v) => el("option", { value: v }, v)));
    select.value = values.includes(current) ? current : "";
  }

  function formatSwitch() {
    const box = $("#format-switch");
    box.replaceChildren(...state.info.formats.map((f) => el("button", {
      type: "button", class: f === state.format ? "on" : "", dataset: { format: f },
      onclick: () => { state.format = f; state.offset = 0; navigate(state.view === "list" ? null : state.detailId); },
    }, f.toUpperCase())));
  }

  async function start() {
    try {
      state.info = await data.info();
    } catch (err) {
      setStatus("cannot load the dataset: " + err.message);
      return;
    }
    state.format = state.info.format;
    state.pageSize = state.info.page_size || 50;
    $("#dataset").textContent = state.info.dataset;
    formatSwitch();
    fillSelect($("#f-source"), state.info.sources);
    fillSelect($("#f-split"), state.info.splits);
    fillSelect($("#f-operator"), state.info.operators);
    fillSelect($("#f-reflection"), state.info.reflection_kinds);
    fillSelect($("#f-verified"), state.info.verified_values);
    fillSelect($("#f-grounded"), state.info.grounded_values || []);
    fillSelect($("#f-origin"), state.info.origin_values || []);
    if (!state.info.work_folder) $("#f-quarantined").disabled = true;
    $("#filter-form").addEventListener("submit", (e) => {
      e.preventDefault();
      state.filters = readFilters();
      state.offset = 0;
      document.body.dataset.filtersOpen = "";
      navigate(null);
    });
    $("#filter-form").addEventListener("reset", () => {
      setTimeout(() => { state.filters = {}; state.offset = 0; navigate(null); }, 0);
    });
    $("#lightbox").addEventListener("click", () => { $("#lightbox").hidden = true; });
    $("#filters-toggle").addEventListener("click", () => {  // narrow screens: the filters fold away
      const open = document.body.dataset.filtersOpen !== "1";
      document.body.dataset.filtersOpen = open ? "1" : "";
      $("#filters-toggle").setAttribute("aria-expanded", String(open));
    });
    window.addEventListener("hashchange", route);
    route();
    // Subsets, operators seen and the quarantine count need a pass over the data: after the first page.
    data.facets().then((facets) => {
      fillSelect($("#f-subset"), facets.subsets, true);
      fillSelect($("#f-operator"), facets.operators, true);
      fillSelect($("#f-evidence"), facets.evidence || [], true);
      $("#quarantined-count").textContent = "(" + facets.quarantined + ")";
      document.body.dataset.facets = "1";
    }).catch((err) => setStatus(err.message));
  }

  start();
})();
