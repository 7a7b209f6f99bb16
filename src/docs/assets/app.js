// rsdbt docs page: lineage graph (canvas), selector box, search, node pages and column lineage.
// Plain script with no dependencies, inlined into index.html so the page opens from disk.
'use strict';
(function () {
  const $ = (sel) => document.querySelector(sel);
  const esc = (s) => String(s == null ? '' : s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  const NODE_W = 180, NODE_H = 26, COL_W = 250, ROW_H = 34;
  const TYPE_COLORS = { model: '#2f80ed', seed: '#27ae60', source: '#16a2a2', snapshot: '#8e44ad', test: '#9aa5b1', exposure: '#e67e22', analysis: '#7f8c8d', operation: '#7f8c8d' };
  const PALETTE = ['#2f80ed', '#27ae60', '#e67e22', '#8e44ad', '#16a2a2', '#c0392b', '#f2c94c', '#6d4c41', '#ec407a', '#455a64'];

  let D = null; // the data
  let byId = new Map(), parents = new Map(), children = new Map();
  let searchIndex = [], colUp = new Map(), colDown = new Map();
  const state = { selection: null, showTests: false, colorBy: 'type', layout: null, view: { x: 40, y: 0, k: 1 }, current: null, column: null, version: null };
  const metrics = { firstRenderMs: null, lastSelectMs: null, lastSearchMs: null, selects: 0, searches: 0, reloads: 0 };

  // ---- data -------------------------------------------------------------------------------
  function textOf(html) { return String(html || '').replace(/<[^>]*>/g, ' ').replace(/&[a-z#0-9]+;/gi, ' '); }

  function load(data) {
    D = data;
    byId = new Map(); parents = new Map(); children = new Map();
    for (const n of D.nodes) {
      byId.set(n.id, n); parents.set(n.id, []); children.set(n.id, []);
      n.flat = n.fqn.flatMap((s) => s.split('.'));
      n.sortKey = n.flat.join('.') || n.id;
    }
    // Rows start in project order (folders together); sorting once here keeps layouts cheap.
    [...D.nodes].sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0)).forEach((n, i) => { n.sortIdx = i; });
    for (const n of D.nodes) {
      for (const p of n.deps) {
        if (!byId.has(p)) continue;
        parents.get(n.id).push(p);
        children.get(p).push(n.id);
      }
    }
    searchIndex = D.nodes.filter((n) => n.type !== 'test').map((n) => ({
      node: n,
      name: n.name.toLowerCase(),
      cols: n.columns.map((c) => c.name.toLowerCase()),
      text: [n.id, n.path, n.tags.join(' '), textOf(n.desc), n.columns.map((c) => c.name + ' ' + textOf(c.desc)).join(' ')].join(' ').toLowerCase(),
    }));
    // Column lineage both ways: "node\u0000column" keys.
    colUp = new Map(); colDown = new Map();
    const key = (n, c) => n + '\u0000' + String(c).toLowerCase();
    for (const [model, cols] of Object.entries(D.lineage || {})) {
      for (const [col, from] of Object.entries(cols)) {
        const k = key(model, col);
        colUp.set(k, from.map(([n, c]) => [n, c]));
        for (const [n, c] of from) {
          const fk = key(n, c);
          if (!colDown.has(fk)) colDown.set(fk, []);
          colDown.get(fk).push([model, col]);
        }
      }
    }
    $('#project').textContent = D.project ? D.project + ' \u00b7 ' + D.nodes.filter((n) => n.type !== 'test').length + ' nodes' : '';
  }

  // ---- selection: rsdbt's --select grammar -------------------------------------------------
  const globCache = new Map();
  function globRe(pattern) {
    if (!globCache.has(pattern)) globCache.set(pattern, compileGlob(pattern));
    return globCache.get(pattern);
  }
  function compileGlob(pattern) {
    let re = '';
    for (let i = 0; i < pattern.length; i++) {
      const c = pattern[i];
      if (c === '*') re += '.*';
      else if (c === '?') re += '.';
      else if (c === '[') { const j = pattern.indexOf(']', i); if (j < 0) { re += '\\['; } else { re += '[' + pattern.slice(i + 1, j).replace(/^!/, '^').replace(/\\/g, '\\\\') + ']'; i = j; } }
      else re += c.replace(/[.+^${}()|\\/]/g, '\\$&');
    }
    return new RegExp('^' + re + '$');
  }
  const hasGlob = (v) => /[*?[\]]/.test(v);
  const matches = (value, pattern) => hasGlob(pattern) ? globRe(pattern).test(value) : value === pattern;

  // dbt's rule: the selector is the node's name, or a prefix of its dotted fqn (globs allowed).
  function fqnMatches(fqn, flat, selector) {
    if (fqn.length && fqn[fqn.length - 1] === selector) return true;
    const parts = selector.split('.');
    if (flat.length < parts.length) return false;
    for (let i = 0; i < parts.length; i++) {
      if (hasGlob(parts[i])) return globRe(parts.slice(i).join('.')).test(flat.slice(i).join('.'));
      if (flat[i] !== parts[i]) return false;
    }
    return true;
  }

  // As dbt (pathlib's glob): wildcards stay within a folder name, `**` spans folders, and a
  // file is selected by its own path or any folder above it.
  function pathMatches(pattern, file) {
    const parts = file.split('/');
    for (let k = 1; k <= parts.length; k++) if (segmentsMatch(pattern, 0, parts.slice(0, k), 0)) return true;
    return false;
  }
  function segmentsMatch(pattern, pi, parts, fi) {
    if (pi === pattern.length) return fi === parts.length;
    if (pattern[pi] === '**') {
      for (let i = fi; i <= parts.length; i++) if (segmentsMatch(pattern, pi + 1, parts, i)) return true;
      return false;
    }
    return fi < parts.length && matches(parts[fi], pattern[pi]) && segmentsMatch(pattern, pi + 1, parts, fi + 1);
  }

  function methodMatch(method, value) {
    const base = method.split('.')[0];
    switch (base) {
      case 'fqn': {
        if (!value.includes('.') && !hasGlob(value)) {
          return (n) => n.fqn.length > 0 && (n.fqn[n.fqn.length - 1] === value || n.flat[0] === value || n.flat[1] === value);
        }
        return (n) => n.fqn.length > 0 && (fqnMatches(n.fqn, n.flat, value) || fqnMatches(n.fqn.slice(1), n.flat.slice(1), value));
      }
      case 'tag': return (n) => n.tags.some((t) => matches(t, value));
      case 'path': {
        const v = value.replace(/^\.\//, '').replace(/\/+$/, '');
        if (v === '' || v === '.') return () => true;
        const pattern = v.split('/');
        return (n) => pathMatches(pattern, n.path) || (n.patch != null && pathMatches(pattern, n.patch));
      }
      case 'file': return (n) => { const f = n.path.split('/').pop(); return matches(f, value) || matches(f.replace(/\.[^.]*$/, ''), value); };
      case 'package': return (n) => matches(n.package, value);
      case 'resource_type': return (n) => n.type === value;
      case 'source': return (n) => n.type === 'source' && (matches(n.name, value) || matches(n.name.split('.')[0], value) || matches(n.package + '.' + n.name, value));
      case 'test_name': return (n) => n.type === 'test' && n.test_name != null && matches(n.test_name, value);
      case 'test_type': return (n) => n.type === 'test' && (value === 'data' || (value === 'generic') === (n.test_name != null)) && ['data', 'generic', 'singular'].includes(value);
      // The last run of this project (run_results.json), as `result:` with --state target/.
      case 'result': return (n) => n.run != null && n.run.status === value;
      case 'exposure': return (n) => n.type === 'exposure' && (matches(n.name, value) || matches(n.package + '.' + n.name, value));
      case 'config': {
        const keyPath = method.split('.').slice(1);
        if (!keyPath.length) throw new Error('config selector needs a key, e.g. config.materialized:table');
        return (n) => {
          let v = n.config;
          for (const k of keyPath) v = v == null ? undefined : v[k];
          if (Array.isArray(v)) return v.some((x) => matches(String(x), value));
          return v != null && matches(String(v), value);
        };
      }
      default: throw new Error('selector method "' + method + '" is not available on this page (fqn, tag, path, file, package, resource_type, source, exposure, config.*, test_name, test_type, result)');
    }
  }

  function walk(start, edges, depth) {
    const out = new Set();
    let frontier = [...start], d = 0;
    while (frontier.length && d < depth) {
      const next = [];
      for (const id of frontier) for (const o of edges.get(id) || []) if (!out.has(o)) { out.add(o); next.push(o); }
      frontier = next; d++;
    }
    return out;
  }

  function selectAtom(atom) {
    const m = /^(@)?(\d*\+)?(.+?)(\+\d*)?$/.exec(atom);
    if (!m) throw new Error('cannot read selector "' + atom + '"');
    const at = !!m[1];
    const up = m[2] ? (m[2].length > 1 ? parseInt(m[2], 10) : Infinity) : 0;
    const down = m[4] ? (m[4].length > 1 ? parseInt(m[4].slice(1), 10) : Infinity) : 0;
    let method = 'fqn', value = m[3];
    const colon = value.indexOf(':');
    if (colon > 0) { method = value.slice(0, colon); value = value.slice(colon + 1); }
    else if (value.includes('/') || value.includes('\\')) method = 'path';
    else if (/\.(sql|csv|py)$/i.test(value)) method = 'file';
    const pred = methodMatch(method, value);
    const base = D.nodes.filter(pred).map((n) => n.id);
    const out = new Set(base);
    if (up) for (const id of walk(base, parents, up)) out.add(id);
    if (down || at) for (const id of walk(base, children, at ? Infinity : down)) out.add(id);
    if (at) for (const id of walk([...out], parents, Infinity)) out.add(id);
    // dbt's eager indirect selection, per criterion (before intersections): a test comes along
    // with any node it tests.
    for (const id of [...out]) for (const c of children.get(id) || []) if (byId.get(c).type === 'test') out.add(c);
    return out;
  }

  function select(expr) {
    const union = new Set();
    for (const term of expr.trim().split(/\s+/).filter(Boolean)) {
      let acc = null;
      for (const atom of term.split(',').filter(Boolean)) {
        const s = selectAtom(atom);
        acc = acc === null ? s : new Set([...acc].filter((x) => s.has(x)));
      }
      for (const x of acc || []) union.add(x);
    }
    return union;
  }

  // ---- layout: left to right by longest path, rows ordered by barycenters ------------------
  function visibleIds() {
    let ids = state.selection ? [...state.selection] : D.nodes.map((n) => n.id);
    if (!state.showTests) ids = ids.filter((id) => byId.get(id).type !== 'test');
    return ids;
  }

  function layout(ids) {
    // Integer indexes and typed arrays: this runs on every selection, at 10,000 nodes.
    const n = ids.length;
    const index = new Map();
    for (let i = 0; i < n; i++) index.set(ids[i], i);
    const up = new Array(n), down = new Array(n);
    for (let i = 0; i < n; i++) { up[i] = []; down[i] = []; }
    for (let i = 0; i < n; i++) {
      for (const c of children.get(ids[i])) { const j = index.get(c); if (j !== undefined) { down[i].push(j); up[j].push(i); } }
    }
    const indeg = new Int32Array(n), rank = new Int32Array(n), queue = new Int32Array(n);
    let qn = 0;
    for (let i = 0; i < n; i++) { indeg[i] = up[i].length; if (!indeg[i]) queue[qn++] = i; }
    for (let h = 0; h < qn; h++) {
      const i = queue[h];
      for (const j of down[i]) {
        if (rank[i] + 1 > rank[j]) rank[j] = rank[i] + 1;
        if (--indeg[j] === 0) queue[qn++] = j;
      }
    }
    const cols = [];
    for (let i = 0; i < n; i++) (cols[rank[i]] = cols[rank[i]] || []).push(i);
    const order = new Float64Array(n);
    for (let i = 0; i < n; i++) order[i] = byId.get(ids[i]).sortIdx;
    const pos = new Float64Array(n), score = new Float64Array(n);
    const place = (col) => { for (let i = 0; i < col.length; i++) pos[col[i]] = i - col.length / 2; };
    for (const col of cols) if (col) { col.sort((a, b) => order[a] - order[b]); place(col); }
    const bary = (col, edges) => {
      for (let k = 0; k < col.length; k++) {
        const i = col[k], e = edges[i];
        let sum = 0;
        for (const j of e) sum += pos[j];
        score[i] = e.length ? sum / e.length : pos[i];
      }
      col.sort((a, b) => score[a] - score[b] || order[a] - order[b]);
      place(col);
    };
    for (let sweep = 0; sweep < 2; sweep++) {
      for (let r = 1; r < cols.length; r++) if (cols[r]) bary(cols[r], up);
      for (let r = cols.length - 2; r >= 0; r--) if (cols[r]) bary(cols[r], down);
    }
    // A layer taller than maxRows wraps into side-by-side sub-columns, so a wide project fits
    // the screen as a block rather than a sliver.
    const maxRows = Math.max(60, Math.ceil(Math.sqrt(n) * 1.2));
    const nodes = new Map();
    let minY = 0, maxY = 0, x = 0;
    for (const col of cols) {
      if (!col) continue;
      const sub = Math.ceil(col.length / maxRows), rows = Math.ceil(col.length / sub);
      for (let k = 0; k < col.length; k++) {
        const y = ((k % rows) - rows / 2) * ROW_H;
        nodes.set(ids[col[k]], { x: x + Math.floor(k / rows) * COL_W, y });
        if (y < minY) minY = y;
        if (y + NODE_H > maxY) maxY = y + NODE_H;
      }
      x += sub * COL_W;
    }
    const edges = [];
    for (let i = 0; i < n; i++) for (const j of down[i]) edges.push([ids[i], ids[j]]);
    return { ids, nodes, edges, bounds: { x0: 0, y0: minY, x1: Math.max(COL_W, x - COL_W) + NODE_W, y1: maxY } };
  }

  // ---- drawing --------------------------------------------------------------------------------
  const canvas = $('#graph');
  const ctx = canvas.getContext('2d');
  let frame = 0;

  function colorOf(n) {
    if (state.colorBy === 'type') return TYPE_COLORS[n.type] || '#7f8c8d';
    const v = state.colorBy === 'layer' ? (n.fqn.length > 2 ? n.fqn[1] : n.type) : (n.materialized || n.type);
    let h = 0;
    for (const ch of v) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
    return PALETTE[h % PALETTE.length];
  }

  function legend() {
    const seen = new Map();
    for (const id of state.layout.ids.slice(0, 5000)) {
      const n = byId.get(id);
      const label = state.colorBy === 'type' ? n.type : state.colorBy === 'layer' ? (n.fqn.length > 2 ? n.fqn[1] : n.type) : (n.materialized || n.type);
      if (!seen.has(label)) seen.set(label, colorOf(n));
    }
    $('#legend').innerHTML = [...seen].slice(0, 12).map(([l, c]) => '<span><i style="background:' + c + '"></i>' + esc(l) + '</span>').join('');
  }

  function resize() {
    const r = canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.max(1, Math.round(r.width * dpr));
    canvas.height = Math.max(1, Math.round(r.height * dpr));
    draw();
  }

  function fit() {
    const b = state.layout.bounds, r = canvas.getBoundingClientRect();
    const k = Math.min(1, Math.max(0.002, Math.min((r.width - 40) / (b.x1 - b.x0 || 1), (r.height - 40) / (b.y1 - b.y0 || 1))));
    state.view = { k, x: 20 - b.x0 * k + Math.max(0, (r.width - 40 - (b.x1 - b.x0) * k) / 2), y: 20 - b.y0 * k + Math.max(0, (r.height - 40 - (b.y1 - b.y0) * k) / 2) };
  }

  function draw() {
    if (!state.layout) return;
    const dpr = window.devicePixelRatio || 1;
    const { x: tx, y: ty, k } = state.view;
    const W = canvas.width / dpr, H = canvas.height / dpr;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    ctx.setTransform(dpr * k, 0, 0, dpr * k, dpr * tx, dpr * ty);
    const x0 = -tx / k, y0 = -ty / k, x1 = (W - tx) / k, y1 = (H - ty) / k;
    const inView = (p) => p.x + NODE_W >= x0 && p.x <= x1 && p.y + NODE_H >= y0 && p.y <= y1;
    const L = state.layout, cur = L.nodes.has(state.current) ? state.current : null;
    const near = new Set(cur ? [cur, ...(parents.get(cur) || []), ...(children.get(cur) || [])] : []);
    ctx.lineWidth = 1 / Math.max(k, 0.25);
    // Zoomed far out, thousands of edges rasterize into a grey wash that costs more than the
    // rest of the frame: only the open node's edges are drawn until the user zooms in.
    const overview = k < 0.12 && L.edges.length > 3000;
    for (const pass of [0, 1]) {
      if (overview && pass === 0) continue;
      ctx.beginPath();
      ctx.strokeStyle = pass ? '#f0b429' : 'rgba(110,120,135,0.45)';
      for (const [a, b] of L.edges) {
        const hot = cur && (a === cur || b === cur);
        if ((pass === 1) !== !!hot) continue;
        const p = L.nodes.get(a), q = L.nodes.get(b);
        const sx = p.x + NODE_W, sy = p.y + NODE_H / 2, ex = q.x, ey = q.y + NODE_H / 2;
        if (Math.max(sx, ex) < x0 || Math.min(sx, ex) > x1 || Math.max(sy, ey) < y0 || Math.min(sy, ey) > y1) continue;
        ctx.moveTo(sx, sy);
        if (k < 0.15) ctx.lineTo(ex, ey);
        else { const mx = (sx + ex) / 2; ctx.bezierCurveTo(mx, sy, mx, ey, ex, ey); }
      }
      ctx.stroke();
    }
    const labels = k * NODE_H >= 11;
    ctx.font = '12px system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    for (const id of L.ids) {
      const p = L.nodes.get(id);
      if (!inView(p)) continue;
      const n = byId.get(id);
      ctx.fillStyle = colorOf(n);
      ctx.globalAlpha = cur && !near.has(id) ? 0.55 : 1;
      ctx.fillRect(p.x, p.y, NODE_W, NODE_H);
      if (id === cur) { ctx.lineWidth = 3 / Math.max(k, 0.25); ctx.strokeStyle = '#f0b429'; ctx.strokeRect(p.x, p.y, NODE_W, NODE_H); }
      if (labels) {
        ctx.fillStyle = '#fff';
        const name = n.name.length > 26 ? n.name.slice(0, 25) + '\u2026' : n.name;
        ctx.fillText(name, p.x + 6, p.y + NODE_H / 2, NODE_W - 10);
      }
    }
    ctx.globalAlpha = 1;
    frame++;
  }

  let pending = false;
  function redraw() { if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; draw(); }); } }

  function relayout(keepView) {
    state.layout = layout(visibleIds());
    if (!keepView) fit();
    legend();
    draw();
    $('#status').textContent = state.selection ? state.layout.ids.length + ' selected' : '';
  }

  function nodeAt(clientX, clientY) {
    const r = canvas.getBoundingClientRect();
    const wx = (clientX - r.left - state.view.x) / state.view.k, wy = (clientY - r.top - state.view.y) / state.view.k;
    for (const id of state.layout.ids) {
      const p = state.layout.nodes.get(id);
      if (wx >= p.x && wx <= p.x + NODE_W && wy >= p.y && wy <= p.y + NODE_H) return id;
    }
    return null;
  }

  function zoomAt(factor, cx, cy) {
    const v = state.view, k = Math.min(4, Math.max(0.002, v.k * factor));
    v.x = cx - (cx - v.x) * (k / v.k); v.y = cy - (cy - v.y) * (k / v.k); v.k = k;
    redraw();
  }

  let drag = null;
  canvas.addEventListener('mousedown', (e) => { drag = { x: e.clientX, y: e.clientY, vx: state.view.x, vy: state.view.y, moved: false }; canvas.classList.add('dragging'); });
  window.addEventListener('mousemove', (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    state.view.x = drag.vx + dx; state.view.y = drag.vy + dy; redraw();
  });
  window.addEventListener('mouseup', (e) => {
    if (!drag) return;
    const d = drag; drag = null; canvas.classList.remove('dragging');
    if (!d.moved) { const id = nodeAt(e.clientX, e.clientY); if (id) location.hash = '#!/node/' + encodeURIComponent(id); }
  });
  canvas.addEventListener('wheel', (e) => {
    e.preventDefault();
    const r = canvas.getBoundingClientRect();
    zoomAt(Math.exp(-e.deltaY * 0.0015), e.clientX - r.left, e.clientY - r.top);
  }, { passive: false });
  $('#zoom-in').onclick = () => { const r = canvas.getBoundingClientRect(); zoomAt(1.4, r.width / 2, r.height / 2); };
  $('#zoom-out').onclick = () => { const r = canvas.getBoundingClientRect(); zoomAt(1 / 1.4, r.width / 2, r.height / 2); };
  $('#fit').onclick = () => { fit(); redraw(); };

  // ---- node page ----------------------------------------------------------------------------
  const size = (b) => { const u = ['B', 'KB', 'MB', 'GB', 'TB']; let i = 0; while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; } return (i ? b.toFixed(1) : b) + ' ' + u[i]; };
  const link = (id) => { const n = byId.get(id); return '<a href="#!/node/' + encodeURIComponent(id) + '">' + esc(n ? n.name : id) + '</a>' + (n ? ' <span class="muted">' + esc(n.type) + '</span>' : ''); };

  function columnLineage(id, column) {
    // Upstream and downstream columns by distance, drawn as columns of boxes.
    const key = (n, c) => n + '\u0000' + String(c).toLowerCase();
    const levels = new Map([[key(id, column), 0]]);
    const labels = new Map([[key(id, column), [id, column]]]);
    const edges = [];
    const explore = (graph, dir) => {
      let frontier = [key(id, column)];
      for (let d = 1; frontier.length && d < 50; d++) {
        const next = [];
        for (const k of frontier) {
          for (const [n, c] of graph.get(k) || []) {
            const nk = key(n, c);
            edges.push(dir < 0 ? [nk, k] : [k, nk]);
            if (!levels.has(nk)) { levels.set(nk, dir * d); labels.set(nk, [n, c]); next.push(nk); }
          }
        }
        frontier = next;
      }
    };
    explore(colUp, -1); explore(colDown, 1);
    const byLevel = new Map();
    for (const [k, l] of levels) { if (!byLevel.has(l)) byLevel.set(l, []); byLevel.get(l).push(k); }
    const lv = [...byLevel.keys()].sort((a, b) => a - b);
    const BW = 200, BH = 24, GX = 60, GY = 10;
    const pos = new Map();
    lv.forEach((l, i) => byLevel.get(l).forEach((k, j) => pos.set(k, { x: 10 + i * (BW + GX), y: 10 + j * (BH + GY) })));
    const h = 20 + Math.max(...lv.map((l) => byLevel.get(l).length)) * (BH + GY);
    const w = 20 + lv.length * (BW + GX);
    let svg = '<svg viewBox="0 0 ' + w + ' ' + h + '" width="' + w + '" height="' + h + '">';
    for (const [a, b] of edges) {
      const p = pos.get(a), q = pos.get(b);
      if (!p || !q) continue;
      const sx = p.x + BW, sy = p.y + BH / 2, ex = q.x, ey = q.y + BH / 2, mx = (sx + ex) / 2;
      svg += '<path d="M' + sx + ' ' + sy + ' C' + mx + ' ' + sy + ' ' + mx + ' ' + ey + ' ' + ex + ' ' + ey + '"/>';
    }
    for (const [k, p] of pos) {
      const [n, c] = labels.get(k);
      const node = byId.get(n);
      const label = (node ? node.name : n) + '.' + c;
      const short = label.length > 30 ? label.slice(0, 29) + '\u2026' : label;
      const cls = 'lineage-node' + (levels.get(k) === 0 ? ' focus' : '') + (levels.get(k) < 0 ? ' upstream' : levels.get(k) > 0 ? ' downstream' : '');
      svg += '<a class="' + cls + '" data-node="' + esc(n) + '" data-column="' + esc(c) + '" href="#!/node/' + encodeURIComponent(n) + '/column/' + encodeURIComponent(c) + '"><title>' + esc(label) + '</title><rect x="' + p.x + '" y="' + p.y + '" width="' + BW + '" height="' + BH + '" rx="3"/><text x="' + (p.x + 6) + '" y="' + (p.y + 16) + '">' + esc(short) + '</text></a>';
    }
    svg += '</svg>';
    const up = [...levels.values()].filter((l) => l < 0).length, down = [...levels.values()].filter((l) => l > 0).length;
    return '<h2 id="column-lineage-title">Column lineage: ' + esc(column) + '</h2><p class="muted">' + up + ' upstream, ' + down + ' downstream column' + (down === 1 ? '' : 's') + (byId.get(id).type === 'model' && !(D.lineage && D.lineage[id]) ? ' \u00b7 no lineage computed for this model (its SQL could not be planned)' : '') + '</p><div id="column-lineage">' + svg + '</div>';
  }

  function showNode(id, column) {
    const n = byId.get(id);
    const panel = $('#panel');
    if (!n) { panel.hidden = false; panel.innerHTML = '<h1>Not found</h1><p>' + esc(id) + ' is not in this project.</p>'; return; }
    state.current = id; state.column = column || null;
    const run = n.run ? '<span class="badge run-' + esc(n.run.status) + '">last run: ' + esc(n.run.status) + (n.run.time != null ? ' in ' + Number(n.run.time).toFixed(2) + ' s' : '') + '</span>' : '<span class="badge">not run</span>';
    const cols = n.columns.map((c) => '<tr data-column="' + esc(c.name) + '"' + (column && c.name.toLowerCase() === column.toLowerCase() ? ' class="chosen"' : '') + '><td><button class="col" data-col="' + esc(c.name) + '" title="Column lineage">' + esc(c.name) + '</button></td><td class="type">' + esc(c.type) + '</td><td class="desc">' + c.desc + '</td><td>' + c.tests.map(esc).join(', ') + '</td></tr>').join('');
    const ups = parents.get(id), downs = children.get(id).filter((c) => byId.get(c).type !== 'test');
    const tests = children.get(id).filter((c) => byId.get(c).type === 'test');
    let html = '<h1 id="node-title">' + esc(n.name) + '</h1>'
      + '<p><span class="badge">' + esc(n.type) + '</span>' + (n.materialized ? '<span class="badge">' + esc(n.materialized) + '</span>' : '') + run
      + (n.rows != null ? '<span class="badge">' + esc(n.rows) + ' rows</span>' : '')
      + (n.bytes != null ? '<span class="badge">' + esc(size(n.bytes)) + '</span>' : '') + n.tags.map((t) => '<span class="badge">#' + esc(t) + '</span>').join('') + '</p>'
      + '<p class="muted">' + esc(n.relation || n.id) + ' \u00b7 ' + esc(n.path) + '</p>'
      + (n.run && n.run.message ? '<p class="muted">' + esc(n.run.message) + '</p>' : '')
      + '<div class="desc">' + (n.desc || '<p class="muted">No description.</p>') + '</div>';
    if (column) html += columnLineage(id, column);
    if (n.columns.length) html += '<h2>Columns</h2><table id="columns"><thead><tr><th>Column</th><th>Type</th><th>Description</th><th>Tests</th></tr></thead><tbody>' + cols + '</tbody></table>';
    if (n.tests.length || tests.length) html += '<h2>Tests</h2><ul class="nodes">' + tests.map((t) => '<li>' + link(t) + '</li>').join('') + '</ul>';
    html += '<h2>Depends on</h2>' + (ups.length ? '<ul class="nodes" id="upstream">' + ups.map((u) => '<li>' + link(u) + '</li>').join('') + '</ul>' : '<p class="muted">Nothing.</p>');
    html += '<h2>Referenced by</h2>' + (downs.length ? '<ul class="nodes" id="downstream">' + downs.map((u) => '<li>' + link(u) + '</li>').join('') + '</ul>' : '<p class="muted">Nothing.</p>');
    if (n.compiled) html += '<h2>Compiled SQL</h2><pre id="compiled-sql"></pre>';
    if (n.raw) html += '<h2>Source</h2><pre id="raw-sql"></pre>';
    html += '<h2>Config</h2><pre id="config"></pre>';
    panel.innerHTML = html;
    panel.hidden = false;
    if (n.compiled) $('#compiled-sql').textContent = n.compiled;
    if (n.raw) $('#raw-sql').textContent = n.raw;
    $('#config').textContent = JSON.stringify(n.config, null, 2);
    for (const b of panel.querySelectorAll('button.col')) b.onclick = () => { location.hash = '#!/node/' + encodeURIComponent(id) + '/column/' + encodeURIComponent(b.dataset.col); };
    if (column) { const t = $('#column-lineage-title'); if (t) t.scrollIntoView(); } else panel.scrollTop = 0;
  }

  function route() {
    const m = /^#!\/node\/([^/]+)(?:\/column\/(.+))?$/.exec(location.hash);
    const wasOpen = !$('#panel').hidden;
    if (m) showNode(decodeURIComponent(m[1]), m[2] ? decodeURIComponent(m[2]) : null);
    else { state.current = null; $('#panel').hidden = true; }
    if (wasOpen !== !$('#panel').hidden) resize(); else redraw();
    if (m && state.layout && state.layout.nodes.has(state.current)) {
      const p = state.layout.nodes.get(state.current), r = canvas.getBoundingClientRect();
      const sx = p.x * state.view.k + state.view.x, sy = p.y * state.view.k + state.view.y;
      if (sx < 0 || sy < 0 || sx > r.width || sy > r.height) { state.view.x = r.width / 2 - p.x * state.view.k; state.view.y = r.height / 2 - p.y * state.view.k; redraw(); }
    }
  }

  // ---- search ---------------------------------------------------------------------------------
  function search(q) {
    q = q.trim().toLowerCase();
    if (!q) return [];
    const hits = [];
    for (const e of searchIndex) {
      let score = -1, hit = '';
      if (e.name === q) score = 0;
      else if (e.name.startsWith(q)) score = 1;
      else if (e.name.includes(q)) score = 2;
      else {
        const c = e.cols.find((c) => c.includes(q));
        if (c !== undefined) { score = 3; hit = 'column ' + c; }
        else if (e.text.includes(q)) { score = 4; const i = e.text.indexOf(q); hit = e.text.slice(Math.max(0, i - 30), i + q.length + 40); }
      }
      if (score >= 0) hits.push({ score, node: e.node, hit });
    }
    hits.sort((a, b) => a.score - b.score || a.node.name.localeCompare(b.node.name));
    return hits;
  }

  function showResults(q) {
    const t = performance.now();
    const hits = search(q);
    const list = $('#results');
    list.innerHTML = hits.slice(0, 40).map((h) => '<li><a href="#!/node/' + encodeURIComponent(h.node.id) + '">' + esc(h.node.name) + '<span class="kind">' + esc(h.node.type) + '</span>' + (h.hit ? '<span class="hit">' + esc(h.hit) + '</span>' : '') + '</a></li>').join('')
      + (hits.length > 40 ? '<li class="muted" style="padding:4px 8px">' + (hits.length - 40) + ' more</li>' : '') + (q.trim() && !hits.length ? '<li class="muted" style="padding:4px 8px">No match.</li>' : '');
    list.hidden = !q.trim();
    list.dataset.count = hits.length;
    metrics.lastSearchMs = performance.now() - t; metrics.searches++;
  }
  $('#search').addEventListener('input', (e) => showResults(e.target.value));
  $('#results').addEventListener('click', () => { $('#results').hidden = true; });
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape') $('#results').hidden = true; });

  // ---- selector box ----------------------------------------------------------------------------
  function applySelector(expr) {
    const t = performance.now();
    try {
      state.selection = expr.trim() ? select(expr) : null;
      relayout(false);
    } catch (err) {
      $('#status').textContent = err.message;
      return;
    }
    requestAnimationFrame(() => { metrics.lastSelectMs = performance.now() - t; metrics.selects++; });
  }
  $('#selector-form').addEventListener('submit', (e) => { e.preventDefault(); applySelector($('#selector').value); });
  $('#clear').onclick = () => { $('#selector').value = ''; applySelector(''); };
  $('#color-by').onchange = (e) => { state.colorBy = e.target.value; legend(); redraw(); };
  $('#show-tests').onchange = (e) => { state.showTests = e.target.checked; relayout(false); };

  // ---- live reload when served -----------------------------------------------------------------
  function poll() {
    fetch('api/version', { cache: 'no-store' }).then((r) => r.json()).then((v) => {
      if (v.version === state.version) return null;
      return fetch('api/site', { cache: 'no-store' }).then((r) => r.json()).then((data) => {
        state.version = data.version;
        load(data);
        if (state.selection) try { state.selection = select($('#selector').value); } catch (_) { state.selection = null; }
        relayout(true);
        route();
        metrics.reloads++;
      });
    }).catch(() => {}).finally(() => setTimeout(poll, 1000));
  }

  // ---- start -----------------------------------------------------------------------------------
  load(JSON.parse(document.getElementById('rsdbt-data').textContent));
  state.version = D.version === undefined ? null : D.version;
  window.addEventListener('resize', resize);
  window.addEventListener('hashchange', route);
  const rect = canvas.getBoundingClientRect();
  canvas.width = Math.max(1, Math.round(rect.width * (window.devicePixelRatio || 1)));
  canvas.height = Math.max(1, Math.round(rect.height * (window.devicePixelRatio || 1)));
  relayout(false);
  route();
  metrics.firstRenderMs = performance.now();
  if (location.protocol.startsWith('http') && state.version !== null) setTimeout(poll, 1000);
  // For scripts and tests: the same selection and search the page uses.
  window.rsdbtDocs = {
    metrics,
    select: (expr) => [...select(expr)].sort(),
    search: (q) => search(q).map((h) => h.node.id),
    visible: () => state.layout.ids.slice(),
    nodeCenter: (id) => {
      const p = state.layout.nodes.get(id);
      if (!p) return null;
      const r = canvas.getBoundingClientRect();
      return { x: r.left + (p.x + NODE_W / 2) * state.view.k + state.view.x, y: r.top + (p.y + NODE_H / 2) * state.view.k + state.view.y };
    },
    focus: (id, k) => {
      const p = state.layout.nodes.get(id), r = canvas.getBoundingClientRect();
      state.view.k = k || 1; state.view.x = r.width / 2 - (p.x + NODE_W / 2) * state.view.k; state.view.y = r.height / 2 - (p.y + NODE_H / 2) * state.view.k; draw();
    },
    frames: () => frame,
    profile: (expr) => { const o = {}; let t = performance.now(); state.selection = select(expr); o.select = performance.now() - t; t = performance.now(); state.layout = layout(visibleIds()); o.layout = performance.now() - t; t = performance.now(); fit(); legend(); o.fitlegend = performance.now() - t; t = performance.now(); draw(); o.draw = performance.now() - t; return o; },
  };
})();
