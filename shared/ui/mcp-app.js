/* Loop KPI as an MCP App: the view side of the MCP Apps postMessage protocol (JSON-RPC 2.0 with the host).
 *
 * ui/initialize -> (host context: theme) -> ui/notifications/initialized; then the host sends
 * ui/notifications/tool-input and ui/notifications/tool-result (a CallToolResult), whose structuredContent is
 * rendered with the dashboard's own panel for this tool (kpi-render.js). The view reports its size with
 * ui/notifications/size-changed, answers ping and ui/resource-teardown, and makes no network request.
 */
(function () {
  "use strict";

  const { Panel, renderers, hooks, el } = window.LoopKpi;
  const PROTOCOL_VERSION = "2026-01-26";
  const RENDERER = {
    kpi_overview: "overview",
    kpi_mau: "mau",
    kpi_conversion: "funnel",
    kpi_refund_analysis: "refunds",
    kpi_user_journey: "journey",
  };
  const TITLES = {
    overview: "KPI overview",
    mau: "Monthly active users",
    funnel: "Conversion funnel",
    refunds: "Refund rate",
    journey: "User journey",
  };
  const root = document.documentElement;
  const pending = new Map();
  let nextId = 1;
  let panel = null;

  function send(message) {
    window.parent.postMessage(Object.assign({ jsonrpc: "2.0" }, message), "*");
  }

  function request(method, params) {
    const id = nextId++;
    send({ id, method, params });
    return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
  }

  function notify(method, params) {
    send({ method, params });
  }

  function applyContext(context) {
    if (context && (context.theme === "light" || context.theme === "dark")) root.dataset.theme = context.theme;
  }

  function toolName(context) {
    const fromHost = context && context.toolInfo && context.toolInfo.tool && context.toolInfo.tool.name;
    return root.dataset.tool || fromHost || "";
  }

  function showResult(result) {
    if (!panel) return;
    if (result.isError || !result.structuredContent) {
      const text = (result.content || []).filter((c) => c.type === "text").map((c) => c.text).join("\n");
      panel.fail({ status: 0, problem: { title: "The tool answered an error", detail: text } }, () => null);
    } else {
      panel.result = result.structuredContent;
      panel.show();
    }
    root.dataset.rendered = "true";
  }

  function onMessage(event) {
    if (event.source !== window.parent) return;
    const message = event.data;
    if (!message || message.jsonrpc !== "2.0") return;
    if (message.method === undefined) {
      const waiter = pending.get(message.id);
      if (!waiter) return;
      pending.delete(message.id);
      if (message.error) waiter.reject(message.error);
      else waiter.resolve(message.result);
      return;
    }
    switch (message.method) {
      case "ui/notifications/tool-result":
        showResult(message.params || {});
        break;
      case "ui/notifications/tool-input":
      case "ui/notifications/tool-input-partial":
        break;
      case "ui/notifications/tool-cancelled":
        if (panel) panel.fail({ status: 0, problem: { title: "Cancelled", detail: (message.params || {}).reason || "" } }, () => null);
        break;
      case "ui/notifications/host-context-changed":
        applyContext(message.params);
        if (panel && panel.result) panel.show();
        break;
      case "ping":
      case "ui/resource-teardown":
        send({ id: message.id, result: {} });
        break;
      default:
        if (message.id !== undefined) send({ id: message.id, error: { code: -32601, message: "Method not found" } });
    }
  }

  function reportSize() {
    let last = "";
    const observer = new ResizeObserver(() => {
      const width = Math.ceil(document.documentElement.scrollWidth);
      const height = Math.ceil(document.documentElement.scrollHeight);
      const size = width + "x" + height;
      if (size === last) return;
      last = size;
      notify("ui/notifications/size-changed", { width, height });
    });
    observer.observe(document.body);
  }

  async function start() {
    window.addEventListener("message", onMessage);
    hooks.onSandbox = () => {
      document.getElementById("sandbox-banner").hidden = false;
    };
    const result = await request("ui/initialize", {
      appInfo: { name: "loop-kpi", version: "0.1.0" },
      appCapabilities: { availableDisplayModes: ["inline"] },
      protocolVersion: PROTOCOL_VERSION,
    });
    const context = (result && result.hostContext) || {};
    applyContext(context);
    const view = RENDERER[toolName(context)];
    if (view) {
      panel = new Panel("panel-view", renderers[view]);
      if (view === "overview") panel.slot("body").classList.add("cards");
      document.getElementById("view-title").textContent = TITLES[view];
    } else {
      const section = document.getElementById("panel-view");
      section.replaceChildren(el("p", {}, "Loop KPI: no view for this tool."));
    }
    notify("ui/notifications/initialized", {});
    reportSize();
  }

  start();
})();
