// Live updates: the content of the section with data-live is replaced by
// that of a fresh copy from its URL every second until the copy has no
// data-live (it is done). The section itself stays, so screen readers
// announce the changes of its aria-live region. Without JavaScript, such
// pages reload themselves instead.
(function () {
  "use strict";
  function poll() {
    var el = document.querySelector("[data-live]");
    if (!el) { return; }
    fetch(el.getAttribute("data-live"), { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
      .then(function (html) {
        var t = document.createElement("template");
        t.innerHTML = html.trim();
        var fresh = t.content.querySelector("#live");
        if (!fresh) { window.location.reload(); return; } // signed out: show why
        el.innerHTML = fresh.innerHTML;
        if (!fresh.hasAttribute("data-live")) { el.removeAttribute("data-live"); }
        setTimeout(poll, 1000);
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 1000);
})();
