"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const EPISODES = DATA.episodes, S = DATA.strings, IMAGES = DATA.images;
  EPISODES.forEach(function (e, i) { e.index = i + 1; });
  const $ = function (id) { return document.getElementById(id); };
  const state = { page: 0, matching: EPISODES };

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);  // never innerHTML: model text is untrusted
    return node;
  }
  function fmtBox(b) { return b ? "[" + b.map(function (v) { return Math.round(v * 10) / 10; }).join(", ") + "]" : "–"; }
  function uniq(key) { return Array.from(new Set(EPISODES.map(function (e) { return e[key]; }))).sort(); }
  function fillSelect(id, values) {
    const select = $(id);
    values.forEach(function (v) { const o = el("option", null, v); o.value = v; select.appendChild(o); });
  }
  function picture(key, alt) {
    const img = el("img");
    img.alt = alt;
    img.decoding = "async";
    img.src = IMAGES[key];  // data URIs are attached only for the page shown, so only it is decoded
    img.addEventListener("click", function () { $("zoom").querySelector("img").src = img.src; $("zoom").style.display = "flex"; });
    return img;
  }

  function card(e) {
    const art = el("article", "episode " + (e.correct === true ? "correct" : e.correct === false ? "incorrect" : "running"));
    art.dataset.id = e.id;
    const head = el("div", "head");
    head.appendChild(el("span", "num", "#" + e.index));
    head.appendChild(el("span", null, e.sample));
    head.appendChild(el("span", e.correct ? "tag ok" : e.correct === false ? "tag bad" : "tag", e.correct ? "correct" : e.correct === false ? "incorrect" : "not finished"));
    head.appendChild(el("span", "tag", "reward " + e.reward));
    head.appendChild(el("span", "tag" + (e.box === "invalid" ? " warn" : ""), e.box === "none" ? "no box" : "box " + e.box));
    head.appendChild(el("span", "tag", e.category));
    head.appendChild(el("span", "tag", e.split + (e.step === null ? "" : " · step " + e.step)));
    head.appendChild(el("span", "muted", e.protocol + " · boxes in " + e.frame));
    art.appendChild(head);

    const body = el("div", "body");
    const orig = el("figure", "orig");
    orig.appendChild(picture(e.orig, "original with boxes"));
    orig.appendChild(el("figcaption", null, "original " + e.osize[0] + "×" + e.osize[1] + " with the predicted and annotated boxes"));
    body.appendChild(orig);
    const crops = el("div", "crops");
    e.crops.forEach(function (c) {
      const fig = el("figure", "crop");
      fig.appendChild(picture(c.img, "crop of turn " + c.turn));
      fig.appendChild(el("figcaption", null, "turn " + c.turn + " crop " + fmtBox(c.region) + " shown at " + c.size[0] + "×" + c.size[1]));
      crops.appendChild(fig);
    });
    if (!e.crops.length) crops.appendChild(el("span", "ph", "no crop"));
    body.appendChild(crops);

    const qa = el("div", "qa");
    qa.appendChild(el("div", "q", S[e.question]));
    if (e.choices.length) {
      const ol = el("ol");
      e.choices.forEach(function (c, i) {
        const letter = String.fromCharCode(65 + i);
        const li = el("li", (letter === e.gold ? "gold " : "") + (letter === e.pred ? "picked" : ""), S[c]);
        ol.appendChild(li);
      });
      qa.appendChild(ol);
    }
    qa.appendChild(el("div", null, "gold " + e.gold + " · parsed answer " + (e.pred === null ? "none" : e.pred)));
    if (e.groundings.length) {
      const t = el("table", "g");
      const hr = el("tr");
      ["turn", "box (view px)", "frame", "crop (original px)", "valid"].forEach(function (h) { hr.appendChild(el("th", null, h)); });
      t.appendChild(hr);
      e.groundings.forEach(function (g) {
        const tr = el("tr");
        [g.turn, fmtBox(g.view_box), g.frame[0] + "×" + g.frame[1], fmtBox(g.crop_box), g.valid ? "yes" : "no: " + g.error].forEach(function (v) { tr.appendChild(el("td", null, v)); });
        t.appendChild(tr);
      });
      qa.appendChild(t);
    }
    body.appendChild(qa);
    art.appendChild(body);

    const details = el("details");
    details.appendChild(el("summary", null, "transcript (" + e.messages.length + " messages)"));
    details.addEventListener("toggle", function () {  // built on first open: most transcripts are never read
      if (!details.open || details.dataset.built) return;
      details.dataset.built = "1";
      e.messages.forEach(function (m) {
        const div = el("div", "msg " + m.role);
        div.appendChild(el("div", "role", m.role));
        m.parts.forEach(function (p) {
          if (typeof p === "number") { div.appendChild(el("pre", null, S[p])); return; }
          if (p.img) div.appendChild(picture(p.img, p.kind));
          else div.appendChild(el("span", "ph", "<image " + p.size[0] + "×" + p.size[1] + " " + p.kind + (p.kind === "original" ? ": the whole image, downsized" : "") + ">"));
        });
        details.appendChild(div);
      });
    });
    art.appendChild(details);
    return art;
  }

  function matches(e, f) {
    if (f.correct === "correct" && e.correct !== true) return false;
    if (f.correct === "incorrect" && e.correct === true) return false;
    if (f.box !== "all" && e.box !== f.box) return false;
    if (f.category !== "all" && e.category !== f.category) return false;
    if (f.split !== "all" && e.split !== f.split) return false;
    if (f.text) {
      if (e.haystack === undefined) {
        e.haystack = [e.sample, S[e.question]].concat(e.messages.filter(function (m) { return m.role === "assistant"; })
          .map(function (m) { return m.parts.map(function (p) { return typeof p === "number" ? S[p] : ""; }).join(""); })).join("\n").toLowerCase();
      }
      if (e.haystack.indexOf(f.text) < 0) return false;
    }
    return true;
  }

  function applyFilters() {
    const f = { correct: $("f-correct").value, box: $("f-box").value, category: $("f-category").value, split: $("f-split").value, text: $("f-text").value.trim().toLowerCase() };
    state.matching = EPISODES.filter(function (e) { return matches(e, f); });
    state.page = 0;
    render();
  }

  function pages() { return Math.max(1, Math.ceil(state.matching.length / DATA.pageSize)); }

  function render() {
    const list = $("episodes");
    list.textContent = "";
    const start = state.page * DATA.pageSize;
    const shown = state.matching.slice(start, start + DATA.pageSize);
    const fragment = document.createDocumentFragment();
    shown.forEach(function (e) { fragment.appendChild(card(e)); });
    list.appendChild(fragment);
    const count = $("count");
    count.textContent = state.matching.length + " of " + EPISODES.length + " episodes";
    count.dataset.matching = state.matching.length;
    count.dataset.total = EPISODES.length;
    $("page-info").textContent = "page " + (state.page + 1) + " / " + pages();
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages() - 1;
    $("empty").style.display = state.matching.length ? "none" : "block";
    $("empty").textContent = EPISODES.length ? "No episode matches these filters." : "No episodes in this run (no episodes/ store next to it).";
    document.body.dataset.page = state.page + 1;
    document.body.dataset.pages = pages();
  }

  fillSelect("f-category", uniq("category"));
  fillSelect("f-split", uniq("split"));
  $("lg-pred").style.background = DATA.colors.predicted;
  $("lg-target").style.background = DATA.colors.target;
  $("lg-invalid").style.background = DATA.colors.invalid;
  ["f-correct", "f-box", "f-category", "f-split"].forEach(function (id) { $(id).addEventListener("change", applyFilters); });
  let typing = null;
  $("f-text").addEventListener("input", function () { clearTimeout(typing); typing = setTimeout(applyFilters, 150); });
  $("prev").addEventListener("click", function () { if (state.page > 0) { state.page--; render(); window.scrollTo(0, $("gallery").offsetTop); } });
  $("next").addEventListener("click", function () { if (state.page < pages() - 1) { state.page++; render(); window.scrollTo(0, $("gallery").offsetTop); } });
  $("zoom").addEventListener("click", function () { $("zoom").style.display = "none"; });
  document.addEventListener("keydown", function (ev) { if (ev.key === "Escape") $("zoom").style.display = "none"; });
  render();
  document.body.dataset.ready = "1";
  if (window.performance && performance.mark) performance.mark("mgpo-first-page");
})();
