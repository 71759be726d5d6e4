/* Loop KPI views: the formatting, charts (uPlot) and panels both the dashboard and the MCP App render with.
 *
 * Rules: every figure on screen is a field of an API answer (the REST body, or the same object as an MCP tool's
 * structuredContent), formatted but never recomputed; each carries data-field / data-value so a test can check it
 * against the answer. No inline script or style: this runs under a strict CSP. Exposes `window.LoopKpi`.
 */
(function () {
  "use strict";

  const CHART_HEIGHT = 240;

  /** What the page around the panels does on a 401/403 and when an answer comes from the sandbox. */
  const hooks = {
    onAuthError() {},
    onSandbox() {},
  };

  // ------------------------------------------------------------------------------------------ errors

  class AuthError extends Error {
    constructor(status, problem) {
      super((problem && problem.detail) || "HTTP " + status);
      this.status = status;
      this.problem = problem;
    }
  }

  class ProblemError extends Error {
    constructor(status, problem) {
      super((problem && (problem.detail || problem.title)) || "HTTP " + status);
      this.status = status;
      this.problem = problem;
    }
  }

  class StaleError extends Error {}


  // ------------------------------------------------------------------------------------------ formatting

  const DASH = "\u2014";
  const numberFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
  const signedFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2, signDisplay: "exceptZero" });

  const formats = {
    int: (v) => numberFormat.format(v),
    signed: (v) => signedFormat.format(v),
    pct: (v) => numberFormat.format(v) + "\u00a0%",
    signedpct: (v) => signedFormat.format(v) + "\u00a0%",
    money: (v, currency) =>
      new Intl.NumberFormat(undefined, { style: "currency", currency: currency || "USD" }).format(v),
    duration: (v) => {
      if (v < 60) return numberFormat.format(v) + "\u00a0s";
      if (v < 3600) return numberFormat.format(Math.round(v / 6) / 10) + "\u00a0min";
      if (v < 86400) return numberFormat.format(Math.round(v / 360) / 10) + "\u00a0h";
      return numberFormat.format(Math.round(v / 8640) / 10) + "\u00a0d";
    },
    date: (v) => v,
    datetime: (v) => String(v).replace("T", " ").replace(/(\.\d+)?(Z|\+00:00)$/, " UTC"),
    text: (v) => String(v),
    bool: (v) => (v ? "yes" : "no"),
  };

  /** One figure: its text, and the field of the answer it shows (checked by the browser tests). */
  function fig(path, value, format, extra) {
    const text = value === null || value === undefined ? DASH : formats[format](value, extra);
    const span = el("span", { class: "fig", "data-field": path, "data-format": format }, text);
    span.dataset.value = JSON.stringify(value === undefined ? null : value);
    return span;
  }

  // ------------------------------------------------------------------------------------------ DOM

  function el(tag, attrs) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      node.setAttribute(name, value === true ? "" : value);
    }
    for (let i = 2; i < arguments.length; i += 1) append(node, arguments[i]);
    return node;
  }

  function append(node, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) child.forEach((c) => append(node, c));
    else node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }

  /** Replace a node's children (arrays flattened, null skipped). */
  function fill(node, ...children) {
    node.replaceChildren();
    append(node, children);
    return node;
  }

  const $ = (id) => document.getElementById(id);

  function table(caption, headers, rows) {
    return el(
      "div",
      { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption },
      el(
        "table",
        {},
        el("caption", {}, caption),
        el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, rows)
      )
    );
  }

  function badge(text) {
    return el("span", { class: "badge" }, text);
  }

  // ------------------------------------------------------------------------------------------ panels

  class Panel {
    constructor(id, render) {
      this.root = $(id);
      this.render = render;
      this.request = 0;
      this.result = null;
      this.charts = [];
    }

    slot(name) {
      return this.root.querySelector('[data-slot="' + name + '"]');
    }

    /** Run one request; only the latest one of this panel (and of this sign-in) gets to render. */
    async load(fetcher) {
      const request = (this.request += 1);
      this.root.setAttribute("aria-busy", "true");
      this.root.dataset.state = "loading";
      const status = this.slot("status");
      status.className = "status";
      status.textContent = "Loading\u2026";
      try {
        const result = await fetcher();
        if (request !== this.request) return null;
        this.result = result;
        this.show();
        return result;
      } catch (error) {
        if (request !== this.request || error instanceof StaleError) return null;
        if (error instanceof AuthError) {
          hooks.onAuthError(error);
          return null;
        }
        this.fail(error, fetcher);
        return null;
      } finally {
        if (request === this.request) this.root.removeAttribute("aria-busy");
      }
    }

    show() {
      this.destroyCharts();
      const result = this.result;
      this.slot("status").textContent = "";
      const body = this.slot("body");
      body.replaceChildren();
      this.render(this, result, body);
      renderMeta(this, result);
      if (result.data_source === "sandbox") hooks.onSandbox();
      this.root.dataset.state = "ready";
    }

    fail(error, fetcher) {
      this.destroyCharts();
      this.result = null;
      this.slot("body").replaceChildren();
      this.slot("warnings").hidden = true;
      this.slot("provenance").hidden = true;
      this.slot("subtitle").textContent = "";
      const status = this.slot("status");
      status.className = "status error";
      const problem = error.problem || {};
      const retry = el("button", { type: "button" }, "Try again");
      retry.addEventListener("click", () => this.load(fetcher));
      fill(status, 
        el("strong", {}, (problem.title || "Error") + (error.status ? " (" + error.status + ")" : "")),
        problem.detail ? ": " + problem.detail : "",
        problem.retry_after ? " Retry after " + problem.retry_after + " s. " : " ",
        error.status === 404 ? "" : retry
      );
      this.root.dataset.state = "error";
    }

    clear() {
      this.request += 1;
      this.destroyCharts();
      this.result = null;
      for (const name of ["body", "status"]) this.slot(name).replaceChildren();
      this.slot("warnings").hidden = true;
      this.slot("provenance").hidden = true;
      this.slot("subtitle").textContent = "";
      delete this.root.dataset.state;
    }

    destroyCharts() {
      for (const chart of this.charts) chart.destroy();
      this.charts = [];
    }
  }

  /** Partial results, warnings, and the provenance one click away. */
  function renderMeta(panel, result) {
    const warnings = panel.slot("warnings");
    const items = [];
    if (result.partial) {
      for (const source of result.sources || []) {
        if (source.status === "error") {
          const e = source.error || {};
          items.push(el("li", { "data-kind": "partial" }, el("strong", {}, "Partial: "), source.source + " did not answer (" + (e.title || "error") + (e.detail ? ": " + e.detail : "") + "). Its figures are missing."));
        }
      }
      if (!items.length) items.push(el("li", { "data-kind": "partial" }, el("strong", {}, "Partial: "), "part of this result is missing."));
    }
    for (const warning of Array.isArray(result.warnings) ? result.warnings : []) {
      items.push(el("li", { "data-kind": "warning" }, warningText(warning)));
    }
    warnings.replaceChildren(...items);
    warnings.hidden = items.length === 0;

    const details = panel.slot("provenance");
    const list = el(
      "dl",
      {},
      el("dt", {}, "Data source"),
      el("dd", {}, fig("data_source", result.data_source, "text")),
      el("dt", {}, "Generated at"),
      el("dd", {}, fig("generated_at", result.generated_at, "datetime")),
      el("dt", {}, "Partial"),
      el("dd", {}, fig("partial", Boolean(result.partial), "bool")),
      (result.sources || []).map((source, i) => [
        el("dt", {}, "Source: " + source.source),
        el(
          "dd",
          {},
          fig("sources/" + i + "/status", source.status, "text"),
          source.error ? " \u2014 " + source.error.title + ": " + source.error.detail : ""
        ),
      ])
    );
    const parts = [list];
    if (result.provenance !== undefined && result.provenance !== null) {
      parts.push(el("h4", {}, "Provenance"), provenanceView(result.provenance));
    }
    parts.push(el("h4", {}, "The API's answer"), el("pre", { tabindex: "0", "aria-label": "The API's answer as JSON" }, JSON.stringify(result, null, 2)));
    details.lastElementChild.replaceChildren(...parts);
    details.hidden = false;
  }

  function warningText(warning) {
    if (typeof warning === "string") return warning;
    if (warning && typeof warning === "object") {
      const text = warning.message || warning.detail || warning.title;
      if (text) return (warning.code ? warning.code + ": " : "") + text;
    }
    return JSON.stringify(warning);
  }

  function provenanceView(provenance) {
    if (Array.isArray(provenance) || typeof provenance !== "object") {
      return el("pre", { tabindex: "0", "aria-label": "Provenance as JSON" }, JSON.stringify(provenance, null, 2));
    }
    return el(
      "dl",
      {},
      Object.entries(provenance).map(([key, value]) => [
        el("dt", {}, key),
        el("dd", {}, typeof value === "object" && value !== null ? el("code", {}, JSON.stringify(value)) : String(value)),
      ])
    );
  }

  // ------------------------------------------------------------------------------------------ charts

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  /**
   * A uPlot chart over categories (months, steps, periods): `labels` on x, one entry per series with its values
   * (null where a series has no point). `kind` is "bars" or "line"; `notes` are drawn above the bars.
   */
  function categoryChart(panel, host, options) {
    const n = options.labels.length;
    const text = cssVar("--muted");
    const grid = cssVar("--grid");
    const stepEvery = () => Math.max(1, Math.ceil(n / Math.max(1, Math.floor(host.clientWidth / 80))));
    const bars = uPlot.paths.bars({ size: [0.7, 80] });
    const series = [{ label: "x" }].concat(
      options.series.map((s) => ({
        label: s.label,
        stroke: cssVar(s.color),
        fill: s.kind === "line" ? undefined : cssVar(s.fill || s.color),
        width: s.kind === "line" ? 2 : 1,
        dash: s.dash,
        paths: s.kind === "line" ? undefined : bars,
        points: { show: s.kind === "line", size: 6, fill: cssVar(s.color) },
        spanGaps: false,
      }))
    );
    const yFormat = options.yFormat || ((v) => numberFormat.format(v));
    const hooks = {};
    if (options.notes) {
      hooks.draw = [
        (u) => {
          const ctx = u.ctx;
          ctx.save();
          ctx.fillStyle = cssVar("--text");
          ctx.font = Math.round(12 * uPlot.pxRatio) + "px system-ui, sans-serif";
          ctx.textAlign = "center";
          options.notes.forEach((note, i) => {
            const value = options.series[0].values[i];
            if (note === null || value === null) return;
            const x = u.valToPos(i, "x", true);
            const y = u.valToPos(value, "y", true) - 6 * uPlot.pxRatio;
            ctx.fillText(note, x, y);
          });
          ctx.restore();
        },
      ];
    }
    const opts = {
      width: Math.max(200, host.clientWidth),
      height: CHART_HEIGHT,
      legend: { show: false },
      cursor: { drag: { x: false, y: false, setScale: false }, points: { show: false } },
      scales: {
        x: { time: false, range: () => [-0.5, n - 0.5] },
        y: { range: (u, min, max) => [Math.min(0, min), max > 0 ? max * (options.notes ? 1.18 : 1.08) : 1] },
      },
      axes: [
        {
          stroke: text,
          grid: { show: false },
          ticks: { stroke: grid },
          splits: () => options.labels.map((_, i) => i).filter((i) => i % stepEvery() === 0),
          values: (u, splits) => splits.map((i) => options.labels[i] || ""),
        },
        { stroke: text, grid: { stroke: grid }, ticks: { stroke: grid }, size: 64, values: (u, splits) => splits.map(yFormat) },
      ],
      series,
      hooks,
    };
    const data = [options.labels.map((_, i) => i)].concat(options.series.map((s) => s.values));
    const chart = new uPlot(opts, data, host);
    host.dataset.points = String(chart.data[0].length);
    host.dataset.series = String(chart.series.length - 1);
    const observer = new ResizeObserver(() => {
      const width = Math.max(200, host.clientWidth);
      if (width !== chart.width) chart.setSize({ width, height: CHART_HEIGHT });
    });
    observer.observe(host);
    panel.charts.push({ destroy: () => (observer.disconnect(), chart.destroy()) });
    return chart;
  }

  function chartHost(label) {
    return el("div", { class: "chart", role: "img", "aria-label": label });
  }

  function legend(entries) {
    return el(
      "ul",
      { class: "legend" },
      entries.map(([cls, label]) => el("li", {}, el("span", { class: "swatch " + cls, "aria-hidden": "true" }), label))
    );
  }

  function mountChart(panel, body, label, options, legendEntries) {
    const host = chartHost(label);
    body.append(host);
    if (legendEntries) body.append(legend(legendEntries));
    categoryChart(panel, host, options);
  }

  // ------------------------------------------------------------------------------------------ overview

  function card(title, figure, ...notes) {
    return el("div", { class: "card" }, el("h4", {}, title), el("p", { class: "big" }, figure), notes.filter(Boolean).map((n) => el("p", {}, n)));
  }

  function sourceProblem(result, source) {
    const status = (result.sources || []).find((s) => s.source === source);
    return status && status.error ? status.error.title + ": " + status.error.detail : "not configured or no answer";
  }

  function renderOverview(panel, r, body) {
    fill(panel.slot("subtitle"), "As of ", fig("as_of", r.as_of, "date"));
    const cards = [];
    const a = r.amplitude;
    if (a) {
      cards.push(
        card("Daily active users", fig("amplitude/dau", a.dau, "int"), ["on ", fig("amplitude/dau_date", a.dau_date, "date")]),
        card(
          "Monthly active users",
          fig("amplitude/mau", a.mau, "int"),
          ["since ", fig("amplitude/month_start", a.month_start, "date"), a.month_partial ? badge("month to date") : null]
        ),
        card("New users", fig("amplitude/new_users", a.new_users, "int"), ["since ", fig("amplitude/month_start", a.month_start, "date")])
      );
    } else {
      cards.push(el("div", { class: "card unavailable" }, el("h4", {}, "Amplitude"), el("p", {}, "Unavailable: " + sourceProblem(r, "amplitude"))));
    }
    const c = r.revenuecat;
    if (c) {
      const money = (path, v) => fig(path, v, "money", c.currency);
      cards.push(
        card("MRR", money("revenuecat/mrr", c.mrr), c.currency),
        card("Revenue, 28 days", money("revenuecat/revenue_28d", c.revenue_28d), "gross, before store fees"),
        card("Active subscriptions", fig("revenuecat/active_subscriptions", c.active_subscriptions, "int")),
        card("Active trials", fig("revenuecat/active_trials", c.active_trials, "int")),
        card("New customers, 28 days", fig("revenuecat/new_customers_28d", c.new_customers_28d, "int")),
        card(
          "Active users, 28 days",
          fig("revenuecat/active_users_28d", c.active_users_28d, "int"),
          "RevenueCat SDK; not comparable with MAU"
        )
      );
      if (c.last_updated_at) body.append(el("p", { class: "note" }, "RevenueCat figures computed at ", fig("revenuecat/last_updated_at", c.last_updated_at, "datetime")));
    } else {
      cards.push(el("div", { class: "card unavailable" }, el("h4", {}, "RevenueCat"), el("p", {}, "Unavailable: " + sourceProblem(r, "revenuecat"))));
    }
    body.prepend(...cards);
  }

  // ------------------------------------------------------------------------------------------ MAU

  function renderMau(panel, r, body) {
    const months = r.months;
    if (months.length) {
      fill(panel.slot("subtitle"), fig("months/0/month", months[0].month, "text"), " to ", fig("months/" + (months.length - 1) + "/month", months[months.length - 1].month, "text"));
    }
    const labels = months.map((m) => m.month + (m.partial ? "*" : ""));
    const partial = months.some((m) => m.partial);
    mountChart(
      panel,
      body,
      "Bar chart of monthly active users, " + months.length + " months" + (partial ? ", the last one partial" : "") + ". The figures are in the table below.",
      {
        labels,
        series: [
          { label: "Active users", color: "--chart-1", values: months.map((m) => (m.partial ? null : m.active_users)) },
          { label: "Partial month", color: "--chart-1", fill: "--chart-partial", values: months.map((m) => (m.partial ? m.active_users : null)) },
        ],
      },
      [["s1", "Complete month"]].concat(partial ? [["spartial", "Partial month (to date), marked *"]] : [])
    );
    body.append(
      table(
        "Monthly active users (Amplitude)",
        ["Month", "Active users", "Change", "Change %"],
        months.map((m, i) => {
          const p = "months/" + i + "/";
          return el(
            "tr",
            { class: m.partial ? "incomplete" : null },
            el("td", {}, fig(p + "month", m.month, "text"), m.partial ? [badge("partial"), " to ", fig(p + "end", m.end, "date")] : null),
            el("td", {}, fig(p + "active_users", m.active_users, "int")),
            el("td", {}, fig(p + "change", m.change, "signed")),
            el("td", {}, fig(p + "change_pct", m.change_pct, "signedpct"))
          );
        })
      )
    );
  }

  // ------------------------------------------------------------------------------------------ funnel

  function renderFunnel(panel, r, body) {
    fill(panel.slot("subtitle"), 
      fig("start_date", r.start_date, "date"), " to ", fig("end_date", r.end_date, "date"), ", ",
      fig("mode", r.mode, "text"), ", ", fig("conversion_window_days", r.conversion_window_days, "int"), "-day window"
    );
    const t = r.trial_conversion;
    body.append(
      el(
        "ul",
        { class: "summary" },
        el("li", {}, "Overall conversion ", fig("overall_conversion_pct", r.overall_conversion_pct, "pct")),
        t
          ? el("li", {}, "Trial conversion (RevenueCat) ", fig("trial_conversion/conversion_rate_pct", t.conversion_rate_pct, "pct"), " of ",
              fig("trial_conversion/trials", t.trials, "int"), " trials (", fig("trial_conversion/conversions", t.conversions, "int"), " converted; ",
              fig("trial_conversion/incomplete_periods", t.incomplete_periods, "int"), " recent periods still open, excluded)")
          : null
      )
    );
    const steps = r.steps;
    mountChart(
      panel,
      body,
      "Bar chart of users per funnel step, " + steps.length + " steps, labelled with the step conversion. The figures are in the table below.",
      {
        labels: steps.map((s) => s.event_type),
        series: [{ label: "Users", color: "--chart-1", values: steps.map((s) => s.users) }],
        notes: steps.map((s, i) => (i === 0 ? null : formats.pct(s.step_conversion_pct))),
      },
      [["s1", "Users reaching the step (label: step conversion, in percent of the previous step)"]]
    );
    body.append(
      table(
        "Funnel steps (Amplitude)",
        ["Step", "Users", "Step conversion", "Overall", "Median time"],
        steps.map((s, i) => {
          const p = "steps/" + i + "/";
          return el(
            "tr",
            {},
            el("td", {}, fig(p + "event_type", s.event_type, "text")),
            el("td", {}, fig(p + "users", s.users, "int")),
            el("td", {}, fig(p + "step_conversion_pct", s.step_conversion_pct, "pct")),
            el("td", {}, fig(p + "cumulative_conversion_pct", s.cumulative_conversion_pct, "pct")),
            el("td", {}, fig(p + "median_time_to_convert_seconds", s.median_time_to_convert_seconds, "duration"))
          );
        })
      )
    );
  }

  // ------------------------------------------------------------------------------------------ refunds

  const SERIES_COLORS = ["--chart-1", "--chart-2", "--chart-3", "--chart-4", "--chart-5", "--chart-6"];

  function renderRefunds(panel, r, body) {
    fill(panel.slot("subtitle"), 
      fig("start_date", r.start_date, "date"), " to ", fig("end_date", r.end_date, "date"), ", per ", fig("resolution", r.resolution, "text"),
      r.segment ? [", by ", fig("segment", r.segment, "text")] : []
    );
    const s = r.summary;
    const money = (path, v) => fig(path, v, "money", r.currency);
    body.append(
      el(
        "ul",
        { class: "summary" },
        el("li", {}, "Refund rate ", fig("summary/refund_rate_pct", s.refund_rate_pct, "pct")),
        el("li", {}, "Average per period ", fig("summary/average_period_refund_rate_pct", s.average_period_refund_rate_pct, "pct")),
        el("li", {}, "Refunded ", fig("summary/refunded_transactions", s.refunded_transactions, "int"), " of ", fig("summary/transactions", s.transactions, "int")),
        el("li", {}, "Revenue ", money("summary/revenue", s.revenue)),
        el("li", {}, "Incomplete periods ", fig("summary/incomplete_periods", s.incomplete_periods, "int"), " (excluded from the rates)")
      )
    );
    const starts = [...new Set(r.periods.map((p) => p.period_start))];
    const incomplete = new Set(r.periods.filter((p) => p.incomplete).map((p) => p.period_start));
    const labels = starts.map((d) => d + (incomplete.has(d) ? "*" : ""));
    const pctAxis = (v) => numberFormat.format(v) + " %";
    const chartLabel = "Chart of the refund rate in percent per " + r.resolution + ", " + starts.length + " periods" + (incomplete.size ? ", incomplete ones marked *" : "") + ". The figures are in the table below.";
    if (r.segment) {
      const segments = [...new Set(r.periods.map((p) => p.segment))];
      const shown = segments.slice(0, SERIES_COLORS.length);
      const series = shown.map((segment, k) => ({
        label: segment,
        color: SERIES_COLORS[k],
        kind: "line",
        values: starts.map((d) => {
          const row = r.periods.find((p) => p.period_start === d && p.segment === segment);
          return row ? row.refund_rate_pct : null;
        }),
      }));
      mountChart(panel, body, chartLabel, { labels, series, yFormat: pctAxis },
        shown.map((segment, k) => ["s" + (k + 1), segment]).concat(incomplete.size ? [["", "* incomplete period"]] : []));
      if (segments.length > shown.length) body.append(el("p", { class: "note" }, "The chart shows the first " + shown.length + " of " + segments.length + " segments; the table has them all."));
    } else {
      const byStart = new Map(r.periods.map((p) => [p.period_start, p]));
      mountChart(
        panel,
        body,
        chartLabel,
        {
          labels,
          yFormat: pctAxis,
          series: [
            { label: "Refund rate", color: "--chart-2", values: starts.map((d) => (incomplete.has(d) ? null : byStart.get(d).refund_rate_pct)) },
            { label: "Incomplete period", color: "--chart-2", fill: "--chart-partial", values: starts.map((d) => (incomplete.has(d) ? byStart.get(d).refund_rate_pct : null)) },
          ],
        },
        [["s2", "Refund rate"]].concat(incomplete.size ? [["spartial", "Incomplete period (may still change), marked *"]] : [])
      );
    }
    const headers = ["Period"].concat(r.segment ? ["Segment"] : [], ["Refund rate", "Refunded", "Transactions", "Revenue"]);
    body.append(
      table(
        "Refunds per " + r.resolution + " (RevenueCat)",
        headers,
        r.periods.map((row, i) => {
          const p = "periods/" + i + "/";
          return el(
            "tr",
            { class: row.incomplete ? "incomplete" : null },
            el("td", {}, fig(p + "period_start", row.period_start, "date"), row.incomplete ? badge("incomplete") : null),
            r.segment ? el("td", {}, fig(p + "segment", row.segment, "text")) : null,
            el("td", {}, fig(p + "refund_rate_pct", row.refund_rate_pct, "pct")),
            el("td", {}, fig(p + "refunded_transactions", row.refunded_transactions, "int")),
            el("td", {}, fig(p + "transactions", row.transactions, "int")),
            el("td", {}, money(p + "revenue", row.revenue))
          );
        })
      ),
      el("p", { class: "note" }, r.attribution_note)
    );
  }

  // ------------------------------------------------------------------------------------------ journey

  function definitionList(pairs) {
    return el("dl", {}, pairs.map(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
  }

  function renderJourney(panel, r, body) {
    fill(panel.slot("subtitle"), fig("user_id", r.user_id, "text"), ", ", String(r.timeline.length), " timeline entries");
    const a = r.amplitude;
    const c = r.revenuecat;
    body.append(
      el(
        "div",
        { class: "profile" },
        el(
          "div",
          {},
          el("h4", {}, "Amplitude"),
          a
            ? definitionList([
                ["Amplitude id", fig("amplitude/amplitude_id", a.amplitude_id, "text")],
                ["First used", fig("amplitude/first_used", a.first_used, "text")],
                ["Last used", fig("amplitude/last_used", a.last_used, "text")],
                ["Events", fig("amplitude/num_events", a.num_events, "int")],
                ["Sessions", fig("amplitude/num_sessions", a.num_sessions, "int")],
                ["Country", fig("amplitude/country", a.country, "text")],
                ["Platform", fig("amplitude/platform", a.platform, "text")],
              ])
            : el("p", {}, "Unknown to Amplitude.")
        ),
        el(
          "div",
          {},
          el("h4", {}, "RevenueCat"),
          c
            ? [
                definitionList([
                  ["First seen", fig("revenuecat/first_seen_at", c.first_seen_at, "datetime")],
                  ["Last seen", fig("revenuecat/last_seen_at", c.last_seen_at, "datetime")],
                  ["Country", fig("revenuecat/country", c.country, "text")],
                  ["Total revenue", fig("revenuecat/total_revenue_usd", c.total_revenue_usd, "money", "USD")],
                  ["Subscriptions", String(c.subscriptions.length)],
                ]),
                c.subscriptions.length
                  ? table(
                      "Subscriptions",
                      ["Product", "Status", "Store", "Started", "Revenue"],
                      c.subscriptions.map((s, i) => {
                        const p = "revenuecat/subscriptions/" + i + "/";
                        return el(
                          "tr",
                          {},
                          el("td", {}, fig(p + "product_id", s.product_id, "text")),
                          el("td", {}, fig(p + "status", s.status, "text")),
                          el("td", {}, fig(p + "store", s.store, "text")),
                          el("td", {}, fig(p + "starts_at", s.starts_at, "datetime")),
                          el("td", {}, fig(p + "total_revenue_usd", s.total_revenue_usd, "money", "USD"))
                        );
                      })
                    )
                  : null,
              ]
            : el("p", {}, "Unknown to RevenueCat.")
        )
      )
    );
    if (r.events_truncated) body.append(el("p", { class: "note" }, "Older Amplitude events were left out (event limit)."));
    body.append(
      el(
        "ol",
        { class: "timeline", tabindex: "0", "aria-label": "Timeline of " + r.user_id + ", oldest first" },
        r.timeline.map((entry, i) => {
          const p = "timeline/" + i + "/";
          const props = Object.entries(entry.properties || {});
          return el(
            "li",
            { class: entry.source, "data-kind": entry.kind },
            el("time", { datetime: entry.at }, fig(p + "at", entry.at, "datetime")),
            el("span", { class: "kind" }, entry.kind === "event" ? entry.source : entry.kind.replace(/_/g, " ")),
            fig(p + "title", entry.title, "text"),
            entry.amount_usd !== null && entry.amount_usd !== undefined ? [" ", fig(p + "amount_usd", entry.amount_usd, "money", "USD")] : null,
            entry.product_id ? [" \u00b7 ", fig(p + "product_id", entry.product_id, "text")] : null,
            entry.store ? [" \u00b7 ", fig(p + "store", entry.store, "text")] : null,
            props.length ? el("span", { class: "props" }, props.map(([k, v]) => k + ": " + v).join(", ")) : null
          );
        })
      )
    );
  }

  window.LoopKpi = {
    Panel,
    renderers: { overview: renderOverview, mau: renderMau, funnel: renderFunnel, refunds: renderRefunds, journey: renderJourney },
    AuthError,
    ProblemError,
    StaleError,
    hooks,
    el,
  };
})();
