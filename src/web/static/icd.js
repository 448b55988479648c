// ICD-10 search as you type: fills the diagnosis field's datalist from /app/icd10. Without
// JavaScript the field still takes a code ("I10") or a name that names one code.
(function () {
  'use strict';
  var input = document.getElementById('icd');
  var list = document.getElementById('icd-options');
  if (!input || !list) return;
  var timer = null;
  input.addEventListener('input', function () {
    clearTimeout(timer);
    var q = input.value.trim();
    if (q.length < 1) return;
    timer = setTimeout(function () {
      fetch(input.dataset.search + '?q=' + encodeURIComponent(q), { credentials: 'same-origin' })
        .then(function (r) { return r.ok ? r.json() : []; })
        .then(function (items) {
          list.replaceChildren.apply(list, items.map(function (i) {
            var o = document.createElement('option');
            o.value = i.code + ' ' + i.name;
            return o;
          }));
          input.dataset.results = String(items.length);
        })
        .catch(function () {});
    }, 150);
  });
})();
