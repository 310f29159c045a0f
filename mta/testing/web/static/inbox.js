// The mta inbox list, kept live: each change notice from /api/events reloads
// /api/messages and rebuilds the table.  Text is only ever set as textContent.
"use strict";

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

function render(messages, dropped) {
  const body = document.querySelector("#messages tbody");
  const rows = messages.map((m) => {
    const row = document.createElement("tr");
    row.dataset.id = m.id;
    cell(row, m.from || m.mail_from || "<>");
    cell(row, m.rcpt_tos.join(", "));
    const subject = cell(row, "");
    const link = document.createElement("a");
    link.href = "/messages/" + encodeURIComponent(m.id);
    link.textContent = m.subject || "(no subject)";
    subject.appendChild(link);
    cell(row, m.date || m.received);
    return row;
  });
  body.replaceChildren(...rows);
  const n = messages.length;
  const count = n + (n === 1 ? " message" : " messages");
  document.getElementById("count").textContent =
    dropped > 0 ? count + " (" + dropped + " older dropped)" : count;
}

async function reload() {
  const answer = await fetch("/api/messages", { headers: { Accept: "application/json" } });
  if (answer.ok) {
    render(await answer.json(), Number(answer.headers.get("X-Mta-Dropped") || 0));
  }
}

const events = new EventSource("/api/events");
events.addEventListener("change", async () => {
  await reload();
  window.mtaInboxLive = true; // for the tests: the list follows the inbox from now on
});
