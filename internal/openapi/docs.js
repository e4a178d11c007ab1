// wagate API docs: renders /openapi.json in the page, with no library and
// no request to any other host. Every piece of the spec is inserted as text
// (never as HTML), so the page stays safe whatever the spec contains.
(function () {
  "use strict";

  var METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
  var spec = null;

  function el(tag, attrs) {
    var e = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === "text") e.textContent = attrs[k];
        else if (k === "class") e.className = attrs[k];
        else e.setAttribute(k, attrs[k]);
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined || c === false) continue;
      e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return e;
  }

  // Descriptions are CommonMark in OpenAPI; paragraphs and `code` are
  // enough here, the rest shows as plain text.
  function prose(text) {
    var box = el("div", { class: "md" });
    if (!text) return box;
    String(text).split(/\n\s*\n/).forEach(function (para) {
      var p = el("p");
      para.split(/(`[^`]*`)/).forEach(function (part) {
        if (part.length > 1 && part[0] === "`" && part[part.length - 1] === "`") p.appendChild(el("code", { text: part.slice(1, -1) }));
        else p.appendChild(document.createTextNode(part));
      });
      box.appendChild(p);
    });
    return box;
  }

  // resolve follows a local $ref ("#/components/schemas/X").
  function resolve(obj) {
    var seen = 0;
    while (obj && typeof obj === "object" && typeof obj.$ref === "string" && seen++ < 20) {
      var ref = obj.$ref;
      if (ref.indexOf("#/") !== 0) return obj;
      var cur = spec;
      ref.slice(2).split("/").forEach(function (k) {
        k = k.replace(/~1/g, "/").replace(/~0/g, "~");
        cur = cur ? cur[k] : undefined;
      });
      if (!cur) return obj;
      obj = cur;
    }
    return obj;
  }

  function refName(obj) {
    return obj && typeof obj.$ref === "string" ? obj.$ref.split("/").pop() : "";
  }

  function typeOf(s) {
    if (!s) return "any";
    var t = s.type;
    if (Array.isArray(t)) t = t.join(" | ");
    if (!t && s.properties) t = "object";
    if (!t && s.oneOf) t = "oneOf";
    if (!t && s.anyOf) t = "anyOf";
    if (!t && s.allOf) t = "allOf";
    if (!t && s.const !== undefined) t = "const";
    t = t || "any";
    if ((t === "array" || (Array.isArray(s.type) && s.type.indexOf("array") >= 0)) && s.items) {
      var it = s.items;
      t = t.replace("array", "array of " + (refName(it) || typeOf(resolve(it))));
    }
    if (s.format) t += " (" + s.format + ")";
    return t;
  }

  // schemaTree renders a schema as a nested list, to a bounded depth so
  // that recursive schemas terminate.
  function schemaTree(schema, depth, stack) {
    stack = stack || [];
    var name = refName(schema);
    var s = resolve(schema) || {};
    var box = el("div", { class: "schema" });
    var head = el("div", null, el("span", { class: "type", text: (name ? name + ": " : "") + typeOf(s) }));
    if (s.description && depth === 0) head.appendChild(el("div", { class: "desc", text: s.description }));
    box.appendChild(head);
    if (depth > 6 || (name && stack.indexOf(name) >= 0)) return box;
    if (name) stack = stack.concat([name]);
    var list = el("ul");
    var req = s.required || [];
    if (s.properties) {
      Object.keys(s.properties).forEach(function (p) {
        var ps = s.properties[p];
        var rs = resolve(ps) || {};
        var li = el("li", null, el("span", { class: "prop", text: p }), " ",
          el("span", { class: "type", text: refName(ps) || typeOf(rs) }),
          req.indexOf(p) >= 0 ? el("span", { class: "req", text: " required" }) : null);
        var notes = [];
        if (rs.description) notes.push(String(rs.description).trim().replace(/\.$/, ""));
        if (rs.enum) notes.push("one of: " + rs.enum.map(String).join(", "));
        if (rs.default !== undefined) notes.push("default: " + JSON.stringify(rs.default));
        if (rs.minimum !== undefined || rs.maximum !== undefined) notes.push("range: " + (rs.minimum !== undefined ? rs.minimum : "") + ".." + (rs.maximum !== undefined ? rs.maximum : ""));
        if (rs.maxLength !== undefined) notes.push("max length: " + rs.maxLength);
        if (notes.length) li.appendChild(el("span", { class: "desc", text: " — " + notes.join("; ") }));
        if (rs.properties || (rs.items && (resolve(rs.items) || {}).properties) || rs.oneOf || rs.anyOf || rs.allOf) {
          li.appendChild(schemaTree(rs.items && !rs.properties ? rs.items : ps, depth + 1, stack));
        }
        list.appendChild(li);
      });
    }
    if (s.additionalProperties && typeof s.additionalProperties === "object") {
      list.appendChild(el("li", null, el("span", { class: "prop", text: "{name}" }), " ",
        el("span", { class: "type", text: typeOf(resolve(s.additionalProperties)) })));
    }
    if (s.items && !s.properties && depth === 0) list.appendChild(el("li", null, schemaTree(s.items, depth + 1, stack)));
    ["allOf", "oneOf", "anyOf"].forEach(function (k) {
      (s[k] || []).forEach(function (sub, i) {
        list.appendChild(el("li", null, el("span", { class: "desc", text: k + " #" + (i + 1) }), schemaTree(sub, depth + 1, stack)));
      });
    });
    if (s.enum && depth === 0) list.appendChild(el("li", { class: "desc", text: "one of: " + s.enum.map(String).join(", ") }));
    if (list.childNodes.length) box.appendChild(list);
    return box;
  }

  // sample builds an example value from a schema when the spec gives none.
  function sample(schema, depth) {
    var s = resolve(schema) || {};
    if (depth > 5) return null;
    if (s.example !== undefined) return s.example;
    if (s.examples && s.examples.length) return s.examples[0];
    if (s.const !== undefined) return s.const;
    if (s.default !== undefined) return s.default;
    if (s.enum) return s.enum[0];
    if (s.allOf) {
      var out = {};
      s.allOf.forEach(function (x) { var v = sample(x, depth + 1); if (v && typeof v === "object") Object.assign(out, v); });
      return out;
    }
    if (s.oneOf || s.anyOf) return sample((s.oneOf || s.anyOf)[0], depth + 1);
    var t = Array.isArray(s.type) ? s.type.filter(function (x) { return x !== "null"; })[0] : s.type;
    if (!t && s.properties) t = "object";
    switch (t) {
      case "object":
        var o = {};
        Object.keys(s.properties || {}).forEach(function (k) { o[k] = sample(s.properties[k], depth + 1); });
        return o;
      case "array": return s.items ? [sample(s.items, depth + 1)] : [];
      case "integer": case "number": return 0;
      case "boolean": return true;
      case "string":
        if (s.format === "date-time") return "2025-11-05T14:23:00Z";
        if (s.format === "uuid") return "0193a5e2-7c4f-7d0a-9b1e-2f4c6a8e0b13";
        if (s.format === "uri") return "<url>";
        return "string";
    }
    return null;
  }

  function examplesOf(media) {
    var out = [];
    if (!media) return out;
    if (media.example !== undefined) out.push(["example", media.example]);
    Object.keys(media.examples || {}).forEach(function (k) {
      var ex = resolve(media.examples[k]);
      if (ex && ex.value !== undefined) out.push([ex.summary || k, ex.value]);
    });
    if (!out.length && media.schema) out.push(["generated from the schema", sample(media.schema, 0)]);
    return out;
  }

  function pretty(v) {
    return typeof v === "string" ? v : JSON.stringify(v, null, 2);
  }

  function content(c) {
    var box = el("div");
    Object.keys(c || {}).forEach(function (mt) {
      var media = c[mt];
      box.appendChild(el("div", { class: "desc", text: mt }));
      if (media.schema) box.appendChild(schemaTree(media.schema, 0));
      examplesOf(media).forEach(function (ex) {
        box.appendChild(el("div", { class: "desc", text: "Example: " + ex[0] }));
        box.appendChild(el("pre", { text: pretty(ex[1]) }));
      });
    });
    return box;
  }

  function parameters(list) {
    if (!list || !list.length) return null;
    var tb = el("tbody");
    list.forEach(function (p) {
      p = resolve(p);
      var s = resolve(p.schema) || {};
      tb.appendChild(el("tr", null,
        el("td", null, el("code", { text: p.name }), p.required ? el("span", { class: "req", text: " required" }) : null),
        el("td", { text: p.in }),
        el("td", { text: typeOf(s) + (s.enum ? " (" + s.enum.join(", ") + ")" : "") + (s.default !== undefined ? " = " + s.default : "") }),
        el("td", { class: "desc", text: p.description || "" })));
    });
    return el("div", null, el("h4", { text: "Parameters" }),
      el("table", null, el("thead", null, el("tr", null, el("th", { text: "name" }), el("th", { text: "in" }), el("th", { text: "type" }), el("th", { text: "description" }))), tb));
  }

  function authOf(op) {
    var sec = op.security !== undefined ? op.security : spec.security;
    if (!sec || !sec.length) return "no auth";
    return sec.map(function (req) { return Object.keys(req).join(" + ") || "no auth"; }).join(" or ");
  }

  function operation(method, path, op, pathItem, id) {
    var params = (pathItem.parameters || []).concat(op.parameters || []);
    var body = el("div", { class: "op-body" });
    if (op.description) body.appendChild(prose(op.description));
    var pt = parameters(params);
    if (pt) body.appendChild(pt);
    if (op.requestBody) {
      var rb = resolve(op.requestBody);
      body.appendChild(el("h4", { text: "Request body" + (rb.required ? "" : " (optional)") }));
      if (rb.description) body.appendChild(prose(rb.description));
      body.appendChild(content(rb.content));
    }
    if (op.responses) {
      body.appendChild(el("h4", { text: "Responses" }));
      Object.keys(op.responses).forEach(function (code) {
        var r = resolve(op.responses[code]);
        var cls = "status s" + String(code)[0];
        body.appendChild(el("div", null, el("span", { class: cls, text: code }), " ", el("span", { class: "desc", text: r.description || "" })));
        if (r.content) body.appendChild(content(r.content));
      });
    }
    var d = el("details", { class: "op", id: id },
      el("summary", null,
        el("span", { class: "method m-" + method, text: method.toUpperCase() }),
        el("span", { class: "path", text: path }),
        el("span", { class: "summary", text: op.summary || "" }),
        el("span", { class: "auth", text: authOf(op) })),
      body);
    d.setAttribute("data-search", [method, path, op.summary || "", (op.tags || []).join(" "), op.operationId || ""].join(" ").toLowerCase());
    return d;
  }

  function render() {
    var info = spec.info || {};
    document.getElementById("title").textContent = (info.title || "API") + (info.version ? " — API version " + info.version : "");
    var sub = document.getElementById("subtitle");
    sub.textContent = "";
    sub.appendChild(prose(info.description));
    sub.appendChild(el("p", null, "OpenAPI " + spec.openapi + " · ", el("a", { href: "openapi.json", text: "openapi.json" })));

    var groups = {}, order = [];
    (spec.tags || []).forEach(function (t) { groups[t.name] = { tag: t, ops: [] }; order.push(t.name); });
    var n = 0;
    Object.keys(spec.paths || {}).forEach(function (path) {
      var item = resolve(spec.paths[path]);
      METHODS.forEach(function (m) {
        if (!item[m]) return;
        var tag = (item[m].tags || ["other"])[0];
        if (!groups[tag]) { groups[tag] = { tag: { name: tag }, ops: [] }; order.push(tag); }
        groups[tag].ops.push([m, path, item[m], item, "op-" + (n++)]);
      });
    });
    var hooks = [];
    Object.keys(spec.webhooks || {}).forEach(function (name) {
      var item = resolve(spec.webhooks[name]);
      METHODS.forEach(function (m) { if (item[m]) hooks.push([m, name, item[m], item, "op-" + (n++)]); });
    });

    var toc = document.getElementById("toc"), main = document.getElementById("content");
    order.forEach(function (name) {
      var g = groups[name];
      if (!g.ops.length) return;
      toc.appendChild(el("h3", { text: name }));
      var sec = el("section", { class: "tag" }, el("h2", { text: name }));
      if (g.tag.description) sec.appendChild(prose(g.tag.description));
      g.ops.forEach(function (o) {
        toc.appendChild(el("a", { href: "#" + o[4], text: o[0].toUpperCase() + " " + o[1] }));
        sec.appendChild(operation.apply(null, o));
      });
      main.appendChild(sec);
    });
    if (hooks.length) {
      toc.appendChild(el("h3", { text: "Webhooks (sent to you)" }));
      var ws = el("section", { class: "tag" }, el("h2", { text: "Webhooks (sent to you)" }),
        prose("wagate POSTs these to your registered webhook URLs, signed per Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`)."));
      hooks.forEach(function (o) {
        toc.appendChild(el("a", { href: "#" + o[4], text: o[1] }));
        var d = operation.apply(null, o);
        d.querySelector(".method").className = "method m-event";
        ws.appendChild(d);
      });
      main.appendChild(ws);
    }
    var schemas = (spec.components || {}).schemas || {};
    if (Object.keys(schemas).length) {
      toc.appendChild(el("h3", { text: "Schemas" }));
      var ss = el("section", { class: "tag" }, el("h2", { text: "Schemas" }));
      Object.keys(schemas).forEach(function (k) {
        var id = "schema-" + k;
        toc.appendChild(el("a", { href: "#" + id, text: k }));
        var d = el("details", { class: "op", id: id }, el("summary", null, el("span", { class: "path", text: k })),
          el("div", { class: "op-body" }, schemaTree({ $ref: "#/components/schemas/" + k }, 0),
            el("pre", { text: pretty(sample(schemas[k], 0)) })));
        d.setAttribute("data-search", ("schema " + k).toLowerCase());
        ss.appendChild(d);
      });
      main.appendChild(ss);
    }
    if (location.hash) {
      var target = document.getElementById(location.hash.slice(1));
      if (target && target.tagName === "DETAILS") { target.open = true; target.scrollIntoView(); }
    }
  }

  function filter() {
    var q = document.getElementById("filter").value.trim().toLowerCase();
    Array.prototype.forEach.call(document.querySelectorAll("details.op"), function (d) {
      d.classList.toggle("hidden", q !== "" && d.getAttribute("data-search").indexOf(q) < 0);
    });
  }

  document.getElementById("filter").addEventListener("input", filter);
  fetch("openapi.json", { credentials: "same-origin" })
    .then(function (r) { if (!r.ok) throw new Error("GET openapi.json: " + r.status); return r.json(); })
    .then(function (s) { spec = s; render(); })
    .catch(function (err) {
      var sub = document.getElementById("subtitle");
      sub.className = "error";
      sub.textContent = "Could not load the specification: " + err.message;
    });
})();
