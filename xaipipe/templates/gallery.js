// The gallery's rows, filters, sorting, pages and enlarged view. No framework: the data block
// (#gallery-data, written by xaipipe/gallery.py) is parsed once; each change rebuilds only the
// current page's rows.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("gallery-data").textContent);
  var samples = data.samples, names = data.class_names, methods = data.methods;
  var pageSize = data.page_size || 50;
  var VIEWS = data.spatial_dims === 3 ? ["axial", "coronal", "sagittal"] : [];
  var $ = function (id) { return document.getElementById(id); };
  var state = { page: 0, order: [] };
  // A study of several models: columns "model / variant" (data.columns), each sample's prediction per model.
  var models = data.models || null;

  function isCorrect(s) { return !s.skipped && s.label >= 0 && s.predicted === s.label; }
  function isMisclassified(s) { return !s.skipped && s.label >= 0 && s.predicted !== s.label; }
  function confidence(s) {
    var p = s.probabilities && s.predicted >= 0 ? s.probabilities[s.predicted] : null;
    return typeof p === "number" ? p : null;
  }
  function className(c) { return c >= 0 && c < names.length ? names[c] : (c === -1 ? "unknown" : String(c)); }
  function src(path) { return path.split("/").map(encodeURIComponent).join("/"); }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var k in attrs || {}) node.setAttribute(k, attrs[k]);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function addOptions(select, options) {
    options.forEach(function (o) { select.appendChild(el("option", { value: o[0] }, o[1])); });
  }

  // The rows show the prediction and the picture (its input) of the chosen model (with all models shown: the first
  // one's).
  function predictionsModel() {
    var m = models ? $("filter-model").value : null;
    return models ? (m === "all" ? models[0] : m) : null;
  }
  function usePredictions() {
    var model = predictionsModel();
    samples.forEach(function (s) {
      var p = s.predictions[model] || { predicted: -1, probabilities: null, skipped: true };
      s.predicted = p.predicted; s.probabilities = p.probabilities; s.skipped = p.skipped;
      if (!s.firstImage) s.firstImage = s.image;
      s.image = p.image || s.firstImage;
    });
  }

  function setupControls() {
    var classes = names.map(function (n, i) { return [String(i), n]; });
    addOptions($("filter-class"), [["all", "all"]].concat(classes));
    addOptions($("filter-label"), [["all", "all"]].concat(classes, [["-1", "unknown"]]));
    var choices = models ? data.variants : methods;
    addOptions($("filter-method"), [["all", "all"]].concat(choices.map(function (m) { return [m, m]; })));
    if (models) {
      addOptions($("filter-model"), [["all", "all, side by side"]].concat(models.map(function (m) { return [m, m]; })));
      $("model-control").hidden = false;
      $("filter-model").addEventListener("change", function () {
        state.page = 0; usePredictions(); totals(); update();
      });
    }
    addOptions($("sort"), [["id", "id"], ["confidence", "probability of the predicted class"]].concat(
      (data.metrics || []).map(function (m) {
        return ["metric:" + m, m + " (first shown method's map; the predicted class's of several)"];
      })));
    ["filter-class", "filter-label", "filter-correct", "filter-method", "sort", "order"].forEach(function (id) {
      $(id).addEventListener("change", function () { state.page = 0; update(); });
    });
    $("prev").addEventListener("click", function () { state.page--; render(); });
    $("next").addEventListener("click", function () { state.page++; render(); });
    totals();
  }

  // The counts of the predictions shown (a study's: the chosen model's).
  function totals() {
    var labelled = samples.filter(function (s) { return s.label >= 0 && !s.skipped; }).length;
    var correct = samples.filter(isCorrect).length;
    var skipped = samples.filter(function (s) { return s.skipped; }).length;
    $("totals").textContent = samples.length + " samples" + (models ? " (predictions of " + predictionsModel() + ")" : "") +
      ": " + correct + " correct, " + (labelled - correct) + " misclassified, " +
      (samples.length - labelled - skipped) + " without a label, " + skipped + " skipped; " +
      (models ? "models: " + models.join(", ") + "; variants: " + data.variants.join(", ")
        : "methods: " + methods.join(", "));
  }

  function shownMethods() {
    var m = $("filter-method").value;
    if (!models) return m === "all" ? methods : [m];
    var model = $("filter-model").value;
    return methods.filter(function (c) {
      var column = data.columns[c];
      return (model === "all" || column.model === model) && (m === "all" || column.variant === m);
    });
  }

  // A sample's value of a metric for a method: of its predicted class's map (targets: all gives one per class),
  // else of its first map.
  function metricOf(s, method, metric) {
    var maps = s.maps[method] || [], map = maps[0];
    maps.forEach(function (m) { if (m["class"] === s.predicted) map = m; });
    var v = map && map.metrics ? map.metrics[metric] : undefined;
    return typeof v === "number" ? v : null;
  }

  // The matching samples' indices, sorted; missing values (skipped samples) sort last either way.
  function update() {
    var cls = $("filter-class").value, lab = $("filter-label").value, cor = $("filter-correct").value;
    var order = [];
    for (var i = 0; i < samples.length; i++) {
      var s = samples[i];
      if (cls !== "all" && s.predicted !== +cls) continue;
      if (lab !== "all" && s.label !== +lab) continue;
      if (cor === "correct" && !isCorrect(s)) continue;
      if (cor === "misclassified" && !isMisclassified(s)) continue;
      order.push(i);
    }
    var sort = $("sort").value, sign = $("order").value === "desc" ? -1 : 1, key;
    if (sort === "confidence") key = confidence;
    else if (sort.indexOf("metric:") === 0) {
      var metric = sort.slice(7), method = shownMethods()[0];
      key = function (s) { return metricOf(s, method, metric); };
    }
    if (key) {
      var keys = {};
      order.forEach(function (i) { keys[i] = key(samples[i]); });
      order.sort(function (a, b) {
        var x = keys[a], y = keys[b];
        if (x === null || y === null) return x === y ? a - b : (x === null ? 1 : -1);
        return x === y ? a - b : sign * (x - y);
      });
    } else {
      order.sort(function (a, b) {
        var x = samples[a].id, y = samples[b].id;
        return x === y ? a - b : sign * (x < y ? -1 : 1);
      });
    }
    state.order = order;
    render();
  }

  function views(paths, cls, attrs) {
    var cell = el("td", { "class": "views" });
    paths.forEach(function (p, v) {
      var a = { src: src(p), alt: attrs.alt + (VIEWS[v] ? " " + VIEWS[v] : ""), "class": cls };
      for (var k in attrs) if (k !== "alt") a[k] = attrs[k];
      if (VIEWS[v]) a["data-view"] = VIEWS[v];
      cell.appendChild(el("img", a));
    });
    return cell;
  }

  function probabilities(s) {
    var cell = el("td", { "class": "probs" });
    if (!s.probabilities) { cell.textContent = "–"; return cell; }
    s.probabilities.forEach(function (p, c) {
      var row = el("div", { "class": "prob" + (c === s.predicted ? " top" : ""), "data-class": c });
      row.appendChild(el("span", { "class": "name" }, className(c)));
      var ok = typeof p === "number", bar = el("span", { "class": "bar" }), fill = el("span");
      fill.style.width = ok ? (100 * Math.max(0, Math.min(1, p))).toFixed(1) + "%" : "0";
      bar.appendChild(fill);
      row.appendChild(bar);
      row.appendChild(el("span", { "class": "value" }, ok ? p.toFixed(3) : "–"));
      cell.appendChild(row);
    });
    return cell;
  }

  function row(i, shown) {
    var s = samples[i];
    var correct = isCorrect(s), status = s.skipped ? "skipped" : s.label < 0 ? "unlabelled" :
      (correct ? "correct" : "misclassified");
    var tr = el("tr", { "class": "sample " + status, "data-id": s.id, "data-correct": String(correct),
      "data-index": i });
    tr.appendChild(el("td", { "class": "id" }, s.id));
    tr.appendChild(el("td", { "class": "label" }, className(s.label)));
    tr.appendChild(el("td", { "class": "predicted" }, s.skipped ? "skipped" : className(s.predicted)));
    tr.appendChild(probabilities(s));
    tr.appendChild(el("td", { "class": "mark", title: status },
      { correct: "✓", misclassified: "✗", skipped: "skipped", unlabelled: "?" }[status]));
    tr.appendChild(views(s.image, "image-view", { alt: s.id }));
    shown.forEach(function (m) {
      var cell = el("td", { "class": "views method", "data-method": m });
      (s.maps[m] || []).forEach(function (map, k) {
        var c = views(map.views, "map", { alt: m + " " + className(map["class"]), "data-method": m,
          "data-class": map["class"], "data-map": k });
        while (c.firstChild) cell.appendChild(c.firstChild);
      });
      if (!cell.firstChild) cell.textContent = "–";
      tr.appendChild(cell);
    });
    return tr;
  }

  function render() {
    var order = state.order, pages = Math.max(1, Math.ceil(order.length / pageSize));
    state.page = Math.max(0, Math.min(state.page, pages - 1));
    var shown = shownMethods();
    var head = el("tr");
    var whose = models ? " (" + predictionsModel() + ")" : "";
    var columns = ["id", "label", "predicted" + whose, "probabilities" + whose, "", "image" + whose];
    columns.concat(shown).forEach(function (h) {
      head.appendChild(el("th", {}, h));
    });
    var thead = document.querySelector("#gallery thead");
    thead.replaceChildren(head);
    var body = document.createDocumentFragment();
    order.slice(state.page * pageSize, (state.page + 1) * pageSize).forEach(function (i) {
      body.appendChild(row(i, shown));
    });
    document.querySelector("#gallery tbody").replaceChildren(body);
    $("count").textContent = order.length + (order.length === 1 ? " sample" : " samples");
    $("page").textContent = "page " + (state.page + 1) + " of " + pages;
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages - 1;
  }

  // The enlarged view of one map: all its views, the colour scale, its method, class and metrics.
  function openModal(img) {
    var s = samples[+img.closest("tr.sample").getAttribute("data-index")];
    var method = img.getAttribute("data-method"), map = s.maps[method][+img.getAttribute("data-map")];
    $("modal-title").textContent = s.id + " — " + method + ", class " + className(map["class"]) +
      (map.peak ? ", peak at map " + (VIEWS.length ? "voxel (z, y, x) [" : "pixel (row, column) [") +
        map.peak.join(", ") + "]" : ", a blank map: no relevance anywhere, the overlay is the image alone");
    var box = $("modal-views");
    box.replaceChildren();
    box.className = VIEWS.length ? "volume" : "";
    map.views.forEach(function (p, v) {
      var a = { src: src(p), "class": "modal-view", alt: method + " " + className(map["class"]) };
      if (VIEWS[v]) a["data-view"] = VIEWS[v];
      box.appendChild(el("img", a));
    });
    // signed maps (normalize: signed) run from -1 (blue) through 0 to 1 (red)
    var signed = (data.signed || []).indexOf(method) >= 0;
    $("modal-colormap").setAttribute("src", signed ? data.colormap_signed : data.colormap);
    $("modal-colormap").setAttribute("alt", "colour scale from " + (signed ? "-1" : "0") + " to 1");
    $("scale-low").textContent = signed ? "-1" : "0";
    var table = $("modal-metrics");
    table.replaceChildren();
    Object.keys(map.metrics || {}).forEach(function (k) {
      var tr = el("tr");
      tr.appendChild(el("th", {}, k));
      var v = map.metrics[k];
      tr.appendChild(el("td", {}, typeof v === "number" ? v.toFixed(4) : v === null ? "–" : String(v)));
      table.appendChild(tr);
    });
    $("modal").hidden = false;
  }
  function closeModal() { $("modal").hidden = true; }

  document.querySelector("#gallery tbody").addEventListener("click", function (e) {
    if (e.target.classList && e.target.classList.contains("map")) openModal(e.target);
  });
  $("modal").addEventListener("click", closeModal);
  document.addEventListener("keydown", function (e) { if (e.key === "Escape") closeModal(); });

  if (VIEWS.length) $("gallery").className = "volume";
  setupControls();
  if (models) { usePredictions(); totals(); }
  update();
  window.galleryReady = performance.now();
})();
