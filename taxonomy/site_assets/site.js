// The bailclio static site: reads the JSON embedded in index.html and draws the tree, a node's
// page and the search results. Every text from the data is set with textContent; nothing from
// the data is ever parsed as HTML. The page makes no requests.
(function () {
  "use strict";

  var data = JSON.parse(document.getElementById("site-data").textContent);
  var byId = new Map();
  var kids = new Map();
  data.nodes.forEach(function (n) {
    byId.set(n.id, n);
    var key = n.parent === null ? "" : n.parent;
    if (!kids.has(key)) kids.set(key, []);
    kids.get(key).push(n);
  });
  kids.forEach(function (list) {
    list.sort(function (a, b) { return b.size - a.size || (a.id < b.id ? -1 : 1); });
  });

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function pct(x) { return x === null || x === undefined ? "—" : (100 * x).toFixed(1) + "%"; }
  function ci(iv) {
    if (!iv || iv.share === null) return "—";
    return pct(iv.share) + " (95% CI " + pct(iv.ci95[0]) + "–" + pct(iv.ci95[1]) + "; " +
      iv.count.toLocaleString() + " of " + iv.n.toLocaleString() + ")";
  }
  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); }
  function nodeLink(n) {
    var a = el("a", "node-link", n.name || n.id);
    a.href = "#node=" + encodeURIComponent(n.id);
    a.title = n.id;
    return a;
  }
  function badge(n) {
    if (n.unstable) return el("span", "badge unstable", "unstable");
    return null;
  }

  // ------------------------------------------------------------------ summary and tree
  var run = data.run;
  document.getElementById("summary").textContent =
    run.rows.toLocaleString() + " conversations · " + (kids.get("") || []).length + " top categories · " +
    data.nodes.filter(function (n) { return !kids.has(n.id); }).length + " leaves · " +
    (run.outliers || 0).toLocaleString() + " outliers · run created " + run.created +
    (run.curated ? " · curated" : "") + (run.status !== "complete" ? " · status: " + run.status : "");

  function treeItem(n) {
    var li = el("li");
    var row = el("div", "tree-row");
    row.appendChild(nodeLink(n));
    row.appendChild(el("span", "size", n.size.toLocaleString() + " (" + pct(n.share) + ")"));
    var b = badge(n);
    if (b) row.appendChild(b);
    var children = kids.get(n.id);
    if (children) {
      var det = el("details");
      det.dataset.node = n.id;
      var sum = el("summary");
      sum.appendChild(row);
      det.appendChild(sum);
      var ul = el("ul");
      children.forEach(function (c) { ul.appendChild(treeItem(c)); });
      det.appendChild(ul);
      li.appendChild(det);
    } else {
      li.appendChild(row);
    }
    return li;
  }
  var tree = document.getElementById("tree");
  var top = el("ul", "tree");
  (kids.get("") || []).forEach(function (n) { top.appendChild(treeItem(n)); });
  tree.appendChild(top);

  // ------------------------------------------------------------------ node page
  var detail = document.getElementById("detail");

  function row(table, label, value) {
    var tr = el("tr");
    tr.appendChild(el("th", null, label));
    tr.appendChild(el("td", null, value));
    table.appendChild(tr);
  }
  function textList(title, items, cls) {
    var box = el("div", cls);
    box.appendChild(el("h3", null, title + " (" + items.length + ")"));
    var ol = el("ol", "texts");
    items.forEach(function (t) {
      var li = el("li");
      li.appendChild(el("div", "text-id", t.id + (t.outlier ? " · outlier" : "")));
      li.appendChild(el("div", "text", t.text));
      ol.appendChild(li);
    });
    box.appendChild(ol);
    return box;
  }
  function modelTable(n) {
    var box = el("div", "models");
    box.appendChild(el("h3", null, "Share of each model's conversations in this node"));
    var table = el("table", "model-table");
    var head = el("tr");
    ["model", "in node", "share of the model's rows", "95% interval", ""].forEach(function (h) {
      head.appendChild(el("th", null, h));
    });
    table.appendChild(head);
    data.models.forEach(function (m) {
      var iv = n.models[m];
      var tr = el("tr");
      tr.appendChild(el("td", null, m));
      tr.appendChild(el("td", "num", iv.count.toLocaleString() + " of " + iv.n.toLocaleString()));
      tr.appendChild(el("td", "num", pct(iv.share)));
      tr.appendChild(el("td", "num", iv.ci95 ? pct(iv.ci95[0]) + "–" + pct(iv.ci95[1]) : "—"));
      var td = el("td");
      var meter = el("meter");
      meter.min = 0; meter.max = 1; meter.value = iv.share || 0;
      td.appendChild(meter);
      tr.appendChild(td);
      table.appendChild(tr);
    });
    box.appendChild(table);
    return box;
  }

  function showNode(id) {
    var n = byId.get(id);
    clear(detail);
    if (!n) {
      detail.appendChild(el("p", "hint", "Pick a node in the tree, or search."));
      return;
    }
    var crumbs = el("p", "crumbs");
    var chain = [];
    for (var c = n; c; c = c.parent === null ? null : byId.get(c.parent)) chain.unshift(c);
    chain.forEach(function (a, i) {
      if (i) crumbs.appendChild(el("span", "sep", " › "));
      crumbs.appendChild(nodeLink(a));
    });
    detail.appendChild(crumbs);
    var h = el("h2", "node-name", n.name);
    var b = badge(n);
    if (b) h.appendChild(b);
    detail.appendChild(h);
    detail.appendChild(el("p", "description", n.description || "(no description)"));
    var table = el("table", "facts");
    row(table, "Conversations", n.size.toLocaleString());
    row(table, "Share of all", pct(n.share));
    row(table, "Share of parent", pct(n.share_of_parent));
    row(table, "Level", (run.levels[n.level] || n.level) + " · id " + n.id);
    if (data.has_stability) {
      row(table, "Stability", n.stability === null ? "—" :
        n.stability.toFixed(2) + (n.unstable ? " (unstable: below " + data.unstable_below + ")" : ""));
    }
    if (data.has_refusal) row(table, "No-refusal share", ci(n.no_refusal));
    detail.appendChild(table);
    if (n.keywords && n.keywords.length) detail.appendChild(el("p", "keywords", "Keywords: " + n.keywords.join(", ")));
    var children = kids.get(n.id);
    if (children) {
      detail.appendChild(el("h3", null, "Children (" + children.length + ")"));
      var ul = el("ul", "children");
      children.forEach(function (k) {
        var li = el("li");
        li.appendChild(nodeLink(k));
        li.appendChild(el("span", "size", " " + k.size.toLocaleString() + " (" + pct(k.share_of_parent) + " of parent)"));
        var kb = badge(k);
        if (kb) li.appendChild(kb);
        ul.appendChild(li);
      });
      detail.appendChild(ul);
    }
    if (data.models.length && n.models) detail.appendChild(modelTable(n));
    if (n.exemplars.length) detail.appendChild(textList("Exemplars", n.exemplars, "exemplars"));
    if (n.members.length) detail.appendChild(textList("Some members", n.members, "members"));
    var open = document.querySelector('details[data-node="' + CSS.escape(n.id) + '"]');
    chain.forEach(function (a) {
      var d = document.querySelector('details[data-node="' + CSS.escape(a.id) + '"]');
      if (d) d.open = true;
    });
    if (open) open.open = true;
    document.querySelectorAll(".node-link.current").forEach(function (e) { e.classList.remove("current"); });
    tree.querySelectorAll(".node-link").forEach(function (e) {
      if (e.title === n.id) e.classList.add("current");
    });
  }

  // ------------------------------------------------------------------ search
  function matches(text, q) { return typeof text === "string" && text.toLowerCase().indexOf(q) !== -1; }

  function search(query) {
    var q = query.trim().toLowerCase();
    clear(detail);
    var hits = [];
    var texts = [];
    var seen = new Set();
    data.nodes.forEach(function (n) {
      if (matches(n.name, q) || matches(n.description, q) || matches(n.id.toLowerCase(), q) ||
          n.keywords.some(function (k) { return matches(k, q); })) hits.push(n);
      n.exemplars.concat(n.members).forEach(function (t) {
        if (!seen.has(t.id + "|" + n.id) && matches(t.text, q)) {
          seen.add(t.id + "|" + n.id);
          if (!kids.has(n.id)) texts.push({ node: n, text: t });
        }
      });
    });
    detail.appendChild(el("h2", null, "Search: " + query.trim()));
    detail.appendChild(el("h3", "result-count", "Nodes (" + hits.length + ")"));
    var ul = el("ul", "results");
    hits.forEach(function (n) {
      var li = el("li");
      li.appendChild(nodeLink(n));
      li.appendChild(el("span", "size", " " + n.size.toLocaleString() + " · " + (run.levels[n.level] || n.level)));
      ul.appendChild(li);
    });
    detail.appendChild(ul);
    detail.appendChild(el("h3", "text-count", "Texts shown on leaf pages (" + texts.length + ")"));
    var ol = el("ol", "texts");
    texts.slice(0, 200).forEach(function (h) {
      var li = el("li");
      var where = el("div", "text-id", h.text.id + " in ");
      where.appendChild(nodeLink(h.node));
      li.appendChild(where);
      li.appendChild(el("div", "text", h.text.text));
      ol.appendChild(li);
    });
    detail.appendChild(ol);
  }

  // ------------------------------------------------------------------ routing
  var box = document.getElementById("search");
  function route() {
    var m = /^#node=(.*)$/.exec(location.hash);
    if (m) {
      var id = null;
      try { id = decodeURIComponent(m[1]); } catch (e) { id = null; }  // a malformed address
      showNode(id);
    } else if (box.value.trim()) {
      search(box.value);
    } else {
      showNode(null);
    }
  }
  var timer = null;
  box.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () {
      if (box.value.trim()) search(box.value);
      else route();
    }, 150);
  });
  window.addEventListener("hashchange", route);
  // A click on the link of the node already in the address shows it again (no hashchange).
  document.addEventListener("click", function (ev) {
    var a = ev.target.closest ? ev.target.closest("a.node-link") : null;
    if (a && a.getAttribute("href") === location.hash) {
      ev.preventDefault();
      route();
    }
  });
  route();
})();
