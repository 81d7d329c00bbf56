// Ikabud Panel's page script: one websocket per page (see docs/websocket.md) that keeps the server-rendered rows,
// charts and log current; the dashboard's filter; relative times. Everything that came from an instance is put in
// the page with textContent, never as HTML. Actions are plain POST forms (htmx posts them in place); nothing is
// ever sent on the socket, so a reconnect can never replay a click.
(function () {
  "use strict";

  var RECONNECT_MIN = 500, RECONNECT_MAX = 15000;

  function $(sel, root) { return (root || document).querySelector(sel); }
  function $all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }

  // ---- relative times -------------------------------------------------------------------------------------------
  function relative(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + " s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + " min";
    var h = Math.floor(m / 60);
    if (h < 24) return h + " h " + (m % 60) + " min";
    return Math.floor(h / 24) + " d " + (h % 24) + " h";
  }
  function refreshTimes(root) {
    var now = Date.now();
    $all("time[data-rel]", root).forEach(function (t) {
      var d = Date.parse(t.getAttribute("datetime"));
      if (!isNaN(d)) t.textContent = t.closest("[data-f=uptime]") ? relative(now - d) : relative(now - d) + " ago";
    });
  }

  // ---- rows -----------------------------------------------------------------------------------------------------
  function setText(root, f, text) {
    $all('[data-f="' + f + '"]', root).forEach(function (el) { el.textContent = text; });
  }
  function setMeter(root, f, text, pct) {
    $all('[data-f="' + f + '"]', root).forEach(function (el) {
      var t = $("[data-t=text]", el), bar = $("[data-t=bar]", el);
      if (t) t.textContent = text;
      if (bar) {
        bar.hidden = pct < 0;
        bar.value = Math.max(0, pct);
        bar.className = pct >= 90 ? "hot" : pct >= 70 ? "warm" : "";
      }
    });
  }
  function setWhen(root, since, sinceAbs) {
    $all('[data-f="uptime"]', root).forEach(function (el) {
      el.textContent = "";
      if (!since) { var m = document.createElement("span"); m.className = "muted"; m.textContent = "-"; el.appendChild(m); return; }
      var t = document.createElement("time");
      t.setAttribute("datetime", since); t.setAttribute("data-rel", ""); t.title = sinceAbs || since;
      el.appendChild(t);
      refreshTimes(el);
    });
  }
  function applyRow(root, r) {
    $all('[data-f="state"]', root).forEach(function (el) {
      el.textContent = r.state; el.className = "state state-" + r.tone;
    });
    setText(root, "pid", r.pid_text);
    setText(root, "restarts", String(r.restarts));
    setText(root, "cms", r.cms);
    setText(root, "php", r.php);
    setText(root, "desired", r.desired);
    setText(root, "tasks", r.tasks);
    setText(root, "health_text", r.health_text);
    setWhen(root, r.since, r.since_abs);
    setMeter(root, "mem", r.mem_text, r.mem_pct);
    setMeter(root, "cpu", r.cpu_text, r.cpu_pct);
    $all('[data-f="health"]', root).forEach(function (el) {
      el.textContent = r.health; el.className = "health state-" + r.health_tone; el.title = r.health_text || "";
    });
    $all('[data-f="last_error"]', root).forEach(function (el) { el.textContent = r.last_error || ""; el.hidden = !r.last_error; });
    $all('[data-f="notes"]', root).forEach(function (el) {
      el.textContent = "";
      (r.notes || []).forEach(function (n) { var li = document.createElement("li"); li.textContent = n; el.appendChild(li); });
    });
    var can = { start: r.can_start, stop: r.can_stop, restart: r.can_restart, reload: r.can_reload, kill: r.can_kill };
    Object.keys(can).forEach(function (a) {
      $all('button[data-act="' + a + '"]', root).forEach(function (b) { b.disabled = !can[a]; });
    });
    var link = $('[data-f="link"]', root);
    if (link) link.setAttribute("href", "/instances/" + encodeURIComponent(r.id));
    if (root.tagName === "TR") {
      root.setAttribute("data-state", r.state);
      root.setAttribute("data-search", r.id + " " + r.cms + " php" + r.php);
    }
  }

  // ---- dashboard ------------------------------------------------------------------------------------------------
  function Dashboard(table) {
    this.table = table;
    this.body = $("tbody[data-rows]", table);
    this.tpl = $("template[data-row-template]", table.parentNode);
    this.q = $("[data-filter-q]"); this.st = $("[data-filter-state]");
    var self = this;
    if (this.q) this.q.addEventListener("input", function () { self.filter(); });
    if (this.st) this.st.addEventListener("change", function () { self.filter(); });
    var form = $("form[data-filter]");
    if (form) form.addEventListener("submit", function (e) { e.preventDefault(); self.filter(); });
    this.filter();
  }
  Dashboard.prototype.rowEl = function (id) {
    return $all("tr[data-id]", this.body).filter(function (tr) { return tr.getAttribute("data-id") === id; })[0];
  };
  Dashboard.prototype.upsert = function (r) {
    var tr = this.rowEl(r.id);
    if (!tr) {
      tr = this.tpl.content.firstElementChild.cloneNode(true);
      tr.setAttribute("data-id", r.id);
      setText(tr, "link", r.id);
      var rows = $all("tr[data-id]", this.body), before = null;
      for (var i = 0; i < rows.length; i++) { if (rows[i].getAttribute("data-id") > r.id) { before = rows[i]; break; } }
      this.body.insertBefore(tr, before);
    }
    applyRow(tr, r);
  };
  Dashboard.prototype.onMessage = function (m) {
    var self = this;
    if (m.type === "snapshot") {
      var seen = {};
      m.rows.forEach(function (r) { seen[r.id] = true; self.upsert(r); });
      $all("tr[data-id]", this.body).forEach(function (tr) { if (!seen[tr.getAttribute("data-id")]) tr.remove(); });
    } else if (m.type === "row") {
      this.upsert(m.row);
    } else if (m.type === "gone") {
      var tr = this.rowEl(m.id); if (tr) tr.remove();
    } else return;
    this.filter();
  };
  Dashboard.prototype.filter = function () {
    var q = this.q ? this.q.value.trim().toLowerCase() : "", st = this.st ? this.st.value : "";
    var counts = { all: 0, ok: 0, idle: 0, bad: 0 }, shown = 0;
    $all("tr[data-id]", this.body).forEach(function (tr) {
      var ok = (!q || (tr.getAttribute("data-search") || "").toLowerCase().indexOf(q) >= 0) &&
        (!st || tr.getAttribute("data-state") === st);
      tr.hidden = !ok;
      if (ok) shown++;
      counts.all++;
      var s = $('[data-f="state"]', tr), tone = s ? s.className.replace(/.*state-/, "") : "";
      if (counts[tone] !== undefined) counts[tone]++;
    });
    Object.keys(counts).forEach(function (k) { var el = $('[data-count="' + k + '"]'); if (el) el.textContent = counts[k]; });
    var empty = $("[data-empty]"); if (empty) empty.hidden = shown > 0;
  };

  // ---- log panel ------------------------------------------------------------------------------------------------
  // C0 and C1 controls, and the bidirectional overrides and isolates that
  // could reorder what a reader sees.
  var CTL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;
  function appendText(el, text) {
    // Control characters (terminal escapes included) are shown as visible, inert codes.
    var i = 0, start = 0;
    for (; i < text.length; i++) {
      if (CTL.test(text[i])) {
        if (i > start) el.appendChild(document.createTextNode(text.slice(start, i)));
        var c = document.createElement("span"); c.className = "ctl";
        var code = text.charCodeAt(i);
        c.textContent = code < 0x100 ? "\\x" + ("0" + code.toString(16)).slice(-2) : "\\u" + ("000" + code.toString(16)).slice(-4);
        el.appendChild(c); start = i + 1;
      }
    }
    if (start < text.length) el.appendChild(document.createTextNode(start ? text.slice(start) : text));
  }
  function LogPanel(view) {
    this.view = view;
    this.max = parseInt(view.getAttribute("data-max-lines"), 10) || 2000;
    this.status = $("[data-log-status]");
    this.paused = false; this.held = []; this.heldDropped = 0;
    this.epoch = ""; this.last = 0; this.queue = []; this.scheduled = false;
    var self = this;
    var pause = $('[data-log="pause"]'), clear = $('[data-log="clear"]');
    this.follow = $('[data-log="follow"]');
    if (pause) pause.addEventListener("click", function () {
      self.paused = !self.paused;
      pause.setAttribute("aria-pressed", String(self.paused));
      pause.textContent = self.paused ? "Resume" : "Pause";
      if (!self.paused) { var h = self.held; self.held = []; if (self.heldDropped) self.mark(self.heldDropped + " lines skipped while paused"); self.heldDropped = 0; self.add(h); }
      self.say();
    });
    if (clear) clear.addEventListener("click", function () { self.view.textContent = ""; });
  }
  LogPanel.prototype.say = function (text) {
    if (!this.status) return;
    this.status.textContent = text || (this.paused ? "Paused: " + this.held.length + " new lines held" : "Following live.");
  };
  LogPanel.prototype.resumeQuery = function () {
    return this.epoch ? "&epoch=" + encodeURIComponent(this.epoch) + "&after=" + this.last : "";
  };
  LogPanel.prototype.mark = function (text) { this.queue.push({ mark: text }); this.schedule(); };
  // restart begins a new numbering of the log (the panel restarted, or its follow of the log was reopened): the
  // lines that follow repeat some already shown, so the view starts over, with the marker saying why.
  LogPanel.prototype.restart = function (why) {
    this.view.textContent = ""; this.queue = []; this.held = []; this.heldDropped = 0;
    this.epoch = ""; this.last = 0;
    this.mark(why);
  };
  LogPanel.prototype.onMessage = function (m) {
    if (m.type === "logs") {
      if (this.epoch && m.epoch !== this.epoch) this.restart("log restarted; earlier lines may be missing");
      this.epoch = m.epoch;
      var fresh = [], self = this;
      m.lines.forEach(function (l) { if (l.seq > self.last) { fresh.push(l); self.last = l.seq; } });
      if (this.paused) {
        this.held = this.held.concat(fresh);
        if (this.held.length > this.max) { this.heldDropped += this.held.length - this.max; this.held = this.held.slice(-this.max); }
        this.say();
      } else this.add(fresh);
    } else if (m.type === "skipped") {
      if (m.reason === "log restarted") this.restart(m.reason);
      else this.mark(m.count ? m.count + " lines skipped (" + m.reason + ")" : m.reason);
    }
  };
  LogPanel.prototype.add = function (lines) {
    for (var i = 0; i < lines.length; i++) this.queue.push(lines[i]);
    if (this.queue.length > this.max) this.queue = this.queue.slice(-this.max);
    this.schedule();
  };
  LogPanel.prototype.schedule = function () {
    if (this.scheduled) return;
    this.scheduled = true;
    var self = this;
    // One DOM update per frame, however fast lines arrive.
    window.requestAnimationFrame(function () { self.scheduled = false; self.flush(); });
  };
  LogPanel.prototype.flush = function () {
    var frag = document.createDocumentFragment(), q = this.queue; this.queue = [];
    q.forEach(function (l) {
      var span = document.createElement("span");
      if (l.mark !== undefined) { span.className = "mark"; span.textContent = "— " + l.mark + " —"; frag.appendChild(span); return; }
      span.className = "ln";
      var at = document.createElement("span"); at.className = "at";
      var d = new Date(l.at); at.textContent = isNaN(d) ? "" : d.toLocaleTimeString(); at.title = l.at;
      span.appendChild(at); appendText(span, l.text); frag.appendChild(span);
    });
    var v = this.view, stick = this.follow ? this.follow.checked : true;
    v.appendChild(frag);
    while (v.childNodes.length > this.max) v.removeChild(v.firstChild);
    if (stick) v.scrollTop = v.scrollHeight;
    this.say();
  };

  // ---- charts ---------------------------------------------------------------------------------------------------
  var WINDOW_S = 15 * 60;
  function Charts(root) {
    this.t = []; this.mem = []; this.cpu = [];
    var memEl = $('[data-chart="mem"]', root), cpuEl = $('[data-chart="cpu"]', root);
    if (!memEl || !cpuEl || typeof uPlot === "undefined") return;
    var hist = [];
    try { hist = JSON.parse(memEl.getAttribute("data-history") || "[]") || []; } catch (e) { hist = []; }
    this.push(hist);
    var width = function (el) { return Math.max(200, el.clientWidth || 300); };
    var mk = function (el, label, fmt) {
      return new uPlot({ width: width(el), height: 160, legend: { show: true },
        scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(max * 1.2, 1)]; } } },
        axes: [{ stroke: "#888", grid: { stroke: "rgba(128,128,128,.15)" } }, { stroke: "#888", size: 72, values: function (u, v) { return v.map(fmt); }, grid: { stroke: "rgba(128,128,128,.15)" } }],
        series: [{}, { label: label, stroke: "#0172ad", fill: "rgba(1,114,173,.12)", width: 1.5, value: function (u, v) { return v == null ? "-" : fmt(v); } }] },
        [[], []], el);
    };
    this.memPlot = mk(memEl, "Memory", function (v) { return (v / 1048576).toFixed(1) + " MiB"; });
    this.cpuPlot = mk(cpuEl, "CPU", function (v) { return v.toFixed(1) + "%"; });
    var self = this;
    window.addEventListener("resize", function () {
      self.memPlot.setSize({ width: width(memEl), height: 160 }); self.cpuPlot.setSize({ width: width(cpuEl), height: 160 });
    });
    this.draw();
  }
  Charts.prototype.push = function (samples) {
    var self = this;
    samples.forEach(function (s) {
      var t = s.t / 1000;
      if (self.t.length && t <= self.t[self.t.length - 1]) return;
      self.t.push(t); self.mem.push(s.mem); self.cpu.push(s.cpu < 0 ? null : s.cpu);
    });
    var cut = Date.now() / 1000 - WINDOW_S, n = 0;
    while (n < this.t.length && this.t[n] < cut) n++;
    if (n) { this.t.splice(0, n); this.mem.splice(0, n); this.cpu.splice(0, n); }
  };
  Charts.prototype.draw = function () {
    if (!this.memPlot) return;
    this.memPlot.setData([this.t, this.mem]); this.cpuPlot.setData([this.t, this.cpu]);
  };
  Charts.prototype.onMessage = function (m) { if (m.type === "usage") { this.push(m.samples); this.draw(); } };

  // ---- the socket -----------------------------------------------------------------------------------------------
  // instance is the id of the page's instance ("" on the dashboard): once it is gone the socket is not reopened.
  function Live(path, instance, handlers, logs) {
    this.path = path; this.instance = instance; this.gone = false; this.handlers = handlers; this.logs = logs;
    this.delay = RECONNECT_MIN;
    this.statusEl = $("#live-status");
    this.connect();
  }
  Live.prototype.state = function (s, text) {
    if (!this.statusEl) return;
    this.statusEl.setAttribute("data-state", s); this.statusEl.textContent = text || "";
    document.body.setAttribute("data-live-state", s);
  };
  Live.prototype.connect = function () {
    var self = this, proto = location.protocol === "https:" ? "wss://" : "ws://";
    var url = proto + location.host + this.path + (this.logs ? this.logs.resumeQuery() : "");
    var ws;
    try { ws = new WebSocket(url); } catch (e) { this.retry(); return; }
    this.state("connecting", "Connecting…");
    ws.onopen = function () { self.delay = RECONNECT_MIN; self.state("open", "Live"); if (self.logs) self.logs.say(); };
    ws.onmessage = function (ev) {
      var m; try { m = JSON.parse(ev.data); } catch (e) { return; }
      if (m.type === "gone" && self.instance && m.id === self.instance) self.gone = true;
      self.handlers.forEach(function (h) { h.onMessage(m); });
    };
    ws.onclose = function (ev) {
      if (ev.code === 4401) { location.href = "/login?next=" + encodeURIComponent(location.pathname); return; }
      // After a gone for this page's instance the server closes the socket; reconnecting would only be refused.
      if (ev.code === 4404 || self.gone) {
        self.state("closed", "This instance is gone.");
        if (self.logs) self.logs.say("This instance is gone.");
        return;
      }
      self.retry();
    };
  };
  Live.prototype.retry = function () {
    var self = this, wait = Math.min(RECONNECT_MAX, this.delay) * (0.75 + Math.random() / 2);
    this.delay = Math.min(RECONNECT_MAX, this.delay * 2);
    this.state("closed", "Connection lost; reconnecting in " + Math.round(wait / 1000) + " s…");
    if (this.logs) this.logs.say("Reconnecting…");
    setTimeout(function () { self.connect(); }, wait);
  };

  function InstanceView(root) { this.root = root; this.id = root.getAttribute("data-instance"); }
  InstanceView.prototype.onMessage = function (m) {
    var self = this;
    if (m.type === "snapshot") m.rows.forEach(function (r) { if (r.id === self.id) applyRow(self.root, r); });
    else if (m.type === "row" && m.row.id === this.id) applyRow(this.root, m.row);
    else if (m.type === "gone" && m.id === this.id) {
      $all('[data-f="state"]', this.root).forEach(function (el) { el.textContent = "removed"; el.className = "state state-bad"; });
      $all("button[data-act]", this.root).forEach(function (b) { b.disabled = true; });
    }
  };

  document.addEventListener("DOMContentLoaded", function () {
    refreshTimes(document);
    setInterval(function () { refreshTimes(document); }, 15000);
    var dash = $('[data-live="dashboard"]'), inst = $('[data-live="instance"]');
    if (dash) new Live("/ws", "", [new Dashboard(dash)], null);
    if (inst) {
      var id = inst.getAttribute("data-instance"), view = $("[data-log-view]", inst);
      var logs = view ? new LogPanel(view) : null, handlers = [new InstanceView(inst), new Charts(inst)];
      if (logs) handlers.push(logs);
      new Live("/ws?instance=" + encodeURIComponent(id), id, handlers, logs);
    }
  });
})();
