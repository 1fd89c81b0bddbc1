// A classic script loaded before Plotly.js on the compare page (no inline scripts: the CSP
// forbids them).
// Ask for the runs and their whole history now, while Plotly.js (large) still loads
// and compiles; compare.js picks these promises up.
(() => {
  const ids = new URLSearchParams(location.search).get("ids") ?? "";
  if (!/^\d+(,\d+)*$/.test(ids)) return;
  const json = (response) => (response.ok ? response.json() : Promise.reject(response));
  window.reglabPrefetch = {
    ids,
    runs: fetch(`/api/experiments?ids=${ids}&limit=100`).then(json),
    metrics: fetch(`/api/metrics?ids=${ids}`).then(json),
  };
  window.reglabPrefetch.runs.catch(() => {});
  window.reglabPrefetch.metrics.catch(() => {});
})();
