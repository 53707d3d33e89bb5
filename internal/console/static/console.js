// Live updates: a section with data-live is replaced by a fresh copy from
// its URL every second until the copy has no data-live (it is done).
// Without JavaScript, such pages reload themselves instead.
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
        if (fresh) { el.replaceWith(fresh); }
        setTimeout(poll, 1000);
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 1000);
})();
