// Drives the docs page in headless Chromium (Debian's package) with playwright-core and prints
// what a user would see as one JSON line; tests/it/docs_site.rs asserts on it.
//
//   node docs.mjs example URL SCREENSHOT MODEL COLUMN SELECTOR SEARCH [SELECTOR...]
//   node docs.mjs scale URL SCREENSHOT SELECTOR... (times: first render, select, search)
//
// playwright-core comes from RSDBT_TEST_PLAYWRIGHT (a node_modules folder scripts/test.sh
// fills); the browser from CHROMIUM (default /usr/bin/chromium).
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const require = createRequire(path.join(process.env.RSDBT_TEST_PLAYWRIGHT, 'x.js'));
const { chromium } = require('playwright-core');

const [mode, url, screenshot, ...rest] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // The machine has no network: Chromium's own background connections must stay off.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
const errors = [];
page.on('pageerror', (e) => errors.push(String(e)));
page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });

async function open() {
  const t = Date.now();
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForFunction(() => window.rsdbtDocs && window.rsdbtDocs.metrics.firstRenderMs !== null);
  // The first frame painted after the graph was drawn.
  const painted = await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => r(performance.now())))));
  return { wallMs: Date.now() - t, firstRenderMs: await page.evaluate(() => window.rsdbtDocs.metrics.firstRenderMs), paintedMs: painted };
}

async function applySelector(expr) {
  const before = await page.evaluate(() => window.rsdbtDocs.metrics.selects);
  await page.fill('#selector', expr);
  await page.press('#selector', 'Enter');
  await page.waitForFunction((n) => window.rsdbtDocs.metrics.selects > n, before);
  return page.evaluate(() => ({ ms: window.rsdbtDocs.metrics.lastSelectMs, visible: window.rsdbtDocs.visible() }));
}

async function typeSearch(q) {
  const before = await page.evaluate(() => window.rsdbtDocs.metrics.searches);
  await page.fill('#search', q);
  await page.waitForFunction((n) => window.rsdbtDocs.metrics.searches > n, before);
  return page.evaluate(() => ({
    ms: window.rsdbtDocs.metrics.lastSearchMs,
    count: Number(document.querySelector('#results').dataset.count),
    first: [...document.querySelectorAll('#results a')].map((a) => decodeURIComponent(a.getAttribute('href').replace('#!/node/', ''))).slice(0, 5),
  }));
}

const out = {};
if (mode === 'example') {
  const [model, column, selector, query, ...selectors] = rest;
  out.open = await open();
  out.graph = await page.evaluate(() => window.rsdbtDocs.visible());
  // Click the model's box on the canvas.
  await page.evaluate((id) => window.rsdbtDocs.focus(id, 1), model);
  const at = await page.evaluate((id) => window.rsdbtDocs.nodeCenter(id), model);
  await page.mouse.click(at.x, at.y);
  await page.waitForSelector('#node-title');
  out.title = await page.textContent('#node-title');
  out.columns = await page.$$eval('#columns tbody tr', (rows) => rows.map((r) => ({ name: r.dataset.column, type: r.querySelector('.type').textContent })));
  out.compiled = await page.textContent('#compiled-sql').catch(() => null);
  out.upstream = await page.$$eval('#upstream a', (a) => a.map((x) => x.textContent));
  // Follow one column's lineage.
  await page.click(`button.col[data-col="${column}"]`);
  await page.waitForSelector('#column-lineage svg');
  const lineage = (cls) => page.$$eval(`#column-lineage a.${cls}`, (a) => a.map((x) => x.dataset.node + '.' + x.dataset.column));
  out.lineage = { upstream: await lineage('upstream'), downstream: await lineage('downstream') };
  await page.screenshot({ path: screenshot });
  // An upstream column's own page.
  if (out.lineage.upstream.length) {
    await page.click('#column-lineage a.upstream');
    await page.waitForFunction(() => /\/column\//.test(location.hash));
    out.followed = await page.evaluate(() => decodeURIComponent(location.hash));
  }
  out.select = await applySelector(selector);
  // The page's selection, compared with `rsdbt ls` by the test.
  out.selections = {};
  for (const expr of selectors) out.selections[expr] = await page.evaluate((e) => window.rsdbtDocs.select(e), expr);
  out.search = await typeSearch(query);
  // Live reload (served pages only): RSDBT_E2E_EDIT = {file, from, to, node}; the open node
  // page must show `to` after the file is saved, with no reload by the test.
  if (process.env.RSDBT_E2E_EDIT) {
    const edit = JSON.parse(process.env.RSDBT_E2E_EDIT);
    await page.evaluate((id) => { location.hash = '#!/node/' + encodeURIComponent(id); }, edit.node);
    await page.waitForSelector('#node-title');
    const t = Date.now();
    fs.writeFileSync(edit.file, fs.readFileSync(edit.file, 'utf8').replace(edit.from, edit.to));
    await page.waitForFunction((text) => document.querySelector('#panel').textContent.includes(text), edit.to, { timeout: 60000 });
    out.reloadedMs = Date.now() - t;
    out.reloads = await page.evaluate(() => window.rsdbtDocs.metrics.reloads);
  }
} else if (mode === 'scale') {
  out.open = await open();
  out.nodes = (await page.evaluate(() => window.rsdbtDocs.visible())).length;
  out.selects = [];
  for (const expr of rest) {
    const r = await applySelector(expr);
    out.selects.push({ expr, ms: r.ms, nodes: r.visible.length });
  }
  out.searches = [];
  for (const q of ['silver_00123', 'gold model number 77', 'amount_usd', 'zzz-no-match']) {
    const r = await typeSearch(q);
    out.searches.push({ q, ms: r.ms, hits: r.count });
  }
  await page.screenshot({ path: screenshot });
} else {
  throw new Error('mode must be example or scale');
}
out.errors = errors;
await browser.close();
console.log(JSON.stringify(out));
