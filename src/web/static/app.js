// Stratum's read-only web view. Everything it shows comes from the agent's GET routes
// (/v1/...), the counters' history (/web/history) and the live feed (/web/events); it never
// writes. Elements are built with textContent only (no HTML from data). Behind --web-listen
// the API token is given once as #token=... and kept for the tab (sessionStorage).

(() => {
  const TOKEN = "stratum-token";
  // #token=... (on the first load, or typed later): kept for the tab, taken out of the address.
  const takeToken = () => {
    if (!location.hash.startsWith("#token=")) return;
    sessionStorage.setItem(TOKEN, decodeURIComponent(location.hash.slice(7)));
    history.replaceState(null, "", `${location.pathname}#/`);
  };
  takeToken();
  const auth = () => {
    const t = sessionStorage.getItem(TOKEN);
    return t ? { authorization: `Bearer ${t}` } : {};
  };

  async function get(path) {
    const r = await fetch(path, { headers: auth() });
    if (!r.ok) {
      let m = `${r.status} ${r.statusText}`;
      try {
        m = (await r.json()).message || m;
      } catch {}
      const e = new Error(`${path}: ${m}`);
      e.status = r.status;
      throw e;
    }
    return r.json();
  }
  const maybe = (path) => get(path).catch(() => null);

  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of kids.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const num = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
  const perSec = (n) => (n >= 100 ? Math.round(n).toLocaleString("en-US") : n.toFixed(1));
  const bits = (b) => {
    const u = [
      [1e9, "Gbit/s"],
      [1e6, "Mbit/s"],
      [1e3, "kbit/s"],
    ];
    for (const [f, name] of u) if (b >= f) return `${+(b / f).toFixed(2)} ${name}`;
    return `${b} bit/s`;
  };
  const last = (a) => (a?.length ? a[a.length - 1] : 0);
  const link = (hash, text) => h("a", { href: hash }, text);

  function table(cols, rows, o = {}) {
    return h(
      "table",
      { class: o.class, "data-table": o.name },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          cols.map((c) => h("th", { class: c.num ? "num" : undefined }, c.label)),
        ),
      ),
      h(
        "tbody",
        {},
        rows.length
          ? rows.map((r) =>
              h(
                "tr",
                { "data-row": r.key },
                cols.map((c) => h("td", { class: c.num ? "num" : undefined, "data-k": c.key }, c.cell(r.v))),
              ),
            )
          : h("tr", {}, h("td", { class: "muted", colspan: cols.length }, o.empty || "none")),
      ),
    );
  }

  // ---- plots ---------------------------------------------------------------------------------
  const SERIES = [
    ["sent", "#2563eb", "s"],
    ["received", "#15803d", "r"],
    ["dropped", "#dc2626", "d"],
  ];
  function plot(title, series, at) {
    const canvas = h("canvas", { width: 840, height: 280, "data-plot": title });
    const box = h(
      "div",
      { class: "plot" },
      h("div", {}, h("strong", {}, title), " ", h("span", { class: "muted" }, "packets/s, last minutes")),
      canvas,
      h(
        "div",
        { class: "legend" },
        SERIES.map(([k, , cls]) => h("span", { class: cls }, `${k} ${perSec(last(series?.[k]))}`)),
      ),
    );
    const ctx = canvas.getContext("2d");
    if (!ctx || !series) return box;
    const W = canvas.width;
    const H = canvas.height;
    const pad = 36;
    const n = at.length;
    let max = 1;
    for (const [k] of SERIES) for (const v of series[k] || []) max = Math.max(max, v);
    ctx.font = "20px system-ui";
    ctx.fillStyle = "#6b7280";
    ctx.fillText(perSec(max), 4, 22);
    ctx.fillText("0", 4, H - 8);
    ctx.strokeStyle = "#e5e7eb";
    ctx.beginPath();
    ctx.moveTo(pad, H - pad / 2);
    ctx.lineTo(W, H - pad / 2);
    ctx.stroke();
    for (const [k, color] of SERIES) {
      const v = series[k] || [];
      ctx.strokeStyle = color;
      ctx.lineWidth = 3;
      ctx.beginPath();
      v.forEach((y, i) => {
        const x = pad + (n > 1 ? (i / (n - 1)) * (W - pad - 4) : 0);
        const yy = H - pad / 2 - (y / max) * (H - pad);
        if (i) ctx.lineTo(x, yy);
        else ctx.moveTo(x, yy);
      });
      ctx.stroke();
    }
    return box;
  }

  // ---- views ---------------------------------------------------------------------------------
  async function overview() {
    const [st, nets, hist] = await Promise.all([get("/v1/status"), get("/v1/networks"), get("/web/history")]);
    const okPorts = st.ports.filter((p) => p.state === "ok").length;
    const dropping = Object.values(hist.networks).reduce((a, n) => a + last(n.dropped), 0);
    return [
      h("h1", {}, "Overview"),
      h(
        "div",
        { class: "cards" },
        card("health", st.health.status, st.health.status === "ok" ? "ok" : "bad"),
        card("networks", num(st.networks)),
        card("endpoints", num(st.endpoints)),
        card("ports ok", `${num(okPorts)} / ${num(st.ports.length)}`),
        card("drops/s now", perSec(dropping), dropping ? "bad" : undefined),
      ),
      st.health.reasons.length ? h("div", { class: "error" }, st.health.reasons.join("; ")) : null,
      h("h2", {}, "Networks"),
      table(
        [
          { label: "name", key: "name", cell: (n) => link(`#/network/${encodeURIComponent(n.name)}`, n.name) },
          { label: "subnets", key: "cidr", cell: (n) => [n.cidr, n.cidr6 ? `, ${n.cidr6}` : ""] },
          {
            label: "profiles claimed",
            key: "fill",
            cell: (n) => [
              h("progress", { max: n.profiles.total, value: n.profiles.claimed }),
              " ",
              h("span", { "data-v": "fill" }, `${n.profiles.claimed}/${n.profiles.total}`),
            ],
          },
          { label: "endpoints", key: "endpoints", num: true, cell: (n) => num(n.endpoints.length) },
          { label: "default", key: "default", cell: (n) => n.defaultAction },
          { label: "egress cap", key: "egress", cell: (n) => (n.egress ? bits(n.egress.rate) : "none") },
          { label: "sent/s", key: "sent", num: true, cell: (n) => perSec(last(hist.networks[n.name]?.sent)) },
          { label: "dropped/s", key: "dropped", num: true, cell: (n) => perSec(last(hist.networks[n.name]?.dropped)) },
        ],
        nets.map((n) => ({ key: n.name, v: n })),
        { name: "networks", empty: "no network yet" },
      ),
      h("h2", {}, "Packet and drop rates"),
      h(
        "div",
        { class: "plots" },
        nets.slice(0, 12).map((n) => plot(n.name, hist.networks[n.name], hist.at)),
      ),
    ];
  }

  function card(label, value, cls) {
    return h(
      "div",
      { class: "card", "data-card": label },
      h("div", { class: "muted" }, label),
      h("div", { class: `v ${cls || ""}` }, value),
    );
  }

  const dropCell = (d) => {
    const e = Object.entries(d || {}).filter(([, n]) => n > 0);
    return e.length ? e.map(([r, n]) => `${r} ${num(n)}`).join(", ") : "none";
  };

  async function networkView(name) {
    const q = encodeURIComponent(name);
    const [n, eps, rules, leases, records, hist] = await Promise.all([
      get(`/v1/networks/${q}`),
      get(`/v1/endpoints?network=${q}`),
      get(`/v1/firewall/${q}/rules`),
      get("/v1/dhcp/leases"),
      get(`/v1/networks/${q}/dns/records`),
      get("/web/history"),
    ]);
    const mine = leases.filter((l) => l.network === name);
    return [
      h("h1", {}, `Network ${n.name}`),
      h(
        "div",
        { class: "cards" },
        card("subnets", [n.cidr, n.cidr6].filter(Boolean).join(", ")),
        card("gateway", [n.gateway, n.gateway6].filter(Boolean).join(", ")),
        card("profiles claimed", `${n.profiles.claimed}/${n.profiles.total}`),
        card("DNS zone", n.dnsZone),
        card(
          "egress cap",
          n.egress ? `${bits(n.egress.rate)}, now ${perSec(last(hist.networks[name]?.sent))} pkt/s` : "none",
        ),
      ),
      h("div", { class: "plots" }, plot(name, hist.networks[name], hist.at)),
      h("h2", {}, "Endpoints"),
      endpointTable(eps, hist),
      h("h2", {}, `Firewall (default ${rules.default}, ${num(rules.defaultHits.packets)} packets by it)`),
      rulesTable(rules),
      h("h2", {}, "DHCP leases"),
      leaseTable(mine),
      h("h2", {}, `DNS records of ${n.dnsZone}`),
      recordTable(records),
    ];
  }

  function endpointTable(eps, hist) {
    return table(
      [
        { label: "name", key: "name", cell: (e) => link(`#/endpoint/${encodeURIComponent(e.name)}`, e.name) },
        { label: "network", key: "network", cell: (e) => e.network },
        { label: "address", key: "ip", cell: (e) => [e.ip, e.ip6 ? ` ${e.ip6}` : ""] },
        { label: "kind", key: "kind", cell: (e) => e.kind },
        { label: "packets sent", key: "sent", num: true, cell: (e) => num(hist.totals[e.name]?.sent) },
        { label: "received", key: "received", num: true, cell: (e) => num(hist.totals[e.name]?.received) },
        { label: "drops", key: "drops", cell: (e) => dropCell(hist.totals[e.name]?.drops) },
        { label: "sent/s", key: "sentRate", num: true, cell: (e) => perSec(last(hist.endpoints[e.name]?.sent)) },
      ],
      eps.map((e) => ({ key: e.name, v: e })),
      { name: "endpoints", empty: "no endpoint" },
    );
  }

  function rulesTable(r) {
    return table(
      [
        { label: "priority", key: "priority", num: true, cell: (x) => x.priority },
        { label: "direction", key: "direction", cell: (x) => x.direction },
        {
          label: "match",
          key: "match",
          cell: (x) =>
            [x.proto, x.src && `from ${x.src}`, x.dst && `to ${x.dst}`, x.dport && `port ${x.dport}`]
              .filter(Boolean)
              .join(" "),
        },
        { label: "action", key: "action", cell: (x) => x.action },
        { label: "hits", key: "hits", num: true, cell: (x) => num(x.hits.packets) },
      ],
      r.rules.map((x) => ({ key: String(x.id), v: x })),
      { name: `rules-${r.scope}`, empty: "no rule" },
    );
  }

  function leaseTable(ls) {
    return table(
      [
        { label: "endpoint", key: "endpoint", cell: (l) => l.endpoint || "–" },
        { label: "address", key: "ip", cell: (l) => l.ip },
        { label: "mac", key: "mac", cell: (l) => l.mac },
        { label: "state", key: "state", cell: (l) => l.state },
        { label: "expires", key: "expires", cell: (l) => new Date(l.expiresAt).toLocaleString() },
      ],
      ls.map((l) => ({ key: `${l.network}/${l.ip}`, v: l })),
      { name: "leases", empty: "no lease" },
    );
  }

  function recordTable(rs) {
    return table(
      [
        { label: "name", key: "name", cell: (r) => r.name },
        { label: "type", key: "type", cell: (r) => r.type },
        { label: "value", key: "value", cell: (r) => r.value },
        { label: "ttl", key: "ttl", num: true, cell: (r) => r.ttl },
      ],
      rs.map((r) => ({ key: String(r.id), v: r })),
      { name: "records", empty: "no record" },
    );
  }

  async function endpointView(name) {
    const [e, hist] = await Promise.all([get(`/v1/endpoints/${encodeURIComponent(name)}`), get("/web/history")]);
    const t = hist.totals[name] || {};
    return [
      h("h1", {}, `Endpoint ${e.name}`),
      h(
        "div",
        { class: "cards" },
        card("network", e.network),
        card("address", [e.ip, e.ip6].filter(Boolean).join(", ")),
        card("mac", e.mac),
        card("kind", e.kind),
        card("packets sent", num(t.sent)),
        card("received", num(t.received)),
        card(
          "egress cap",
          e.egress
            ? `${bits(e.egress.rate)} (passed ${num(e.egressCounts?.passed.packets)}, dropped ${num(e.egressCounts?.dropped.packets)})`
            : "none",
        ),
      ),
      h("div", { class: "plots" }, plot(name, hist.endpoints[name], hist.at)),
      h("h2", {}, "Drops by reason"),
      table(
        [
          { label: "reason", key: "reason", cell: (x) => x[0] },
          { label: "packets", key: "packets", num: true, cell: (x) => num(x[1]) },
        ],
        Object.entries(e.drops || {})
          .filter(([, n]) => n > 0)
          .map((x) => ({ key: x[0], v: x })),
        { name: "drops", empty: "no drop" },
      ),
    ];
  }

  async function endpointsView() {
    const [eps, hist] = await Promise.all([get("/v1/endpoints"), get("/web/history")]);
    return [h("h1", {}, `Endpoints (${num(eps.length)})`), endpointTable(eps, hist)];
  }

  async function firewallView() {
    const [g, nets, bl] = await Promise.all([
      get("/v1/firewall/global/rules"),
      get("/v1/networks"),
      get("/v1/firewall/blocklist?limit=1"),
    ]);
    const scopes = await Promise.all(nets.map((n) => get(`/v1/firewall/${encodeURIComponent(n.name)}/rules`)));
    return [
      h("h1", {}, "Firewall"),
      h(
        "div",
        { class: "cards" },
        card("blocklist IPv4", num(bl.counts.ipv4)),
        card("blocklist IPv6", num(bl.counts.ipv6)),
      ),
      h("h2", {}, `Global scope (default ${g.default})`),
      rulesTable(g),
      scopes.map((s) => [
        h("h2", {}, `${s.scope} (default ${s.default}, ${num(s.defaultHits.packets)} packets by it)`),
        rulesTable(s),
      ]),
    ];
  }

  async function dhcpDnsView() {
    const [leases, records] = await Promise.all([get("/v1/dhcp/leases"), get("/v1/dns/records")]);
    return [
      h("h1", {}, "DHCP and DNS"),
      h("h2", {}, `Leases (${leases.length})`),
      leaseTable(leases),
      h("h2", {}, `Records (${records.length})`),
      recordTable(records),
    ];
  }

  async function fabricView() {
    const [nodes, bgp, gw, vips] = await Promise.all([
      maybe("/v1/nodes"),
      maybe("/v1/bgp/peers"),
      maybe("/v1/gateway/status"),
      maybe("/v1/lb/vips"),
    ]);
    const out = [h("h1", {}, "Fabric")];
    out.push(h("h2", {}, "Nodes"));
    out.push(
      Array.isArray(nodes)
        ? table(
            [
              { label: "node", key: "name", cell: (n) => n.name },
              { label: "state", key: "state", cell: (n) => n.state },
              { label: "address", key: "address", cell: (n) => n.address || "–" },
            ],
            nodes.map((n) => ({ key: n.name, v: n })),
            { name: "nodes" },
          )
        : h("p", { class: "muted" }, "a single node (not in a cluster)"),
    );
    out.push(h("h2", {}, "BGP sessions"));
    const peers = Array.isArray(bgp) ? bgp : bgp?.peers;
    out.push(
      Array.isArray(peers)
        ? table(
            [
              { label: "peer", key: "name", cell: (p) => p.name },
              { label: "address", key: "address", cell: (p) => p.address },
              { label: "state", key: "state", cell: (p) => p.state || p.session?.state || "–" },
            ],
            peers.map((p) => ({ key: p.name, v: p })),
            { name: "bgp" },
          )
        : h("p", { class: "muted" }, "not a gateway, or BGP not configured"),
    );
    out.push(h("h2", {}, "Gateway"));
    out.push(
      gw ? h("pre", { class: "mono" }, JSON.stringify(gw, null, 2)) : h("p", { class: "muted" }, "not a gateway"),
    );
    out.push(h("h2", {}, "Load-balancer VIPs"));
    out.push(
      Array.isArray(vips) && vips.length
        ? table(
            [
              { label: "vip", key: "name", cell: (v) => v.name },
              { label: "address", key: "address", cell: (v) => `${v.address}:${v.port}/${v.proto}` },
              {
                label: "backends up",
                key: "up",
                cell: (v) => `${v.backends.filter((b) => b.up).length}/${v.backends.length}`,
              },
            ],
            vips.map((v) => ({ key: v.name, v })),
            { name: "vips" },
          )
        : h("p", { class: "muted" }, "no VIP"),
    );
    return out;
  }

  // ---- the live feed -------------------------------------------------------------------------
  let feedAbort = null;
  function liveView() {
    const state = h("span", { class: "muted", "data-feed": "state" }, "connecting…");
    const body = h("tbody", {});
    const feed = h(
      "table",
      { class: "feed", "data-table": "feed" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["time", "kind", "endpoint", "network", "reason / action", "packet"].map((c) => h("th", {}, c)),
        ),
      ),
      body,
    );
    const ctl = new AbortController();
    feedAbort = ctl;
    (async () => {
      try {
        const r = await fetch("/web/events", { headers: auth(), signal: ctl.signal });
        if (!r.ok || !r.body) throw new Error(`${r.status}`);
        const rd = r.body.getReader();
        const dec = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await rd.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          for (let i = buf.indexOf("\n\n"); i >= 0; i = buf.indexOf("\n\n")) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            let ev = "message";
            let data = "";
            for (const line of block.split("\n")) {
              if (line.startsWith("event: ")) ev = line.slice(7);
              else if (line.startsWith("data: ")) data += line.slice(6);
            }
            if (ev === "open") state.textContent = "live: drops, log hits and new flows as they happen";
            else if (ev === "busy")
              state.textContent = `monitor (pid ${JSON.parse(data).holder}) holds the events; waiting…`;
            else if (ev === "event") {
              const e = JSON.parse(data);
              const p = e.packet || {};
              const what = e.kind === "drop" ? e.reason : `${e.action || ""} ${e.rule || ""}`;
              body.prepend(
                h(
                  "tr",
                  { "data-kind": e.kind, "data-reason": e.reason || "" },
                  h("td", {}, e.time.slice(11, 23)),
                  h("td", { class: e.kind === "drop" ? "bad" : undefined }, e.kind),
                  h("td", {}, e.endpoint || e.device),
                  h("td", {}, e.network || "–"),
                  h("td", {}, what),
                  h("td", {}, [p.src, p.dst].filter(Boolean).join(" → ") || p.summary || ""),
                ),
              );
              while (body.children.length > 300) body.lastChild.remove();
            }
          }
        }
      } catch (e) {
        if (!ctl.signal.aborted) state.textContent = `feed ended: ${e.message}`;
      }
    })();
    return [h("h1", {}, "Live"), h("p", {}, state), feed];
  }

  // ---- routing -------------------------------------------------------------------------------
  const main = document.getElementById("main");
  let timer = null;
  async function render() {
    takeToken();
    if (feedAbort) {
      feedAbort.abort();
      feedAbort = null;
    }
    clearTimeout(timer);
    const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
    const page = parts[0] || "overview";
    for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.nav === page);
    const views = {
      overview,
      endpoints: endpointsView,
      firewall: firewallView,
      "dhcp-dns": dhcpDnsView,
      fabric: fabricView,
      network: () => networkView(parts[1]),
      endpoint: () => endpointView(parts[1]),
    };
    if (page === "live") {
      main.replaceChildren(...liveView().flat());
      document.body.dataset.ready = "live";
      return;
    }
    const view = views[page];
    try {
      const nodes = view ? await view() : [h("h1", {}, "Not found")];
      main.replaceChildren(...nodes.flat(2).filter(Boolean));
      document.body.dataset.ready = page;
    } catch (e) {
      const hint = e.status === 401 ? " (open the page as /web/#token=<the API token>)" : "";
      main.replaceChildren(h("div", { class: "error" }, `${e.message}${hint}`));
      document.body.dataset.ready = "error";
    }
    timer = setTimeout(render, 5000);
  }
  window.addEventListener("hashchange", render);
  const nodeLabel = document.getElementById("node");
  const label = () => {
    if (nodeLabel.textContent) return;
    get("/v1/status")
      .then((s) => {
        nodeLabel.textContent = `${s.cluster ? `node ${s.cluster.node} · ` : ""}Stratum ${s.version}`;
      })
      .catch(() => {});
  };
  window.addEventListener("hashchange", label);
  label();
  render();
})();
