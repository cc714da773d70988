// walcast's status page: scrapes /metrics every two seconds (the same counters Prometheus
// reads), keeps the last five minutes in memory and draws them as inline SVG. No network beyond
// this server, no library.
(function () {
  'use strict';
  const EVERY_MS = 2000;
  const WINDOW_MS = 5 * 60 * 1000;
  const COLORS = ['#3b82f6', '#ef4444', '#10b981', '#f59e0b', '#8b5cf6', '#ec4899', '#14b8a6', '#64748b'];
  const STAGES = ['decode', 'match', 'serialize', 'send'];
  const metricsPath = document.getElementById('metrics-link').getAttribute('href');
  const token = new URLSearchParams(location.search).get('access_token');
  const headers = token ? { Authorization: 'Bearer ' + token } : {};
  /** [{t, samples: Map(series -> value), parsed: [{name, labels, value, series}]}] */
  const history = [];
  let polls = 0;

  function parse(text) {
    const samples = new Map();
    const parsed = [];
    for (const line of text.split('\n')) {
      if (!line || line.startsWith('#')) continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$/.exec(line);
      if (!m) continue;
      const labels = {};
      if (m[2]) {
        const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
        let l;
        while ((l = re.exec(m[2]))) {
          labels[l[1]] = l[2].replace(/\\n/g, '\n').replace(/\\(.)/g, '$1');
        }
      }
      const value = Number(m[3]);
      const series = m[1] + (m[2] || '');
      samples.set(series, value);
      parsed.push({ name: m[1], labels, value, series });
    }
    return { samples, parsed };
  }

  function bytes(v) {
    if (v === undefined || v === null || Number.isNaN(v)) return '–';
    if (v < 0) return 'unknown';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    let x = v;
    while (x >= 1024 && i < units.length - 1) {
      x /= 1024;
      i += 1;
    }
    return (i ? x.toFixed(1) : String(Math.round(x))) + ' ' + units[i];
  }
  function seconds(v) {
    if (v === undefined || v === null || Number.isNaN(v)) return '–';
    if (v < 0.001) return (v * 1e6).toFixed(0) + ' µs';
    if (v < 1) return (v * 1e3).toFixed(v < 0.01 ? 2 : 1) + ' ms';
    if (v < 120) return v.toFixed(1) + ' s';
    return (v / 60).toFixed(1) + ' min';
  }
  function lsn(v) {
    if (!v) return '–';
    const hi = Math.floor(v / 4294967296);
    const lo = v - hi * 4294967296;
    return hi.toString(16).toUpperCase() + '/' + lo.toString(16).toUpperCase();
  }
  function text(id, value) {
    const el = document.getElementById(id);
    if (el) el.textContent = value;
  }

  // A line per series over the window; y from 0 to the largest value seen.
  function chart(id, series, format) {
    const svg = document.getElementById(id);
    const legend = document.getElementById(id.replace('chart-', 'legend-'));
    const w = svg.clientWidth || 360;
    const h = svg.clientHeight || 120;
    const pad = { l: 4, r: 4, t: 12, b: 14 };
    const now = Date.now();
    // The last five minutes once there are that many; until then the time since the first
    // scrape, at least a minute, so a fresh page does not squeeze its lines into the right edge.
    const first = history.length ? history[0].t : now;
    const span = Math.min(WINDOW_MS, Math.max(60 * 1000, now - first));
    let max = 0;
    for (const s of series) for (const [, v] of s.points) if (v > max) max = v;
    const top = max > 0 ? max * 1.1 : 1;
    const x = (t) => pad.l + ((t - (now - span)) / span) * (w - pad.l - pad.r);
    const y = (v) => h - pad.b - (v / top) * (h - pad.t - pad.b);
    const parts = [
      `<line x1="${pad.l}" x2="${w - pad.r}" y1="${y(0)}" y2="${y(0)}" stroke="#e3e6ec"/>`,
      `<line x1="${pad.l}" x2="${w - pad.r}" y1="${y(max)}" y2="${y(max)}" stroke="#eef0f4" stroke-dasharray="3 3"/>`,
      `<text x="${pad.l}" y="${pad.t - 2}">max ${format(max)}</text>`,
      `<text x="${pad.l}" y="${h - 2}">${Math.round(span / 60000)} min ago</text>`,
      `<text x="${w - pad.r}" y="${h - 2}" text-anchor="end">now</text>`,
    ];
    series.forEach((s, i) => {
      const pts = s.points.filter(([, v]) => v !== null && !Number.isNaN(v));
      if (!pts.length) return;
      const d = pts.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
      const [lt, lv] = pts[pts.length - 1];
      parts.push(
        `<polyline fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="1.6" points="${d}"/>`,
        `<circle cx="${x(lt).toFixed(1)}" cy="${y(lv).toFixed(1)}" r="2.2" fill="${COLORS[i % COLORS.length]}"/>`,
      );
    });
    svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
    svg.innerHTML = parts.join('');
    if (legend) {
      legend.innerHTML = '';
      series.forEach((s, i) => {
        const span = document.createElement('span');
        const swatch = document.createElement('i');
        swatch.style.background = COLORS[i % COLORS.length];
        span.append(swatch, document.createTextNode(s.name));
        legend.append(span);
      });
    }
  }

  function sumWhere(parsed, name, key, value) {
    return parsed
      .filter((p) => p.name === name && p.labels[key] === value)
      .reduce((a, p) => a + p.value, 0);
  }
  function labelValues(parsed, name, key) {
    return [...new Set(parsed.filter((p) => p.name === name).map((p) => p.labels[key]))].sort();
  }

  // histogram_quantile over the observations between two scrapes; null when there were none.
  function quantile(q, prev, cur, stage) {
    const name = 'walcast_' + stage + '_seconds_bucket';
    const buckets = cur.parsed
      .filter((p) => p.name === name)
      .map((p) => ({
        le: p.labels.le === '+Inf' ? Infinity : Number(p.labels.le),
        n: p.value - (prev ? prev.samples.get(p.series) || 0 : 0),
      }))
      .sort((a, b) => a.le - b.le);
    const total = buckets.length ? buckets[buckets.length - 1].n : 0;
    if (!(total > 0)) return null;
    const rank = q * total;
    let lower = 0;
    let below = 0;
    for (const b of buckets) {
      if (b.n >= rank) {
        if (b.le === Infinity) return lower;
        const inBucket = b.n - below;
        return inBucket > 0 ? lower + (b.le - lower) * ((rank - below) / inBucket) : b.le;
      }
      lower = b.le;
      below = b.n;
    }
    return lower;
  }

  function pairs(pick) {
    const out = [];
    for (let i = 1; i < history.length; i += 1) {
      out.push([history[i].t, pick(history[i - 1], history[i])]);
    }
    return out;
  }
  function points(pick) {
    return history.map((h) => [h.t, pick(h)]);
  }

  function render() {
    const cur = history[history.length - 1];
    const prev = history.length > 1 ? history[history.length - 2] : null;
    const s = (series) => cur.samples.get(series);
    document.body.dataset.polls = String(polls);
    text('updated', 'updated ' + new Date(cur.t).toLocaleTimeString() + ', every ' + EVERY_MS / 1000 + ' s');

    // Replication.
    text('lsn', lsn(s('walcast_slot_confirmed_lsn')));
    text('lag-bytes', bytes(s('walcast_slot_lag_bytes')));
    const lagSeconds = s('walcast_slot_lag_seconds');
    text('lag-seconds', lagSeconds === undefined ? 'none yet' : seconds(lagSeconds) + ' ago');
    chart(
      'chart-lag',
      [{ name: 'lag (bytes)', points: points((h) => Math.max(0, h.samples.get('walcast_slot_lag_bytes') ?? 0)) }],
      bytes,
    );

    // Retained WAL against max_slot_wal_keep_size.
    const retained = s('walcast_slot_retained_wal_bytes');
    const keep = s('walcast_slot_wal_keep_size_bytes');
    text('retained', bytes(retained));
    text('keep', keep === undefined ? '–' : keep < 0 ? 'unlimited' : bytes(keep));
    const share = keep > 0 && retained >= 0 ? Math.min(1, retained / keep) : 0;
    const bar = document.getElementById('retained-bar');
    bar.style.width = (share * 100).toFixed(1) + '%';
    bar.style.background = share > 0.8 ? '#ef4444' : share > 0.5 ? '#f59e0b' : '#3b82f6';
    const wal = [{ name: 'retained', points: points((h) => Math.max(0, h.samples.get('walcast_slot_retained_wal_bytes') ?? 0)) }];
    if (keep > 0) wal.push({ name: 'max_slot_wal_keep_size', points: points(() => keep) });
    chart('chart-wal', wal, bytes);

    // Events per second by table.
    const tables = labelValues(cur.parsed, 'walcast_events_decoded_total', 'table');
    const rate = (table) => (a, b) =>
      (sumWhere(b.parsed, 'walcast_events_decoded_total', 'table', table)
        - sumWhere(a.parsed, 'walcast_events_decoded_total', 'table', table))
      / ((b.t - a.t) / 1000);
    const rates = document.getElementById('rates');
    rates.innerHTML = '';
    for (const table of tables) {
      const div = document.createElement('div');
      const now = prev ? rate(table)(prev, cur) : 0;
      div.innerHTML = '<div class="label"></div><div class="big"></div>';
      div.firstChild.textContent = table;
      div.lastChild.textContent = now.toFixed(1) + '/s';
      div.lastChild.dataset.rateTable = table;
      div.lastChild.dataset.rate = String(now);
      rates.append(div);
    }
    if (!tables.length) rates.textContent = 'no row events decoded yet';
    chart('chart-events', tables.map((t) => ({ name: t, points: pairs(rate(t)) })), (v) => v.toFixed(1) + '/s');

    // Stage latency percentiles between the last two scrapes.
    const lt = document.getElementById('latency-table');
    lt.querySelectorAll('tr.stage').forEach((r) => r.remove());
    for (const stage of STAGES) {
      const tr = document.createElement('tr');
      tr.className = 'stage';
      const cells = [stage].concat(
        [0.5, 0.9, 0.99].map((q) => {
          const v = quantile(q, prev, cur, stage);
          return v === null ? '–' : seconds(v);
        }),
      );
      cells.forEach((c, i) => {
        const td = document.createElement('td');
        td.textContent = c;
        if (i) td.className = 'v';
        tr.append(td);
      });
      lt.append(tr);
    }
    chart(
      'chart-latency',
      STAGES.map((stage) => ({ name: stage + ' p99', points: pairs((a, b) => quantile(0.99, a, b, stage)) })),
      seconds,
    );

    // Connections by protocol, running subscriptions by protocol and role, closes.
    text('subs', String(s('walcast_subscriptions_active') ?? '–'));
    text('slow', String(s('walcast_slow_consumer_closes_total') ?? '–'));
    text('pings', String(s('walcast_ping_timeouts_total') ?? '–'));
    const ct = document.getElementById('clients-table');
    ct.innerHTML = '<tr><th>protocol</th><th>role</th><th class="v">connections</th><th class="v">subscriptions</th></tr>';
    const protocols = labelValues(cur.parsed, 'walcast_connections', 'protocol');
    for (const p of cur.parsed.filter((x) => x.name === 'walcast_operations_active')) {
      if (!protocols.includes(p.labels.protocol)) protocols.push(p.labels.protocol);
    }
    for (const protocol of protocols) {
      const roles = cur.parsed.filter(
        (x) => x.name === 'walcast_operations_active' && x.labels.protocol === protocol,
      );
      const conns = s('walcast_connections{protocol="' + protocol + '"}') ?? 0;
      const rows = roles.length ? roles : [{ labels: { role: '' }, value: 0 }];
      rows.forEach((r, i) => {
        const tr = document.createElement('tr');
        for (const [c, cls] of [[i ? '' : protocol, ''], [r.labels.role, ''], [i ? '' : String(conns), 'v'], [String(r.value), 'v']]) {
          const td = document.createElement('td');
          td.textContent = c;
          td.className = cls;
          tr.append(td);
        }
        ct.append(tr);
      });
    }
    chart(
      'chart-clients',
      protocols
        .map((p) => ({ name: p, points: points((h) => h.samples.get('walcast_connections{protocol="' + p + '"}') ?? 0) }))
        .concat([
          { name: 'subscriptions', points: points((h) => h.samples.get('walcast_subscriptions_active') ?? 0) },
          {
            name: 'slow-consumer closes',
            points: pairs((a, b) =>
              (b.samples.get('walcast_slow_consumer_closes_total') ?? 0) - (a.samples.get('walcast_slow_consumer_closes_total') ?? 0)),
          },
        ]),
      (v) => String(Math.round(v)),
    );

    // Every sample except histogram buckets, as read, for a look and for comparing.
    const tt = document.getElementById('totals-list');
    tt.innerHTML = '';
    for (const p of cur.parsed) {
      if (p.name.endsWith('_bucket')) continue;
      const row = document.createElement('div');
      const k = document.createElement('code');
      const v = document.createElement('span');
      k.textContent = p.series;
      v.textContent = String(p.value);
      v.dataset.series = p.series;
      row.append(k, v);
      tt.append(row);
    }
  }

  async function poll() {
    const err = document.getElementById('error');
    try {
      const resp = await fetch(metricsPath, { headers, cache: 'no-store' });
      if (!resp.ok) {
        throw new Error(
          resp.status === 401
            ? 'the metrics need their token: open this page with ?access_token=WALCAST_METRICS_TOKEN'
            : 'GET ' + metricsPath + ': HTTP ' + resp.status,
        );
      }
      const { samples, parsed } = parse(await resp.text());
      const t = Date.now();
      history.push({ t, samples, parsed });
      while (history.length && history[0].t < t - WINDOW_MS) history.shift();
      polls += 1;
      err.style.display = 'none';
      render();
    } catch (e) {
      err.textContent = String(e.message || e);
      err.style.display = 'block';
    }
  }
  poll();
  setInterval(poll, EVERY_MS);
})();
