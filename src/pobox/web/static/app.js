// pobox webmail: the little script the pages use (no build step, nothing from another origin).
// Everything works without it; it adds live updates, select-all and keyboard shortcuts.
"use strict";

(function () {
  const body = document.body;

  // select all messages of the page
  function wireSelectAll() {
    const all = document.getElementById("select-all");
    if (!all) return;
    all.addEventListener("change", function () {
      document.querySelectorAll('#rows input[name="uid"]').forEach(function (box) {
        box.checked = all.checked;
      });
    });
  }

  // live updates: the server says which folder changed; the page fetches itself again and
  // swaps the folder list and (on a list page) the list in place
  let refreshing = null;
  function refresh() {
    if (refreshing) return;
    refreshing = setTimeout(function () {
      fetch(location.href, { credentials: "same-origin", headers: { "X-Requested-With": "live" } })
        .then(function (response) {
          if (!response.ok || response.redirected) return null;
          return response.text();
        })
        .then(function (text) {
          refreshing = null;
          if (text === null) return;
          const fresh = new DOMParser().parseFromString(text, "text/html");
          const folders = fresh.getElementById("folders");
          if (folders) document.getElementById("folders").replaceWith(folders);
          const rows = fresh.getElementById("rows");
          const current = document.getElementById("rows");
          if (rows && current) {
            const checked = new Set(
              Array.from(current.querySelectorAll('input[name="uid"]:checked')).map(function (b) {
                return b.value;
              })
            );
            rows.querySelectorAll('input[name="uid"]').forEach(function (b) {
              if (checked.has(b.value)) b.checked = true;
            });
            current.replaceWith(rows);
          }
          const flagButton = fresh.querySelector(".message .toolbar form");
          const currentButton = document.querySelector(".message .toolbar form");
          if (flagButton && currentButton) currentButton.replaceWith(flagButton);
          body.dataset.refreshed = String(Number(body.dataset.refreshed || "0") + 1);
        })
        .catch(function () {
          refreshing = null;
        });
    }, 50);
  }

  function live() {
    const url = body.dataset.live;
    if (!url || !window.EventSource) return;
    const source = new EventSource(url);
    source.addEventListener("change", refresh);
    source.addEventListener("open", function () {
      body.dataset.live_open = "1";
    });
  }

  // keyboard: j/k move between messages, Enter opens, c writes, / searches
  function keys() {
    document.addEventListener("keydown", function (event) {
      const target = event.target;
      if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT")) return;
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      const links = Array.from(document.querySelectorAll("#rows td.subject a"));
      const index = links.indexOf(document.activeElement);
      if (event.key === "j" && links.length) {
        links[Math.min(index + 1, links.length - 1)].focus();
        event.preventDefault();
      } else if (event.key === "k" && links.length) {
        links[Math.max(index - 1, 0)].focus();
        event.preventDefault();
      } else if (event.key === "/") {
        const q = document.getElementById("q");
        if (q) {
          q.focus();
          event.preventDefault();
        }
      } else if (event.key === "c") {
        location.href = "/compose";
      }
    });
  }

  // drafts save themselves: a few seconds after the last change, into Drafts (the server
  // answers with the draft's folder:uid, which the next save replaces)
  function autosave() {
    const form = document.querySelector("form.compose[data-autosave]");
    if (!form || !window.fetch || !window.FormData) return;
    const wait = Number(form.dataset.autosave) || 3000;
    let timer = null;
    let saving = false;
    function save() {
      if (saving) {
        timer = setTimeout(save, wait);
        return;
      }
      saving = true;
      const data = new FormData(form);
      data.set("action", "autosave");
      // form.action would be the buttons named "action": the attribute is meant
      fetch(form.getAttribute("action"), { method: "POST", body: data, credentials: "same-origin" })
        .then(function (response) {
          return response.ok ? response.json() : null;
        })
        .then(function (answer) {
          saving = false;
          if (!answer) return;
          form.querySelector('input[name="draft"]').value = answer.draft;
          const status = document.getElementById("autosaved");
          if (status) status.textContent = "Draft saved " + new Date().toLocaleTimeString();
        })
        .catch(function () {
          saving = false;
        });
    }
    form.addEventListener("input", function () {
      if (timer) clearTimeout(timer);
      timer = setTimeout(save, wait);
    });
    form.addEventListener("submit", function () {
      if (timer) clearTimeout(timer);
    });
  }

  // settings, sharing: a choice of usual rights ticks their boxes (the boxes alone also work)
  function wireSharePreset() {
    const preset = document.getElementById("share-preset");
    if (!preset) return;
    preset.addEventListener("change", function () {
      if (!preset.value) return;
      document.querySelectorAll('#share-rights input[name="right"]').forEach(function (box) {
        box.checked = preset.value.indexOf(box.value) >= 0;
      });
    });
  }

  wireSelectAll();
  wireSharePreset();
  autosave();
  live();
  keys();
})();
