/** Drives the web view in Debian's chromium (playwright-core) for test/e2e/web.test.ts and the
 * web benchmark; run inside the agent's network namespace (its --web-listen is on loopback
 * there). Reads a JSON job from argv[2] and prints one JSON result line:
 *   {base, token, shots, spoof?: string[]} → what each page shows, as the tests compare it.
 * A page is ready when it sets body[data-ready]. */
import { chromium, type Page } from "playwright-core";

interface Job {
  base: string;
  token: string;
  shots: string;
  network: string;
  endpoint: string;
  /** A command that makes a drop once the live feed is open. */
  spoof?: string[];
  /** Only time loading the overview and the network page, `times` times. */
  timeLoads?: number;
}

const job = JSON.parse(process.argv[2] as string) as Job;
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
const out: Record<string, unknown> = {};
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  // Script errors (an exception in the page); failed requests are the console's, not these.
  const pageErrors: string[] = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  const ready = (p: Page, what: string) => p.waitForSelector(`body[data-ready="${what}"]`, { timeout: 20_000 });

  if (job.timeLoads) {
    const times: Record<string, number[]> = { overview: [], network: [] };
    await page.goto(`${job.base}/web/#token=${encodeURIComponent(job.token)}`);
    await ready(page, "overview");
    for (let i = 0; i < job.timeLoads; i++) {
      for (const [name, hash] of [
        ["overview", "#/"],
        ["network", `#/network/${encodeURIComponent(job.network)}`],
      ] as const) {
        const t0 = performance.now();
        await page.goto(`${job.base}/web/${hash}`);
        await ready(page, name);
        times[name]?.push(performance.now() - t0);
        await page.goto("about:blank");
      }
    }
    out.times = times;
  } else {
    // No token: the page loads (it holds no data) and says what it needs.
    const first = await page.goto(`${job.base}/web/`);
    out.headers = first?.headers();
    await ready(page, "error");
    out.noToken = await page.textContent("main");

    await page.goto(`${job.base}/web/#token=${encodeURIComponent(job.token)}`);
    await ready(page, "overview");
    out.cards = await page.$$eval("[data-card]", (els) =>
      Object.fromEntries(els.map((e) => [e.getAttribute("data-card"), e.querySelector(".v")?.textContent])),
    );
    out.networks = await page.$$eval('[data-table="networks"] tbody tr', (rows) =>
      rows.map((r) => ({ name: r.getAttribute("data-row"), fill: r.querySelector('[data-v="fill"]')?.textContent })),
    );
    out.plots = await page.$$eval("[data-plot]", (els) => els.map((e) => e.getAttribute("data-plot")));
    await page.screenshot({ path: `${job.shots}/overview.png`, fullPage: true });

    await page.goto(`${job.base}/web/#/network/${encodeURIComponent(job.network)}`);
    await ready(page, "network");
    out.endpoints = await page.$$eval('[data-table="endpoints"] tbody tr', (rows) =>
      rows.map((r) => ({
        name: r.getAttribute("data-row"),
        drops: r.querySelector('[data-k="drops"]')?.textContent,
        sent: r.querySelector('[data-k="sent"]')?.textContent,
      })),
    );
    out.rules = await page.$$eval("[data-table^='rules-'] tbody tr[data-row]", (rows) =>
      rows.map((r) => ({ id: r.getAttribute("data-row"), hits: r.querySelector('[data-k="hits"]')?.textContent })),
    );
    out.leases = await page.$$eval('[data-table="leases"] tbody tr[data-row]', (rows) =>
      rows.map((r) => r.getAttribute("data-row")),
    );
    out.records = await page.$$eval('[data-table="records"] tbody tr[data-row]', (rows) =>
      rows.map((r) => r.querySelector('[data-k="name"]')?.textContent),
    );
    await page.screenshot({ path: `${job.shots}/network.png`, fullPage: true });

    await page.goto(`${job.base}/web/#/endpoint/${encodeURIComponent(job.endpoint)}`);
    await ready(page, "endpoint");
    out.endpointDrops = await page.$$eval('[data-table="drops"] tbody tr[data-row]', (rows) =>
      rows.map((r) => [r.getAttribute("data-row"), r.querySelector('[data-k="packets"]')?.textContent]),
    );
    await page.screenshot({ path: `${job.shots}/endpoint.png`, fullPage: true });

    for (const [name, hash] of [
      ["firewall", "#/firewall"],
      ["dhcp-dns", "#/dhcp-dns"],
      ["fabric", "#/fabric"],
      ["endpoints", "#/endpoints"],
    ] as const) {
      await page.goto(`${job.base}/web/${hash}`);
      await ready(page, name);
      await page.screenshot({ path: `${job.shots}/${name}.png`, fullPage: true });
    }

    await page.goto(`${job.base}/web/#/live`);
    await ready(page, "live");
    await page.waitForSelector('[data-feed="state"]:text-matches("^live")', { timeout: 10_000 });
    if (job.spoof) Bun.spawnSync(job.spoof);
    const row = await page
      .waitForSelector('[data-table="feed"] tr[data-kind="drop"]', { timeout: 10_000 })
      .then((r) => r.$$eval("td", (tds) => tds.map((td) => td.textContent)))
      .catch(() => null);
    out.live = row;
    await page.screenshot({ path: `${job.shots}/live.png`, fullPage: true });
    out.pageErrors = pageErrors;
  }
} finally {
  await browser.close();
}
process.stdout.write(`${JSON.stringify(out)}\n`);
