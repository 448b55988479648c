// Live referral list: on every change to a referral of this institution (server-sent events),
// fetch the list's rows again and swap them in. Without JavaScript the list still works; it just
// needs a reload.
(function () {
  'use strict';
  var table = document.getElementById('referrals');
  if (!table || !window.EventSource) return;
  var status = document.getElementById('live-status');
  var pending = null;
  function refresh() {
    pending = null;
    fetch(table.dataset.rows, { credentials: 'same-origin' })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var tpl = document.createElement('template');
        tpl.innerHTML = html.trim();
        var fresh = tpl.content.querySelector('tbody');
        var old = document.getElementById('referral-rows');
        if (fresh && old) old.replaceWith(fresh);
        if (status) status.textContent = status.dataset.updated + ' ' + new Date().toLocaleTimeString();
      })
      .catch(function () { /* the next event, or a reload, tries again */ });
  }
  var source = new EventSource(table.dataset.stream);
  source.addEventListener('referral', function () {
    // Several changes at once make one refresh.
    if (!pending) pending = setTimeout(refresh, 150);
  });
  source.addEventListener('open', function () { document.body.dataset.live = 'on'; });
})();
