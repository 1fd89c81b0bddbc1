// A run's status as every page reads it: app/spec's Status, and which of them are final
// (a run there never changes again). tests/test_static_contract.py ties both lists here to
// the server's. No imports: api.js reads it too.

export const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled", "pruned"];
export const FINAL_STATUSES = new Set(["succeeded", "failed", "cancelled", "pruned"]);

export function isFinal(status) {
  return FINAL_STATUSES.has(status);
}

function textNode(tag, text, className) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  node.textContent = text;
  return node;
}

export function statusBadge(status) {
  return textNode("span", status, `badge status-${status}`);
}

// The options of a status filter: "all" (value "") then every status.
export function statusOptions(select) {
  const all = textNode("option", "all");
  all.value = "";
  select.replaceChildren(all, ...STATUSES.map((status) => textNode("option", status)));
}
