// The bare runs list: polls the REST API and renders rows as text (never as HTML).
const body = document.querySelector("#runs tbody");
const empty = document.querySelector("#empty");

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

async function refresh() {
  const response = await fetch("/api/experiments?limit=100");
  if (!response.ok) return;
  const { items } = await response.json();
  body.replaceChildren(
    ...items.map((run) => {
      const tr = document.createElement("tr");
      tr.append(
        cell(run.id),
        cell(run.name),
        cell(run.status),
        cell(`${run.epochs_done} / ${run.epochs_total}`),
        cell(run.regularization),
        cell(run.best_val_data_loss == null ? "" : run.best_val_data_loss.toFixed(4)),
        cell(run.device ?? ""),
      );
      tr.className = run.status;
      return tr;
    }),
  );
  empty.hidden = items.length > 0;
}

refresh();
setInterval(refresh, 2000);
